"""Beyond-paper studies: tidy tables, statsmodels' numbers, Holm across tasks, a known slope recovered."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import patsy
import pytest
import statsmodels.formula.api as smf
from statsmodels.stats.multitest import multipletests

import kdanalysis as kd
from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.results import results_frame
from kdanalysis.studies import STUDY_TABLES, kd_units, run_all, size_vs_gain, temperature_ablation
from kdanalysis.studies.beyond import BEYOND_COLUMNS, _slope_designs
from kdanalysis.studies.temperature import TEMPERATURE_COLUMNS


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return kd.load_paper_results()


@pytest.fixture(scope="module")
def tables(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_all(results, n_boot=200)


def test_run_all_returns_every_table(tables: dict[str, pd.DataFrame]) -> None:
    assert tuple(tables) == STUDY_TABLES
    for name in ("size_vs_gain", "teacher_expertise", "fidelity_vs_gain"):
        table = tables[name]
        assert tuple(table.columns) == BEYOND_COLUMNS, name
        assert table[["estimate", "ci_low", "ci_high", "p_val", "p_holm"]].notna().all().all(), name
        assert (table["ci_low"] <= table["estimate"]).all() and (table["estimate"] <= table["ci_high"]).all()
        assert (table["p_holm"] >= table["p_val"] - 1e-15).all()
    assert tuple(tables["temperature_ablation"].columns) == TEMPERATURE_COLUMNS


def test_questions_and_models(tables: dict[str, pd.DataFrame]) -> None:
    size = tables["size_vs_gain"]
    assert set(size["model"]) == {"ols_cluster_pair", "mixedlm_task_student"}
    assert set(size.loc[size["model"] == "mixedlm_task_student", "task"]) == {"all"}
    assert set(size.loc[size["domain"] == "math", "task"]) == {
        "gsm8k",
        "svamp",
        "multiarith",
        "singleeq",
        "addsub",
        "aqua",
        "all",
    }
    expertise = tables["teacher_expertise"]
    assert set(expertise["question"]) == {"teacher_score_vs_gain", "task_aware_vs_base"}
    fidelity = tables["fidelity_vs_gain"]
    assert set(fidelity["question"]) == {"agreement_vs_gain", "bleu_vs_gain"}
    assert set(fidelity.loc[fidelity["question"] == "bleu_vs_gain", "domain"]) == {"math"}
    assert "partial_spearman" in set(fidelity["model"])


def _row(table: pd.DataFrame, **where: str) -> pd.Series:
    sel = np.logical_and.reduce([table[k] == v for k, v in where.items()])
    assert sel.sum() == 1, where
    return table[sel].iloc[0]


def _math_units(results: pd.DataFrame) -> pd.DataFrame:
    return kd_units(results)[lambda d: d["domain"] == "math"]


def test_pooled_ols_equals_statsmodels_cluster_robust(results: pd.DataFrame, tables: dict) -> None:
    data = _math_units(results)
    fit = smf.ols("gain ~ log2_size + C(method) + C(task)", data).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(data["pair"])[0]}, use_t=True
    )
    row = _row(tables["size_vs_gain"], domain="math", task="all", model="ols_cluster_pair")
    assert row["estimate"] == pytest.approx(fit.params["log2_size"], rel=1e-10)
    assert row["se"] == pytest.approx(fit.bse["log2_size"], rel=1e-10)
    assert row["ci_low"] == pytest.approx(fit.conf_int().loc["log2_size", 0], rel=1e-10)
    assert (row["n"], row["n_groups"]) == (198, 11)


def test_mixed_model_equals_statsmodels_crossed_intercepts(results: pd.DataFrame, tables: dict) -> None:
    data = _math_units(results).assign(one=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm(
            "gain ~ log2_size + C(method)",
            data,
            groups="one",
            re_formula="0",
            vc_formula={"task": "0 + C(task)", "student": "0 + C(student)"},
        ).fit(reml=True)
    row = _row(tables["size_vs_gain"], domain="math", task="all", model="mixedlm_task_student")
    assert row["estimate"] == pytest.approx(fit.fe_params["log2_size"], rel=1e-6)
    assert row["se"] == pytest.approx(fit.bse_fe["log2_size"], rel=1e-4)
    assert bool(row["converged"]) is bool(fit.converged)


@pytest.mark.parametrize(
    ("focal", "controls", "with_method"),
    [("log2_size", [], True), ("teacher_score", ["log2_size"], True), ("agreement", ["log2_size"], False)],
)
def test_slope_designs_equal_the_patsy_formulas(
    results: pd.DataFrame, focal: str, controls: list[str], with_method: bool
) -> None:
    units = kd_units(results).dropna(subset=[focal, *controls])
    for _, data in units.groupby("domain"):
        for design in _slope_designs(data, focal, controls, with_method):
            _, expected = patsy.dmatrices(design.formula, data, return_type="dataframe")
            pd.testing.assert_frame_equal(design.exog, expected, check_exact=True, obj=design.formula)


def _close(actual: object, expected: object) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=1e-8)


def test_teacher_score_rows_equal_statsmodels_formula_fits(results: pd.DataFrame, tables: dict) -> None:
    """Every row of one question against statsmodels' formula API, to 1e-8 (incl. an unconverged fit)."""
    table = tables["teacher_expertise"]
    units = kd_units(results).dropna(subset=["teacher_score", "log2_size"]).assign(one=1)
    converged = []
    for domain, data in units.groupby("domain"):
        rows = table[(table["question"] == "teacher_score_vs_gain") & (table["domain"] == domain)]
        clusters = {
            "cov_type": "cluster",
            "cov_kwds": {"groups": pd.factorize(data["pair"])[0]},
            "use_t": True,
        }
        joint = smf.ols(
            "gain ~ 0 + C(task) + C(task):teacher_score + C(task):log2_size + C(task):C(method)", data
        ).fit(**clusters)
        per_task = rows[(rows["model"] == "ols_cluster_pair") & (rows["task"] != "all")].sort_values("task")
        names = [f"C(task)[{task}]:teacher_score" for task in per_task["task"]]
        assert sorted(per_task["task"]) == sorted(data["task"].unique())
        _close(per_task["estimate"], joint.params[names])
        _close(per_task["se"], joint.bse[names])
        _close(per_task["p_val"], joint.pvalues[names])
        _close(per_task[["ci_low", "ci_high"]], joint.conf_int().loc[names])
        pooled = smf.ols("gain ~ teacher_score + log2_size + C(method) + C(task)", data).fit(**clusters)
        row, name = _row(rows, task="all", model="ols_cluster_pair"), "teacher_score"
        _close(
            row[["estimate", "se", "p_val"]], [pooled.params[name], pooled.bse[name], pooled.pvalues[name]]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mixed = smf.mixedlm(
                "gain ~ teacher_score + log2_size + C(method)",
                data,
                groups="one",
                re_formula="0",
                vc_formula={"task": "0 + C(task)", "student": "0 + C(student)"},
            ).fit(reml=True)
        row = _row(rows, model="mixedlm_task_student")
        _close(
            row[["estimate", "se", "p_val"]], [mixed.fe_params[name], mixed.bse_fe[name], mixed.pvalues[name]]
        )
        _close(row[["ci_low", "ci_high"]], mixed.conf_int().loc[name])
        assert bool(row["converged"]) is bool(mixed.converged)
        converged.append(bool(mixed.converged))
    assert converged == [False, True]  # commonsense's fit stops unconverged: its numbers are pinned too


def test_per_task_rows_are_holm_adjusted_across_tasks(tables: dict) -> None:
    size = tables["size_vs_gain"]
    per_task = size[(size["domain"] == "math") & (size["task"] != "all")]
    assert len(per_task) == 6
    expected = multipletests(per_task["p_val"], method="holm")[1]
    np.testing.assert_allclose(per_task["p_holm"], expected, rtol=1e-12)
    pooled = size[size["task"] == "all"]
    np.testing.assert_array_equal(pooled["p_holm"], pooled["p_val"])


def test_base_teacher_loses_accuracy(tables: dict) -> None:
    """PAPER.md: task expertise matters, a base teacher costs 20-50 points (per-task paired tests)."""
    paired = tables["teacher_expertise"]
    paired = paired[(paired["question"] == "task_aware_vs_base") & (paired["model"] == "paired_ttest")]
    assert len(paired) == 14 and (paired["n"] == 5).all()
    assert paired.loc[paired["task"] != "aqua", "estimate"].between(20, 56).all()


def test_temperature_ablation_is_paired(tables: dict) -> None:
    ablation = tables["temperature_ablation"]
    assert set(ablation["temperature"]) == {1.0, 2.0, 5.0}
    assert set(ablation["method"]) == {"fkl", "rkl"}
    # math: 5 pairs with tau 1, 2, 5 (Qwen 3B and 7B teachers) x 6 tasks, the same units at every tau
    math = ablation[ablation["domain"] == "math"]
    assert set(math["n_units"]) == {30}
    reference = math[math["temperature"] == 1.0]
    assert reference["diff_vs_reference"].isna().all()
    worst = _row(ablation, domain="math", method="rkl", temperature=5.0)
    assert worst["diff_vs_reference"] < 0 and worst["diff_ci_high"] < 0 and worst["p_holm"] < 0.05


def _synthetic(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gain = 3 - 2 log2(size) + task effect + noise, on a paper-like design."""
    rng = np.random.default_rng(seed)
    sizes = {"S1": 0.5, "S2": 1.0, "S3": 2.0, "S4": 4.0, "S5": 8.0}
    teachers = {"T1": 16.0, "T2": 32.0}
    tasks = [f"t{i}" for i in range(6)]
    rows = []
    for task in tasks:
        effect = rng.normal(0, 1)
        for teacher in teachers:
            rows.append({"domain": "math", "task": task, "student": teacher, "method": "sft", "value": 80.0})
        for student, size in sizes.items():
            rows.append({"domain": "math", "task": task, "student": student, "method": "sft", "value": 50.0})
            for teacher in teachers:
                for method in ("fkl", "rkl"):
                    gain = 3 - 2 * np.log2(size) + effect + rng.normal(0, 0.5)
                    rows.append(
                        {
                            "domain": "math",
                            "task": task,
                            "student": student,
                            "teacher": teacher,
                            "method": method,
                            "temperature": 1.0,
                            "value": 50.0 + gain,
                        }
                    )
    results = results_frame([{"study": "synthetic", "metric": "accuracy", **r} for r in rows])
    models = pd.DataFrame(
        {
            "model": [*sizes, *teachers],
            "family": "toy",
            "params_b": [*sizes.values(), *teachers.values()],
            "vocab_size": 100,
            "role": ["student"] * len(sizes) + ["teacher"] * len(teachers),
        }
    )
    return results, models


@pytest.fixture(scope="module")
def synthetic_run() -> tuple[dict[str, pd.DataFrame], list[str]]:
    """run_all on the synthetic grid, with the warnings it emitted."""
    results, models = _synthetic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tables = run_all(results, models, n_boot=100)
    return tables, [str(w.message) for w in caught]


def test_known_size_slope_is_recovered(synthetic_run: tuple[dict[str, pd.DataFrame], list[str]]) -> None:
    table = synthetic_run[0]["size_vs_gain"]
    for model in ("ols_cluster_pair", "mixedlm_task_student"):
        row = _row(table, task="all", model=model)
        assert row["estimate"] == pytest.approx(-2, abs=0.1), model
        assert row["p_val"] < 1e-6
    # cluster-robust SEs with 10 pairs are erratic (documented); the mixed model's interval covers the truth
    mixed = _row(table, task="all", model="mixedlm_task_student")
    assert mixed["ci_low"] < -2 < mixed["ci_high"]
    assert mixed["se"] == pytest.approx(0.5 / np.sqrt(120 * 2), rel=0.3)  # noise sd / sqrt(n var(log2 size))
    per_task = table[table["task"] != "all"]
    assert len(per_task) == 6 and (per_task["p_holm"] < 0.05).all()


def test_unknown_student_and_mixed_studies(results: pd.DataFrame) -> None:
    synthetic, models = _synthetic()
    with pytest.raises(SchemaError, match="S1, S2, S3, S4, S5 missing from the models table"):
        size_vs_gain(synthetic)
    with pytest.raises(SchemaError, match="expected results of one study, got 2"):
        size_vs_gain(pd.concat([results, synthetic], ignore_index=True), models)


def test_temperature_reference_must_exist(results: pd.DataFrame) -> None:
    with pytest.raises(
        ConfigError, match="reference=3.0 is not a temperature of the ablation; choose one of: 1.0, 2.0, 5.0"
    ):
        temperature_ablation(results, reference=3.0, n_boot=10)


def test_run_all_on_a_table_without_ablations_or_fidelity(
    synthetic_run: tuple[dict[str, pd.DataFrame], list[str]],
) -> None:
    """A plain grid (no base teachers, one temperature, no agreement/BLEU) gives empty tables, not errors."""
    tables, messages = synthetic_run
    assert any("teacher_score does not vary within every task" in m for m in messages)
    assert tables["temperature_ablation"].empty
    assert tuple(tables["temperature_ablation"].columns) == TEMPERATURE_COLUMNS
    assert tables["fidelity_vs_gain"].empty and tuple(tables["fidelity_vs_gain"].columns) == BEYOND_COLUMNS
    assert set(tables["size_vs_gain"]["task"]) == {f"t{i}" for i in range(6)} | {"all"}
    assert set(tables["paper_hypotheses"]["hypothesis"]) == {"H1", "H2", "H3", "H3.2"}
