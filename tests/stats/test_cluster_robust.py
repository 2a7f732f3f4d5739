"""Cluster-robust OLS (CR1, CR2 with Satterthwaite df, CR3, two-way) and rank deficiency, pinned
against R (clubSandwich, sandwich) in golden/ols_r.csv, written by golden/ols_r_goldens.R."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdanalysis.errors import ConfigError
from kdanalysis.stats import DegenerateDataWarning, ols
from kdanalysis.stats.design import indicators, intercept
from kdanalysis.stats.regression import ols_matrices

GOLDEN = Path(__file__).parent / "golden"
FORMULA = "gain ~ log2_size + C(method) + C(task)"
FORMULAS = {
    "main": FORMULA,
    "rank_deficient": "gain ~ log2_size + double_size + const + C(method) + C(task)",
    "cluster_fixed_effects": "gain ~ teacher_score + C(method) + C(task) + C(student)",
}
VCOV = {"CR1": "CR1", "CR2": "CR2", "CR3": "CR3", "CR1 two-way": None}


@pytest.fixture(scope="module")
def units() -> pd.DataFrame:
    data = pd.read_csv(GOLDEN / "kd_units_tau1.csv")
    return data.assign(double_size=2 * data["log2_size"], const=1.0)


@pytest.fixture(scope="module")
def golden() -> pd.DataFrame:
    return pd.read_csv(GOLDEN / "ols_r.csv")


def _cases() -> list[tuple[str, str, str, str]]:
    table = pd.read_csv(GOLDEN / "ols_r.csv")
    keys = table[["case", "domain", "cluster", "vcov"]].drop_duplicates()
    return [tuple(row) for row in keys.itertuples(index=False)]


def test_issue_table_rows_are_reproduced(units: pd.DataFrame) -> None:
    """The first three rows of issue 10's table (math, pooled size slope, n = 198)."""
    math = units[units["domain"] == "math"]
    rows = {
        ("pair", "CR1"): (0.3302, 10, 6.6e-4),
        ("pair", "CR2"): (0.3588, 4.38, 0.00897),
        ("student", "CR2"): (0.3459, 2.10, 0.0395),
    }
    for (cluster, vcov), (se, df, p_val) in rows.items():
        result = ols(FORMULA, math, cluster=cluster, vcov=vcov)
        slope = result.coefs.set_index("term").loc["log2_size"]
        assert slope["estimate"] == pytest.approx(-1.6046, abs=1e-4)
        assert slope["se"] == pytest.approx(se, abs=1e-4)
        assert slope["df"] == pytest.approx(df, abs=5e-3)
        assert slope["p_val"] == pytest.approx(p_val, rel=5e-3)
        assert result.fit.iloc[0]["n"] == 198 and result.fit.iloc[0]["cov_type"] == vcov


@pytest.mark.filterwarnings("ignore::kdanalysis.stats.DegenerateDataWarning")  # rank-deficient case
@pytest.mark.parametrize(("case", "domain", "cluster", "vcov"), _cases())
def test_matches_r(
    units: pd.DataFrame, golden: pd.DataFrame, case: str, domain: str, cluster: str, vcov: str
) -> None:
    """Every coefficient of every R golden: estimates, SEs and p-values 1e-6 relative, df 1e-6."""
    expected = golden[
        (golden["case"] == case)
        & (golden["domain"] == domain)
        & (golden["cluster"] == cluster)
        & (golden["vcov"] == vcov)
    ].set_index("term")
    data = units[units["domain"] == domain]
    columns = cluster.split("+")
    result = ols(FORMULAS[case], data, cluster=columns if len(columns) > 1 else cluster, vcov=VCOV[vcov])
    coefs = result.coefs.set_index("term")
    assert sorted(coefs.index) == sorted(expected.index)
    coefs = coefs.loc[expected.index]
    # R's rounding-level SEs (a fixed effect collinear with its cluster: true SE 0) are compared absolutely
    exact_zero = expected["se"] < 1e-10 * expected["estimate"].abs()
    assert (coefs.loc[exact_zero, "se"] < 1e-8 * coefs.loc[exact_zero, "estimate"].abs()).all()
    np.testing.assert_allclose(coefs["estimate"], expected["estimate"], rtol=1e-6)
    for column in ("se", "df", "p_val"):
        np.testing.assert_allclose(
            coefs.loc[~exact_zero, column], expected.loc[~exact_zero, column], rtol=1e-6
        )
    fit = result.fit.iloc[0]
    assert fit["cov_type"] == vcov
    assert fit["n_clusters"] == min(data[column].nunique() for column in columns)
    if vcov == "CR1 two-way":  # both domains' V_A + V_B - V_AB has negative eigenvalues
        assert "negative eigenvalues set to 0" in fit["note"]


