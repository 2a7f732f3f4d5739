"""The report opens with the claims audit; findings state only what their primary test supports."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from kdanalysis.report import ReportPaths
from kdanalysis.report.findings import AS_PUBLISHED, primary_sentence

from .conftest import read_html

#: Words that state a relation: a sentence on a primary test not significant after Holm must not use them.
RELATION_WORDS = re.compile(r"\b(falls|rises|benefit\w*|gives more|gives less|gains over|loses)\b")


def test_claims_audit_is_the_first_section(bundled_report: ReportPaths) -> None:
    html = read_html(bundled_report)
    first = re.search(r'<section id="([^"]+)"', html)
    assert first is not None and first[1] == "claims"
    claims = html[html.index('id="claims"') : html.index('id="glance"')]
    for verdict in ("weaker than stated", "not testable with these data", "not supported"):
        assert verdict in claims
    assert "Table 1. Headline claims, evidence and verdicts" in claims


def test_every_verdict_is_traceable_to_a_written_table_row(bundled_report: ReportPaths) -> None:
    tables = bundled_report.out_dir / "tables"
    audit = pd.read_csv(tables / "claims_audit.csv")
    traced = audit.dropna(subset=["value"])
    assert set(audit["claim_id"]) - set(traced["claim_id"]) == {"teacher_signal_matters"}  # no noise runs
    for row in traced.to_dict("records"):
        name, _, keys = row["source"].partition(": ")
        keys = re.sub(r" \(mean of \d+ rows\)$", "", keys)
        table = pd.read_csv(tables / f"{name}.csv")
        for pair in keys.split(", "):
            column, _, value = pair.partition("=")
            table = table[table[column].astype(str) == value]
        assert len(table) >= 1, row["source"]
        column = "gain" if name == "gains" else "estimate"
        assert table[column].mean() == pytest.approx(row["value"]), row["source"]


def _row(estimate: float, p_val: float, p_holm: float, question: str = "size_vs_gain") -> dict[str, object]:
    return {
        "question": question,
        "domain": "math",
        "term": "log2_size",
        "analysis": "τ = 1",
        "estimate": estimate,
        "ci_low": estimate - 1,
        "ci_high": estimate + 1,
        "df": 2.1,
        "p_val": p_val,
        "p_holm": p_holm,
        "p_wild": p_val,
        "note": "",
    }


@pytest.mark.parametrize(
    "question",
    [
        "mean_gain",
        "size_vs_gain",
        "teacher_score_vs_gain",
        "task_aware_vs_base",
        "agreement_vs_gain",
        "bleu_vs_gain",
    ],
)
def test_a_relation_is_stated_only_when_its_primary_test_supports_it(question: str) -> None:
    quiet = primary_sentence(_row(-1.6, 0.04, 0.43, question))  # significant only before Holm
    assert "does not establish" in quiet and not RELATION_WORDS.search(quiet), quiet
    loud = primary_sentence(_row(-1.6, 0.001, 0.01, question))
    assert "does not establish" not in loud and RELATION_WORDS.search(loud), loud


def test_bundled_findings_follow_their_primary_tests(bundled_report: ReportPaths) -> None:
    html = read_html(bundled_report)
    findings = html[html.index('id="findings"') : html.index('id="accuracy"')]
    sentences = re.findall(r"<li>(.*?)</li>", findings, re.S)
    primary = pd.read_csv(bundled_report.out_dir / "tables" / "primary_tests.csv")
    assert len(primary) == 15
    for row in primary.to_dict("records"):
        start = f"{row['domain'].capitalize()} ({row['term']}, {row['analysis']}):"
        (sentence,) = [s for s in sentences if s.startswith(start)]
        if row["p_holm"] >= 0.05:
            assert not RELATION_WORDS.search(sentence), sentence
    naive = [s for s in sentences if s.startswith("Paper H") or "t-test of the mean KD gain" in s]
    assert naive and all(AS_PUBLISHED in s for s in naive)
    assert "singular fit" in findings  # said where a mixed model's variance component is ~0


def test_identifiers_in_table_cells_wrap_at_their_separators(bundled_report: ReportPaths) -> None:
    # the PDF's fixed-width columns otherwise split claim ids mid-word
    html = read_html(bundled_report)
    claims = html[html.index('id="claims"') : html.index('id="glance"')]
    assert ">small_<wbr>students_<wbr>up_<wbr>to_<wbr>10</td>" in claims
    assert "small_students_up_to_10</td>" not in claims
