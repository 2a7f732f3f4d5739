"""Faults of a real SLURM scheduler while a grid runs: ``scancel`` and ``scontrol requeue`` of a running cell.

The cells run the grid test's fake stage (no models, so each cell takes a moment) in real SLURM
worker jobs submitted by :class:`~runners.grid.executors.SubmititExecutor`; the driver runs in a thread so the
test can act on the scheduler while the grid is in flight. Needs a cluster answering ``sinfo``
(``scripts/slurm-local.sh start``); skipped otherwise (``tests/conftest.py``).
"""

from __future__ import annotations

import runpy
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from kdanalysis.io import read_json
from kdanalysis.results import read_results
from runners.grid.executors import SequentialExecutor, SubmititExecutor
from runners.grid.plan import Cell, Plan, build_plan
from runners.grid.runner import GridRunResult, plan_states, run_grid
from runners.grid.spec import load_grid
from runners.grid.state import CellState, cells_dir

pytestmark = pytest.mark.slurm

HERE = Path(__file__).parent
GRID = HERE / "slurm_grid.yaml"
# the grid tests' fake stage (results rows from the cell id), loaded by path; submitit pickles it by value
fake_stage = runpy.run_path(str(HERE / "test_grid_run.py"))["fake_stage"]
# the jobs cannot import this test module: its functions travel by value (cloudpickle comes with submitit)
pytest.importorskip("cloudpickle").register_pickle_by_value(sys.modules[__name__])

WAIT_S = 120


def _slow_kd(cell: Cell, work: Path, deps: Mapping[str, Path]) -> dict[str, str]:
    """The fake stage, with the KD cell running long enough for the test to act on its job."""
    if cell.stage == "kd":
        time.sleep(20)
    return fake_stage(cell, work, deps)


def _report(runs: Path) -> str:
    return runpy.run_path(str(HERE / "test_slurm_grid.py"))["scheduler_report"](runs)


def _plan() -> Plan:
    return build_plan(load_grid(GRID), root=GRID.parent)


def _slurm_run(
    plan: Plan, runs: Path, stage: Callable[..., dict[str, str]], **kwargs: object
) -> GridRunResult:
    executor = SubmititExecutor(runs, plan.grid.executor.slurm, stage_fn=stage)
    return run_grid(plan, runs, executor=executor, poll_s=0.5, **kwargs)


def _running_job(runs: Path, cid: str, deadline: float) -> str:
    """SLURM job id of cell ``cid`` once its job is computing it (from its temporary folder's status)."""
    while time.monotonic() < deadline:
        for tmp in cells_dir(runs).glob(f".tmp-{cid}-*"):
            status = read_json(tmp / "status.json") if (tmp / "status.json").is_file() else {}
            if status.get("slurm_job_id"):
                return str(status["slurm_job_id"])
        time.sleep(0.2)
    raise AssertionError(f"cell {cid} never started running\n{_report(runs)}")


def _scheduler(*command: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{' '.join(command)}: {proc.stderr}"


def _release_requeued(job: str, deadline: float) -> None:
    """Make a requeued job eligible now (SLURM holds a requeued job back with a begin time ~2 min away)."""
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True
        ).stdout
        if state.startswith("PENDING"):
            _scheduler("scontrol", "update", f"JobId={job}", "StartTime=now")
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job} was not requeued: {state!r}")


def _reference(plan: Plan, runs: Path) -> pd.DataFrame:
    result = run_grid(plan, runs, executor=SequentialExecutor(runs, fake_stage))
    return read_results(result.results_path)


def test_scancel_of_a_running_cell_records_the_reason_blocks_dependents_and_retry_completes(
    tmp_path: Path,
) -> None:
    plan = _plan()
    (kd,) = [c.id for c in plan if c.stage == "kd"]
    runs = tmp_path / "runs"
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(_slurm_run, plan, runs, _slow_kd)
        job = _running_job(runs, kd, time.monotonic() + WAIT_S)
        _scheduler("scancel", job)
        result = future.result(timeout=WAIT_S)
    assert result.counts == {"done": len(plan) - 3, "failed": 1, "blocked": 2}, _report(runs)
    assert set(result.failed) == {kd}
    assert "CANCELLED" in result.failed[kd] and job in result.failed[kd], result.failed
    # recorded on disk: a later call (without --retry-failed) keeps it failed and its dependents blocked
    status = read_json(cells_dir(runs) / kd / "status.json")
    assert status["state"] == "failed" and "CANCELLED" in status["error"]
    states = plan_states(plan, runs)
    assert {cid for cid, s in states.items() if s.state is CellState.BLOCKED} == set(plan.dependents({kd}))
    results = read_results(result.results_path)
    assert "fkl" not in set(results["method"]) and len(results) == 4  # every independent cell measured

    retried = _slurm_run(plan, runs, fake_stage, retry_failed=True)
    assert retried.counts == {"done": len(plan)} and sorted(retried.computed) == sorted(
        [kd, *plan.dependents({kd})]
    )
    got = read_results(retried.results_path)
    assert not got.duplicated(subset=["run_id", "metric"]).any()
    pd.testing.assert_frame_equal(got, _reference(plan, tmp_path / "reference"))


def test_requeue_of_a_running_cell_resumes_it_without_duplicated_rows(tmp_path: Path) -> None:
    plan = _plan()
    (kd,) = [c.id for c in plan if c.stage == "kd"]
    runs = tmp_path / "runs"
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(_slurm_run, plan, runs, _slow_kd)
        job = _running_job(runs, kd, time.monotonic() + WAIT_S)
        _scheduler("scontrol", "requeue", job)
        _release_requeued(job, time.monotonic() + WAIT_S)
        result = future.result(timeout=WAIT_S)
    assert result.counts == {"done": len(plan)}, f"{result.failed}\n{_report(runs)}"
    status = read_json(cells_dir(runs) / kd / "status.json")
    assert status["state"] == "done" and status["slurm_job_id"] == job
    # the scheduler ran the job twice (killed and requeued, then to completion); the cell was published once
    runpy.run_path(str(HERE / "test_slurm_grid.py"))["ended_states"]({job}, time.monotonic() + 60)
    history = subprocess.run(
        ["sacct", "-D", "-X", "-n", "-P", "-o", "State", f"-j{job}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert history == ["REQUEUED", "COMPLETED"], history
    # the second run took over the killed run's folder (same job id): nothing is left behind
    assert "resuming the interrupted attempt" in (cells_dir(runs) / kd / "log.txt").read_text()
    assert not list(cells_dir(runs).glob(".tmp-*")), list(cells_dir(runs).iterdir())
    got = read_results(result.results_path)
    assert not got.duplicated(subset=["run_id", "metric"]).any()
    pd.testing.assert_frame_equal(got, _reference(plan, tmp_path / "reference"))
