"""kdanalysis.stats.gains: KD minus baseline per unit and task."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kdanalysis as kd
from kdanalysis.errors import SchemaError
from kdanalysis.results import results_frame
from kdanalysis.stats.gains import GAIN_COLUMNS, gains


def _row(student: str, method: str, value: float, teacher: str = "none", **extra: object) -> dict:
    return {
        "study": "s",
        "domain": "math",
        "task": "gsm8k",
        "student": student,
        "teacher": teacher,
        "method": method,
        "metric": "accuracy",
        "value": value,
        **extra,
    }


@pytest.fixture
def toy() -> pd.DataFrame:
    return results_frame(
        [
            _row("A", "sft", 50.0),
            _row("A", "base", 10.0),
            _row("A", "fkl", 55.0, "T", temperature=1.0),
            _row("A", "fkl", 58.0, "T", temperature=2.0),
            _row("A", "fkl", 20.0, "T", temperature=5.0),
            _row("A", "rkl", 49.0, "T", temperature=1.0),
            _row("A", "fkl", 30.0, "T", temperature=1.0, teacher_kind="base"),
            _row("A", "fkl", 54.0, "T", temperature=1.0, teacher_noise=0.5),
            _row("A", "sft", 70.0, "T", metric="agreement"),
            _row("A", "kd", 75.0, "T", metric="agreement"),
        ]
    )


@pytest.fixture(scope="module")
def paper() -> pd.DataFrame:
    return kd.load_paper_results()


def test_max_over_temperature_per_unit(toy: pd.DataFrame) -> None:
    out = gains(toy)
    assert tuple(out.columns) == GAIN_COLUMNS
    by = out.set_index(["method", "teacher_kind", "teacher_noise"])
    best = by.loc[("fkl", "task_aware", 0.0)]
    assert (best["temperature"], best["n_temperatures"], best["kd_value"]) == (2.0, 3, 58.0)
    assert best["baseline_value"] == 50.0 and best["gain"] == 8.0
    assert by.loc[("fkl", "base", 0.0), "gain"] == -20.0
    assert by.loc[("fkl", "task_aware", 0.5), "gain"] == 4.0
    assert by.loc[("rkl", "task_aware", 0.0), "gain"] == -1.0
    assert len(out) == 4


def test_each_temperature_and_base_baseline(toy: pd.DataFrame) -> None:
    out = gains(toy, baseline="base", over_temperature="each", methods=["fkl"])
    assert len(out) == 5
    assert set(out["baseline"]) == {"base"}
    np.testing.assert_allclose(out["gain"], out["kd_value"] - 10.0)
    assert (out["n_temperatures"] == 1).all()


def test_same_teacher_baseline_is_preferred(toy: pd.DataFrame) -> None:
    out = gains(toy, metric="agreement")
    assert out[["method", "baseline_value", "gain"]].values.tolist() == [["kd", 70.0, 5.0]]


def test_missing_baseline_is_dropped_with_warning(toy: pd.DataFrame) -> None:
    extra = results_frame([_row("B", "fkl", 40.0, "T", temperature=1.0)])
    with pytest.warns(UserWarning, match="1 KD result.*without a 'sft' baseline.*'B'"):
        out = gains(pd.concat([toy, extra]))
    assert "B" not in set(out["student"])


def test_ambiguous_baseline_raises(toy: pd.DataFrame) -> None:
    twice = pd.concat([toy, results_frame([_row("A", "sft", 52.0, temperature=2.0)])])
    with pytest.raises(SchemaError, match="ambiguous 'sft' baseline"):
        gains(twice)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"baseline": "teacher"}, "unknown baseline 'teacher'; allowed: base, sft"),
        ({"metric": "acc"}, "unknown metric 'acc'; allowed: accuracy, agreement"),
        ({"methods": ["fkl", "kl"]}, "unknown method 'kl'; allowed: .*fkl.*rkl"),
        ({"tasks": ["gsm9k"]}, "unknown task 'gsm9k'; allowed: gsm8k"),
        ({"over_temperature": "mean"}, "unknown over_temperature 'mean'; allowed: max, each"),
    ],
)
def test_unknown_ids_list_allowed(toy: pd.DataFrame, kwargs: dict, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        gains(toy, **kwargs)


def test_not_a_results_table_raises_schema_error() -> None:
    with pytest.raises(SchemaError, match="missing column"):
        gains(pd.DataFrame({"Teacher": ["x"], "gsm8k": [1.0]}))


def test_paper_headline_best_kd_gain_of_smallest_student(paper: pd.DataFrame) -> None:
    """PAPER.md: Qwen2.5-0.5B math Average, SFT 52.84 -> best KD 63.21 (+10.37)."""
    g = gains(paper, tasks=["average"])
    row = g[(g["domain"] == "math") & (g["student"] == "Qwen2.5-0.5B")].sort_values("gain").iloc[-1]
    assert (row["baseline_value"], row["kd_value"]) == (52.84, 63.21)
    assert row["gain"] == pytest.approx(10.37, abs=1e-9)


def test_paper_headline_peak_task_gain(paper: pd.DataFrame) -> None:
    """PAPER.md: Llama-3.2-1B MultiArith, SFT 64.00 -> GKD 86.33 (+22.33), the largest task gain."""
    g = gains(paper)
    g = g[g["task"] != "average"]
    top = g.loc[g["gain"].idxmax()]
    assert (top["student"], top["task"], top["method"]) == ("Llama-3.2-1B", "multiarith", "gkd")
    assert top["gain"] == pytest.approx(22.33, abs=1e-9)


def test_paper_headline_large_student(paper: pd.DataFrame) -> None:
    """PAPER.md: Qwen2.5-7B commonsense mean gain over methods +1.24."""
    g = gains(paper)
    sel = g[(g["student"] == "Qwen2.5-7B") & (g["domain"] == "commonsense") & (g["task"] != "average")]
    assert sel["gain"].mean() == pytest.approx(1.24, abs=0.005)


@settings(max_examples=10, deadline=None)
@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=4), st.floats(0, 100))
def test_max_equals_max_of_each(values: list[float], sft: float) -> None:
    rows = [_row("A", "sft", sft)] + [
        _row("A", "gkd", v, "T", temperature=float(i + 1)) for i, v in enumerate(values)
    ]
    table = results_frame(rows)
    best = gains(table, validate=False)  # results_frame has just validated it
    each = gains(table, over_temperature="each", validate=False)
    assert len(best) == 1 and len(each) == len(values)
    assert best["gain"].iloc[0] == each["gain"].max()
    assert best["temperature"].iloc[0] == each.loc[each["gain"].idxmax(), "temperature"]
