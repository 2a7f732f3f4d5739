"""Who owns a cell being computed: a rerun never deletes work it cannot prove dead, and a killed
``train`` cell resumes from what its interrupted attempt left instead of starting over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from runners.grid.plan import Cell
from runners.grid.state import CellState, cell_dir, cells_dir, clean_stale, execute_cell, scan_states


def _cell(kind: str = "eval", cid: str = "c0ffee") -> Cell:
    return Cell(id=cid, stage="kd", kind=kind, config={}, deps=(), label=f"{kind} cell")


def _partial(runs: Path, cell: Cell, suffix: str, **status: object) -> Path:
    """A temporary folder as an attempt leaves it, with the status fields given."""
    tmp = cells_dir(runs) / f".tmp-{cell.id}-{suffix}"
    tmp.mkdir(parents=True)
    (tmp / "cell.json").write_text(json.dumps(cell.to_json()))
    (tmp / "status.json").write_text(json.dumps({"cell": cell.id, "state": "running", **status}))
    return tmp


@pytest.fixture()
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_folder_of_another_host_is_never_deleted_and_says_who_owns_it(tmp_path: Path) -> None:
    cell = _cell()
    tmp = _partial(tmp_path, cell, "1234-abcdef", host=f"not-{socket.gethostname()}", pid=1234)
    assert clean_stale(tmp_path) == []
    assert tmp.is_dir()
    status = scan_states(tmp_path, [cell.id])[cell.id]
    assert status.state is CellState.RUNNING
    assert "pid 1234" in status.note and str(tmp) in status.note


def test_a_folder_of_another_host_whose_slurm_job_left_the_queue_is_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text("#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n")
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    runs = tmp_path / "runs"
    tmp = _partial(runs, _cell(), "1-abcdef", host="elsewhere", pid=1, slurm_job_id="77")
    assert clean_stale(runs) == ["c0ffee"]
    assert not tmp.exists()


def test_a_reused_pid_does_not_pass_for_the_owner(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    # the recorded pid runs, but it is another process than the one that started the cell
    tmp = _partial(
        tmp_path, _cell(), f"{sleeper.pid}-abcdef", host=socket.gethostname(), pid=sleeper.pid, pid_start="1"
    )
    assert scan_states(tmp_path, ["c0ffee"])["c0ffee"].state is CellState.PENDING
    assert clean_stale(tmp_path) == ["c0ffee"]
    assert not tmp.exists()


def test_the_owner_lock_keeps_a_folder_alive_whatever_its_status_says(tmp_path: Path) -> None:
    tmp = _partial(tmp_path, _cell(), "1-abcdef", host=socket.gethostname(), pid=999_999_999)
    (tmp / ".owner").touch()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(60)",
            str(tmp / ".owner"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        assert clean_stale(tmp_path) == []
        assert scan_states(tmp_path, ["c0ffee"])["c0ffee"].state is CellState.RUNNING
    finally:
        holder.kill()
        holder.wait()
    assert clean_stale(tmp_path) == ["c0ffee"]  # the lock went with its process


def test_a_live_owner_on_this_host_is_running(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    time.sleep(0.1)
    start = Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    _partial(
        tmp_path,
        _cell(),
        f"{sleeper.pid}-abcdef",
        host=socket.gethostname(),
        pid=sleeper.pid,
        pid_start=start,
    )
    assert clean_stale(tmp_path) == []
    assert scan_states(tmp_path, ["c0ffee"])["c0ffee"].state is CellState.RUNNING


def test_a_killed_train_cell_resumes_from_its_interrupted_attempt(tmp_path: Path) -> None:
    cell = _cell("train")
    old = _partial(tmp_path, cell, "1-abcdef", host=socket.gethostname(), pid=999_999_999)
    (old / "run" / "checkpoints").mkdir(parents=True)
    (old / "run" / "checkpoints" / "latest").write_text("step_000007")
    assert clean_stale(tmp_path) == []  # kept for the next attempt
    seen: dict[str, str] = {}

    def stage(cell: Cell, work: Path, deps: Mapping[str, Path]) -> dict[str, str]:
        seen["latest"] = (work / "run" / "checkpoints" / "latest").read_text()
        return {"run": "run"}

    assert execute_cell(cell, tmp_path, stage).state is CellState.DONE
    assert seen == {"latest": "step_000007"}
    assert not old.exists()
    final = cell_dir(tmp_path, cell.id)
    assert (final / "cell.json").is_file() and (final / ".owner").exists() is False
    assert "resuming the interrupted attempt .tmp-c0ffee-1-abcdef" in (final / "log.txt").read_text()


def test_a_late_attempt_never_replaces_a_done_cell(tmp_path: Path) -> None:
    cell = _cell()

    def first(cell: Cell, work: Path, deps: Mapping[str, Path]) -> dict[str, str]:
        (work / "out.txt").write_text("first")
        # meanwhile a second attempt (a rerun that wrongly took this cell for dead) finishes it
        execute_cell(cell, tmp_path, second)
        return {"out": "out.txt"}

    def second(cell: Cell, work: Path, deps: Mapping[str, Path]) -> dict[str, str]:
        (work / "out.txt").write_text("second")
        return {"out": "out.txt"}

    execute_cell(cell, tmp_path, first)
    final = cell_dir(tmp_path, cell.id)
    assert (final / "out.txt").read_text() == "second"
    assert {"cell.json", "log.txt", "status.json", "out.txt"} <= {p.name for p in final.iterdir()}
    assert not [p for p in cells_dir(tmp_path).iterdir() if p.name.startswith(".")]


def test_an_attempt_whose_folder_was_removed_under_it_publishes_nothing(tmp_path: Path) -> None:
    import shutil

    def stage(cell: Cell, work: Path, deps: Mapping[str, Path]) -> dict[str, str]:
        shutil.rmtree(work)  # what an earlier version's rerun did to a cell running elsewhere
        (work / "run").mkdir(parents=True)  # the job goes on writing
        (work / "run" / "out.txt").write_text("late")
        return {"run": "run"}

    execute_cell(_cell("train"), tmp_path, stage)
    assert not cell_dir(tmp_path, "c0ffee").exists()
    assert list(cells_dir(tmp_path).iterdir()) == []
