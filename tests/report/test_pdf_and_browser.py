"""The report as a person sees it: PDF text (pypdf) and the HTML page in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kdanalysis.report import ReportPaths

from .conftest import read_html

PDF_TITLES = (
    "Study at a glance",
    "Key findings",
    "Accuracy per task",
    "Gains by pair and task",
    "Student size and gain",
    "Teacher expertise",
    "Temperature ablation",
    "Per-task correlations",
    "The paper's hypotheses H1–H5",
    "Beyond the paper",
    "Methods and caveats",
)


def _pdf_text(path: Path) -> str:
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(str(path))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def test_pdf_has_section_titles_and_key_numbers(bundled_report: ReportPaths) -> None:
    pytest.importorskip("weasyprint")
    assert bundled_report.pdf is not None
    text = _pdf_text(bundled_report.pdf)
    flat = re.sub(r"\s+", " ", text)
    for title in PDF_TITLES:
        assert title.replace("’", "'") in flat.replace("’", "'"), title
    assert "t = 8.47" in flat  # math H1 pooled average t = 8.4653 (PAPER.md), as the report rounds it
    assert "5.7e-10" in flat  # its p-value 5.650e-10
    assert re.search(r"Page 1 of \d+", flat)


@pytest.mark.browser
def test_page_loads_in_chromium_with_all_images_decoded(bundled_report: ReportPaths, tmp_path: Path) -> None:
    html = read_html(bundled_report)
    probe = (
        "<script>window.addEventListener('load', function () {"
        "var imgs = Array.prototype.slice.call(document.images);"
        "var out = document.createElement('pre'); out.id = 'kd-probe';"
        "out.textContent = JSON.stringify({n: imgs.length, decoded: imgs.filter(function (i) {"
        "return i.complete && i.naturalWidth > 0; }).length, sections: "
        "document.querySelectorAll('section.report-section').length, sorted: sortCheck()});"
        "document.body.appendChild(out); });"
        # click the 'p' header of the per-task gain tests: the rows must come back in ascending p
        "function sortCheck() { var table = document.querySelector('#tab-gain_tests table');"
        "var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);"
        "var col = heads.findIndex(function (h) { return h.textContent === 'p'; });"
        "heads[col].click();"
        "var keys = Array.prototype.map.call(table.tBodies[0].rows, function (r) {"
        "return parseFloat(r.cells[col].getAttribute('data-sort')); });"
        "return keys.length > 3 && keys.every(function (k, i) { return i === 0 || keys[i - 1] <= k; }); }"
        "</script>"
    )
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe + "</body>"), encoding="utf-8")
    chromium = shutil.which("chromium")
    assert chromium is not None
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    match = re.search(r'<pre id="kd-probe">(.*?)</pre>', done.stdout)
    assert match, done.stderr[-2000:]
    probe_result = json.loads(match.group(1))
    assert probe_result["n"] == len(bundled_report.figures) // 2
    assert probe_result["decoded"] == probe_result["n"]
    assert probe_result["sections"] == 14  # the claims audit opens the report
    assert probe_result["sorted"] is True  # the inline script sorts a table by the clicked column
