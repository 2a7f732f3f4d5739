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
    table = corr(math_scores, "gsm8k", "svamp", "spearman", by="family", n_boot=200, p_method="asymptotic")
    assert list(table["family"]) == sorted(math_scores["family"].unique())
    for _, row in table.iterrows():
        group = math_scores[math_scores["family"] == row["family"]]
        expected = sps.spearmanr(group["gsm8k"], group["svamp"])
        assert row["n"] == len(group)
        assert row["statistic"] == pytest.approx(expected.statistic, abs=1e-12)
        assert row["p_val"] == pytest.approx(expected.pvalue, rel=1e-9)
    # by default the families of 5 and 9 models get the exact p, the families of 19 scipy's t approximation
    auto = corr(math_scores, "gsm8k", "svamp", "spearman", by="family", ci=None)
    assert list(auto["p_method"]) == ["exact" if n <= 9 else "asymptotic" for n in auto["n"]]
    large = auto["n"] > 9
    assert auto.loc[large, "p_val"].to_list() == table.loc[large, "p_val"].to_list()


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


def _pairings_test(x: np.ndarray, y: np.ndarray, method: str, alternative: str = "two-sided") -> float:
    """Exact p of scipy's coefficient over every pairing of x with y (scipy.stats.permutation_test)."""
    if method == "spearman":  # Pearson r of ranks, vectorised with scipy's own functions

        def statistic(values: np.ndarray, axis: int) -> np.ndarray:
            ranks = sps.rankdata(values, axis=axis)
            return sps.pearsonr(ranks, np.broadcast_to(sps.rankdata(y), ranks.shape), axis=axis).statistic

    else:

        def statistic(values: np.ndarray) -> float:  # type: ignore[misc]
            return SCIPY[method](values, y).statistic

    return sps.permutation_test(
        (x,), statistic, permutation_type="pairings", alternative=alternative, n_resamples=np.inf
    ).pvalue


