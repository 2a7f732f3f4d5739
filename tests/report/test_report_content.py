"""The rendered report: sections present or omitted with notes, figures embedded, tables written."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest

from kdanalysis.report import ReportPaths
from kdanalysis.report.content import build_sections

from .conftest import HOSTILE_NAME, read_html

BUNDLED_SECTIONS = (
    "claims",
    "glance",
    "findings",
    "accuracy",
    "gains",
    "size",
    "teacher",
    "expertise",
    "temperature",
    "paradox",
    "correlations",
    "paper",
    "beyond",
    "methods",
)
SECTION = re.compile(r'<section id="(?P<id>[^"]+)" class="report-section (?P<state>present|omitted)"')
IMG = re.compile(r'<img src="data:image/png;base64,(?P<data>[A-Za-z0-9+/=]+)"')


def sections_of(html: str) -> dict[str, str]:
    return {m["id"]: m["state"] for m in SECTION.finditer(html)}


def test_bundled_report_has_every_section(bundled_report: ReportPaths) -> None:
    html = read_html(bundled_report)
    assert sections_of(html) == dict.fromkeys(BUNDLED_SECTIONS, "present")
    for section_id in BUNDLED_SECTIONS:  # the navigation links every section
        assert f'<a href="#{section_id}">' in html


def test_bundled_figures_are_embedded_and_written(bundled_report: ReportPaths) -> None:
    html = read_html(bundled_report)
    images = [base64.b64decode(m["data"]) for m in IMG.finditer(html)]
    assert len(images) == len(bundled_report.figures) // 2 >= 9
    assert all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    for path in bundled_report.figures:
        assert path.stat().st_size > 1000
    stems = {p.stem for p in bundled_report.figures}
    assert {p.suffix for p in bundled_report.figures} == {".png", ".svg"}
    assert {
        "accuracy_math",
        "accuracy_commonsense",
        "gain_vs_size",
        "gain_vs_teacher",
        "teacher_expertise",
        "temperature",
        "gain_vs_behaviour",
        "gain_heatmap",
        "correlation_forest",
    } <= stems


def test_report_is_self_contained(bundled_report: ReportPaths) -> None:
    html = read_html(bundled_report)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html and "@import" not in html
    assert "<style>" in html and "<script>" in html


def test_every_table_is_written_at_full_precision(bundled_report: ReportPaths) -> None:
    html = read_html(bundled_report)
    table_ids = set(re.findall(r'id="tab-([a-z0-9_]+)"', html))
    assert {p.stem for p in bundled_report.tables} == table_ids
    paper = pd.read_csv(bundled_report.out_dir / "tables" / "paper_h1.csv")
    row = paper.query(
        "domain == 'math' and methods == 'all' and task == 'average' and test == 'ttest_1samp_greater'"
    )
    assert row["statistic"].iloc[0] == pytest.approx(8.4653, abs=1e-4)  # not rounded in the CSV
    assert {"p_val", "p_holm"} <= set(paper.columns)


def test_findings_quote_the_computed_numbers(bundled_report: ReportPaths) -> None:
    html = read_html(bundled_report)
    findings = html[html.index('id="findings"') : html.index('id="accuracy"')]
    assert "t = 8.47" in findings  # the paper's pooled math H1 (PAPER.md: 8.4653)
    assert "−0.66" in findings  # math H3 pooled rho (PAPER.md: -0.6562)
    assert "+22.33 pp" in findings  # Llama-3.2-1B MultiArith, the paper's peak task gain
    assert re.search(
        r"as published \(units treated as independent\): the one-sided t-test of the mean KD gain over SFT "
        r"is significant after Holm correction in \d+ of \d+ tasks",
        findings,
    )
    assert "the honest ones" not in html
    caveats = html[html.index('id="methods"') :]
    assert "treating the 33 units as independent" in caveats
    assert "clustered by pair" in caveats


def test_synthetic_report_omits_sections_without_data(synthetic_report: ReportPaths) -> None:
    html = read_html(synthetic_report)
    states = sections_of(html)
    for present in ("claims", "glance", "findings", "accuracy", "gains", "size", "methods"):
        assert states[present] == "present", present
    for omitted in ("expertise", "temperature", "paradox"):
        assert states[omitted] == "omitted", omitted
        block = html[html.index(f'<section id="{omitted}"') :]
        assert re.match(r'.*?<p class="note">Section omitted: [^<]{20,}</p>', block, re.S)
    assert "Synthetic study" in html
    assert not (Path(synthetic_report.out_dir) / "report.pdf").exists()  # html only was asked for
    assert synthetic_report.pdf is None


def test_markup_in_a_model_name_is_escaped(synthetic_report: ReportPaths) -> None:
    html = read_html(synthetic_report)
    assert HOSTILE_NAME not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;Qwen2.5-0.5B" in html
    assert html.count("<script>") == 1  # only the report's own table-sorting script


def test_sections_without_teacher_rows_say_so() -> None:
    results = pd.DataFrame(
        {
            "study": "s",
            "domain": "math",
            "task": ["gsm8k", "svamp"],
            "student": "Qwen2.5-0.5B",
            "method": "sft",
            "metric": "accuracy",
            "value": [40.0, 50.0],
        }
    )
    from kdanalysis.datasets import load_paper_models
    from kdanalysis.results import results_frame

    sections = {
        s.id: s for s in build_sections(results_frame(results.to_dict("records")), load_paper_models())
    }
    assert sections["glance"].present
    for section_id in ("accuracy", "gains", "size", "teacher", "expertise", "temperature", "paradox"):
        assert not sections[section_id].present and sections[section_id].note
