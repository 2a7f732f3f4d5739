"""run-grid's report step rebuilds the report only when what it is made from changed.

The step is ``runners.grid.command._build_report`` (private: run-grid's last step has no
public entry of its own); the record it keeps is :mod:`kdanalysis.report.fingerprint`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

import kdanalysis
import kdanalysis.report.build as build_module
from kdanalysis.io import read_json
from kdanalysis.report import ReportPaths
from kdanalysis.report.fingerprint import FINGERPRINT_FILE, build_if_changed, report_is_current
from kdanalysis.results import ITEM_COLUMNS, results_frame, write_results_and_items
from runners.grid.command import _build_report


def _results(value: float = 40.0) -> pd.DataFrame:
    """One student's base, SFT and KD accuracy on one task; ``value`` is the KD accuracy."""
    common = {"study": "step", "domain": "math", "task": "gsm8k", "student": "s", "metric": "accuracy"}
    return results_frame(
        [
            {**common, "method": "base", "value": 10.0, "n": 100},
            {**common, "method": "sft", "value": 30.0, "n": 100},
            {**common, "method": "fkl", "value": value, "n": 100, "teacher": "t", "temperature": 1.0},
        ]
    )


def _write_tables(runs: Path, value: float = 40.0) -> None:
    items = pd.DataFrame({c: pd.Series(dtype=object) for c in ITEM_COLUMNS})
    write_results_and_items(_results(value), items, runs / "results.parquet", runs / "items.parquet")


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    """A runs folder with collected results and items, as run-grid leaves it before its report."""
    folder = tmp_path / "runs"
    folder.mkdir()
    _write_tables(folder)
    return folder


class FakeBuild:
    """Stands in for ``build_report``: writes a small report in place and counts its calls."""

    def __init__(self) -> None:
        self.calls: list[pd.DataFrame] = []

    def __call__(self, results: pd.DataFrame, out_dir: Path, **_: object) -> ReportPaths:
        self.calls.append(results)
        out_dir = Path(out_dir)
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
        (out_dir / "tables").mkdir(exist_ok=True)
        html, figure, table = out_dir / "report.html", out_dir / "figures/f.png", out_dir / "tables/t.csv"
        html.write_text(f"<p>{len(self.calls)}: {results['value'].tolist()}</p>", encoding="utf-8")
        figure.write_bytes(b"png")
        table.write_text("a,b\n1,2\n", encoding="utf-8")
        return ReportPaths(out_dir, html, None, (figure,), (table,))


@pytest.fixture()
def fake_build(monkeypatch: pytest.MonkeyPatch) -> FakeBuild:
    fake = FakeBuild()
    monkeypatch.setattr(build_module, "build_report", fake)
    return fake


def _step(runs: Path) -> str:
    console = Console(record=True, width=400)
    with console.capture() as captured:
        _build_report(runs, console)
    return captured.get()


