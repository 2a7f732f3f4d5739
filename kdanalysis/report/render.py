"""Turn report sections into files: figures (PNG + SVG), CSV tables, HTML and PDF.

The HTML comes from the jinja2 templates shipped as ``kdanalysis._templates`` (autoescape
on, ``StrictUndefined``), with the CSS, the table-sorting script and every figure (PNG,
base64) inlined, so that the page opens offline. The PDF is WeasyPrint's rendering of the
same HTML, using the template's print stylesheet.
"""

from __future__ import annotations

import base64
import logging
import os
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd

from kdanalysis.errors import BackendUnavailableError
from kdanalysis.report.formatting import format_table
from kdanalysis.report.sections import FigureSpec, Section, TableSpec

__all__ = ["PDF_INSTALL_HINT", "draw_figures", "write_tables", "render_html", "write_pdf"]

logger = logging.getLogger(__name__)

#: What to run when WeasyPrint is missing.
PDF_INSTALL_HINT = "pip install 'kdanalysis[pdf]'"
_TEMPLATES = "kdanalysis._templates"
_DPI = 150


def _draw_one(spec: FigureSpec, stem: str) -> None:
    from kdanalysis.plots.style import save_figure

    fig = spec.plot(*spec.args, **dict(spec.kwargs))
    save_figure(fig, stem, dpi=_DPI)


def draw_figures(specs: Sequence[FigureSpec], figure_dir: Path, *, workers: int = 1,
                 step: Callable[[str], None] | None = None) -> None:
    """Draw every figure into ``figure_dir/<id>.png`` and ``.svg``.

    Parameters
    ----------
    specs : sequence of FigureSpec
    figure_dir : Path
        Existing output folder.
    workers : int
        Worker processes (1: draw in this process). Figures are independent, so they
        can be drawn in parallel; matplotlib's Agg canvas is used either way.
    step : callable, optional
        Called with each figure's id when it is done (progress).
    """
    stems = [str(figure_dir / spec.id) for spec in specs]
    if workers <= 1 or len(specs) < 2:
        for spec, stem in zip(specs, stems, strict=True):
            _draw_one(spec, stem)
            if step is not None:
                step(spec.id)
        return
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_draw_one, spec, stem) for spec, stem in zip(specs, stems, strict=True)]
        for spec, future in zip(specs, futures, strict=True):
            future.result()
            if step is not None:
                step(spec.id)


def write_tables(tables: Sequence[TableSpec], table_dir: Path) -> None:
    """Write every table, at full precision, to ``table_dir/<id>.csv``."""
    for table in tables:
        table.data.to_csv(table_dir / f"{table.id}.csv", index=False)


def _png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _table_view(table: TableSpec, number: int) -> dict[str, Any]:
    shown, header = table.displayed()
    rows = format_table(shown)
    numeric = [pd.api.types.is_numeric_dtype(shown[c]) for c in shown.columns]
    return {
        "id": table.id, "number": number, "title": table.title, "caption": table.caption,
        "show": table.show, "header": header, "n_total": len(table.data), "n_shown": len(shown),
        "rows": [[{"text": text, "key": key, "numeric": num}
                  for (text, key), num in zip(row, numeric, strict=True)] for row in rows],
    }


def _template_text(name: str) -> str:
    return files(_TEMPLATES).joinpath(name).read_text(encoding="utf-8")


def render_html(sections: Sequence[Section], figure_dir: Path, *, title: str, source: str, n_rows: int) -> str:
    """The self-contained HTML report.

    Parameters
    ----------
    sections : sequence of Section
    figure_dir : Path
        Folder holding the drawn figures (PNG files are inlined).
    title, source : str
        Report title and a description of the data source.
    n_rows : int
        Rows of the results table.

    Returns
    -------
    str
        The HTML document.
    """
    import jinja2

    from kdanalysis import __version__

    env = jinja2.Environment(loader=jinja2.PackageLoader("kdanalysis._templates", ""),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)
    views, fig_no, tab_no = [], 0, 0
    for section in sections:
        figures, tables = [], []
        for spec in section.figures:
            fig_no += 1
            png = (figure_dir / f"{spec.id}.png").read_bytes()
            width, height = _png_size(png)
            figures.append({"id": spec.id, "number": fig_no, "title": spec.title, "caption": spec.caption,
                            "png_base64": base64.b64encode(png).decode("ascii"),
                            "width": round(width * 96 / _DPI), "height": round(height * 96 / _DPI)})
        for spec in section.tables:
            tab_no += 1
            tables.append(_table_view(spec, tab_no))
        views.append({"id": section.id, "title": section.title, "present": section.present, "note": section.note,
                      "paragraphs": section.paragraphs, "bullets": section.bullets, "figures": figures,
                      "tables": tables})
    template = env.get_template("report.html.j2")
    return template.render(
        title=title, source=source, n_rows=f"{n_rows:,}", version=__version__, sections=views,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), n_figures=fig_no, n_tables=tab_no,
        css=_template_text("report.css"), js=_template_text("report.js"))


def write_pdf(html: str, path: Path) -> None:
    """Render ``html`` to a PDF with WeasyPrint (the ``pdf`` extra).

    Raises
    ------
    BackendUnavailableError
        If WeasyPrint is not installed; the message says how to install it.
    """
    try:
        import weasyprint
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BackendUnavailableError(
            f"PDF not written: WeasyPrint is not installed ({PDF_INSTALL_HINT})") from exc
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    weasyprint.HTML(string=html, base_url=os.getcwd()).write_pdf(path)
    logger.info("wrote %s", path)
