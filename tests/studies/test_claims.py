"""The claims audit: verdicts by the written rules, every number traceable to a table row."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import kdanalysis as kd
from kdanalysis.studies import StudyTables, claims_audit, run_all
from kdanalysis.studies.claims import CLAIM_COLUMNS, CLAIMS, VERDICT_RULES, VERDICTS, Claim
from kdanalysis.studies.primary import PRIMARY_COLUMNS

#: Verdicts on the bundled published results (from the primary tests pinned against R in test_beyond).
BUNDLED_VERDICTS = {
    "small_students_up_to_10": "weaker than stated",
    "peak_task_gain_22": "weaker than stated",
    "larger_students_1_3": "not testable with these data",
    "teacher_accuracy_minimal": "weaker than stated",
    "teacher_expertise_matters": "weaker than stated",
    "smaller_students_benefit_more": "weaker than stated",
    "gains_misaligned_with_fidelity": "weaker than stated",
    "temperature_matters": "not supported",
    "teacher_signal_matters": "not testable with these data",
}


@pytest.fixture(scope="module")
def tables() -> StudyTables:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_all(kd.load_paper_results(), n_boot=100, corr_boot=100)


def test_bundled_verdicts_and_numbers(tables: StudyTables) -> None:
    audit = tables.claims_audit
    assert tuple(audit.columns) == CLAIM_COLUMNS
    verdicts = audit.drop_duplicates("claim_id").set_index("claim_id")["verdict"].to_dict()
    assert verdicts == BUNDLED_VERDICTS
    assert set(audit["verdict"]) <= set(VERDICTS) and set(audit["rule"]) <= set(VERDICT_RULES)
    figures = audit[audit["source"].str.startswith("gains:")].set_index("claim_id")["value"]
    assert figures.round(2).to_dict() == {
        "small_students_up_to_10": 10.37,  # PAPER.md: Qwen2.5-0.5B math average, 52.84 -> 63.21
        "peak_task_gain_22": 22.33,  # Llama-3.2-1B MultiArith, GKD
        "larger_students_1_3": 1.24,  # Qwen2.5-7B commonsense, mean over methods
    }


def _lookup(tables: StudyTables, source: str) -> pd.DataFrame:
    """The rows a ``source`` names: ``"<table>: k=v, k=v[ (mean of N rows)]"``."""
    name, _, keys = source.partition(": ")
    keys = re.sub(r" \(mean of \d+ rows\)$", "", keys)
    table = getattr(tables, name)
    selected = table
    for pair in keys.split(", "):
        column, _, value = pair.partition("=")
        selected = selected[selected[column].astype(str) == value]
    return selected


def test_every_number_is_traceable_to_a_table_row(tables: StudyTables) -> None:
    audit = tables.claims_audit.dropna(subset=["value"])
    assert len(audit) >= 18
    for row in audit.to_dict("records"):
        rows = _lookup(tables, row["source"])
        mean = re.search(r"mean of (\d+) rows", row["source"])
        if mean:
            assert len(rows) == int(mean[1]) and rows["gain"].mean() == pytest.approx(row["value"])
        else:
            assert len(rows) == 1, row["source"]
            column = "gain" if row["source"].startswith("gains:") else "estimate"
            assert rows[column].iloc[0] == pytest.approx(row["value"]), row["source"]
        if row["source"].startswith("primary_tests:"):
            assert rows["p_holm"].iloc[0] == pytest.approx(row["p_holm"])


def _primary(rows: list[tuple[str, float, float, float, float, float]]) -> pd.DataFrame:
    """A primary-tests table: (domain, estimate, ci_low, ci_high, p_val, p_holm) per row."""
    frame = pd.DataFrame(rows, columns=["domain", "estimate", "ci_low", "ci_high", "p_val", "p_holm"])
    frame = frame.assign(question="q", term="x", analysis="τ = 1", model="ols_cr2_student", p_wild=np.nan)
    return frame.reindex(columns=list(PRIMARY_COLUMNS))


def _verdict(claim: Claim, primary: pd.DataFrame, gains: pd.DataFrame | None = None) -> str:
    gains = gains if gains is not None else pd.DataFrame(columns=["teacher_kind", "teacher_noise", "gain"])
    return str(claims_audit(gains, primary, [claim])["verdict"].iloc[0])


DIRECTION = Claim("d", "x lowers the gain", "ρ < 0", "direction", ("q",), -1)
NULL = Claim("n", "x barely matters", "ρ ≈ 0", "null", ("q",))


@pytest.mark.parametrize(
    ("rows", "verdict"),
    [
        ([("a", -1.0, -1.5, -0.5, 0.001, 0.01), ("b", -1.0, -1.5, -0.5, 0.002, 0.02)], "supported"),
        ([("a", -1.0, -1.5, -0.5, 0.001, 0.01), ("b", -1.0, -3.0, 1.0, 0.3, 0.9)], "weaker than stated"),
        ([("a", -1.0, -1.5, -0.5, 0.001, 0.01), ("b", -1.0, -1.9, -0.1, 0.03, 0.2)], "weaker than stated"),
        ([("a", -1.0, -1.5, -0.1, 0.04, 0.4), ("b", 0.5, -1.0, 2.0, 0.3, 0.9)], "weaker than stated"),
        ([("a", -1.0, -3.0, 1.0, 0.2, 0.9), ("b", -1.0, -3.0, 1.0, 0.3, 0.9)], "not supported"),
        ([("a", 1.0, 0.5, 1.5, 0.001, 0.01), ("b", 1.0, 0.5, 1.5, 0.001, 0.01)], "not supported"),
    ],
)
def test_direction_rule(rows: list, verdict: str) -> None:
    assert _verdict(DIRECTION, _primary(rows)) == verdict


@pytest.mark.parametrize(
    ("rows", "verdict"),
    [
        ([("a", 0.01, -0.05, 0.07, 0.7, 1.0)], "supported"),
        ([("a", 0.01, -0.5, 0.7, 0.7, 1.0)], "weaker than stated"),
        ([("a", 0.3, 0.2, 0.4, 0.04, 0.2)], "weaker than stated"),  # only before Holm
        ([("a", 0.3, 0.2, 0.4, 0.001, 0.01)], "not supported"),
    ],
)
def test_null_rule(rows: list, verdict: str) -> None:
    assert _verdict(NULL, _primary(rows)) == verdict


def test_figure_rule() -> None:
    claim = Claim("f", "up to 10", "+10 pp", "figure", ("q",), +1, 10.0, (("domain", "a"), ("reduce", "max")))
    gains = pd.DataFrame(
        {
            "domain": "a",
            "task": "t",
            "teacher": "T",
            "student": "S",
            "method": "fkl",
            "teacher_kind": "task_aware",
            "teacher_noise": 0.0,
            "gain": [3.0, 10.3],
        }
    )
    significant = _primary([("a", 4.0, 2.0, 6.0, 0.001, 0.01)])
    assert _verdict(claim, significant, gains) == "supported"
    assert _verdict(claim, _primary([("a", 4.0, -1.0, 9.0, 0.04, 0.3)]), gains) == "weaker than stated"
    assert _verdict(claim, significant, gains.assign(gain=[3.0, 12.0])) == "not supported"
    assert _verdict(claim, significant, gains.iloc[0:0]) == "not testable with these data"


def test_claims_of_the_abstract_are_all_audited() -> None:
    assert [c.id for c in CLAIMS] == list(BUNDLED_VERDICTS)
    assert all(c.rule in VERDICT_RULES for c in CLAIMS)
