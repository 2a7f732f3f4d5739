"""``build_report``: a results table in, a report folder out (HTML, PDF, figures, tables).

The report is built in a temporary folder next to the output folder and moved into place
only when everything succeeded, so a failure (a full disk included) never leaves a partial
report behind and the previous report stays intact. A build killed outright leaves its
folder behind: the next build removes it (:mod:`kdanalysis.report.orphans`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kdanalysis.errors import BackendUnavailableError, ConfigError, DiskFullError, SchemaError
from kdanalysis.io import reporting_disk_full
from kdanalysis.report.content import build_sections
from kdanalysis.report.orphans import BuildMark, remove_stale
from kdanalysis.report.render import FigureDrawer, render_html, write_pdf, write_tables
from kdanalysis.results import validate_models, validate_results

__all__ = ["FORMATS", "ReportPaths", "build_report", "load_report_data", "load_report_input"]

logger = logging.getLogger(__name__)

#: Output formats ``build_report`` can write.
FORMATS: tuple[str, ...] = ("html", "pdf")
DEFAULT_TITLE = "Knowledge distillation: generalization vs fidelity"
_DEVELOPER_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
BUNDLED_SOURCE = "bundled published results of arXiv 2505.15442 (kdanalysis)"


@dataclass(frozen=True)
class ReportPaths:
    """Where the report was written.

    Attributes
    ----------
    out_dir : Path
    html, pdf : Path or None
        ``report.html`` / ``report.pdf`` (None when not requested or not possible).
    figures, tables : tuple of Path
        PNG and SVG figures; CSV tables.
    messages : tuple of str
        Notes for the user, e.g. why the PDF was skipped, and one line per kind of
        warning (statsmodels, matplotlib) raised while the report was computed.
    """

    out_dir: Path
    html: Path | None
    pdf: Path | None
    figures: tuple[Path, ...]
    tables: tuple[Path, ...]
    messages: tuple[str, ...] = ()


def load_report_input(path: str | Path | None) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """Results to report on: the bundled paper results, a results file, or a run folder.

    Parameters
    ----------
    path : str, Path or None
        ``None`` for the bundled published results; a ``.parquet``/``.csv`` results table;
        or a runs folder of ``kdanalysis run-grid`` (collected with
        :func:`kdanalysis.collect.collect_runs`; a ``models.parquet`` or ``models.csv``
        models table in it is used for model families and sizes).

    Returns
    -------
    (results, models, source)
        The validated results, the models table found beside them (or None) and a
        description of the source.

    Raises
    ------
    ConfigError
        If the path does not exist.
    SchemaError
        If the table fails the results contract.
    """
    return load_report_data(path)[:3]


def load_report_data(
    path: str | Path | None,
) -> tuple[pd.DataFrame, pd.DataFrame | None, str, pd.DataFrame | None]:
    """:func:`load_report_input` and the per-item table of the same runs, if any.

    The items of a results file are its folder's ``items.parquet`` or ``items.csv`` (as
    ``kdanalysis collect`` writes them); those of a runs folder come from its run folders.

    Returns
    -------
    (results, models, source, items)
        As :func:`load_report_input`, and the validated per-item table or None (bundled
        results, or no items file).
    """
    from kdanalysis.results import read_items, read_models, read_results

    if path is None:
        from kdanalysis.datasets import load_paper_models, load_paper_results

        return load_paper_results(), load_paper_models(), BUNDLED_SOURCE, None
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"results not found: {path} (give a .parquet/.csv results table or a runs folder)")
    if path.is_dir():
        from kdanalysis.collect import collect_runs

        results, items = collect_runs(path)
        models_file = next(
            (path / name for name in ("models.parquet", "models.csv") if (path / name).is_file()), None
        )
        models = read_models(models_file) if models_file is not None else None
        return validate_results(results), models, f"runs folder {path}", items
    found = [
        path.with_name(name) for name in ("items.parquet", "items.csv") if path.with_name(name).is_file()
    ]
    items = read_items(found[0]) if found else None
    return read_results(path), None, f"results file {path.name}", items


def _models_for_report(models: pd.DataFrame | None) -> pd.DataFrame:
    """The given models table, completed with the bundled paper models it does not list."""
    from kdanalysis.datasets import load_paper_models

    paper = load_paper_models()
    if models is None:
        return paper
    models = validate_models(models)
    extra = paper[~paper["model"].isin(models["model"])]
    return validate_models(pd.concat([models, extra], ignore_index=True))


def _check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise ConfigError(
            f"unknown report format(s) {', '.join(bad) or '(none given)'}; allowed: {', '.join(FORMATS)}"
        )
    return chosen


def _workers(workers: int | None) -> int:
    if workers is not None:
        return max(1, int(workers))
    return min(2, os.cpu_count() or 1)


def _warning_notes(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """One short note per distinct warning raised while the sections were computed.

    statsmodels warns (e.g. a singular random-effects covariance, a fit that did not
    converge) from deep inside the model fits; the affected rows carry a ``note`` in the
    tables, so the console gets one summary line per kind of warning instead of the raw
    warnings. Deprecation notices of the libraries are meant for developers: logged, not
    noted.
    """
    counts: dict[str, int] = {}
    for item in caught:
        text = f"{item.category.__name__}: {str(item.message).splitlines()[0]}"
        if issubclass(item.category, _DEVELOPER_WARNINGS):
            logger.debug("%s", text)
            continue
        counts[text] = counts.get(text, 0) + 1
    return [f"warning while computing the report ({count}x): {text}" for text, count in counts.items()]


def _prepare_out(out_dir: Path) -> Path:
    """Check that ``out_dir`` can hold a report, remove leftovers of killed builds; return a new build folder.

    Raises
    ------
    ConfigError
        If ``out_dir`` is a file or cannot be written (the message names it).
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"report output {out_dir} is a file, not a folder; give a folder with --out")
    try:
        with reporting_disk_full(out_dir):
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(out_dir.parent.glob(f".{out_dir.name}-building-*"))
            if out_dir.is_dir():
                remove_stale(out_dir.glob(".*-old-*"))
            return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-building-", dir=out_dir.parent))
    except DiskFullError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from exc


