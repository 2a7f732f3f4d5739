"""adjust_pvalues against statsmodels, NaN handling, by= families, invariants."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.stats import adjust_pvalues

METHODS = ["holm", "bonferroni", "fdr_bh"]
p_values = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=30)


@pytest.mark.parametrize("method", METHODS)
def test_array_mode_matches_statsmodels(method: str) -> None:
    p = np.random.default_rng(0).uniform(0, 0.2, size=12)
    np.testing.assert_allclose(adjust_pvalues(p, method), multipletests(p, method=method)[1], rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_nan_stays_nan_and_is_not_counted(method: str) -> None:
    p = np.array([0.01, np.nan, 0.04, 0.03, np.nan])
    adjusted = adjust_pvalues(p, method)
    assert np.isnan(adjusted[[1, 4]]).all()
    np.testing.assert_allclose(adjusted[[0, 2, 3]], multipletests(p[[0, 2, 3]], method=method)[1])
    assert np.isnan(adjust_pvalues([np.nan, np.nan], method)).all()


@settings(max_examples=30, deadline=None)
@given(p=p_values, method=st.sampled_from(METHODS))
def test_adjusted_are_at_least_raw_monotone_and_at_most_one(p: list[float], method: str) -> None:
    raw = np.array(p)
    adjusted = adjust_pvalues(raw, method)
    assert np.all(adjusted >= raw - 1e-15) and np.all(adjusted <= 1.0)
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= -1e-15)


def test_dataframe_mode_adds_p_adj_within_by_groups_in_row_order() -> None:
    df = pd.DataFrame(
        {"task": ["a", "b", "a", "b", "a"], "p_val": [0.01, 0.2, 0.03, 0.01, np.nan], "keep": range(5)}
    )
    out = adjust_pvalues(df, "holm", by="task")
    assert list(out.columns) == ["task", "p_val", "keep", "p_adj"]
    assert list(out["keep"]) == list(range(5)) and "p_adj" not in df.columns
    np.testing.assert_allclose(out.loc[[0, 2], "p_adj"], multipletests([0.01, 0.03], method="holm")[1])
    np.testing.assert_allclose(out.loc[[1, 3], "p_adj"], multipletests([0.2, 0.01], method="holm")[1])
    assert np.isnan(out.loc[4, "p_adj"])
    pooled = adjust_pvalues(df.rename(columns={"p_val": "p"}), "bonferroni", p_col="p")
    np.testing.assert_allclose(pooled["p_adj"].iloc[:4], np.minimum(1, np.array([0.01, 0.2, 0.03, 0.01]) * 4))


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="holm, bonferroni, fdr_bh"):
        adjust_pvalues([0.1], "sidak_typo")
    with pytest.raises(ConfigError, match="outside"):
        adjust_pvalues([0.1, 1.5])
    with pytest.raises(ConfigError, match="1-d"):
        adjust_pvalues(np.zeros((2, 2)))
    with pytest.raises(SchemaError, match="'pvalue'"):
        adjust_pvalues(pd.DataFrame({"p": [0.1]}), p_col="pvalue")


@settings(max_examples=50, deadline=None)
@given(
    p=st.lists(
        st.sampled_from([0.0, 0.001, 0.01, 0.02, 0.04, 0.3, 0.9, 1.0]) | st.floats(0, 1),
        min_size=1,
        max_size=40,
    )
)
def test_holm_equals_statsmodels_including_ties(p: list[float]) -> None:
    raw = np.array(p)
    with mock.patch("gc.collect", return_value=0):  # statsmodels' Holm collects garbage on every call
        expected = multipletests(raw, method="holm")[1]
    np.testing.assert_allclose(adjust_pvalues(raw, "holm"), expected, rtol=1e-15, atol=0)
