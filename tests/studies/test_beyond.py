"""Beyond-paper studies: the declared primary analysis (pinned against R), checks, sensitivity rows.

``kdanalysis.studies._models`` is imported for the designs and column constants that the public
studies build on, so the test can fit the same design with statsmodels and compare.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import patsy
import pytest
from statsmodels.stats.multitest import multipletests

import kdanalysis as kd
from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.results import results_frame
from kdanalysis.stats import DegenerateDataWarning
from kdanalysis.studies import (
    STUDY_TABLES,
    StudyTables,
    kd_units,
    run_all,
    size_vs_gain,
    temperature_ablation,
)
from kdanalysis.studies._models import BEYOND_COLUMNS, ROLES, slope_designs
from kdanalysis.studies.beyond import fidelity_units
from kdanalysis.studies.primary import PRIMARY_COLUMNS
from kdanalysis.studies.temperature import TEMPERATURE_COLUMNS
from kdanalysis.tasks import STUDY_TAG, bundled_tasks

GOLDEN = Path(__file__).parents[1] / "stats" / "golden"
BEYOND = ("kd_gain", "size_vs_gain", "teacher_expertise", "fidelity_vs_gain")


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return kd.load_paper_results()


@pytest.fixture(scope="module")
def tables(results: pd.DataFrame) -> StudyTables:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_all(results, n_boot=200, corr_boot=200)


def _row(table: pd.DataFrame, **where: object) -> pd.Series:
    sel = np.logical_and.reduce([table[k] == v for k, v in where.items()])
    assert sel.sum() == 1, where
    return table[sel].iloc[0]


def test_run_all_returns_a_frozen_typed_tables_object(tables: StudyTables) -> None:
    assert tuple(name for name, _ in tables.items()) == STUDY_TABLES
    with pytest.raises(dataclasses.FrozenInstanceError):
        tables.gains = tables.gains  # type: ignore[misc]
    with pytest.raises(AttributeError):
        tables.size_vs_gian  # type: ignore[attr-defined]  # noqa: B018  (a typo is an error, not a missing table)
    for name in BEYOND:
        table = getattr(tables, name)
        assert tuple(table.columns) == BEYOND_COLUMNS, name
        assert set(table["role"]) <= set(ROLES), name
        fitted = table[table["role"] != "check"].dropna(subset=["se"])
        assert (fitted["ci_low"] <= fitted["estimate"]).all() and (
            fitted["estimate"] <= fitted["ci_high"]
        ).all()
    assert tuple(tables.primary_tests.columns) == PRIMARY_COLUMNS
    assert tuple(tables.temperature_ablation.columns) == TEMPERATURE_COLUMNS


def test_one_primary_test_per_question_domain_and_term(tables: StudyTables) -> None:
    primary = tables.primary_tests
    keys = set(zip(primary["question"], primary["domain"], primary["term"], strict=True))
    assert len(keys) == len(primary) == 15
    questions = {
        "mean_gain": 2,
        "temperature_vs_gain": 4,
        "size_vs_gain": 2,
        "teacher_score_vs_gain": 2,
        "task_aware_vs_base": 2,
        "agreement_vs_gain": 2,
        "bleu_vs_gain": 1,
    }
    assert primary["question"].value_counts().to_dict() == questions
    assert set(primary["model"]) == {"ols_cr2_student"}
    assert primary[["estimate", "se", "df", "p_val", "p_wild"]].notna().all().all()


def test_holm_runs_across_the_whole_family_of_primary_tests(tables: StudyTables) -> None:
    primary = tables.primary_tests
    np.testing.assert_allclose(
        primary["p_holm"], multipletests(primary["p_val"], method="holm")[1], rtol=1e-12
    )
    checks = pd.concat([getattr(tables, name) for name in BEYOND])
    checks = checks[checks["role"] == "check"]
    merged = primary.merge(checks, on=["question", "domain", "term"], suffixes=("", "_check"))
    assert len(merged) == len(primary)
    np.testing.assert_array_equal(merged["p_wild"], merged["p_val_check"])


def _golden_ols(domain: str, term: str) -> pd.Series:
    golden = pd.read_csv(GOLDEN / "ols_r.csv")
    sel = (golden["case"] == "main") & (golden["cluster"] == "student") & (golden["vcov"] == "CR2")
    return _row(golden[sel], domain=domain, term=term)


@pytest.mark.parametrize("domain", ["math", "commonsense"])
def test_primary_size_row_equals_r_clubsandwich(tables: StudyTables, domain: str) -> None:
    """CR2 by student, Satterthwaite df: R's clubSandwich (command beside the value in ols_r.csv)."""
    row = _row(tables.size_vs_gain, domain=domain, role="primary")
    r = _golden_ols(domain, "log2_size")
    assert row["estimate"] == pytest.approx(r["estimate"], rel=1e-6)
    assert row["se"] == pytest.approx(r["se"], rel=1e-6)
    assert row["df"] == pytest.approx(r["df"], rel=1e-3)
    assert row["p_val"] == pytest.approx(r["p_val"], rel=1e-3)
    assert (row["n"], row["n_groups"], row["analysis"]) == ((198 if domain == "math" else 264), 6, "τ = 1")


