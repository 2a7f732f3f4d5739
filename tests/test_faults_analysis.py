"""Faults of the analysis commands: values the contract's units forbid, empty tables, a full disk,
bad output folders, leftovers of a killed report, spreadsheet formulas in CSV tables. Each ends in
one line and exit code 2 (no traceback), with the previous outputs intact."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from kdanalysis.cli import main
from kdanalysis.collect import write_collected
from kdanalysis.report.orphans import BuildMark, remove_stale
from kdanalysis.report.render import write_tables
from kdanalysis.report.sections import TableSpec
from kdanalysis.results import read_items, read_results, results_frame, write_items, write_results


def _rows(**change: object) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [
        {"study": "s", "domain": "math", "task": task, "student": "tiny", "method": "sft",
         "metric": "accuracy", "value": value, "n": 10, "seed": 6, "ci_low": value - 5, "ci_high": value + 5}
        for task, value in (("gsm8k", 50.0), ("svamp", 60.0), ("addsub", 70.0))
    ]  # fmt: skip
    rows[1].update(change)
    return rows


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"value": 100.5}, "outside 0-100"),
        ({"value": -1.0}, "outside 0-100"),
        ({"n": -3}, "negative item count"),
        ({"ci_low": 70.0, "ci_high": 65.0}, "ci_low above ci_high"),
        ({"task": "SVAMP"}, "lower-case"),
    ],
)
def test_validate_refuses_values_the_units_forbid_in_one_line(
    tmp_path: Path,
    run_cli: Callable[..., tuple[int, str]],
    change: dict[str, object],
    said: str,
) -> None:
    path = tmp_path / "results.csv"
    pd.DataFrame(_rows(**change)).to_csv(path, index=False)
    code, out = run_cli(main, "validate", str(path))
    assert code == 2
    assert said in out and "[1]" in out  # names the row
    assert "Traceback" not in out


def test_kl_values_are_not_percent(tmp_path: Path) -> None:
    assert len(results_frame(_rows(metric="kl", value=123.0))) == 3


def test_header_only_table_fails_validate_and_report_in_one_line(
    tmp_path: Path, run_cli: Callable[..., tuple[int, str]]
) -> None:
    path = tmp_path / "results.csv"
    pd.DataFrame(_rows()).head(0).to_csv(path, index=False)
    for command in (["validate", str(path)], ["report", str(path), "--out", str(tmp_path / "r")]):
        code, out = run_cli(main, *command)
        assert code == 2 and "no rows" in out and "Traceback" not in out
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("where", ["file", "under-a-file", "proc"])
def test_report_out_that_cannot_hold_a_report_is_one_line(
    tmp_path: Path, run_cli: Callable[..., tuple[int, str]], where: str
) -> None:
    results = tmp_path / "results.csv"
    write_results(results_frame(_rows()), results)
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    out_dir = {"file": existing, "under-a-file": existing / "report", "proc": Path("/proc/kdanalysis/report")}
    code, out = run_cli(main, "report", str(results), "--out", str(out_dir[where]))
    assert code == 2 and str(out_dir[where]) in out and "Traceback" not in out
    assert existing.read_text() == "keep me"


def _runs(root: Path, value: float) -> Path:
    folder = root / "cells" / "a"
    write_results(results_frame(_rows(value=value)), folder / "results.parquet")
    write_items(
        pd.DataFrame([{"run_id": "a", "task": "gsm8k", "item_id": "1", "prompt_hash": "h", "output": "1",
                       "pred": "1", "gold": "1", "correct": True, "n_tokens": 3}]),
        folder / "items.parquet",
    )  # fmt: skip
    (folder / "status.json").write_text('{"state": "done"}')
    return root


def test_collect_on_a_full_disk_keeps_both_previous_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., tuple[int, str]]
) -> None:
    runs = _runs(tmp_path / "runs", 60.0)
    write_collected(runs)
    before = {name: (runs / name).read_bytes() for name in ("results.parquet", "items.parquet")}
    (runs / "cells" / "a" / "items.parquet").unlink()
    _runs(tmp_path / "runs", 65.0)  # new results: a new collection would differ
    calls = []
    real = tempfile.mkstemp

    def second_write_fails(*args: object, **kwargs: object) -> tuple[int, str]:
        calls.append(kwargs.get("prefix"))
        if len(calls) == 2:  # the items table, after the results table was written
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("kdanalysis.io.tempfile.mkstemp", second_write_fails)
    code, out = run_cli(main, "collect", str(runs))
    assert code == 2 and "Traceback" not in out
    assert "no space left writing" in out and "items.parquet" in out and "MiB free" in out
    assert {name: (runs / name).read_bytes() for name in before} == before
    assert len(read_results(runs / "results.parquet")) == 3 and len(read_items(runs / "items.parquet")) == 1
    assert not [p for p in runs.iterdir() if p.name.endswith(".tmp")]


def test_report_on_a_full_disk_keeps_the_previous_report_and_removes_leftovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., tuple[int, str]]
) -> None:
    results = tmp_path / "results.csv"
    write_results(results_frame(_rows()), results)
    out_dir = tmp_path / "report"
    out_dir.mkdir()
    (out_dir / "report.html").write_text("previous")
    stale = tmp_path / ".report-building-killed"  # what a kill -9 of an earlier report left
    (stale / "figures").mkdir(parents=True)
    (stale / ".building.lock").touch()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(
            errno.ENOSPC, "No space left on device", str(out_dir.parent / ".report-building-x" / "a.png")
        )

    monkeypatch.setattr("kdanalysis.report.build.build_sections", full)
    code, out = run_cli(main, "report", str(results), "--out", str(out_dir), "--format", "html")
    assert code == 2 and "no space left writing" in out and "Traceback" not in out
    assert (out_dir / "report.html").read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_folder_being_built_is_not_taken_for_a_leftover(tmp_path: Path) -> None:
    building, old_unmarked, fresh_unmarked = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder in (building, old_unmarked, fresh_unmarked):
        folder.mkdir()
    os.utime(old_unmarked, (time.time() - 3600, time.time() - 3600))
    with BuildMark(building):
        assert remove_stale([building, old_unmarked, fresh_unmarked]) == [old_unmarked]
        assert building.is_dir()
    assert remove_stale([building]) == []  # fresh and unmarked: its builder may be starting


def test_figure_workers_die_with_a_killed_report(tmp_path: Path) -> None:
    script = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from kdanalysis.report.render import FigureDrawer\n"
        "if __name__ == '__main__':\n"
        "    with FigureDrawer(Path(sys.argv[1]), workers=2) as d:\n"
        "        d._start.join()\n"
        "        print(*{d._pool.submit(os.getpid).result() for _ in range(8)}, flush=True)\n"
        "        time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        workers = [int(pid) for pid in proc.stdout.readline().split()]
        assert workers and all(Path(f"/proc/{pid}").exists() for pid in workers)
        # the fork server the workers came from must go too
        workers += {
            int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in workers
        }
        assert proc.pid not in workers
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.2)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert alive == []


def test_text_cells_of_csv_tables_cannot_start_a_formula(tmp_path: Path) -> None:
    data = pd.DataFrame(
        {"student": ["=HYPERLINK(1)", "+a", "@b", "-c", "plain"], "value": [-1.5, 2.0, 3.0, 4.0, 5.0]}
    )
    write_tables([TableSpec(id="t", title="t", caption="", data=data)], tmp_path)
    back = pd.read_csv(tmp_path / "t.csv")
    assert back["student"].tolist() == ["'=HYPERLINK(1)", "'+a", "'@b", "'-c", "plain"]
    assert back["value"].tolist() == [-1.5, 2.0, 3.0, 4.0, 5.0]
