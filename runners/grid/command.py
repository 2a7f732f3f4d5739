"""The ``kdanalysis run-grid`` command (the CLI function in :mod:`runners.cli` delegates here)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from kdanalysis.errors import ConfigError, RunFailedError
from kdanalysis.runfolder import ITEMS_FILE, RESULTS_FILE
from runners.env import THREADS_ENV, cpu_threads
from runners.grid.estimate import estimate_plan
from runners.grid.inputs import MissingInput, input_failures, missing_inputs
from runners.grid.plan import build_plan, teacher_signal_lines
from runners.grid.progress import GridProgress, estimate_table, sbatch_table
from runners.grid.runner import plan_states, resolve_grid, run_grid
from runners.grid.spec import load_grid
from runners.grid.state import CellState

if TYPE_CHECKING:
    from kdanalysis.report import ReportPaths

__all__ = ["run_grid_command", "default_runs_dir"]

logger = logging.getLogger(__name__)


def default_runs_dir(study: str) -> Path:
    """``runs/<study>`` in the current folder."""
    return Path("runs") / study


def _build_report(runs_dir: Path, console: Console) -> None:
    """The HTML report of the grid's collected tables in ``RUNS_DIR/report`` (PDF: ``kdanalysis report``).

    Built only when its fingerprint (the collected tables, the models table, the options and
    the code: :mod:`kdanalysis.report.fingerprint`) differs from the last complete build's,
    or a file of that build changed; otherwise the report's path is printed with
    "(unchanged)".
    """
    from kdanalysis.report.fingerprint import build_if_changed, report_fingerprint

    out_dir, models_path = runs_dir / "report", runs_dir / "models.parquet"
    results_path, items_path = runs_dir / RESULTS_FILE, runs_dir / ITEMS_FILE
    source, formats = f"runs folder {runs_dir}", ("html",)

    def build() -> ReportPaths:
        from kdanalysis.report import build_report
        from kdanalysis.results import read_items, read_models, read_results

        models = read_models(models_path) if models_path.is_file() else None
        return build_report(
            read_results(results_path),
            out_dir,
            formats=formats,
            models=models,
            source=source,
            items=read_items(items_path),
        )

    fingerprint = report_fingerprint(
        [results_path, items_path, models_path], {"formats": formats, "source": source}
    )
    built = build_if_changed(out_dir, fingerprint, build)
    html = out_dir / "report.html" if built is None else built.html
    console.print(
        f"report: {html}{' (unchanged)' if built is None else ''} "
        f"(PDF too: kdanalysis report {runs_dir} --out {out_dir})",
        highlight=False,
    )


def _print_missing(missing: list[MissingInput], out: Console) -> None:
    """One block per missing input file: what it is, how many cells need it, where to get it."""
    for entry in missing:
        out.print(
            f"missing {entry.what} ({len(entry.cells)} cells fail until it is there): {entry.message}",
            highlight=False,
            soft_wrap=True,
        )


@contextmanager
def _fixed_threads(threads: int | None) -> Iterator[None]:
    """Pass a fixed thread count to every cell (in-process or a worker) through :data:`THREADS_ENV`."""
    if threads is None:
        yield
        return
    before = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(cpu_threads(threads))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = before


def run_grid_command(
    grid: str | Path,
    runs_dir: Path | None = None,
    *,
    dry_run: bool = False,
    retry_failed: bool = False,
    list_cells: bool = False,
    progress: bool = True,
    report: bool | None = None,
    threads: int | None = None,
) -> int:
    """Plan, show or run a grid; returns the process exit code (1 when cells failed).

    Parameters
    ----------
    grid : path or str
        Grid YAML file or bundled grid name.
    runs_dir : Path, optional
        Default ``runs/<study>``.
    dry_run : bool
        Print stages, cell counts and states, the work estimate and the missing input files
        (with where to get them); write nothing.
    retry_failed : bool
        Recompute cells that failed before.
    list_cells : bool
        Also print one line per cell (id, stage, state, label).
    progress : bool
        Show the live progress bar.
    report : bool, optional
        Build the HTML report at the end (default: the grid's ``report`` setting).
    threads : int, optional
        torch intra-op threads of every cell (default: the grid's ``executor.threads``, else
        chosen per cell from the cores free when it starts: :func:`runners.env.cpu_threads`).

    Raises
    ------
    ConfigError
        For a malformed grid (before anything is written).
    RunFailedError
        When another run-grid holds the runs folder.
    """
    path = resolve_grid(grid)
    spec = load_grid(path)
    try:
        plan = build_plan(spec, root=path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    runs_dir = runs_dir or default_runs_dir(spec.study)
    out = Console() if Console().is_terminal else Console(width=160)
    missing = missing_inputs(plan)
    no_input = input_failures(missing)
    if dry_run:
        states = plan_states(plan, runs_dir, retry_failed=retry_failed)
        title = f"grid {spec.study} ({path}) → {runs_dir}: {len(plan)} cells"
        out.print(title, highlight=False, soft_wrap=True)
        out.print(estimate_table(estimate_plan(plan, states)))
        if spec.executor.kind == "slurm":
            out.print(sbatch_table(plan, spec.executor.slurm))
        if list_cells:
            for cell in plan:
                out.print(
                    f"{cell.id}  {cell.stage:<18} {states[cell.id].state.value:<8} {cell.label}",
                    highlight=False,
                )
        for line in teacher_signal_lines(plan):
            out.print(line, highlight=False, soft_wrap=True)
        for cid, status in states.items():
            if status.state is CellState.FAILED and cid not in no_input:
                out.print(f"failed {cid} {plan.cells[cid].label}: {status.error}", highlight=False)
        _print_missing(missing, out)
        return 0
    text = path.read_text(encoding="utf-8")
    with _fixed_threads(threads if threads is not None else spec.executor.threads):
        if progress:
            with GridProgress(plan) as bar:
                result = run_grid(plan, runs_dir, retry_failed=retry_failed, progress=bar, grid_text=text)
        else:
            result = run_grid(plan, runs_dir, retry_failed=retry_failed, grid_text=text)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
    out.print(
        f"grid {spec.study}: {len(plan)} cells ({counts}); computed {len(result.computed)} now",
        highlight=False,
    )
    for cid, error in result.failed.items():
        if cid not in no_input:
            out.print(
                f"failed {cid} {plan.cells[cid].label}: {error} (see {runs_dir}/cells/{cid}/log.txt)",
                highlight=False,
            )
    _print_missing(missing, out)
    if result.results_path is not None:
        out.print(f"results: {result.results_path}\nitems: {result.items_path}", highlight=False)
        if report if report is not None else spec.report:
            _build_report(runs_dir, out)
    if result.failed:
        return 1
    if result.counts.get(CellState.PENDING.value):
        pending = result.counts[CellState.PENDING.value]
        raise RunFailedError(f"{pending} cells are still pending in {runs_dir}")
    return 0