def test_issue_reference_numbers(tables: StudyTables) -> None:
    """Issue 10's table: CR2 by student SE 0.3459, df 2.10, p 0.0395; lmer with Satterthwaite df.

    The mixed model (1|task) + (1|student): estimate -1.8539, SE 0.4973, df 3.89, p 0.0213 (lmerTest).
    """
    row = _row(tables.size_vs_gain, domain="math", role="primary")
    assert (round(row["se"], 4), round(row["df"], 2), round(row["p_val"], 4)) == (0.3459, 2.10, 0.0395)
    mixed = _row(tables.size_vs_gain, domain="math", role="secondary")
    golden = pd.read_csv(GOLDEN / "mixed_lmer.csv")
    golden = (
        golden[
            (golden["model"] == "task_student")
            & (golden["domain"] == "math")
            & golden["reml"]
            & (golden["ddf"] == "Satterthwaite")
            & (golden["term"] == "log2_size")
        ]
        .set_index("quantity")["value"]
        .astype(float)
    )
    for quantity in ("estimate", "se", "df", "p_val"):
        assert mixed[quantity] == pytest.approx(golden[quantity], rel=1e-3), quantity


@pytest.mark.parametrize(
    ("focal", "controls", "factors"),
    [
        ("log2_size", [], ("method",)),
        ("teacher_score", ["log2_size"], ("method", "teacher_family")),
        ("agreement", ["log2_size"], ()),
    ],
)
def test_slope_designs_equal_the_patsy_formulas(
    results: pd.DataFrame, focal: str, controls: list[str], factors: tuple[str, ...]
) -> None:
    units = kd_units(results).dropna(subset=[focal, *controls])
    for _, data in units.groupby("domain"):
        for design in slope_designs(data, focal, controls, factors):
            _, expected = patsy.dmatrices(design.formula, data, return_type="dataframe")
            pd.testing.assert_frame_equal(design.exog, expected, check_exact=True, obj=design.formula)


def test_per_task_rows_are_holm_adjusted_across_tasks(tables: StudyTables) -> None:
    size = tables.size_vs_gain
    per_task = size[(size["domain"] == "math") & (size["role"] == "per_task")]
    assert sorted(per_task["task"]) == sorted(bundled_tasks().ids(domain="math", tag=STUDY_TAG))
    np.testing.assert_allclose(
        per_task["p_holm"], multipletests(per_task["p_val"], method="holm")[1], rtol=1e-12
    )
    pooled = size[size["task"] == "all"]
    np.testing.assert_array_equal(pooled["p_holm"], pooled["p_val"])


