"""Job records without a cluster: a fake ``squeue``/``sacct`` on PATH answers for the jobs.

The driver's view of cells left to SLURM jobs by an earlier, killed driver (adopted while
their job is queued or running, submitted again once it left without a result), and the
restart note of a cell computed by a job the scheduler restarted. The same paths run
against the real cluster in ``test_slurm_dead_driver.py`` and ``test_slurm_node_failure.py``.
"""

from __future__ import annotations

import os
import runpy
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from kdanalysis.io import read_json
from runners.grid.executors import SequentialExecutor
from runners.grid.plan import Cell, Plan, build_plan
from runners.grid.runner import plan_states, run_grid
from runners.grid.spec import load_grid
from runners.grid.state import (
    CellState,
    cell_dir,
    cells_dir,
    clean_stale,
    execute_cell,
    record_job,
    recorded_job,
    scan_states,
    settle_jobs,
)

HERE = Path(__file__).parent
GRID = HERE / "small_grid.yaml"
fake_stage = runpy.run_path(str(HERE / "test_grid_run.py"))["fake_stage"]

SQUEUE = """#!/bin/sh
# squeue -h -j JOB -o %T: the state written in $FAKE_SLURM/JOB, else the job has left the controller
if [ -n "$FAKE_SQUEUE_DOWN" ]; then
  echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1
fi
if [ -f "$FAKE_SLURM/$3" ]; then cat "$FAKE_SLURM/$3"; exit 0; fi
echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1
"""
SACCT = """#!/bin/sh
# sacct -D -X -n -P -o State -j JOB: one line per run of the job
cat "$FAKE_SLURM/history"
"""


@pytest.fixture()
def slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder whose file ``<job id>`` holds the state the fake ``squeue`` reports for that job."""
    bin_dir, jobs = tmp_path / "bin", tmp_path / "jobs"
    bin_dir.mkdir()
    jobs.mkdir()
    for name, text in (("squeue", SQUEUE), ("sacct", SACCT)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(jobs))
    return jobs


def _plan() -> Plan:
    return build_plan(load_grid(GRID), root=GRID.parent)


def test_a_pending_cell_whose_recorded_job_is_queued_counts_as_running(tmp_path: Path, slurm: Path) -> None:
    plan = _plan()
    runs = tmp_path / "runs"
    cid = next(iter(plan.cells))
    record_job(runs, cid, "77_3")
    (slurm / "77_3").write_text("PENDING\n")
    status = scan_states(runs, [cid])[cid]
    assert status.state is CellState.RUNNING and (status.job_id, status.job_state) == ("77_3", "PENDING")
    assert "SLURM job 77_3 (pending), submitted by an earlier run-grid" in status.note
    assert clean_stale(runs) == [] and recorded_job(runs, cid) is not None  # kept while queued
    # squeue cannot tell (controller down): never presumed gone
    (slurm / "77_3").unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAKE_SQUEUE_DOWN", "1")
        assert scan_states(runs, [cid])[cid].state is CellState.RUNNING
        assert settle_jobs(runs) == [] and recorded_job(runs, cid) is not None
    # the job left the queue without the cell's result: pending again, the record dropped
    assert scan_states(runs, [cid])[cid].state is CellState.PENDING
    assert settle_jobs(runs) == [cid] and recorded_job(runs, cid) is None


def test_records_of_finished_cells_and_ended_jobs_are_dropped_by_clean_stale(
    tmp_path: Path, slurm: Path
) -> None:
    plan = _plan()
    runs = tmp_path / "runs"
    first, second = list(plan.cells)[:2]
    execute_cell(plan.cells[first], runs, fake_stage)
    for cid in (first, second):
        record_job(runs, cid, "91")
    (slurm / "91").write_text("COMPLETED\n")  # listed by the controller a while after its end
    assert clean_stale(runs) == []
    assert recorded_job(runs, first) is None and recorded_job(runs, second) is None
    states = plan_states(plan, runs)
    assert states[first].state is CellState.DONE and states[second].state is CellState.PENDING


def test_the_driver_waits_for_an_adopted_job_and_takes_its_result(tmp_path: Path, slurm: Path) -> None:
    plan = _plan()
    runs = tmp_path / "runs"
    adopted = next(c for c in plan if not c.deps)
    lost = next(c for c in plan if not c.deps and c.id != adopted.id)
    record_job(runs, adopted.id, "501")
    record_job(runs, lost.id, "502")  # its job left the queue without computing it
    (slurm / "501").write_text("RUNNING\n")

    def job() -> None:  # what the earlier driver's job does meanwhile
        time.sleep(1.0)
        execute_cell(adopted, runs, fake_stage)
        (slurm / "501").unlink()

    seen: list[dict[str, str]] = []
    thread = threading.Thread(target=job)
    thread.start()
    try:
        result = run_grid(
            plan,
            runs,
            executor=SequentialExecutor(runs, fake_stage),
            poll_s=0.1,
            progress=lambda states, running, jobs: seen.append({c: j.job_id for c, j in jobs.items()}),
        )
    finally:
        thread.join()
    assert result.counts == {"done": len(plan)}
    assert adopted.id not in result.computed and lost.id in result.computed
    assert set(result.computed) == set(plan.cells) - {adopted.id}
    assert {adopted.id: "501"} in seen  # the progress shows the adopted job
    assert not list(cells_dir(runs).glob(".job-*"))


def test_a_cell_of_a_restarted_slurm_job_records_how_its_earlier_runs_ended(
    tmp_path: Path, slurm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cell = next(iter(_plan()))
    runs = tmp_path / "runs"
    (slurm / "history").write_text("NODE_FAIL\nRUNNING\n")
    monkeypatch.setenv("SLURM_JOB_ID", "640")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    execute_cell(cell, runs, fake_stage)
    status = read_json(cell_dir(runs, cell.id) / "status.json")
    assert status["state"] == "done" and status["slurm_earlier_runs"] == ["NODE_FAIL"]
    log = (cell_dir(runs, cell.id) / "log.txt").read_text()
    assert "SLURM job 640 was restarted by the scheduler; its earlier runs ended NODE_FAIL" in log
    # a job's first run says nothing
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    other = list(_plan())[1]
    execute_cell(other, runs, fake_stage)
    assert "slurm_earlier_runs" not in read_json(cell_dir(runs, other.id) / "status.json")


def _failing_stage(cell: Cell, work: Path, deps: Mapping[str, Path]) -> dict[str, str]:
    raise RuntimeError("out of memory")


def test_an_adopted_cell_that_fails_blocks_its_dependents(tmp_path: Path, slurm: Path) -> None:
    plan = _plan()
    runs = tmp_path / "runs"
    adopted = next(c for c in plan if not c.deps and plan.dependents({c.id}))
    record_job(runs, adopted.id, "601")
    (slurm / "601").write_text("RUNNING\n")

    def job() -> None:
        time.sleep(1.0)
        execute_cell(adopted, runs, _failing_stage)
        (slurm / "601").unlink()

    thread = threading.Thread(target=job)
    thread.start()
    try:
        result = run_grid(plan, runs, executor=SequentialExecutor(runs, fake_stage), poll_s=0.1)
    finally:
        thread.join()
    blocked = plan.dependents({adopted.id})
    assert result.failed == {adopted.id: "RuntimeError: out of memory"}
    assert result.counts == {"done": len(plan) - 1 - len(blocked), "failed": 1, "blocked": len(blocked)}
