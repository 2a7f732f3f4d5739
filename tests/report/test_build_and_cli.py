"""Building into place atomically, the PDF fallback, and the ``kdanalysis report`` command."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

import kdanalysis.report.build as build_module
from kdanalysis import cli
from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.plots import gain_heatmap
from kdanalysis.report import build_report
from kdanalysis.report.render import PDF_INSTALL_HINT
from kdanalysis.report.sections import FigureSpec, Section, TableSpec
from kdanalysis.results import write_results

from .conftest import synthetic_results


def _tiny_sections(*_args: object, on_section: object = None, **_kwargs: object) -> list[Section]:
    """One section with one small figure and one table, instead of the full study (fast)."""
    heat = pd.DataFrame({"domain": "math", "pair": ["T → S"], "task": ["gsm8k"], "gain": [1.5]})
    section = Section(
        id="tiny",
        title="Tiny",
        paragraphs=["A paragraph."],
        figures=[FigureSpec("tiny_heatmap", "Heatmap", "Caption.", gain_heatmap, (heat,))],
        tables=[TableSpec("tiny", "Table", "Caption.", heat)],
    )
    if callable(on_section):
        on_section(section)
    return [section]


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_module, "build_sections", _tiny_sections)


def _run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["kdanalysis", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return int(exit_info.value.code or 0)


def test_failure_leaves_no_partial_report(
    tiny: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken_pdf(html: str, path: Path) -> None:
        path.write_bytes(b"%PDF half")
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(build_module, "write_pdf", broken_pdf)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        build_report(synthetic_results(), out_dir=tmp_path / "report", workers=1)
    assert list(tmp_path.iterdir()) == []  # no report folder, no leftover build folder


def test_rebuild_replaces_the_previous_report(tiny: None, tmp_path: Path) -> None:
    out = tmp_path / "report"
    first = build_report(synthetic_results(), out_dir=out, formats=["html"], title="First", workers=1)
    (out / "notes.txt").write_text("mine")
    second = build_report(synthetic_results(), out_dir=out, formats=["html"], title="Second", workers=1)
    assert first.html == second.html and "Second" in second.html.read_text()
    assert (out / "notes.txt").read_text() == "mine"  # files that are not the report's are kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_missing_weasyprint_still_writes_html(
    tiny: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import fails
    paths = build_report(synthetic_results(), out_dir=tmp_path / "r", workers=1)
    assert paths.pdf is None and not (tmp_path / "r" / "report.pdf").exists()
    assert paths.html is not None and paths.html.exists()
    assert len(paths.messages) == 1 and PDF_INSTALL_HINT in paths.messages[0]


def test_warnings_become_one_note_per_kind_and_do_not_leak(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def warning_sections(*args: object, **kwargs: object) -> list[Section]:
        for _ in range(2):
            warnings.warn("Random effects covariance is singular", UserWarning, stacklevel=1)
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
        return _tiny_sections(*args, **kwargs)

    monkeypatch.setattr(build_module, "build_sections", warning_sections)
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        paths = build_report(synthetic_results(), out_dir=tmp_path / "r", formats=["html"], workers=1)
    assert leaked == []
    assert paths.messages == (
        "warning while computing the report (2x): UserWarning: Random effects covariance is singular",
    )


def test_unknown_format_and_bad_table_raise_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="allowed: html, pdf"):
        build_report(synthetic_results(), out_dir=tmp_path / "r", formats=["docx"])
    with pytest.raises(SchemaError):
        build_report(synthetic_results().drop(columns="value"), out_dir=tmp_path / "r")
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_and_prints_paths(
    tiny: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.csv"
    write_results(synthetic_results(), results)
    out = tmp_path / "out"
    code = _run_cli(
        monkeypatch, "report", str(results), "--out", str(out), "--format", "html", "--title", "CLI study"
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"html: {out / 'report.html'}" in printed
    assert "figures: 2 files" in printed and "tables: 1 files" in printed
    assert "CLI study" in (out / "report.html").read_text()
    assert (out / "figures" / "tiny_heatmap.svg").exists() and (out / "tables" / "tiny.csv").exists()


@pytest.mark.parametrize("content", [None, "a,b\n1,2\n"])
def test_cli_rejects_missing_or_invalid_results(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    results = tmp_path / "results.csv"
    if content is not None:
        results.write_text(content)
    out = tmp_path / "out"
    code = _run_cli(monkeypatch, "report", str(results), "--out", str(out))
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "results.csv" in err
    assert not out.exists()


def test_cli_accepts_a_runs_folder(tiny: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []

    def fake_collect(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        calls.append(Path(path))
        return synthetic_results(), pd.DataFrame()

    import kdanalysis.collect

    monkeypatch.setattr(kdanalysis.collect, "collect_runs", fake_collect)
    runs = tmp_path / "runs"
    runs.mkdir()
    assert _run_cli(monkeypatch, "report", str(runs), "--out", str(tmp_path / "out"), "--format", "html") == 0
    assert calls == [runs]
