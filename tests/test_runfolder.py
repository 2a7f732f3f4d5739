"""kdanalysis.runfolder: the run-folder contract (status dialects, damaged files, atomic writes)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from kdanalysis.errors import KDAnalysisError, RunFolderError
from kdanalysis.runfolder import STATUS_FILE, RunState, is_done, now_utc, read_status, write_status

FIXTURES = Path(__file__).parent / "fixtures" / "run_folders"


@pytest.mark.parametrize(
    ("folder", "state"),
    [
        ("distill_done", RunState.DONE),  # {"status": "done"}
        ("distill_failed", RunState.FAILED),
        ("distill_running", RunState.RUNNING),
        ("eval_completed", RunState.DONE),  # {"state": "completed"}
        ("eval_failed", RunState.FAILED),
        ("grid_cell_done", RunState.DONE),  # {"state": "done", "started": ...}
        ("grid_cell_failed", RunState.FAILED),
        ("current_done", RunState.DONE),
    ],
)
def test_every_dialect_reads_as_one_state(folder: str, state: RunState) -> None:
    raw = json.loads((FIXTURES / folder / STATUS_FILE).read_text(encoding="utf-8"))
    status = read_status(FIXTURES / folder)
    assert status is not None and status["state"] is state
    assert "status" not in status  # the distillation dialect's key is renamed, not kept twice
    others = {k: v for k, v in raw.items() if k not in ("state", "status")}
    assert {k: v for k, v in status.items() if k != "state"} == others  # every other field kept as written
    assert is_done(FIXTURES / folder) == (state is RunState.DONE)


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("corrupt_truncated", "not valid JSON"),
        ("corrupt_list", "expected a JSON object, got list"),
        ("unknown_state", "unknown run state 'finished'; allowed: running, done, failed"),
    ],
)
def test_damaged_status_is_one_error_naming_the_file(folder: str, message: str) -> None:
    path = FIXTURES / folder / STATUS_FILE
    with pytest.raises(RunFolderError) as info:
        read_status(FIXTURES / folder)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    assert isinstance(info.value, KDAnalysisError)
    with pytest.raises(RunFolderError):
        is_done(FIXTURES / folder)


def test_absent_status_is_none(tmp_path: Path) -> None:
    assert read_status(tmp_path) is None
    assert read_status(tmp_path / "not-created") is None
    assert not is_done(tmp_path)


def test_write_then_read_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    path = write_status(run, {"state": RunState.RUNNING, "started_utc": now_utc(), "error": None})
    assert path == run / STATUS_FILE
    assert json.loads(path.read_text(encoding="utf-8"))["state"] == "running"
    write_status(run, {"state": "done", "steps": 3})
    assert read_status(run) == {"state": RunState.DONE, "steps": 3}
    assert sorted(p.name for p in run.iterdir()) == [STATUS_FILE]


@pytest.mark.parametrize("state", [None, "completed", "finished"])
def test_write_refuses_states_outside_the_enum(tmp_path: Path, state: str | None) -> None:
    with pytest.raises(ValueError, match="must be one of running, done, failed"):
        write_status(tmp_path, {"state": state})
    assert not (tmp_path / STATUS_FILE).exists()


def test_now_utc_is_an_aware_iso_time_to_the_second() -> None:
    stamp = now_utc()
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0
    assert parsed.microsecond == 0 and stamp.endswith("+00:00")


def test_cli_prints_one_line_for_a_damaged_status(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / STATUS_FILE).write_text("{oops", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "kdanalysis", "collect", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "status.json: not valid JSON" in lines[0] and "Traceback" not in proc.stderr