@pytest.mark.parametrize("method", ["spearman", "kendall"])
def test_perfect_monotone_relation_at_n4_has_the_exact_p_not_zero(method: str) -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [10.0, 20.0, 25.0, 40.0]})
    row = corr(df, "x", "y", method, ci=None).iloc[0]
    assert row["statistic"] == 1.0
    assert row["p_val"] == pytest.approx(2 / 24, rel=1e-12)  # 2 of the 4! pairings are as extreme
    greater = corr(df, "x", "y", method, ci=None, alternative="greater").iloc[0]
    assert greater["p_val"] == pytest.approx(1 / 24, rel=1e-12)
    # every resample of a monotone sample is monotone: a zero-width interval, said in the note
    with_ci = corr(df, "x", "y", method, n_boot=500).iloc[0]
    assert (with_ci["ci_low"], with_ci["ci_high"]) == (1.0, 1.0) and "no width" in with_ci["note"]
    assert "no width" not in corr(_frame(12), "x", "y", method, n_boot=500).iloc[0]["note"]


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("method", ["spearman", "kendall"])
@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([0.3, 1.2, -0.5, 2.2, 0.9, 1.7], [0.1, 0.8, 0.2, 1.5, -0.4, 0.9]),  # no ties, n = 6
        ([1, 1, 2, 3, 3, 4], [2.0, 1.0, 2.0, 5.0, 4.0, 4.0]),  # ties in both, n = 6
    ],
)
def test_small_n_rank_p_values_equal_scipy_exact_permutation_test(
    x: list[float], y: list[float], method: str, alternative: str
) -> None:
    df = pd.DataFrame({"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float)})
    row = corr(df, "x", "y", method, ci=None, alternative=alternative).iloc[0]
    expected = _pairings_test(df["x"].to_numpy(), df["y"].to_numpy(), method, alternative)
    assert row["p_val"] == pytest.approx(expected, rel=1e-12)


def test_spearman_p_with_ties_at_n8_equals_scipy_permutation_test() -> None:
    x = np.array([1, 2, 2, 3, 4, 6, 6, 7], dtype=float)
    y = np.array([3, 1, 4, 1, 5, 2, 6, 5], dtype=float)
    row = corr(pd.DataFrame({"x": x, "y": y}), "x", "y", "spearman", ci=None).iloc[0]
    assert row["p_method"] == "exact"
    assert row["p_val"] == pytest.approx(_pairings_test(x, y, "spearman"), rel=1e-12)


def test_auto_p_method_is_exact_up_to_n9_then_asymptotic() -> None:
    monotone = pd.DataFrame({"x": np.arange(10.0), "y": np.arange(10.0) ** 3})
    at_9 = corr(monotone.head(9), "x", "y", "spearman", ci=None).iloc[0]
    assert at_9["p_method"] == "exact" and at_9["p_val"] == pytest.approx(2 / 362_880, rel=1e-12)
    at_10 = corr(monotone, "x", "y", "spearman", ci=None).iloc[0]
    assert (
        at_10["p_method"] == "asymptotic"
        and at_10["p_val"] == sps.spearmanr(monotone["x"], monotone["y"]).pvalue
    )
    # Kendall without ties keeps scipy's exact p up to n = 33, as scipy's own default does
    kendall = corr(_frame(30), "x", "y", "kendall", ci=None).iloc[0]
    assert kendall["p_method"] == "exact"
    assert kendall["p_val"] == sps.kendalltau(_frame(30)["x"], _frame(30)["y"], method="exact").pvalue
    pearson = corr(monotone.head(5), "x", "y", ci=None).iloc[0]
    assert pearson["p_method"] == "asymptotic"


@pytest.mark.parametrize("method", ["spearman", "kendall"])
def test_rank_ci_at_small_n_with_ties_is_finite_and_says_what_was_left_out(method: str) -> None:
    # n = 6 with a value shared by half the rows: many resamples have constant x
    df = pd.DataFrame({"x": [1.0, 1.0, 1.0, 2.0, 3.0, 4.0], "y": [0.5, 0.1, 0.7, 1.1, 0.9, 1.6]})
    row = corr(df, "x", "y", method, n_boot=2000, seed=1).iloc[0]
    assert np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"])
    assert -1.0 <= row["ci_low"] <= row["statistic"] <= row["ci_high"] <= 1.0
    assert "resamples" in row["note"] and "left out" in row["note"]


def test_monte_carlo_permutation_p_is_scipys_seeded_and_recorded() -> None:
    df = _frame(15, seed=6)
    x, y = df["x"].to_numpy(), df["y"].to_numpy()
    row = corr(df, "x", "y", "spearman", ci=None, p_method="permutation", n_perm=3000, seed=4).iloc[0]
    assert row["p_method"] == "permutation"

    expected = sps.permutation_test(
        (x,),
        lambda values: sps.spearmanr(values, y).statistic,
        permutation_type="pairings",
        vectorized=False,
        n_resamples=3000,
        rng=np.random.default_rng(4),
    ).pvalue
    assert row["p_val"] == pytest.approx(expected, rel=1e-12)
    assert row["p_val"] >= 1 / 3001  # (k + 1) / (n_perm + 1) is never 0
    again = corr(df, "x", "y", "spearman", ci=None, p_method="permutation", n_perm=3000, seed=4)
    assert again.iloc[0]["p_val"] == row["p_val"]
    # "exact" beyond the enumerable n falls back to Monte Carlo and says so
    fallback = corr(df, "x", "y", "spearman", ci=None, p_method="exact", n_perm=3000, seed=4).iloc[0]
    assert fallback["p_method"] == "permutation" and fallback["p_val"] == row["p_val"]
    # a Pearson permutation test on request, and "asymptotic" is scipy's default p
    pearson = corr(df.head(6), "x", "y", ci=None, p_method="exact").iloc[0]
    assert pearson["p_method"] == "exact"
    assert pearson["p_val"] == pytest.approx(
        sps.permutation_test(
            (x[:6],),
            lambda v: sps.pearsonr(v, y[:6]).statistic,
            permutation_type="pairings",
            vectorized=False,
            n_resamples=np.inf,
        ).pvalue,
        rel=1e-12,
    )
    asymptotic = corr(df.head(6), "x", "y", "spearman", ci=None, p_method="asymptotic").iloc[0]
    assert asymptotic["p_val"] == sps.spearmanr(x[:6], y[:6]).pvalue


def test_rank_ci_is_the_percentile_interval_of_the_defined_resamples() -> None:
    x = np.array([1.0, 1.0, 1.0, 2.0, 3.0, 4.0])
    y = np.array([0.5, 0.1, 0.7, 1.1, 0.9, 1.6])
    row = corr(pd.DataFrame({"x": x, "y": y}), "x", "y", "spearman", n_boot=1000, seed=2).iloc[0]

    def spearman_or_nan(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
        rows = zip(a.reshape(-1, 6), b.reshape(-1, 6), strict=True)
        values = [sps.spearmanr(ra, rb).statistic if np.ptp(ra) and np.ptp(rb) else np.nan for ra, rb in rows]
        return np.array(values).reshape(a.shape[:-1])

    with pytest.warns(sps.DegenerateDataWarning):  # scipy cannot take a percentile of NaN draws
        draws = sps.bootstrap(
            (x, y),
            spearman_or_nan,
            n_resamples=1000,
            paired=True,
            vectorized=True,
            method="percentile",
            rng=np.random.default_rng(2),
        ).bootstrap_distribution
    defined = draws[~np.isnan(draws)]
    assert 0 < defined.size < 1000
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        tuple(np.quantile(defined, [0.025, 0.975])), abs=1e-12
    )
    assert f"{defined.size} of 1000 resamples" in row["note"]


def test_rank_ci_is_nan_when_most_resamples_are_constant() -> None:
    # n = 3: x or y is constant in 15 of the 27 equally likely resamples
    df = pd.DataFrame({"x": [1.0, 1.0, 2.0], "y": [1.0, 2.0, 2.0]})
    with pytest.warns(DegenerateDataWarning, match="constant in"):
        row = corr(df, "x", "y", "kendall", n_boot=2000).iloc[0]
    assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"]) and "bootstrap CI undefined" in row["note"]
    assert np.isfinite(row["statistic"]) and row["p_method"] == "exact"


def test_p_method_and_seed_are_checked() -> None:
    df = _frame()
    with pytest.raises(ConfigError, match="auto, exact, asymptotic, permutation"):
        corr(df, "x", "y", "spearman", p_method="fisher")
    with pytest.raises(ConfigError, match="seed"):
        corr(df, "x", "y", "spearman", seed=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="n_perm"):
        corr(df, "x", "y", "spearman", n_perm=0)