def test_rank_deficient_terms_are_nan_and_named(units: pd.DataFrame) -> None:
    math = units[units["domain"] == "math"]
    with pytest.warns(DegenerateDataWarning, match=r"'double_size', 'const' not identified"):
        result = ols(FORMULAS["rank_deficient"], math, cluster="pair")
    coefs = result.coefs.set_index("term")
    assert list(coefs.index)[-3:] == ["log2_size", "double_size", "const"]
    assert coefs.loc[["double_size", "const"]].isna().all().all()
    assert coefs.drop(index=["double_size", "const"]).notna().all().all()
    assert result.raw.model.exog.shape[1] == len(coefs) - 2
    # unclustered: the identified coefficients get plain OLS inference with n - rank df
    with pytest.warns(DegenerateDataWarning):
        plain = ols(FORMULAS["rank_deficient"], math).coefs.set_index("term")
    identified = ols(FORMULA, math).coefs.set_index("term")
    pd.testing.assert_frame_equal(plain.loc[identified.index], identified)
    assert plain.loc["log2_size", "df"] == 198 - 9


def test_exact_duplicates_and_zero_columns_are_not_identified() -> None:
    rng = np.random.default_rng(0)
    exog = pd.DataFrame({"one": 1.0, "x": rng.normal(size=30), "zero": 0.0}, index=range(30))
    exog["x_again"] = exog["x"] * 3 - 2 * exog["one"]
    y = pd.Series(2 * exog["x"] + rng.normal(size=30))
    with pytest.warns(DegenerateDataWarning, match=r"'zero', 'x_again' not identified"):
        result = ols_matrices(y, exog, label="dup")
    assert result.coefs.set_index("term").loc[["one", "x"], "se"].notna().all()
    # tiny but real variation is identified (relative tolerance 1e-7 of the column norm)
    exog["x_again"] += rng.normal(scale=1e-4, size=30)
    assert ols_matrices(y, exog.drop(columns="zero")).fit.iloc[0]["note"] == ""


def test_ols_matrices_two_way_equals_the_formula(units: pd.DataFrame) -> None:
    math = units[units["domain"] == "math"].reset_index(drop=True)
    exog = pd.concat(
        [
            intercept(math.index),
            indicators(math["method"], "method", reference=True),
            indicators(math["task"], "task", reference=True),
            math[["log2_size"]],
        ],
        axis=1,
    )
    for cluster, vcov in ((["teacher", "student"], None), ("student", "CR3"), ("pair", "CR2")):
        formula = ols(FORMULA, math, cluster=cluster, vcov=vcov)
        matrices = ols_matrices(math["gain"], exog, math[cluster], vcov=vcov, label=f"ols({FORMULA!r})")
        pd.testing.assert_frame_equal(matrices.coefs, formula.coefs, check_exact=True)
        pd.testing.assert_frame_equal(matrices.fit, formula.fit, check_exact=True)


def test_cr2_with_singleton_and_tiny_clusters_stays_finite() -> None:
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"x": rng.normal(size=25), "g": [0] + [1] * 4 + [2] * 10 + [3] * 10})
    data["y"] = data["x"] + rng.normal(size=25)
    coefs = ols("y ~ x", data, cluster="g").coefs
    assert np.isfinite(coefs[["se", "df", "p_val"]].to_numpy()).all()
    assert (coefs["df"] > 0).all() and (coefs["df"] <= 4 + 1e-9).all()  # at most G


@pytest.mark.parametrize(
    ("cluster", "vcov", "match"),
    [
        ("pair", "HC1", "vcov='HC1' is not allowed; choose one of: CR1, CR2, CR3"),
        (None, "CR2", "needs cluster="),
        (["teacher", "student"], "CR2", "two-way clustering supports vcov='CR1' only"),
        (["teacher", "student", "pair"], None, "at most two cluster columns"),
    ],
)
def test_invalid_vcov_raises(units: pd.DataFrame, cluster: object, vcov: str | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ols(FORMULA, units, cluster=cluster, vcov=vcov)  # type: ignore[arg-type]


def test_cr2_with_singleton_clusters_is_statsmodels_hc2(units: pd.DataFrame) -> None:
    """With one row per cluster, A_g = (1 - h_ii)^(-1/2): the CR2 sandwich is HC2."""
    import statsmodels.formula.api as smf

    math = units[units["domain"] == "math"].reset_index(drop=True).assign(row=lambda d: d.index)
    result = ols(FORMULA, math, cluster="row")
    hc2 = smf.ols(FORMULA, math).fit(cov_type="HC2")
    np.testing.assert_allclose(result.coefs["se"], hc2.bse, rtol=1e-9)
    assert result.fit.iloc[0]["n_clusters"] == 198


def test_cr2_does_not_depend_on_row_or_label_order(units: pd.DataFrame) -> None:
    math = units[units["domain"] == "math"].reset_index(drop=True)
    shuffled = math.sample(frac=1.0, random_state=5).assign(student=lambda d: "s" + d["student"].str[::-1])
    first = ols(FORMULA, math, cluster="student").coefs
    second = ols(FORMULA, shuffled, cluster="student").coefs
    pd.testing.assert_frame_equal(first, second, check_exact=False, rtol=1e-9)
