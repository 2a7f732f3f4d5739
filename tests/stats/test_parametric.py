"""ttest and anova against scipy, on synthetic and real data; degenerate groups; bad arguments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.stats import DegenerateDataWarning, anova, ttest
from kdanalysis.stats.parametric import ANOVA_COLUMNS, TTEST_COLUMNS

ALTERNATIVES = ["two-sided", "greater", "less"]


def _frame(n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.3, 1.0, size=n)
    return pd.DataFrame({"x": x, "y": x + rng.normal(0.2, 0.5, size=n), "g": rng.choice(["a", "b", "c"], n)})


@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_one_sample_matches_scipy(alternative: str) -> None:
    df = _frame()
    row = ttest(df, "x", mu=0.1, alternative=alternative, ci=0.9).iloc[0]
    expected = sps.ttest_1samp(df["x"], 0.1, alternative=alternative)
    low, high = expected.confidence_interval(0.9)
    assert list(ttest(df, "x").columns) == list(TTEST_COLUMNS)
    assert row["test"] == "ttest_1samp" and row["n"] == 30 and row["alternative"] == alternative
    assert row["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert row["p_val"] == pytest.approx(expected.pvalue, rel=1e-10)
    assert row["dof"] == 29
    assert row["mean_diff"] == pytest.approx(df["x"].mean() - 0.1)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low - 0.1, high - 0.1))
    assert row["cohen_d"] == pytest.approx((df["x"].mean() - 0.1) / df["x"].std(ddof=1))
    if alternative == "greater":
        assert row["ci_high"] == np.inf and row["ci_low"] < row["mean_diff"]
    if alternative == "less":
        assert row["ci_low"] == -np.inf and row["ci_high"] > row["mean_diff"]


@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_paired_matches_scipy(alternative: str) -> None:
    df = _frame()
    df.loc[3, "y"] = np.nan  # dropped pairwise
    row = ttest(df, "x", "y", paired=True, alternative=alternative).iloc[0]
    complete = df.dropna()
    expected = sps.ttest_rel(complete["x"], complete["y"], alternative=alternative)
    diff = complete["x"] - complete["y"]
    assert row["test"] == "ttest_rel" and row["n"] == 29
    assert row["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert row["p_val"] == pytest.approx(expected.pvalue, rel=1e-10)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(expected.confidence_interval(0.95)))
    assert row["cohen_d"] == pytest.approx(diff.mean() / diff.std(ddof=1))


@pytest.mark.parametrize("equal_var", [False, True])
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_two_sample_matches_scipy(alternative: str, equal_var: bool) -> None:
    df = _frame()
    df.loc[:4, "y"] = np.nan  # unequal sizes: each column drops its own missing values
    row = ttest(df, "x", "y", alternative=alternative, equal_var=equal_var).iloc[0]
    x, y = df["x"], df["y"].dropna()
    expected = sps.ttest_ind(x, y, equal_var=equal_var, alternative=alternative)
    assert row["test"] == "ttest_ind" and row["n"] == 30 + 25
    assert row["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert row["dof"] == pytest.approx(expected.df)
    assert row["p_val"] == pytest.approx(expected.pvalue, rel=1e-10)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(expected.confidence_interval(0.95)))
    pooled = np.sqrt((29 * x.var() + 24 * y.var()) / 53)
    assert row["cohen_d"] == pytest.approx((x.mean() - y.mean()) / pooled)


def test_paired_with_mu_tests_the_mean_difference_against_mu() -> None:
    df = _frame()
    row = ttest(df, "x", "y", paired=True, mu=-0.1).iloc[0]
    diff = df["x"] - df["y"]
    expected = sps.ttest_1samp(diff, -0.1)
    assert row["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert row["mean_diff"] == pytest.approx(diff.mean() + 0.1)
    low, high = expected.confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low + 0.1, high + 0.1))


def test_by_equals_per_group_calls_on_real_data(math_scores: pd.DataFrame) -> None:
    grouped = ttest(math_scores, "gsm8k", "average", paired=True, alternative="greater", by="family")
    for _, row in grouped.iterrows():
        single = ttest(
            math_scores[math_scores["family"] == row["family"]],
            "gsm8k",
            "average",
            paired=True,
            alternative="greater",
        )
        pd.testing.assert_series_equal(
            row[list(TTEST_COLUMNS)], single.iloc[0][list(TTEST_COLUMNS)], check_names=False
        )
        group = math_scores[math_scores["family"] == row["family"]]
        expected = sps.ttest_rel(group["gsm8k"], group["average"], alternative="greater")
        assert row["p_val"] == pytest.approx(expected.pvalue, rel=1e-10)


def test_anova_matches_scipy_on_real_data(math_scores: pd.DataFrame) -> None:
    kd = math_scores[math_scores["family"].str.startswith("student")]
    row = anova(kd, "gsm8k", "family").iloc[0]
    levels = [g["gsm8k"] for _, g in kd.groupby("family")]
    expected = sps.f_oneway(*levels)
    assert list(anova(kd, "gsm8k", "family").columns) == list(ANOVA_COLUMNS)
    assert row["n"] == len(kd) and row["k"] == len(levels)
    assert row["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert row["p_val"] == pytest.approx(expected.pvalue, rel=1e-10)
    assert (row["dof_between"], row["dof_within"]) == (len(levels) - 1, len(kd) - len(levels))
    grand = kd["gsm8k"].mean()
    ss_between = sum(len(v) * (v.mean() - grand) ** 2 for v in levels)
    assert row["eta_sq"] == pytest.approx(ss_between / ((kd["gsm8k"] - grand) ** 2).sum())


def test_anova_by_groups_with_a_single_level_degenerate() -> None:
    df = _frame(40)
    df["block"] = np.where(df.index < 20, "two_levels", "one_level")
    df.loc[df["block"] == "one_level", "g"] = "a"
    df.loc[df.index < 20, "g"] = np.where(df.index[:20] % 2 == 0, "a", "b")
    with pytest.warns(DegenerateDataWarning, match="1 level"):
        table = anova(df, "x", "g", by="block").set_index("block")
    assert "1 level(s)" in table.loc["one_level", "note"]
    assert np.isnan(table.loc["one_level", "statistic"])
    assert table.loc["two_levels", "note"] == ""
    assert table.loc["two_levels", "statistic"] > 0


@pytest.mark.parametrize(
    ("frame", "kwargs", "note"),
    [
        (pd.DataFrame({"x": [1.0, 2.0]}), {}, "need at least 3"),
        (pd.DataFrame({"x": [1.0, 1.0, 1.0]}), {}, "zero variance"),
        (pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 2.0]}), {"y": "y", "paired": True}, "zero var"),
    ],
)
def test_ttest_degenerate_rows(frame: pd.DataFrame, kwargs: dict, note: str) -> None:
    with pytest.warns(DegenerateDataWarning, match=note):
        row = ttest(frame, "x", **kwargs).iloc[0]
    assert note in row["note"]
    assert row[["mean_diff", "statistic", "p_val", "ci_low", "ci_high", "cohen_d"]].isna().all()


def test_anova_degenerate_rows() -> None:
    with pytest.warns(DegenerateDataWarning, match="one observation per level"):
        anova(pd.DataFrame({"v": [1.0, 2.0, 3.0], "g": ["a", "b", "c"]}), "v", "g")
    with pytest.warns(DegenerateDataWarning, match="constant within"):
        anova(pd.DataFrame({"v": [1.0, 1.0, 2.0, 2.0], "g": ["a", "a", "b", "b"]}), "v", "g")


def test_bad_arguments() -> None:
    df = _frame()
    with pytest.raises(ConfigError, match="two-sided, greater, less"):
        ttest(df, "x", alternative="larger")
    with pytest.raises(ConfigError, match="needs a second column"):
        ttest(df, "x", paired=True)
    with pytest.raises(ConfigError, match="only mu=0"):
        ttest(df, "x", "y", mu=1.0)
    with pytest.raises(SchemaError, match="'nope'"):
        ttest(df, "x", "nope")
    with pytest.raises(SchemaError, match="'h'"):
        anova(df, "x", "h")
    with pytest.raises(SchemaError, match="numeric"):
        anova(df, "g", "x")