def _move_into_place(build_dir: Path, out_dir: Path) -> None:
    """Move the built entries into ``out_dir``, replacing earlier report files of the same names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for entry in sorted(build_dir.iterdir()):
        target = out_dir / entry.name
        if target.is_dir() and not target.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{entry.name}-old-", dir=out_dir))
            os.replace(target, old / entry.name)
            os.replace(entry, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(entry, target)


def build_report(
    results: pd.DataFrame | None = None,
    out_dir: str | Path = "report",
    formats: Sequence[str] = FORMATS,
    title: str = DEFAULT_TITLE,
    progress: Callable[[str], None] | None = None,
    *,
    models: pd.DataFrame | None = None,
    source: str | None = None,
    workers: int | None = None,
    items: pd.DataFrame | None = None,
) -> ReportPaths:
    """Write the study report: ``report.html``, ``report.pdf``, ``figures/``, ``tables/``.

    Parameters
    ----------
    results : DataFrame, optional
        A results table (contract of :mod:`kdanalysis.results`); default: the bundled
        published results.
    out_dir : str or Path
        Output folder (created; earlier report files in it are replaced).
    formats : sequence of {"html", "pdf"}
        Documents to write. Figures and tables are always written.
    title : str
        Report title.
    progress : callable, optional
        Called with a short description of each step.
    models : DataFrame, optional
        Models table (family, params_b) of the models in ``results``, completed with the
        bundled paper models table (models in neither show as 'unknown').
    source : str, optional
        Description of the data source shown in the report.
    workers : int, optional
        Processes drawing figures while the statistics are computed (default: one per
        CPU core, at most 2; 1 draws them in this process). A script calling this with
        more than one worker must do so under ``if __name__ == "__main__":`` (Python's
        rule for code that starts processes).
    items : DataFrame, optional
        The per-item table of the runs in ``results`` (:func:`load_report_data`): adds the
        per-item paired tests of each KD run against its SFT twin.

    Returns
    -------
    ReportPaths

    Raises
    ------
    SchemaError
        If ``results`` fails the contract or has no rows.
    ConfigError
        For an unknown format, or an output folder that is a file or cannot be written.
    DiskFullError
        If the disk fills up (the previous report is left as it was).
    """
    from kdanalysis.datasets import load_paper_results

    chosen = _check_formats(formats)
    step = progress or (lambda message: logger.info("%s", message))
    if results is None:
        results = load_paper_results()
        source = source or BUNDLED_SOURCE
    results = validate_results(results)
    if results.empty:
        raise SchemaError("the results table has no rows: nothing to report")
    models = _models_for_report(models)
    out_dir = Path(out_dir)
    build_dir = _prepare_out(out_dir)
    try:
        with BuildMark(build_dir) as mark, reporting_disk_full(out_dir):
            figure_dir, table_dir = build_dir / "figures", build_dir / "tables"
            figure_dir.mkdir()
            table_dir.mkdir()
            with FigureDrawer(figure_dir, workers=_workers(workers)) as drawer:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    sections = build_sections(
                        results,
                        models,
                        step=lambda name: step(f"computing: {name}"),
                        on_section=drawer.submit_all,
                        items=items,
                    )
                messages = _warning_notes(caught)
                specs = [f for s in sections for f in s.figures]
                step(f"drawing {len(specs)} figures")
                drawer.wait_png(step=lambda fid: step(f"figure {fid} drawn"))
                write_tables([t for s in sections for t in s.tables], table_dir)
                step("rendering HTML")
                html = render_html(
                    sections, figure_dir, title=title, source=source or "results table", n_rows=len(results)
                )
                pdf_written = False
                if "html" in chosen:
                    (build_dir / "report.html").write_text(html, encoding="utf-8")
                if "pdf" in chosen:
                    # the figure workers write the SVG files meanwhile
                    step("rendering PDF")
                    try:
                        write_pdf(html, build_dir / "report.pdf")
                        pdf_written = True
                    except BackendUnavailableError as exc:
                        messages.append(str(exc))
                        logger.warning("%s", exc)
                step("writing SVG figures")
                drawer.wait()
            mark.release()
            _move_into_place(build_dir, out_dir)
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    html_path, pdf_path = out_dir / "report.html", out_dir / "report.pdf"
    return ReportPaths(
        out_dir=out_dir,
        html=html_path if "html" in chosen else None,
        pdf=pdf_path if pdf_written else None,
        figures=tuple(
            sorted(
                p
                for spec in specs
                for p in (out_dir / "figures" / f"{spec.id}.png", out_dir / "figures" / f"{spec.id}.svg")
            )
        ),
        tables=tuple(sorted(out_dir / "tables" / f"{t.id}.csv" for s in sections for t in s.tables)),
        messages=tuple(messages),
    )
