"""mixedlm: Wald inference against statsmodels, Satterthwaite / Kenward-Roger df, variance
components and REML log-likelihoods against R (lme4 + lmerTest + pbkrtest goldens), the
optimizer chain, singular fits, degenerate group structures and argument errors."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import kdanalysis.stats.mixed as mixed_module
from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.stats import DegenerateDataWarning, MixedLMResult, mixedlm
from kdanalysis.stats.design import indicators, intercept
from kdanalysis.stats.mixed import MIXEDLM_FIT_COLUMNS, mixedlm_matrices
from kdanalysis.stats.regression import COEF_COLUMNS

GOLDEN = Path(__file__).parent / "golden"

#: The Python call of each model of mixed_lmer.R (same data: one domain of kd_units_tau1.csv).
MODELS = {
    "task_student": ("gain ~ log2_size + C(method)", {"random": ["task", "student"]}),
    "student_pair_pairtask": ("gain ~ log2_size + C(method)", {"random": ["student", "pair", "pair:task"]}),
    "teacher_slope": ("gain ~ log2_size + C(method)", {"groups": "teacher", "re_formula": "~log2_size"}),
    "agreement": ("gain ~ agreement + log2_size", {"random": ["task", "student"]}),
    "teacher_score": ("gain ~ teacher_score + log2_size + C(method)", {"random": ["task", "student"]}),
}


def _panel(n: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tasks, students = [f"t{i}" for i in range(8)], ["s1", "s2", "s3", "s4", "s5"]
    task, student = rng.choice(tasks, n), rng.choice(students, n)
    task_effect = pd.Series(rng.normal(scale=1.5, size=8), index=tasks)
    student_effect = pd.Series(rng.normal(scale=0.8, size=5), index=students)
    x = rng.normal(size=n)
    y = 0.6 * x + task_effect[task].to_numpy() + student_effect[student].to_numpy() + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "task": task, "student": student, "one": 1})


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread() -> Iterator[None]:
    """Small matrices: one BLAS thread (as the studies run them) keeps the fits fast on a busy machine."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def units() -> pd.DataFrame:
    return pd.read_csv(GOLDEN / "kd_units_tau1.csv")


@pytest.fixture(scope="module")
def golden() -> pd.DataFrame:
    return pd.read_csv(GOLDEN / "mixed_lmer.csv")


def _python_term(r_term: str) -> str:
    if r_term == "(Intercept)":
        return "Intercept"
    if r_term.startswith("factor(method)"):
        return f"C(method)[T.{r_term.removeprefix('factor(method)')}]"
    return r_term


def _python_component(r_term: str) -> str:
    """lme4's ``grp|var1[|var2]`` as statsmodels' variance-parameter name."""
    parts = r_term.split("|")
    if parts == ["Residual"]:
        return "Residual"
    if len(parts) == 3:
        return f"{parts[0]} x {parts[2]} Cov"
    return f"{parts[0]} Var" if parts[1] == "(Intercept)" else f"{parts[1]} Var"


_FITS = [
    (model, domain, reml, ddf)
    for model, reml, ddfs in [
        ("task_student", True, ["satterthwaite", "kenward-roger"]),
        ("task_student", False, ["satterthwaite"]),
        ("student_pair_pairtask", True, ["satterthwaite", "kenward-roger"]),
        ("teacher_slope", True, ["satterthwaite"]),
        ("agreement", True, ["satterthwaite"]),
        ("teacher_score", True, ["satterthwaite"]),
    ]
    for domain in ("math", "commonsense")
    for ddf in ddfs
]


@pytest.mark.parametrize(("model", "domain", "reml", "ddf"), _FITS)
def test_mixedlm_matches_lmertest(
    units: pd.DataFrame, golden: pd.DataFrame, model: str, domain: str, reml: bool, ddf: str
) -> None:
    """Estimates, SEs, df, p, variance components, log-lik and singularity as R, to 1e-3."""
    formula, kwargs = MODELS[model]
    result = mixedlm(formula, units[units["domain"] == domain], df=ddf, reml=reml, **kwargs)
    rows = golden[(golden["model"] == model) & (golden["domain"] == domain) & (golden["reml"] == reml)]
    coefs = result.coefs.set_index("term")
    r_ddf = {"satterthwaite": "Satterthwaite", "kenward-roger": "Kenward-Roger"}[ddf]
    for quantity in ("estimate", "se", "df", "p_val"):
        expected = rows[(rows["ddf"] == r_ddf) & (rows["quantity"] == quantity)]
        actual = coefs.loc[[_python_term(t) for t in expected["term"]], quantity]
        np.testing.assert_allclose(
            actual, expected["value"], rtol=1e-3, err_msg=f"{model} {domain} {quantity}"
        )
    expected = rows[rows["quantity"] == "variance"]
    variances = result.variances.set_index("component")["variance"]
    actual = variances.loc[[_python_component(t) for t in expected["term"]]]
    # relative 1e-3, or 1e-3 of the residual variance for a component at ~0
    np.testing.assert_allclose(actual, expected["value"], rtol=1e-3, atol=1e-3 * variances["Residual"])
    fit = result.fit.iloc[0]
    log_lik = rows.loc[rows["quantity"] == "log_lik", "value"].iat[0]
    assert fit["log_lik"] == pytest.approx(log_lik, abs=1e-4)
    assert bool(fit["singular"]) is bool(rows.loc[rows["quantity"] == "singular", "value"].iat[0])
    assert fit["df_method"] == ddf and fit["method"] == ("REML" if reml else "ML")


