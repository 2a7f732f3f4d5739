"""Turn report sections into files: figures (PNG + SVG), CSV tables, HTML and PDF.

The HTML comes from the jinja2 templates shipped as ``kdanalysis._templates`` (autoescape
on, ``StrictUndefined``), with the CSS, the table-sorting script and every figure (PNG,
base64) inlined, so that the page opens offline. The PDF is WeasyPrint's rendering of the
same HTML, using the template's print stylesheet.
"""

from __future__ import annotations

import base64
import gc
import logging
import multiprocessing
import os
import queue
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd

from kdanalysis.errors import BackendUnavailableError
from kdanalysis.report.formatting import format_table
from kdanalysis.report.orphans import exit_with
from kdanalysis.report.sections import FigureSpec, Section, TableSpec
from kdanalysis.report.spreadsheet import spreadsheet_safe

__all__ = ["PDF_INSTALL_HINT", "FigureDrawer", "write_tables", "render_html", "write_pdf"]

logger = logging.getLogger(__name__)

#: What to run when WeasyPrint is missing.
PDF_INSTALL_HINT = "pip install 'kdanalysis[pdf]'"
_TEMPLATES = "kdanalysis._templates"
_DPI = 150


#: In a figure worker: the queue on which it announces each PNG written (set by ``_init_worker``).
_READY: Any = None


def _init_worker(ready: Any, parent: int) -> None:
    global _READY
    exit_with(parent)
    _READY = ready


def _draw_one(spec: FigureSpec, stem: Path) -> None:
    """Write the PNG, announce it (in a worker), then write the SVG."""
    from kdanalysis.plots.style import save_png, save_svg

    fig = spec.plot(*spec.args, **dict(spec.kwargs))
    save_png(fig, stem.with_suffix(".png"), dpi=_DPI)
    if _READY is not None:
        _READY.put(spec.id)
    save_svg(fig, stem.with_suffix(".svg"))


class FigureDrawer:
    """Draw figures into ``figure_dir/<id>.png`` and ``.svg``, in worker processes if asked.

    Figures are independent, so with ``workers > 1`` each :meth:`submit` hands the figure
    to a process pool and the caller keeps computing. A worker announces each PNG as soon
    as it is written: :meth:`wait_png` returns when every PNG exists (the HTML and PDF
    need only those), while the workers go on writing the SVGs; :meth:`wait` returns when
    every file is written. The caller does not draw figures itself while it waits: with
    one worker per core that only adds a third process competing for the cores (about
    1 s slower on 2 cores). The pool's processes come from a fork server that has
    imported the plotting modules once (no fork of a process with running threads),
    started in a background thread as soon as the drawer is entered. With
    ``workers <= 1`` figures are drawn at once, in this process. Use as a context manager.

    As with any code that starts processes (``multiprocessing``'s "safe importing of the
    main module"), a script that uses ``workers > 1`` must run under
    ``if __name__ == "__main__":``; notebooks and the ``kdanalysis`` command need nothing.
    """

    def __init__(self, figure_dir: Path, workers: int = 1) -> None:
        self.figure_dir = figure_dir
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._ready: Any = None
        self._start: threading.Thread | None = None
        self._pending: dict[str, Future[None]] = {}
        self._png_written: list[str] = []
        self._n_reported = 0

    def __enter__(self) -> FigureDrawer:
        if self.workers > 1:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["kdanalysis.plots.figures", "kdanalysis.plots.style"])
            self._ready = context.Queue()
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self._ready, os.getpid()),
            )
            # Starting the fork server (which imports the plotting modules) and the workers takes
            # seconds and would block the first submit: a thread does it while the caller computes.
            self._start = threading.Thread(target=self._pool.submit, args=(os.getpid,), daemon=True)
            self._start.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._start is not None:
            self._start.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._ready is not None:
            self._ready.close()

    def submit(self, spec: FigureSpec) -> None:
        """Draw one figure (now, or in a worker)."""
        if spec.id in self._pending:
            raise ValueError(f"figure id {spec.id!r} submitted twice")
        if self._pool is None:
            _draw_one(spec, self.figure_dir / spec.id)
            done: Future[None] = Future()
            done.set_result(None)
            self._pending[spec.id] = done
            self._png_written.append(spec.id)
        else:
            self._pending[spec.id] = self._pool.submit(_draw_one, spec, self.figure_dir / spec.id)

    def submit_all(self, section: Section) -> None:
        """Draw every figure of a section."""
        for spec in section.figures:
            self.submit(spec)

    def wait_png(self, step: Callable[[str], None] | None = None) -> None:
        """Wait until the PNG of every submitted figure is written; re-raise a failure.

        ``step`` is called with the id of each figure whose PNG was written since the last
        call, in the order they were written.
        """
        while True:
            if step is not None:
                for figure_id in self._png_written[self._n_reported :]:
                    step(figure_id)
            self._n_reported = len(self._png_written)
            missing = [fid for fid in self._pending if fid not in self._png_written]
            if not missing:
                return
            try:
                self._png_written.append(self._ready.get(timeout=0.1))
            except queue.Empty:
                # A figure that failed before its PNG never announces it: its future says why.
                for fid in missing:
                    future = self._pending[fid]
                    if future.done() and future.exception() is not None:
                        future.result()

    def wait(self) -> None:
        """Wait until every file of every submitted figure is written; re-raise the first failure."""
        self.wait_png()
        for future in self._pending.values():
            future.result()


