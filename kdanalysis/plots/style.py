"""One look for every figure: colour-blind-safe colours, labels, orders and a style context.

Every method has one colour in every figure (:data:`METHOD_COLORS`, Okabe–Ito and Tol
colours, safe for the common colour-vision deficiencies). Figures are created as
:class:`matplotlib.figure.Figure` objects (no pyplot state) inside :func:`figure_style`,
which sets the seaborn style only for the duration of the ``with`` block: the global
``rcParams`` are never changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from kdanalysis.results import METHODS
from kdanalysis.tasks import task_table

__all__ = [
    "METHOD_COLORS",
    "METHOD_LABELS",
    "TEACHER_KIND_COLORS",
    "TEACHER_KIND_LABELS",
    "DOMAIN_STYLES",
    "TASK_LABELS",
    "method_label",
    "method_order",
    "method_palette",
    "task_label",
    "task_order",
    "figure_style",
    "new_figure",
    "save_figure",
    "save_png",
    "save_svg",
]

#: Colour of each method id, identical in every figure.
METHOD_COLORS: dict[str, str] = {
    "base": "#999999",
    "sft": "#0072B2",
    "fkl": "#E69F00",
    "rkl": "#009E73",
    "gkd": "#CC79A7",
    "seqkd": "#D55E00",
    "tvd": "#56B4E9",
    "jsd": "#F0E442",
    "skl": "#000000",
    "srkl": "#882255",
    "kd": "#44AA99",
}
#: Display label of each method id (the paper's name in parentheses where it differs).
METHOD_LABELS: dict[str, str] = {
    "base": "Base",
    "sft": "SFT",
    "fkl": "FKL (paper: SeqKD)",
    "rkl": "RKL (paper: RevKD)",
    "gkd": "GKD",
    "seqkd": "SeqKD (teacher outputs)",
    "tvd": "TVD",
    "jsd": "JSD",
    "skl": "Skew FKL",
    "srkl": "Skew RKL",
    "kd": "KD (any loss)",
}
#: Colours and labels of teacher kinds.
TEACHER_KIND_COLORS: dict[str, str] = {"task_aware": "#332288", "base": "#AA4499", "none": "#999999"}
TEACHER_KIND_LABELS: dict[str, str] = {
    "task_aware": "task-aware teacher",
    "base": "base teacher",
    "none": "no teacher",
}
#: Colour and marker per domain (kept apart from the method colours).
DOMAIN_STYLES: dict[str, tuple[str, str]] = {"math": ("#222222", "o"), "commonsense": ("#777777", "s")}
#: Display label of every task id of the task table (``data/tasks.yaml``) and of ``average``, in its order.
TASK_LABELS: dict[str, str] = task_table().labels()
_AVERAGE = task_table().average.id
_EXTRA_COLORS = ("#332288", "#88CCEE", "#117733", "#DDCC77", "#AA4499", "#661100")


def method_label(method: str) -> str:
    """Display label of a method id (the id itself if unknown)."""
    return METHOD_LABELS.get(method, method)


def method_order(methods: Iterable[str]) -> list[str]:
    """Method ids present in ``methods``, in the order of :data:`kdanalysis.results.METHODS`."""
    present = set(methods)
    return [m for m in METHODS if m in present] + sorted(present - set(METHODS))


def method_palette(methods: Iterable[str]) -> dict[str, str]:
    """Colour per method id for the given methods (unknown ids get spare colours)."""
    palette = {}
    spare = iter(_EXTRA_COLORS)
    for method in method_order(methods):
        palette[method] = METHOD_COLORS.get(method) or next(spare, "#000000")
    return palette


def task_label(task: str) -> str:
    """Display label of a task id (the id itself if unknown)."""
    return TASK_LABELS.get(task, task)


def task_order(tasks: Iterable[str]) -> list[str]:
    """Task ids in the task table's order (the paper's), unknown ids sorted after them, ``average`` last."""
    present = set(tasks)
    known = [t for t in TASK_LABELS if t in present and t != _AVERAGE]
    rest = sorted(present - set(TASK_LABELS))
    return known + rest + ([_AVERAGE] if _AVERAGE in present else [])


@contextmanager
def figure_style() -> Iterator[None]:
    """Seaborn's white-grid style and a compact font scale, for the ``with`` block only."""
    with (
        sns.axes_style("whitegrid"),
        sns.plotting_context("notebook", font_scale=0.85),
        mpl.rc_context({"legend.frameon": False}),
    ):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure (inches) with constrained layout; create it inside :func:`figure_style`."""
    return Figure(figsize=(width, height), layout="constrained")


def save_png(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` as an opaque RGB PNG at ``dpi`` and fix its layout; return the path.

    The layout (constrained) is computed once, at the PNG's resolution, and then fixed, so
    that a later :func:`save_svg` of the same figure costs one draw and shows the same
    layout. The PNG is opaque RGB (the figures have a white background), which a PDF
    embeds without splitting off an alpha mask.
    """
    path = Path(path)
    canvas = FigureCanvasAgg(fig)  # a canvas with a renderer, for the text extents of the layout
    fig.set_dpi(dpi)
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        fig.set_layout_engine(None)  # no engine: each file is drawn once, with the layout just computed
    canvas.draw()
    Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert(
        "RGB"
    ).save(path, format="png", dpi=(dpi, dpi))
    return path


def save_svg(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as SVG without a creation date (identical figures give identical files)."""
    path = Path(path)
    with mpl.rc_context({"svg.hashsalt": "kdanalysis"}):  # read when saving: fixed ids, not uuid4 ones
        fig.savefig(path, format="svg", metadata={"Date": None, "Creator": None})
    return path


def save_figure(fig: Figure, stem: str | Path, dpi: int = 150) -> tuple[Path, Path]:
    """Write ``<stem>.png`` (:func:`save_png`) and then ``<stem>.svg`` (:func:`save_svg`).

    Returns
    -------
    (Path, Path)
        The PNG and the SVG.
    """
    stem = Path(stem)
    return save_png(fig, stem.with_suffix(".png"), dpi), save_svg(fig, stem.with_suffix(".svg"))
