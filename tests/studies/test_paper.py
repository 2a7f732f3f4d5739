"""kdanalysis.studies.paper_hypotheses reproduces the published H1-H5 analysis."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import kdanalysis as kd
from kdanalysis.errors import SchemaError
from kdanalysis.stats import anova, corr, ttest
from kdanalysis.studies import paper_hypotheses, paper_units
from kdanalysis.studies.paper import PAPER_COLUMNS, TASK_ORDER


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return kd.load_paper_results()


@pytest.fixture(scope="module")
def table(results: pd.DataFrame) -> pd.DataFrame:
    return paper_hypotheses(results)


@pytest.fixture(scope="module")
def units(results: pd.DataFrame) -> pd.DataFrame:
    return paper_units(results)


def _cell(table: pd.DataFrame, domain: str, hypothesis: str, methods: str, task: str, test: str) -> pd.Series:
    sel = table[
        (table["domain"] == domain)
        & (table["hypothesis"] == hypothesis)
        & (table["methods"] == methods)
        & (table["task"] == task)
        & (table["test"] == test)
    ]
    assert len(sel) == 1
    return sel.iloc[0]


@pytest.mark.parametrize(
    "domain, hypothesis, task, test, statistic, p_val",
    [
        ("math", "H1", "average", "ttest_1samp_greater", 8.4653, 5.650e-10),
        ("math", "H3", "average", "spearman", -0.6562, 3.379e-05),
        ("commonsense", "H3", "average", "spearman", -0.5393, 1.202e-03),
        ("math", "H1", "gsm8k", "anova", 5.6201, 8.453e-03),
    ],
)
def test_paper_reference_values(
    table: pd.DataFrame, domain: str, hypothesis: str, task: str, test: str, statistic: float, p_val: float
) -> None:
    """PAPER.md's reference values (4 significant digits)."""
    row = _cell(table, domain, hypothesis, "all", task, test)
    assert row["statistic"] == pytest.approx(statistic, abs=1e-4)
    assert row["p_val"] == pytest.approx(p_val, rel=1e-3)
    assert row["n"] == 33


@pytest.mark.parametrize(
    "hypothesis, methods, task, test, statistic, p_val",
    [
        ("H1", "gkd", "average", "ttest_1samp_greater", 5.104575822555891, 0.00023046936923200754),
        ("H1", "seqkd", "aqua", "ttest_1samp_greater", 1.2015008300836598, 0.12861974161391182),
        ("H1", "all", "svamp", "anova", 4.733821528677038, 0.016338077187831288),
        ("H2", "all", "average", "spearman", -0.010451015507627961, 0.9539692127196084),
        ("H2", "revkd", "singleeq", "spearman", 0.5570004976364038, 0.07508373509366009),
    ],
)
def test_published_notebook_outputs(
    table: pd.DataFrame, hypothesis: str, methods: str, task: str, test: str, statistic: float, p_val: float
) -> None:
    """Printed outputs of the paper's analysis/statistical_tests_math.ipynb (full precision)."""
    row = _cell(table, "math", hypothesis, methods, task, test)
    assert row["statistic"] == pytest.approx(statistic, rel=1e-9)
    assert row["p_val"] == pytest.approx(p_val, rel=1e-7)


def test_output_shape_and_ids(table: pd.DataFrame) -> None:
    assert tuple(table.columns) == PAPER_COLUMNS
    assert set(table["domain"]) == {"math", "commonsense"}
    assert set(table["hypothesis"]) == {"H1", "H2", "H3", "H3.2", "H4", "H5"}
    assert set(table["methods"]) == {"all", "seqkd", "revkd", "gkd"}
    assert set(table["test"]) == {"ttest_1samp_greater", "anova", "spearman"}
    assert set(table["task"]) == set(TASK_ORDER)
    assert not table.duplicated(["domain", "hypothesis", "methods", "task", "test"]).any()
    assert set(table.loc[table["test"] == "anova", "methods"]) == {"all"}
    assert set(table.loc[table["hypothesis"] == "H5", "domain"]) == {"math"}
    assert "average" not in set(table.loc[table["hypothesis"].isin(["H4", "H5"]), "task"])
    assert set(table.loc[table["methods"] == "all", "n"]) == {33}
    assert set(table.loc[table["methods"] != "all", "n"]) == {11}
    # 7 math columns x (4 t-tests + 1 ANOVA + 3 x 4 correlations) + 6 x 2 x 4 (H4, H5); commonsense alike
    assert len(table) == 7 * 17 + 6 * 8 + 9 * 17 + 8 * 4