def test_issue_table_row_satterthwaite(units: pd.DataFrame) -> None:
    """The issue's row: lmerTest gives log2_size -1.8539, SE 0.4973, df 3.89, p 0.0213 (math)."""
    math = units[units["domain"] == "math"]
    result = mixedlm("gain ~ log2_size + C(method)", math, random=["task", "student"])
    row = result.coefs.set_index("term").loc["log2_size"]
    assert row["estimate"] == pytest.approx(-1.8539, abs=1e-4)
    assert row["se"] == pytest.approx(0.4973, abs=1e-4)
    assert row["df"] == pytest.approx(3.898, abs=1e-3)
    assert row["p_val"] == pytest.approx(0.0213, abs=1e-4)
    assert row["ci_high"] - row["estimate"] > 1.96 * row["se"]  # a t interval, wider than z


def test_worse_optimum_of_the_default_start_is_not_kept(units: pd.DataFrame) -> None:
    """statsmodels' default start stops unconverged at log-lik -1123.95; lme4's optimum is -1112.686."""
    commonsense = units[units["domain"] == "commonsense"].assign(one=1)
    vc = {"task": "0 + C(task)", "student": "0 + C(student)"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = smf.mixedlm(
            "gain ~ agreement + log2_size", commonsense, groups="one", re_formula="0", vc_formula=vc
        )
        assert plain.fit(reml=True).llf < -1120  # the defect, as statsmodels alone has it
    result = mixedlm("gain ~ agreement + log2_size", commonsense, random=["task", "student"])
    fit = result.fit.iloc[0]
    assert fit["converged"] and fit["log_lik"] == pytest.approx(-1112.6861, abs=1e-4)
    assert result.coefs.set_index("term").at["agreement", "estimate"] == pytest.approx(0.346070, rel=1e-4)


def test_fallback_chain_keeps_the_best_converged_fit(
    units: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From statsmodels' own start (profiled optimum disabled) the chain must find lme4's optimum."""
    structure_start = mixed_module.profiled_optimum
    monkeypatch.setattr(
        mixed_module,
        "profiled_optimum",
        lambda structure, reml: np.ones_like(structure_start(structure, reml)),
    )
    commonsense = units[units["domain"] == "commonsense"]
    result = mixedlm("gain ~ agreement + log2_size", commonsense, random=["task", "student"], df="wald")
    fit = result.fit.iloc[0]
    assert fit["optimizer"] in mixed_module.OPTIMIZERS[1:]
    assert fit["converged"] and fit["log_lik"] == pytest.approx(-1112.6861, abs=1e-3)
    assert f"kept the {fit['optimizer']} fit" in fit["note"] and "did not converge" in fit["note"]


def test_singular_fit_is_flagged_and_noted(units: pd.DataFrame) -> None:
    commonsense = units[units["domain"] == "commonsense"]
    singular = mixedlm("gain ~ log2_size + C(method)", commonsense, random=["task", "student"]).fit.iloc[0]
    assert singular["singular"] and "singular fit: task variance ~0" in singular["note"]
    math = units[units["domain"] == "math"]
    regular = mixedlm("gain ~ log2_size + C(method)", math, random=["task", "student"]).fit.iloc[0]
    assert not regular["singular"] and regular["note"] == ""


def _degenerate(call: object) -> MixedLMResult:
    with pytest.warns(DegenerateDataWarning) as caught:
        result = call()  # type: ignore[operator]
    assert result.coefs[["estimate", "se", "df", "p_val", "ci_low", "ci_high"]].isna().all().all()
    assert result.variances["variance"].isna().all() and result.raw is None
    assert result.fit.at[0, "note"] == str(caught[0].message)
    return result


def test_all_singleton_groups_give_a_nan_row() -> None:
    """Three groups of one row gave SE 7.9e-9, p = 0, converged=True."""
    df = pd.DataFrame({"y": [1.0, 2.5, 2.0], "x": [0.0, 1.0, 2.0], "g": ["a", "b", "c"]})
    result = _degenerate(lambda: mixedlm("y ~ x", df, groups="g"))
    assert "every level of random term 'g' holds a single row" in result.fit.at[0, "note"]


def test_one_group_gives_a_nan_row() -> None:
    df = _panel(n=30).assign(g="only")
    result = _degenerate(lambda: mixedlm("y ~ x", df, groups="g"))
    assert "random term 'g' has 1 level(s)" in result.fit.at[0, "note"]


def test_random_factor_with_one_level_gives_a_nan_row() -> None:
    df = _panel(n=40).assign(lab="one lab")
    result = _degenerate(lambda: mixedlm("y ~ x", df, random=["task", "lab"]))
    assert "random term 'lab' has 1 level(s)" in result.fit.at[0, "note"]
    assert list(result.variances["component"]) == ["lab Var", "task Var", "Residual"]


def test_fewer_rows_than_fixed_effects_give_a_nan_row() -> None:
    df = pd.DataFrame(
        {
            "y": [1.0, 2, 3, 4],
            "x": [0.0, 1, 2, 3],
            "x2": [1.0, 0, 0, 1],
            "x3": [0.0, 0, 1, 5],
            "g": list("aabb"),
        }
    )
    result = _degenerate(lambda: mixedlm("y ~ x + x2 + x3", df, groups="g"))
    assert "4 row(s) for 4 fixed effect(s)" in result.fit.at[0, "note"]


def test_rank_deficient_fixed_effects_give_a_nan_row() -> None:
    df = _panel(n=40).assign(x2=lambda frame: 2 * frame["x"])
    result = _degenerate(lambda: mixedlm("y ~ x + x2", df, random=["task"]))
    assert "rank 2 < 3 columns" in result.fit.at[0, "note"]


def test_mixedlm_random_intercept_matches_statsmodels() -> None:
    df = _panel(seed=3)
    result = mixedlm("y ~ x", df, groups="task", df="wald")
    direct = smf.mixedlm("y ~ x", df, groups="task").fit(reml=True)
    assert isinstance(result, MixedLMResult)
    assert list(result.coefs.columns) == list(COEF_COLUMNS)
    assert list(result.fit.columns) == list(MIXEDLM_FIT_COLUMNS)
    np.testing.assert_allclose(result.coefs["estimate"], direct.fe_params, rtol=1e-6)
    # started at the profiled optimum, the fit is at least as good as statsmodels' own
    assert result.fit.at[0, "log_lik"] >= direct.llf - 1e-9
    np.testing.assert_allclose(result.coefs["se"], direct.bse_fe, rtol=1e-4)
    np.testing.assert_allclose(result.coefs["p_val"], direct.pvalues[direct.fe_params.index], rtol=1e-4)
    assert np.isinf(result.coefs["df"]).all()
    fit = result.fit.iloc[0]
    assert fit["converged"] and fit["note"] == "" and fit["n_groups"] == 8 and fit["method"] == "REML"
    variances = result.variances.set_index("component")["variance"]
    assert variances["task Var"] == pytest.approx(float(direct.cov_re.iloc[0, 0]), rel=1e-4)
    assert variances["Residual"] == pytest.approx(direct.scale, rel=1e-4)
    # the simulated task effect has variance 1.5^2; the estimate is in the right region
    assert 0.5 < variances["task Var"] < 8


def test_random_crossed_intercepts_equal_the_variance_component_form() -> None:
    df = _panel(seed=4)
    vc = {"task": "0 + C(task)", "student": "0 + C(student)"}
    result = mixedlm("y ~ x", df, random=["task", "student"], df="wald")
    direct = smf.mixedlm("y ~ x", df, groups="one", re_formula="0", vc_formula=vc).fit()
    by_vc = mixedlm("y ~ x", df, groups="one", re_formula="0", vc_formula=vc, df="wald")
    pd.testing.assert_frame_equal(result.coefs, by_vc.coefs)
    assert result.fit.iloc[0]["converged"] and result.fit.iloc[0]["note"] == ""
    assert result.fit.at[0, "log_lik"] >= direct.llf - 1e-9
    np.testing.assert_allclose(result.coefs["estimate"], direct.fe_params, rtol=1e-5)
    components = result.variances.set_index("component")["variance"]
    assert set(components.index) == {"student Var", "task Var", "Residual"}
    np.testing.assert_allclose(
        [components["student Var"], components["task Var"]],
        [direct.vcomp[direct.model.exog_vc.names.index(name)] for name in ("student", "task")],
        rtol=1e-3,  # statsmodels' own optimizer stops within 5e-4 of the optimum here
    )


def test_random_nested_in_groups() -> None:
    """groups='student', random=['task'] is (1|student) + (1|student:task)."""
    df = _panel(seed=8)
    nested = mixedlm("y ~ x", df, groups="student", random=["task"])
    crossed = mixedlm("y ~ x", df, random=["student", "student:task"])
    np.testing.assert_allclose(nested.coefs["estimate"], crossed.coefs["estimate"], rtol=1e-5)
    np.testing.assert_allclose(nested.coefs["df"], crossed.coefs["df"], rtol=1e-3)
    assert nested.fit.at[0, "log_lik"] == pytest.approx(crossed.fit.at[0, "log_lik"], abs=1e-5)


def test_mixedlm_reports_convergence_problems_instead_of_raising() -> None:
    df = _panel(n=40, seed=5)
    df["y"] = df["x"] * 0.1 + np.random.default_rng(0).normal(size=40)  # no group variance at all
    result = mixedlm("y ~ x", df, groups="student", re_formula="~x")
    fit = result.fit.iloc[0]
    assert isinstance(fit["converged"], (bool, np.bool_))
    assert fit["converged"] == result.raw.converged
    assert fit["note"]  # statsmodels' boundary / Hessian warnings are captured, not shown
    assert "ConvergenceWarning" not in fit["note"]
    assert not fit["singular"]  # lme4: theta (0.3833, -0.0713, 0.0812), isSingular FALSE


def test_arguments_are_checked() -> None:
    df = _panel()
    with pytest.raises(SchemaError, match="'grp'"):
        mixedlm("y ~ x", df, groups="grp")
    with pytest.raises(SchemaError, match="'lab'"):
        mixedlm("y ~ x", df, random=["task:lab"])
    with pytest.raises(ConfigError, match="satterthwaite, kenward-roger, wald"):
        mixedlm("y ~ x", df, groups="task", df="residual")
    with pytest.raises(ConfigError, match="needs reml=True"):
        mixedlm("y ~ x", df, groups="task", df="kenward-roger", reml=False)
    with pytest.raises(ConfigError, match="needs random effects"):
        mixedlm("y ~ x", df)
    with pytest.raises(ConfigError, match="no random effects"):
        mixedlm("y ~ x", df, groups="task", re_formula="0")
    with pytest.raises(ConfigError, match="re_formula needs groups"):
        mixedlm("y ~ x", df, re_formula="~x", random=["task"])
    with pytest.raises(ConfigError, match="pass a list"):
        mixedlm("y ~ x", df, random="task")
    with pytest.raises(ConfigError, match="'task student'"):
        mixedlm("y ~ x", df, random=["task student"])
    with pytest.raises(ConfigError, match="also a vc_formula name"):
        mixedlm("y ~ x", df, groups="one", vc_formula={"task": "0 + C(task)"}, random=["task"])


def _crossed_designs(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    exog = pd.concat(
        [intercept(df.index), indicators(df["student"], "student", reference=True), df[["x"]]], axis=1
    )
    vc = {name: indicators(df[name], name, reference=False) for name in ("task", "student")}
    return exog, vc


@pytest.mark.parametrize("df_method", ["satterthwaite", "wald"])
def test_mixedlm_matrices_equal_the_formula_fit(df_method: str) -> None:
    """Crossed intercepts from matrices: the formula's numbers bit for bit (the optimizer path too)."""
    df = _panel(seed=7)
    exog, vc = _crossed_designs(df)
    formula = mixedlm("y ~ C(student) + x", df, random=["task", "student"], df=df_method, ci=0.9)
    matrices = mixedlm_matrices(df["y"], exog, df["one"], vc, df=df_method, ci=0.9)
    pd.testing.assert_frame_equal(matrices.coefs, formula.coefs, check_exact=True)
    pd.testing.assert_frame_equal(matrices.variances, formula.variances, check_exact=True)
    pd.testing.assert_frame_equal(matrices.fit, formula.fit, check_exact=True)


def test_mixedlm_matrices_degenerate_note_names_the_label() -> None:
    df = _panel(n=30)
    single = {"lab": pd.DataFrame({"lab[a]": np.ones(30)}, index=df.index)}
    with pytest.warns(DegenerateDataWarning, match="my model: random term 'lab' has 1 level"):
        result = mixedlm_matrices(df["y"], intercept(df.index), df["one"], single, label="my model")
    assert result.coefs["estimate"].isna().all()


def test_mixedlm_matrices_inputs_are_checked() -> None:
    df = _panel()
    exog, vc = _crossed_designs(df)
    holed = vc["task"].copy()
    holed.iloc[0, 1] = np.nan
    with pytest.raises(SchemaError, match="task is missing in 1 row"):
        mixedlm_matrices(df["y"], exog, df["one"], {**vc, "task": holed})
    with pytest.raises(ConfigError, match="df='z'"):
        mixedlm_matrices(df["y"], exog, df["one"], vc, df="z")
    with pytest.raises(ConfigError, match="exog_vc is empty"):
        mixedlm_matrices(df["y"], exog, df["one"], {})
