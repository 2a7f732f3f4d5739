"""FigureDrawer: PNGs announced before the SVGs are written, failures surface, ids are unique."""

from __future__ import annotations

import operator
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from kdanalysis.plots.style import save_figure
from kdanalysis.report.render import FigureDrawer
from kdanalysis.report.sections import FigureSpec


def _blank(figure_id: str) -> FigureSpec:
    return FigureSpec(figure_id, figure_id, "", Figure, kwargs={"figsize": (2.0, 1.0)})


def test_save_figure_calls_back_between_png_and_svg(tmp_path: Path) -> None:
    seen: list[tuple[bool, bool]] = []

    def on_png(png: Path) -> None:
        seen.append((png.is_file(), png.with_suffix(".svg").exists()))

    png, svg = save_figure(Figure(figsize=(2, 1)), tmp_path / "blank", on_png=on_png)
    assert seen == [(True, False)]
    assert png.is_file() and svg.is_file()


@pytest.mark.parametrize("workers", [1, 2])
def test_wait_png_then_wait_writes_every_file(tmp_path: Path, workers: int) -> None:
    ids = ["a", "b", "c"]
    drawn: list[str] = []
    with FigureDrawer(tmp_path, workers=workers) as drawer:
        for figure_id in ids:
            drawer.submit(_blank(figure_id))
        drawer.wait_png(step=drawn.append)
        assert all((tmp_path / f"{i}.png").is_file() for i in ids)
        drawer.wait()
        assert all((tmp_path / f"{i}.svg").is_file() for i in ids)
    assert sorted(drawn) == ids


def test_failing_figure_raises_from_wait_png(tmp_path: Path) -> None:
    with FigureDrawer(tmp_path, workers=2) as drawer:
        drawer.submit(_blank("fine"))
        drawer.submit(FigureSpec("broken", "Broken", "", operator.truediv, (1, 0)))
        with pytest.raises(ZeroDivisionError):
            drawer.wait_png()


def test_duplicate_figure_id_is_refused(tmp_path: Path) -> None:
    with FigureDrawer(tmp_path, workers=1) as drawer:
        drawer.submit(_blank("same"))
        with pytest.raises(ValueError, match="'same' submitted twice"):
            drawer.submit(_blank("same"))
