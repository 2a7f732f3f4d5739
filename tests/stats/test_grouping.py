"""The generic by=: one row per group, keys first, identical to per-group calls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdanalysis.errors import ConfigError
from kdanalysis.stats import anova, corr, partial_corr, ttest


@st.composite
def grouped_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(4, 40))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "g": rng.choice(["a", "b", "c"], n),
            "h": rng.choice([1, 2], n),
            "x": np.round(rng.normal(size=n), draw(st.integers(0, 3))),  # ties and constants happen
            "y": rng.normal(size=n),
            "z": rng.normal(size=n),
            "level": rng.choice(["p", "q", "r"], n),
        }
    )


CALLS = {
    "corr_pearson": lambda d, by=None: corr(d, "x", "y", by=by),
    "corr_kendall": lambda d, by=None: corr(d, "x", "y", "kendall", n_boot=50, by=by),
    "partial_corr": lambda d, by=None: partial_corr(d, "x", "y", "z", method="spearman", by=by),
    "ttest_1samp": lambda d, by=None: ttest(d, "x", mu=0.1, alternative="less", by=by),
    "ttest_rel": lambda d, by=None: ttest(d, "x", "y", paired=True, by=by),
    "ttest_ind": lambda d, by=None: ttest(d, "x", "y", by=by),
    "anova": lambda d, by=None: anova(d, "y", "level", by=by),
}


@pytest.mark.filterwarnings("ignore::kdanalysis.stats.DegenerateDataWarning")
@pytest.mark.parametrize("name", list(CALLS))
@settings(max_examples=8, deadline=None)
@given(frame=grouped_frames(), two_keys=st.booleans())
def test_by_equals_per_group_calls(name: str, frame: pd.DataFrame, two_keys: bool) -> None:
    call = CALLS[name]
    by = ["g", "h"] if two_keys else ["g"]
    grouped = call(frame, by=by)
    keys = sorted(frame[by].drop_duplicates().itertuples(index=False, name=None))
    assert list(grouped.columns[: len(by)]) == by
    assert [tuple(k) for k in grouped[by].itertuples(index=False)] == keys
    for position, key in enumerate(keys):
        mask = np.logical_and.reduce([frame[c] == v for c, v in zip(by, key, strict=True)])
        single = call(frame[mask])
        pd.testing.assert_frame_equal(
            grouped.iloc[[position], len(by) :].reset_index(drop=True),
            single.reset_index(drop=True),
            check_dtype=False,
        )


@pytest.mark.filterwarnings("ignore::kdanalysis.stats.DegenerateDataWarning")
@pytest.mark.parametrize("name", [n for n in CALLS if n != "corr_kendall"])
@settings(max_examples=8, deadline=None)
@given(frame=grouped_frames(), seed=st.integers(0, 2**16))
def test_results_do_not_depend_on_row_order(name: str, frame: pd.DataFrame, seed: int) -> None:
    call = CALLS[name]
    shuffled = frame.sample(frac=1, random_state=seed)
    pd.testing.assert_frame_equal(call(frame, by=["g"]), call(shuffled, by=["g"]), rtol=1e-9)


def test_missing_keys_form_their_own_group_and_clashing_names_are_refused() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"g": ["a"] * 6 + [None] * 6, "x": rng.normal(size=12), "y": rng.normal(size=12)})
    table = corr(df, "x", "y", by="g")
    assert len(table) == 2 and table["n"].tolist() == [6, 6]
    with pytest.raises(ConfigError, match="clash"):
        corr(df.assign(n=1), "x", "y", by="n")


def test_empty_input_gives_an_empty_table_with_the_columns() -> None:
    df = pd.DataFrame({"g": pd.Series([], dtype=str), "x": [], "y": []})
    table = corr(df, "x", "y", by="g")
    assert table.empty and list(table.columns)[:3] == ["g", "x", "y"]


def test_nullable_dtypes_and_categorical_keys() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=20)
    df = pd.DataFrame(
        {
            "g": pd.Categorical(["a", "b"] * 10, categories=["a", "b", "unused"]),
            "x": pd.array(np.where(np.arange(20) == 3, np.nan, x), dtype="Float64"),
            "y": pd.array(rng.integers(0, 9, 20), dtype="Int64"),
        }
    )
    table = corr(df, "x", "y", "spearman", by="g", n_boot=100)
    assert list(table["g"]) == ["a", "b"]  # unobserved categories give no row
    assert table["n"].tolist() == [10, 9]
    plain = df.astype({"x": float, "y": float, "g": str})
    pd.testing.assert_frame_equal(
        table.drop(columns="g"), corr(plain, "x", "y", "spearman", by="g", n_boot=100).drop(columns="g")
    )