def test_sensitivity_analyses(tables: StudyTables) -> None:
    size = tables.size_vs_gain
    analyses = set(size.loc[size["role"] == "sensitivity", "analysis"])
    assert analyses == {"best τ", "without collapsed runs", "method = fkl", "method = gkd", "method = rkl"}
    teacher = tables.teacher_expertise
    family = _row(teacher, domain="math", analysis="+ teacher family")
    assert family["role"] == "sensitivity" and family["term"] == "teacher_score"
    # commonsense at tau = 1 holds 3 collapsed reverse-KL runs: 3 runs x 8 tasks leave the sensitivity row
    dropped = _row(
        tables.kd_gain, domain="commonsense", analysis="without collapsed runs", question="mean_gain"
    )
    assert dropped["n"] == 264 - 3 * 8
    assert (
        _row(tables.kd_gain, domain="math", analysis="without collapsed runs", question="mean_gain")["n"]
        == 198
    )


def test_collapsed_runs_are_listed(tables: StudyTables) -> None:
    runs = tables.collapsed_runs
    main = runs[runs["collapsed"] & (runs["temperature"] == 1) & (runs["teacher_kind"] == "task_aware")]
    assert set(zip(main["domain"], main["pair"], main["method"], strict=True)) == {
        ("commonsense", "Qwen2.5-3B → Qwen2.5-1.5B", "rkl"),
        ("commonsense", "Qwen2.5-7B → Qwen2.5-3B", "rkl"),
        ("commonsense", "Qwen2.5-7B → Qwen2.5-1.5B", "rkl"),
    }
    assert (runs.loc[runs["collapsed"], "gain"] < -20).all() and (
        runs.loc[~runs["collapsed"], "gain"] >= -20
    ).all()
    row = _row(runs, domain="commonsense", pair="Qwen2.5-3B → Qwen2.5-1.5B", method="rkl", temperature=1.0)
    assert (row["kd_accuracy"], row["sft_accuracy"]) == (10.55, 69.68)  # the released 'Average' column


def test_each_agreement_value_is_counted_once_beside_the_mean_gain_over_methods(
    results: pd.DataFrame, tables: StudyTables
) -> None:
    units = kd_units(results)
    behaviour = results[results["metric"] == "agreement"]
    paired = fidelity_units(units, behaviour, "agreement")
    released = behaviour[(behaviour["method"] == "kd") & (behaviour["task"] != "average")]
    assert len(paired) == len(released) == 154
    assert set(paired["pairing"]) == {"mean over methods"} and set(paired["n_runs"]) == {3}
    one = _row(paired, domain="math", task="gsm8k", pair="Qwen2.5-14B → Qwen2.5-7B")
    gains = units[(units["domain"] == "math") & (units["task"] == "gsm8k") & (units["pair"] == one["pair"])]
    assert one["gain"] == pytest.approx(gains["gain"].mean(), rel=1e-12)
    primary = _row(tables.fidelity_vs_gain, domain="math", question="agreement_vs_gain", role="primary")
    assert primary["n"] == 66  # 11 pairs x 6 tasks, not 198


def test_named_runs_pair_agreement_with_their_own_gain() -> None:
    """A grid's agreement rows name their method and temperature: each is paired with that run only."""
    results, models = _synthetic()
    kd_rows = results[results["method"].isin(["fkl", "rkl"])]
    agreement = kd_rows.assign(metric="agreement", value=np.arange(len(kd_rows), dtype=float) % 97)
    both = results_frame(
        pd.concat([results, agreement]).drop(columns=["run_id"], errors="ignore").to_dict("records")
    )
    units = kd_units(both, models)
    paired = fidelity_units(units, both[both["metric"] == "agreement"], "agreement")
    assert len(paired) == len(units) and set(paired["pairing"]) == {"same run"}
    merged = paired.merge(
        units, on=["domain", "task", "teacher", "student", "method"], suffixes=("", "_unit")
    )
    np.testing.assert_array_equal(merged["gain"], merged["gain_unit"])


