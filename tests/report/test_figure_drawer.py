"""FigureDrawer: PNGs announced before the SVGs are written, failures surface, ids are unique."""

from __future__ import annotations

import operator
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from kdanalysis import plots
from kdanalysis.plots.style import save_png, save_svg
from kdanalysis.report.render import FigureDrawer
from kdanalysis.report.sections import FigureSpec


def _blank(figure_id: str) -> FigureSpec:
    return FigureSpec(figure_id, figure_id, "", Figure, kwargs={"figsize": (2.0, 1.0)})


def test_save_svg_after_save_png_keeps_the_layout(tmp_path: Path) -> None:
    fig = plots.gain_heatmap(
        pd.DataFrame({"domain": "math", "pair": ["T → S"], "task": ["gsm8k"], "gain": [1.0]})
    )
    png = save_png(fig, tmp_path / "heat.png")
    positions = [ax.get_position().bounds for ax in fig.axes]
    svg = save_svg(fig, tmp_path / "heat.svg")
    assert [ax.get_position().bounds for ax in fig.axes] == positions
    assert png.read_bytes().startswith(b"\x89PNG") and b"<svg" in svg.read_bytes()[:500]
    assert fig.get_layout_engine() is None


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


def test_the_same_figure_gives_the_same_svg(tmp_path: Path) -> None:
    data = pd.DataFrame(
        {"domain": "math", "pair": ["T → S", "T → S2"], "task": ["gsm8k"] * 2, "gain": [1.0, -2.0]}
    )
    files = []
    for name in ("first", "second"):
        fig = plots.gain_heatmap(data)
        save_png(fig, tmp_path / f"{name}.png")
        files.append(save_svg(fig, tmp_path / f"{name}.svg").read_bytes())
    assert files[0] == files[1]