def test_unchanged_inputs_skip_the_real_build(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real report is built once; the rerun leaves its files untouched and does not build."""
    first = _step(runs)
    html = runs / "report" / "report.html"
    assert "(unchanged)" not in first and html.is_file()
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (runs / "report").rglob("*") if p.is_file()}

    def must_not_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the report was built again from unchanged inputs")

    monkeypatch.setattr(build_module, "build_report", must_not_build)
    second = _step(runs)
    assert f"report: {html} (unchanged)" in second
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == files


def test_changed_results_table_rebuilds(runs: Path, fake_build: FakeBuild) -> None:
    _step(runs)
    _write_tables(runs)  # rewritten with the same content: still current
    _step(runs)
    assert len(fake_build.calls) == 1
    _write_tables(runs, value=41.0)
    assert "(unchanged)" not in _step(runs)
    assert len(fake_build.calls) == 2 and fake_build.calls[-1]["value"].max() == 41.0


def test_changed_models_table_rebuilds(runs: Path, fake_build: FakeBuild) -> None:
    from kdanalysis.results import write_models
    from runners.grid.runner import models_table
    from runners.grid.spec import parse_grid

    _step(runs)
    grid = (Path(__file__).parent / "small_grid.yaml").read_text(encoding="utf-8")
    write_models(models_table(parse_grid(grid)), runs / "models.parquet")
    _step(runs)
    assert len(fake_build.calls) == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda report: (report / "report.html").unlink(),
        lambda report: (report / "figures" / "f.png").unlink(),
        lambda report: (report / "tables" / "t.csv").write_text("a,b\n", encoding="utf-8"),
        lambda report: shutil.rmtree(report),
    ],
    ids=["html deleted", "figure deleted", "table rewritten", "folder deleted"],
)
def test_damaged_report_rebuilds(runs: Path, fake_build: FakeBuild, damage) -> None:  # noqa: ANN001
    _step(runs)
    damage(runs / "report")
    assert "(unchanged)" not in _step(runs)
    assert len(fake_build.calls) == 2
    assert (runs / "report" / "report.html").is_file()
    _step(runs)
    assert len(fake_build.calls) == 2


def test_new_kdanalysis_version_rebuilds(
    runs: Path, fake_build: FakeBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    _step(runs)
    monkeypatch.setattr(kdanalysis, "__version__", kdanalysis.__version__ + ".post1")
    _step(runs)
    assert len(fake_build.calls) == 2


def test_changed_template_rebuilds(
    runs: Path, fake_build: FakeBuild, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The templates count by content: an edited template (here a copy of them) means a new build."""
    import kdanalysis._templates as templates

    copy = tmp_path / "templates"
    shutil.copytree(Path(templates.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(templates, "__file__", str(copy / "__init__.py"))
    _step(runs)
    _step(runs)
    assert len(fake_build.calls) == 1
    css = copy / "report.css"
    css.write_text(css.read_text(encoding="utf-8") + "\n/* edited */\n", encoding="utf-8")
    _step(runs)
    assert len(fake_build.calls) == 2


def test_interrupted_build_leaves_no_valid_fingerprint(
    runs: Path, fake_build: FakeBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build that dies (here: raises) after the record of the previous one leaves no record.

    Even with the inputs of the previous build back, the next step builds again: the report
    folder may hold part of the interrupted build.
    """
    _step(runs)
    out = runs / "report"
    record = read_json(out / FINGERPRINT_FILE)
    _write_tables(runs, value=41.0)

    def killed(results: pd.DataFrame, out_dir: Path, **_: object) -> ReportPaths:
        assert not (out / FINGERPRINT_FILE).exists(), "a build ran while a record claimed the old report"
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "build_report", killed)
    with pytest.raises(KeyboardInterrupt):
        _step(runs)
    assert not (out / FINGERPRINT_FILE).exists()
    monkeypatch.setattr(build_module, "build_report", fake_build)
    _write_tables(runs)
    _step(runs)
    assert len(fake_build.calls) == 2
    assert read_json(out / FINGERPRINT_FILE)["fingerprint"] == record["fingerprint"]


STUCK_BUILD = """
import sys, time
from pathlib import Path
from rich.console import Console
import kdanalysis.report.build as build_module
from runners.grid.command import _build_report

class Stuck:
    def __init__(self, *args, **kwargs):
        time.sleep(600)

build_module.FigureDrawer = Stuck  # the build hangs once its folder exists: killed there
_build_report(Path(sys.argv[1]), Console())
"""


def test_killed_build_leaves_no_valid_fingerprint(runs: Path, fake_build: FakeBuild) -> None:
    """kill -9 of run-grid's report step in the middle of a real build leaves no record behind."""
    _step(runs)
    _write_tables(runs, value=41.0)
    proc = subprocess.Popen([sys.executable, "-c", STUCK_BUILD, str(runs)])
    try:
        deadline = time.monotonic() + 120
        while not list(runs.glob(".report-building-*")):
            assert proc.poll() is None and time.monotonic() < deadline, "the build never started"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert not (runs / "report" / FINGERPRINT_FILE).exists()
    _write_tables(runs)  # the inputs of the recorded build again: still built anew
    assert "(unchanged)" not in _step(runs)
    assert len(fake_build.calls) == 2


def test_record_is_written_after_the_build(tmp_path: Path) -> None:
    """build_if_changed: no record while the build runs; afterwards one that the same fingerprint matches."""
    out = tmp_path / "report"
    seen: list[bool] = []

    def build() -> ReportPaths:
        seen.append((out / FINGERPRINT_FILE).exists())
        return FakeBuild()(_results(), out)

    assert build_if_changed(out, "a" * 64, build) is not None
    assert report_is_current(out, "a" * 64) and not report_is_current(out, "b" * 64)
    assert build_if_changed(out, "a" * 64, build) is None
    assert build_if_changed(out, "b" * 64, build) is not None
    assert seen == [False, False]
