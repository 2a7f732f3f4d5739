"""corr and partial_corr against scipy/statsmodels, invariants, degenerate groups, bad arguments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats as sps

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.stats import DegenerateDataWarning, corr, partial_corr
from kdanalysis.stats.correlation import CORR_COLUMNS, PARTIAL_CORR_COLUMNS, fisher_z_ci

SCIPY = {"pearson": sps.pearsonr, "spearman": sps.spearmanr, "kendall": sps.kendalltau}
METHODS = tuple(SCIPY)


def _frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "x": x,
            "y": 0.5 * x + rng.normal(size=n),
            "z": rng.normal(size=n),
            "g": rng.choice(["a", "b", "c"], size=n),
        }
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_corr_matches_scipy(method: str, alternative: str) -> None:
    df = _frame()
    row = corr(df, "x", "y", method, alternative=alternative, n_boot=2000).iloc[0]
    expected = SCIPY[method](df["x"], df["y"], alternative=alternative)
    assert list(corr(df, "x", "y", method, n_boot=50).columns) == list(CORR_COLUMNS)
    assert row["n"] == len(df) and row["method"] == method and row["note"] == ""
    assert row["statistic"] == pytest.approx(expected.statistic, abs=1e-12)
    assert row["p_val"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert row["ci_low"] <= row["statistic"] <= row["ci_high"]
    if alternative == "greater":
        assert row["ci_high"] == 1.0
    if alternative == "less":
        assert row["ci_low"] == -1.0


@pytest.mark.parametrize("method", METHODS)
def test_ci_none_skips_the_interval_only(method: str) -> None:
    df = _frame()
    without = corr(df, "x", "y", method, ci=None).iloc[0]
    full = corr(df, "x", "y", method, n_boot=200).iloc[0]
    assert np.isnan(without["ci_low"]) and np.isnan(without["ci_high"]) and without["note"] == ""
    assert (without["statistic"], without["p_val"]) == (full["statistic"], full["p_val"])


def test_pearson_ci_is_fisher_z_from_scipy() -> None:
    df = _frame()
    row = corr(df, "x", "y", ci=0.9).iloc[0]
    low, high = sps.pearsonr(df["x"], df["y"]).confidence_interval(0.9)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), abs=1e-12)
    z, se = np.arctanh(row["statistic"]), 1 / np.sqrt(len(df) - 3)
    assert row["ci_low"] == pytest.approx(np.tanh(z - sps.norm.ppf(0.95) * se))


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_fisher_z_ci_equals_scipy_pearson_interval(alternative: str) -> None:
    df = _frame(25, seed=3)
    result = sps.pearsonr(df["x"], df["y"], alternative=alternative)
    expected = result.confidence_interval(0.95)
    assert fisher_z_ci(result.statistic, 25, 0.95, alternative) == pytest.approx(tuple(expected), abs=1e-12)


def test_rank_bootstrap_ci_is_seeded_and_matches_a_direct_percentile_bootstrap() -> None:
    df = _frame(33)
    first = corr(df, "x", "y", "spearman", seed=7)
    assert first.equals(corr(df, "x", "y", "spearman", seed=7))
    assert not first.equals(corr(df, "x", "y", "spearman", seed=8))
    # The same resamples ranked by scipy give the same interval.
    x, y = df["x"].to_numpy(), df["y"].to_numpy()

    def scipy_spearman(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
        rows = zip(a.reshape(-1, 33), b.reshape(-1, 33), strict=True)
        return np.array([sps.spearmanr(ra, rb).statistic for ra, rb in rows]).reshape(a.shape[:-1])

    direct = sps.bootstrap(
        (x, y),
        scipy_spearman,
        n_resamples=500,
        paired=True,
        vectorized=True,
        method="percentile",
        rng=np.random.default_rng(3),
    ).confidence_interval
    row = corr(df, "x", "y", "spearman", n_boot=500, seed=3).iloc[0]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(direct), abs=1e-12)


def test_rank_bootstrap_coverage_is_sane() -> None:
    # Bivariate normal with rho = 0.6: the population Spearman rho is (6/pi) asin(rho/2).
    rho = 0.6
    truth = 6 / np.pi * np.arcsin(rho / 2)
    rng = np.random.default_rng(11)
    cov = [[1, rho], [rho, 1]]
    hits = 0
    trials = 60
    for seed in range(trials):
        xy = rng.multivariate_normal([0, 0], cov, size=60)
        row = corr(pd.DataFrame(xy, columns=["x", "y"]), "x", "y", "spearman", n_boot=1000, seed=seed).iloc[0]
        hits += row["ci_low"] <= truth <= row["ci_high"]
    assert 0.8 <= hits / trials <= 1.0


def test_corr_on_real_data_by_family_equals_scipy_per_group(math_scores: pd.DataFrame) -> None:
    table = corr(math_scores, "gsm8k", "svamp", "spearman", by="family", n_boot=200)
    assert list(table["family"]) == sorted(math_scores["family"].unique())
    for _, row in table.iterrows():
        group = math_scores[math_scores["family"] == row["family"]]
        expected = sps.spearmanr(group["gsm8k"], group["svamp"])
        assert row["n"] == len(group)
        assert row["statistic"] == pytest.approx(expected.statistic, abs=1e-12)
        assert row["p_val"] == pytest.approx(expected.pvalue, rel=1e-9)


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@pytest.mark.filterwarnings("ignore::kdanalysis.stats.DegenerateDataWarning")
@settings(max_examples=30, deadline=None)
@given(
    values=arrays(np.float64, st.tuples(st.integers(5, 25), st.just(2)), elements=finite),
    method=st.sampled_from(METHODS),
    seed=st.integers(0, 2**16),
)
def test_corr_symmetric_and_permutation_invariant(values: np.ndarray, method: str, seed: int) -> None:
    df = pd.DataFrame(values, columns=["x", "y"])
    forward = corr(df, "x", "y", method, n_boot=200).iloc[0]
    if np.isnan(forward["statistic"]):
        assert forward["note"]
        return
    backward = corr(df, "y", "x", method, n_boot=200).iloc[0]
    shuffled = corr(df.sample(frac=1, random_state=seed), "x", "y", method, n_boot=200).iloc[0]
    for other in (backward, shuffled):
        assert other["statistic"] == pytest.approx(forward["statistic"], abs=1e-9)
        assert other["p_val"] == pytest.approx(forward["p_val"], rel=1e-7, abs=1e-12)
    # The bootstrap draws resamples of the pairs, so a symmetric statistic gives the same interval.
    assert (backward["ci_low"], backward["ci_high"]) == pytest.approx(
        (forward["ci_low"], forward["ci_high"]), nan_ok=True
    )
    if method == "pearson":
        expected = (forward["ci_low"], forward["ci_high"])
        assert (shuffled["ci_low"], shuffled["ci_high"]) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("x", "note"),
    [([1.0, 2.0], "need at least 3"), ([2.0, 2.0, 2.0, 2.0], "constant x"), ([1.0, np.nan, np.nan], "n=1")],
)
def test_degenerate_group_gives_nan_row_note_and_warning(x: list[float], note: str) -> None:
    good = _frame(12)
    bad = pd.DataFrame({"x": x, "y": np.arange(len(x), dtype=float), "g": "bad"})
    df = pd.concat([good.assign(g="good"), bad], ignore_index=True)
    with pytest.warns(DegenerateDataWarning, match=note) as caught:
        table = corr(df, "x", "y", "spearman", by="g", n_boot=100)
    assert caught[0].filename == __file__  # attributed to the caller's line, not to the package
    bad_row = table.set_index("g").loc["bad"]
    assert note in bad_row["note"]
    assert bad_row[["statistic", "p_val", "ci_low", "ci_high"]].isna().all()
    assert table.set_index("g").loc["good", "note"] == ""


def test_bad_arguments_raise_with_allowed_values() -> None:
    df = _frame()
    with pytest.raises(ConfigError, match="pearson, spearman, kendall"):
        corr(df, "x", "y", "pearsn")
    with pytest.raises(ConfigError, match="two-sided, greater, less"):
        corr(df, "x", "y", alternative="bigger")
    with pytest.raises(ConfigError, match="ci="):
        corr(df, "x", "y", ci=95)
    with pytest.raises(ConfigError, match="n_boot"):
        corr(df, "x", "y", n_boot=0)
    with pytest.raises(SchemaError, match="'nope'"):
        corr(df, "x", "nope")
    with pytest.raises(SchemaError, match="'missing_group'"):
        corr(df, "x", "y", by="missing_group")
    with pytest.raises(SchemaError, match="numeric"):
        corr(df, "x", "g")
    with pytest.raises(ConfigError, match="pearson, spearman"):
        partial_corr(df, "x", "y", "z", method="kendall")
    with pytest.raises(ConfigError, match="at least one covariate"):
        partial_corr(df, "x", "y", [])


def _inverse_corr_partial(values: np.ndarray) -> float:
    precision = np.linalg.inv(np.corrcoef(values, rowvar=False))
    return -precision[0, 1] / np.sqrt(precision[0, 0] * precision[1, 1])


@pytest.mark.parametrize("covar", [["z"], ["z", "w"]])
def test_partial_corr_pearson_matches_precision_matrix_and_ols(covar: list[str]) -> None:
    df = _frame(50, seed=5)
    df["w"] = np.random.default_rng(9).normal(size=50) + df["x"]
    row = partial_corr(df, "x", "y", covar).iloc[0]
    assert list(partial_corr(df, "x", "y", covar).columns) == list(PARTIAL_CORR_COLUMNS)
    assert row["covar"] == ", ".join(covar) and row["n"] == 50
    expected = _inverse_corr_partial(df[["x", "y", *covar]].to_numpy())
    assert row["statistic"] == pytest.approx(expected, abs=1e-10)
    ols = sm.OLS(df["y"], sm.add_constant(df[["x", *covar]])).fit()
    assert row["p_val"] == pytest.approx(ols.pvalues["x"], rel=1e-8)
    # Fisher z with n - k observations
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        fisher_z_ci(row["statistic"], 50 - len(covar), 0.95), abs=1e-12
    )


def test_partial_corr_spearman_is_pearson_on_ranks_and_one_sided() -> None:
    df = _frame(30, seed=2)
    ranks = df[["x", "y", "z"]].rank()
    spearman = partial_corr(df, "x", "y", "z", method="spearman").iloc[0]
    on_ranks = partial_corr(ranks, "x", "y", "z").iloc[0]
    assert spearman["statistic"] == pytest.approx(on_ranks["statistic"], abs=1e-12)
    assert spearman["p_val"] == pytest.approx(on_ranks["p_val"], rel=1e-10)
    greater = partial_corr(df, "x", "y", "z", alternative="greater").iloc[0]
    two_sided = partial_corr(df, "x", "y", "z").iloc[0]
    assert greater["statistic"] > 0
    assert greater["p_val"] == pytest.approx(two_sided["p_val"] / 2, rel=1e-9)
    assert greater["ci_high"] == 1.0


def test_partial_corr_degenerate_groups() -> None:
    df = _frame(30, seed=4)
    df["dup"] = 2 * df["x"] + 1  # x fully explained by the covariate
    with pytest.warns(DegenerateDataWarning, match="fully explained"):
        row = partial_corr(df, "x", "y", "dup").iloc[0]
    assert np.isnan(row["statistic"])
    with pytest.warns(DegenerateDataWarning, match="need at least 5"):
        row = partial_corr(df.head(4), "x", "y", ["z", "dup"]).iloc[0]
    assert row["n"] == 4 and np.isnan(row["p_val"])


def test_partial_corr_of_collinear_ranks_is_exactly_one_in_any_row_order() -> None:
    # found by hypothesis: y's ranks reverse x's, so the rank residuals are exactly opposite
    df = pd.DataFrame(
        {
            "x": [0.3, -1.3, -1.6, -0.5],
            "y": [-1.120589, 0.077205, 0.878239, -0.675100],
            "z": [0.976858, 1.085995, 0.184182, 0.795070],
        }
    )
    for order in ([0, 1, 2, 3], [3, 1, 0, 2], [2, 0, 3, 1]):
        row = partial_corr(df.iloc[order], "x", "y", "z", method="spearman").iloc[0]
        assert row["statistic"] == -1.0 and row["p_val"] == 0.0