def test_units(units: pd.DataFrame) -> None:
    assert len(units) == 33 * (7 + 9)
    assert not units[["gain", "student_sft", "teacher_score", "student_size"]].isna().any().any()
    row = units[
        (units["domain"] == "math")
        & (units["task"] == "average")
        & (units["teacher"] == "Qwen2.5-14B")
        & (units["student"] == "Qwen2.5-0.5B")
        & (units["group"] == "revkd")
    ].iloc[0]
    assert (row["score"], row["student_sft"], row["teacher_score"]) == (63.21, 52.84, 79.35)
    assert row["gain"] == pytest.approx(10.37)


def _with_base_teacher_value(results: pd.DataFrame, domain: str, value: float) -> pd.DataFrame:
    out = results.copy()
    sel = (
        (out["domain"] == domain)
        & (out["teacher_kind"] == "base")
        & (out["task"] == "average")
        & (out["student"] == "Qwen2.5-0.5B")
        & (out["teacher"] == "Qwen2.5-3B")
    )
    assert sel.sum() == 1
    out.loc[sel, "value"] = value
    return out


def _seqkd_average(units: pd.DataFrame, domain: str) -> float:
    sel = (
        (units["domain"] == domain)
        & (units["task"] == "average")
        & (units["group"] == "seqkd")
        & (units["student"] == "Qwen2.5-0.5B")
        & (units["teacher"] == "Qwen2.5-3B")
    )
    return float(units.loc[sel, "score"].iloc[0])


def test_math_drops_base_teacher_rows_commonsense_keeps_them(
    results: pd.DataFrame, units: pd.DataFrame
) -> None:
    """The published quirk: base-teacher rows enter the max over temperatures in commonsense only."""
    boosted = paper_units(
        _with_base_teacher_value(_with_base_teacher_value(results, "math", 99.0), "commonsense", 99.0)
    )
    assert _seqkd_average(boosted, "math") == _seqkd_average(units, "math") < 99.0
    assert _seqkd_average(boosted, "commonsense") == 99.0 != _seqkd_average(units, "commonsense")


def test_every_cell_equals_kdanalysis_stats(units: pd.DataFrame, table: pd.DataFrame) -> None:
    """The batched tests give the numbers of kdanalysis.stats' ttest, anova and corr (by=)."""
    long = pd.concat([units.assign(methods="all"), units.assign(methods=units["group"])], ignore_index=True)
    keys = ["domain", "methods", "task"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [
            ttest(long, "gain", alternative="greater", by=keys).assign(
                hypothesis="H1", test="ttest_1samp_greater"
            ),
            anova(units, "gain", "group", by=["domain", "task"]).assign(
                hypothesis="H1", methods="all", test="anova"
            ),
        ]
        for hypothesis, covariate in {
            "H2": "teacher_score",
            "H3": "student_size",
            "H3.2": "student_sft",
            "H4": "agreement",
            "H5": "bleu",
        }.items():
            sub = long[long["task"] != "average"] if hypothesis in ("H4", "H5") else long
            got = corr(sub, "gain", covariate, "spearman", by=keys, n_boot=20)
            expected.append(got[got["n"] > 0].assign(hypothesis=hypothesis, test="spearman"))
    want = pd.concat(expected, ignore_index=True)[list(PAPER_COLUMNS)]
    merged = table.merge(
        want,
        on=["domain", "hypothesis", "methods", "task", "test"],
        suffixes=("", "_stats"),
        how="outer",
        indicator=True,
    )
    assert (merged["_merge"] == "both").all()
    np.testing.assert_allclose(merged["statistic"], merged["statistic_stats"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(merged["p_val"], merged["p_val_stats"], rtol=1e-8)
    assert (merged["n"] == merged["n_stats"]).all()


def test_mixed_studies_are_refused(results: pd.DataFrame) -> None:
    other = results.assign(study="other")
    with pytest.raises(SchemaError, match="expected results of one study, got 2: kd_generalization, other"):
        paper_hypotheses(pd.concat([results, other], ignore_index=True))


def test_student_missing_from_models_is_named(results: pd.DataFrame) -> None:
    models = kd.load_paper_models()
    with pytest.raises(SchemaError, match="Llama-3.2-1B missing from the models table"):
        paper_hypotheses(results, models=models[models["model"] != "Llama-3.2-1B"])


def test_not_a_results_table(results: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="missing column"):
        paper_hypotheses(results.drop(columns=["metric"]))