def write_tables(tables: Sequence[TableSpec], table_dir: Path) -> None:
    """Write every table, at full precision, to ``table_dir/<id>.csv`` (text cells spreadsheet-safe)."""
    for table in tables:
        spreadsheet_safe(table.data).to_csv(table_dir / f"{table.id}.csv", index=False)


def _png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _breakable(text: str) -> Any:
    """``text`` escaped, with a line-break opportunity (``<wbr>``) after each ``_``, ``/`` and ``:``.

    Identifiers such as ``smaller_students_benefit`` then wrap at their separators, not
    mid-word, in the PDF's fixed-width table columns.
    """
    from markupsafe import Markup, escape

    escaped = str(escape(text))
    for sep in ("_", "/", ":"):
        escaped = escaped.replace(sep, sep + "<wbr>")
    return Markup(escaped)


def _table_view(table: TableSpec, number: int) -> dict[str, Any]:
    shown, header = table.displayed()
    rows = format_table(shown)
    numeric = [pd.api.types.is_numeric_dtype(shown[c]) for c in shown.columns]
    return {
        "id": table.id,
        "number": number,
        "title": table.title,
        "caption": table.caption,
        "show": table.show,
        "header": [{"text": text, "numeric": num} for text, num in zip(header, numeric, strict=True)],
        "n_total": len(table.data),
        "n_shown": len(shown),
        "rows": [
            [
                {"text": text, "key": key, "numeric": num}
                for (text, key), num in zip(row, numeric, strict=True)
            ]
            for row in rows
        ],
    }


def _template_text(name: str) -> str:
    return files(_TEMPLATES).joinpath(name).read_text(encoding="utf-8")


def render_html(
    sections: Sequence[Section], figure_dir: Path, *, title: str, source: str, n_rows: int
) -> str:
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

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kdanalysis._templates", ""),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )
    env.filters["breakable"] = _breakable
    views, fig_no, tab_no = [], 0, 0
    for section in sections:
        figures, tables = [], []
        for spec in section.figures:
            fig_no += 1
            png = (figure_dir / f"{spec.id}.png").read_bytes()
            width, height = _png_size(png)
            figures.append(
                {
                    "id": spec.id,
                    "number": fig_no,
                    "title": spec.title,
                    "caption": spec.caption,
                    "png_base64": base64.b64encode(png).decode("ascii"),
                    "width": round(width * 96 / _DPI),
                    "height": round(height * 96 / _DPI),
                }
            )
        for table in section.tables:
            tab_no += 1
            tables.append(_table_view(table, tab_no))
        views.append(
            {
                "id": section.id,
                "title": section.title,
                "present": section.present,
                "note": section.note,
                "paragraphs": section.paragraphs,
                "bullets": section.bullets,
                "figures": figures,
                "tables": tables,
            }
        )
    template = env.get_template("report.html.j2")
    return template.render(
        title=title,
        source=source,
        n_rows=f"{n_rows:,}",
        version=__version__,
        sections=views,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        n_figures=fig_no,
        n_tables=tab_no,
        css=_template_text("report.css"),
        js=_template_text("report.js"),
    )  # trusted package files


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
            f"PDF not written: WeasyPrint is not installed ({PDF_INSTALL_HINT})"
        ) from exc
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    with _fewer_collections():
        weasyprint.HTML(string=html, base_url=os.getcwd()).write_pdf(path)
    logger.info("wrote %s", path)


#: Allocations between two young-generation collections while a PDF is laid out (Python: 700).
_PDF_GC_THRESHOLD = 50_000


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect garbage less often in the block, and never look at the objects made before it.

    WeasyPrint allocates millions of small objects while it lays out a report; with the
    default thresholds the collector runs thousands of times and walks the whole heap,
    which includes the report's statistics (about 15 % of the PDF's time). The objects
    that exist when the block starts are frozen (skipped by the collector) and the
    young-generation threshold raised; both are restored afterwards (objects a caller
    froze itself stay frozen). Cyclic garbage is still collected, less often (peak
    memory grows by a few MB).
    """
    thresholds = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0  # a caller's own frozen objects are left as they are
    if freeze:
        gc.freeze()
    gc.set_threshold(_PDF_GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if freeze:
            gc.unfreeze()
