"""ols against statsmodels called directly; result objects; errors (mixedlm: test_mixed.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from kdanalysis.errors import SchemaError
from kdanalysis.stats import DegenerateDataWarning, OLSResult, ols
from kdanalysis.stats.design import indicators, intercept
from kdanalysis.stats.regression import COEF_COLUMNS, OLS_FIT_COLUMNS, ols_matrices


def _panel(n: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    task = rng.choice([f"t{i}" for i in range(8)], n)
    student = rng.choice(["s1", "s2", "s3", "s4", "s5"], n)
    x = rng.normal(size=n)
    task_effect = pd.Series(rng.normal(scale=1.5, size=8), index=[f"t{i}" for i in range(8)])
    student_effect = pd.Series(rng.normal(scale=0.8, size=5), index=["s1", "s2", "s3", "s4", "s5"])
    y = 0.6 * x + task_effect[task].to_numpy() + student_effect[student].to_numpy() + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "task": task, "student": student, "one": 1})


def test_ols_matches_statsmodels() -> None:
    df = _panel()
    df.loc[5, "x"] = np.nan
    result = ols("y ~ x + C(student)", df, ci=0.9)
    direct = smf.ols("y ~ x + C(student)", df).fit()
    assert isinstance(result, OLSResult)
    assert list(result.coefs.columns) == list(COEF_COLUMNS)
    assert list(result.fit.columns) == list(OLS_FIT_COLUMNS)
    assert list(result.coefs["term"]) == list(direct.params.index)
    np.testing.assert_allclose(result.coefs["estimate"], direct.params)
    np.testing.assert_allclose(result.coefs["se"], direct.bse)
    np.testing.assert_allclose(result.coefs["p_val"], direct.pvalues)
    np.testing.assert_allclose(result.coefs[["ci_low", "ci_high"]], direct.conf_int(0.1))
    fit = result.fit.iloc[0]
    assert fit["n"] == 159 and fit["cov_type"] == "nonrobust" and pd.isna(fit["n_clusters"])
    assert fit["r2"] == pytest.approx(direct.rsquared) and fit["bic"] == pytest.approx(direct.bic)
    assert "x" in result.summary() and "r2" in repr(result)


def test_cluster_robust_ols_matches_statsmodels() -> None:
    df = _panel(seed=1)
    result = ols("y ~ x", df, cluster="task", vcov="CR1")
    groups = pd.factorize(df["task"])[0]
    direct = smf.ols("y ~ x", df).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
    np.testing.assert_allclose(result.coefs["se"], direct.bse)
    np.testing.assert_allclose(result.coefs["statistic"], direct.tvalues)
    np.testing.assert_allclose(result.coefs["p_val"], direct.pvalues)
    np.testing.assert_allclose(result.coefs[["ci_low", "ci_high"]], direct.conf_int())
    fit = result.fit.iloc[0]
    assert fit["cov_type"] == "CR1" and fit["n_clusters"] == 8
    # clustering on the task effect inflates the intercept's SE relative to iid errors
    naive = ols("y ~ x", df).coefs.set_index("term")
    assert result.coefs.set_index("term").loc["Intercept", "se"] > naive.loc["Intercept", "se"]


def test_cluster_rows_align_after_dropping_missing_values() -> None:
    df = _panel(seed=2)
    df.loc[[0, 7, 9], "y"] = np.nan
    result = ols("y ~ x", df, cluster="student", vcov="CR1")
    used = df.dropna(subset=["y"])
    direct = smf.ols("y ~ x", used).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(used["student"])[0]}, use_t=True
    )
    np.testing.assert_allclose(result.coefs["se"], direct.bse)
    duplicated_index = ols("y ~ x", df.set_index(np.zeros(len(df), dtype=int)), cluster="student", vcov="CR1")
    pd.testing.assert_frame_equal(duplicated_index.coefs, result.coefs)
    with pytest.raises(SchemaError, match="missing in 1 used row"):
        ols("y ~ x", df.assign(student=df["student"].where(df.index != 1)), cluster="student")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(
    ("rows", "cluster", "note"), [(slice(0, 2), None, "2 rows for 2"), (slice(0, 30), "one", "1 cluster")]
)
def test_degenerate_ols_keeps_estimates_with_nan_inference(
    rows: slice, cluster: str | None, note: str
) -> None:
    df = _panel().iloc[rows]
    with pytest.warns(DegenerateDataWarning, match=note):
        result = ols("y ~ x", df, cluster=cluster)
    assert note in result.fit.iloc[0]["note"]
    np.testing.assert_allclose(result.coefs["estimate"], smf.ols("y ~ x", df).fit().params)
    assert result.coefs[["se", "statistic", "p_val", "ci_low", "ci_high"]].isna().all().all()


def test_result_objects_are_frozen() -> None:
    result = ols("y ~ x", _panel())
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.coefs = pd.DataFrame()  # type: ignore[misc]


def test_formula_errors_name_the_problem() -> None:
    df = _panel()
    with pytest.raises(SchemaError, match="nope"):
        ols("y ~ nope", df)
    with pytest.raises(SchemaError, match="'pair'"):
        ols("y ~ x", df, cluster="pair")


def _crossed_designs(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    exog = pd.concat(
        [intercept(df.index), indicators(df["student"], "student", reference=True), df[["x"]]], axis=1
    )
    vc = {name: indicators(df[name], name, reference=False) for name in ("task", "student")}
    return exog, vc


@pytest.mark.parametrize("cluster", [None, "task"])
def test_ols_matrices_equal_the_formula_fit(cluster: str | None) -> None:
    df = _panel(seed=6)
    exog, _ = _crossed_designs(df)
    formula = ols("y ~ C(student) + x", df, cluster=cluster, ci=0.9)
    matrices = ols_matrices(df["y"], exog, None if cluster is None else df[cluster], ci=0.9)
    pd.testing.assert_frame_equal(matrices.coefs, formula.coefs, check_exact=True)
    pd.testing.assert_frame_equal(matrices.fit, formula.fit, check_exact=True)


def test_ols_matrices_degenerate_note_names_the_label() -> None:
    df = _panel().iloc[:30]
    with pytest.warns(DegenerateDataWarning, match=r"my model: 1 cluster\(s\) in 'one'"):
        result = ols_matrices(df["y"], intercept(df.index), df["one"], label="my model")
    assert result.coefs[["se", "p_val"]].isna().all().all()


def test_matrices_inputs_are_checked() -> None:
    df = _panel()
    exog, vc = _crossed_designs(df)
    with pytest.raises(SchemaError, match="m: endog is missing in 1 row"):
        ols_matrices(df["y"].where(df.index != 3), exog, label="m")
    with pytest.raises(SchemaError, match="clusters has 10 rows, exog has 160"):
        ols_matrices(df["y"], exog, df["task"].iloc[:10])
