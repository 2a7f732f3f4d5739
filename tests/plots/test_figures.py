"""Figures: labelled axes, legends, one colour per method everywhere, no global state."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from kdanalysis import plots
from kdanalysis.errors import SchemaError
from kdanalysis.plots.style import METHOD_COLORS, method_palette, save_figure, task_order

RNG = np.random.default_rng(0)


def _gains(n: int = 24) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "domain": np.repeat(["math", "commonsense"], n // 2),
            "method": np.tile(["fkl", "rkl", "gkd"], n // 3),
            "student_params_b": np.tile([0.5, 1.5, 3.0, 7.0], n // 4),
            "gain": RNG.normal(2, 3, n),
        }
    )


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(mpl.text.Text)]


def _visible_axes(fig: Figure) -> list[mpl.axes.Axes]:
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def test_accuracy_bars_use_the_method_colours() -> None:
    data = pd.DataFrame(
        {
            "student": "S",
            "task": ["gsm8k", "svamp"] * 3,
            "method": ["base", "base", "sft", "sft", "fkl", "fkl"],
            "value": RNG.uniform(0, 100, 6),
        }
    )
    fig = plots.accuracy_by_task(data)
    ax = _visible_axes(fig)[0]
    assert ax.get_ylabel() == "Accuracy (%)"
    bar_colours = {to_hex(p.get_facecolor()) for p in ax.patches if p.get_height() > 0}
    assert bar_colours == {METHOD_COLORS[m].lower() for m in ("base", "sft", "fkl")}
    assert {"Base", "SFT", "FKL (paper: SeqKD)"} <= set(_texts(fig))  # legend labels


def test_scatter_has_units_a_fit_and_a_panel_per_domain() -> None:
    fig = plots.gain_scatter(
        _gains(), "student_params_b", xlabel="Student size (billion parameters)", logx=True
    )
    axes = _visible_axes(fig)
    assert [ax.get_title().split(" (")[0] for ax in axes] == ["math", "commonsense"]
    assert all(ax.get_xlabel() == "Student size (billion parameters)" for ax in axes)
    assert all(ax.get_ylabel() == "Gain over SFT (pp)" for ax in axes)
    assert all(ax.get_xscale() == "log" for ax in axes)
    assert "linear fit, 95 % CI" in _texts(fig)
    point_colours = {to_hex(c) for ax in axes for coll in ax.collections[:1] for c in coll.get_facecolors()}
    assert point_colours <= {METHOD_COLORS[m].lower() for m in ("fkl", "rkl", "gkd")}


def test_heatmap_forest_expertise_and_temperature_draw(tmp_path: Path) -> None:
    heat = pd.DataFrame(
        {
            "domain": "math",
            "pair": np.repeat(["A → a", "B → b"], 3),
            "task": ["gsm8k", "svamp", "average"] * 2,
            "gain": RNG.normal(0, 5, 6),
        }
    )
    forest = pd.DataFrame(
        {
            "predictor": "student size",
            "domain": "math",
            "task": ["gsm8k", "svamp"],
            "statistic": [-0.5, 0.1],
            "ci_low": [-0.8, -0.3],
            "ci_high": [-0.1, 0.5],
        }
    )
    expertise = pd.DataFrame(
        {
            "domain": "math",
            "teacher_kind": ["task_aware", "base"] * 3,
            "pair_id": np.repeat(["p1", "p2", "p3"], 2),
            "gain": [5, -20, 3, -30, 4, -25],
        }
    )
    temps = pd.DataFrame(
        {
            "domain": "math",
            "method": "fkl",
            "unit": np.repeat(["u1", "u2"], 3),
            "temperature": [1.0, 2.0, 5.0] * 2,
            "gain": [1, 2, -5, 0, 3, -8],
        }
    )
    figures = {
        "heat": plots.gain_heatmap(heat),
        "forest": plots.correlation_forest(forest),
        "expertise": plots.teacher_expertise(expertise),
        "temperature": plots.temperature_ablation(temps),
    }
    heat_ax = _visible_axes(figures["heat"])[0]
    assert [t.get_text() for t in heat_ax.get_xticklabels()] == ["GSM8K", "SVAMP", "Average"]
    assert figures["forest"].axes[0].get_xlabel() == "Spearman ρ (95 % CI)"
    assert figures["temperature"].axes[0].get_xlabel() == "KD temperature τ"
    for name, fig in figures.items():
        png, svg = save_figure(fig, tmp_path / name)
        assert png.read_bytes().startswith(b"\x89PNG") and b"<svg" in svg.read_bytes()[:500]


def test_figures_leave_global_rcparams_alone() -> None:
    before = dict(mpl.rcParams)
    plots.gain_scatter(_gains(), "student_params_b", xlabel="x")
    after = dict(mpl.rcParams)
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}


def test_missing_columns_or_rows_raise_schema_error() -> None:
    with pytest.raises(SchemaError, match="missing column"):
        plots.gain_heatmap(pd.DataFrame({"domain": ["math"], "task": ["gsm8k"], "gain": [1.0]}))
    with pytest.raises(SchemaError, match="no rows"):
        plots.accuracy_by_task(pd.DataFrame(columns=["student", "task", "method", "value"]))


def test_palette_and_orders_are_stable() -> None:
    assert list(method_palette(["gkd", "sft", "fkl"])) == ["sft", "fkl", "gkd"]
    assert method_palette(["my_loss"])["my_loss"] not in METHOD_COLORS.values()
    assert task_order(["average", "zeta", "svamp", "gsm8k"]) == ["gsm8k", "svamp", "zeta", "average"]