def test_base_teacher_rows(tables: StudyTables) -> None:
    """PAPER.md: a base teacher costs 20-50 points; naive per-task paired tests are labelled so."""
    rows = tables.teacher_expertise
    paired = rows[(rows["question"] == "task_aware_vs_base") & (rows["model"] == "paired_ttest")]
    assert len(paired) == 14 and (paired["n"] == 5).all() and set(paired["role"]) == {"naive"}
    assert paired.loc[paired["task"] != "aqua", "estimate"].between(20, 56).all()
    primary = _row(rows, question="task_aware_vs_base", domain="math", role="primary")
    assert primary["n_groups"] == 3 and primary["n"] == 30


def test_temperature_ablation_is_paired(tables: StudyTables) -> None:
    ablation = tables.temperature_ablation
    assert set(ablation["temperature"]) == {1.0, 2.0, 5.0}
    math = ablation[ablation["domain"] == "math"]
    assert set(math["n_units"]) == {30}
    worst = _row(ablation, domain="math", method="rkl", temperature=5.0)
    assert worst["diff_vs_reference"] < 0 and worst["diff_ci_high"] < 0 and worst["p_holm"] < 0.05
    primary = _row(tables.primary_tests, question="temperature_vs_gain", domain="math", term="tau_5_minus_1")
    assert primary["n"] == 60 and primary["n_groups"] == 3  # fkl + rkl x 5 pairs x 6 tasks, 3 students


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
def synthetic_run() -> tuple[StudyTables, list[str]]:
    """run_all on the synthetic grid, with the warnings it emitted."""
    results, models = _synthetic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tables = run_all(results, models, n_boot=100, corr_boot=100)
    return tables, [str(w.message) for w in caught]


def test_known_size_slope_is_recovered(synthetic_run: tuple[StudyTables, list[str]]) -> None:
    table = synthetic_run[0].size_vs_gain
    for role in ("primary", "secondary"):
        row = _row(table, role=role)
        assert row["estimate"] == pytest.approx(-2, abs=0.1), role
        assert row["ci_low"] < -2 < row["ci_high"], role
    primary = _row(table, role="primary")
    assert primary["p_val"] < 1e-3 and primary["n_groups"] == 5
    assert _row(table, role="check")["p_val"] < 0.1  # Webb weights, 5 clusters: 6**5 draws at most
    per_task = table[table["role"] == "per_task"]
    assert len(per_task) == 6 and (per_task["estimate"] < 0).all()


def test_unknown_student_warns_and_mixed_studies_raise(results: pd.DataFrame) -> None:
    synthetic, models = _synthetic()
    with pytest.warns(DegenerateDataWarning, match="S1, S2, S3, S4, S5 missing from the models table"):
        units = kd_units(synthetic)
    assert units["student_size"].isna().all()
    with pytest.warns(DegenerateDataWarning, match="paper study skipped: student"):
        tables = run_all(synthetic, n_boot=10, corr_boot=10)  # the published protocol needs every size
    assert tables.paper_hypotheses.empty and not tables.kd_gain.empty
    with pytest.raises(SchemaError, match="expected results of one study, got 2"):
        size_vs_gain(pd.concat([results, synthetic], ignore_index=True), models)


def test_temperature_reference_must_exist(results: pd.DataFrame) -> None:
    with pytest.raises(
        ConfigError, match="reference=3.0 is not a temperature of the ablation; choose one of: 1.0, 2.0, 5.0"
    ):
        temperature_ablation(results, reference=3.0, n_boot=10)


def test_run_all_on_a_table_without_ablations_or_fidelity(
    synthetic_run: tuple[StudyTables, list[str]],
) -> None:
    """A plain grid (no base teachers, one temperature, no agreement/BLEU) gives empty tables, not errors."""
    tables, messages = synthetic_run
    assert any("teacher_score does not vary within every task" in m for m in messages)
    assert tables.temperature_ablation.empty
    assert tuple(tables.temperature_ablation.columns) == TEMPERATURE_COLUMNS
    assert tables.fidelity_vs_gain.empty and tuple(tables.fidelity_vs_gain.columns) == BEYOND_COLUMNS
    assert set(tables.size_vs_gain["task"]) == {f"t{i}" for i in range(6)} | {"all"}
    assert set(tables.paper_hypotheses["hypothesis"]) == {"H1", "H2", "H3", "H3.2"}
