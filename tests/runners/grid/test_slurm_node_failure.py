"""The node of a running cell goes down (``scontrol update nodename=... state=down``).

What SLURM 22.05 does (tried on the one-node cluster of ``scripts/slurm-local.sh``): the
jobs on the node end ``NODE_FAIL`` and, being requeueable (SLURM's default ``JobRequeue=1``),
are requeued at once: pending, held back by a begin time about two minutes away; the node
returns to service when its ``slurmd`` registers again (``ReturnToService=2``). The grid
must come through: the cell's job runs again once the node is back, the cell is published
once, and its ``status.json`` and log say that its job's earlier run ended ``NODE_FAIL``.
The test lets the requeued jobs start at once (``StartTime=now``) instead of waiting out
the begin time, and always leaves the node up. Needs a cluster answering ``sinfo``
(``scripts/slurm-local.sh start``); skipped otherwise (``tests/conftest.py``).
"""

from __future__ import annotations

import runpy
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pandas as pd
import pytest

from kdanalysis.io import read_json
from kdanalysis.results import read_results
from runners.grid.plan import build_plan
from runners.grid.spec import load_grid
from runners.grid.state import cells_dir, recorded_job

pytestmark = pytest.mark.slurm

HERE = Path(__file__).parent
GRID = HERE / "slurm_grid.yaml"
# the fault tests' helpers: a KD cell that runs 20 s, the driver, the uninterrupted reference
faults = runpy.run_path(str(HERE / "test_slurm_faults.py"))
WAIT_S = 180


def _node() -> str:
    """The node the cluster's jobs run on (the one-node cluster has one)."""
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()
    assert len(nodes) == 1, f"this test downs the one node of a one-node cluster, found {nodes}"
    return nodes[0]


def _node_state(node: str) -> str:
    return subprocess.run(
        ["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True
    ).stdout.strip()


def _resume(node: str) -> None:
    """Bring ``node`` back when it is down or drained (``ReturnToService=2`` usually has already)."""
    if _node_state(node).startswith(("down", "drain")):
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)


def _listpids() -> str:
    """The job steps' processes on this node (``scontrol listpids``)."""
    proc = subprocess.run(["scontrol", "listpids"], capture_output=True, text=True)
    return proc.stdout + proc.stderr


def _release_begin_time(runs: Path, ids: list[str]) -> None:
    """Let this grid's requeued jobs (pending on their begin time) start now."""
    jobs = {str(r["job_id"]) for cid in ids if (r := recorded_job(runs, cid))}
    for job in jobs:
        reason = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True)
        if reason.stdout.split()[:2] == ["PENDING", "BeginTime"]:
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)


def test_node_down_under_a_running_cell_requeues_its_job_and_the_grid_completes(tmp_path: Path) -> None:
    plan = build_plan(load_grid(GRID), root=GRID.parent)
    (kd,) = [c.id for c in plan if c.stage == "kd"]
    runs = tmp_path / "runs"
    node = _node()
    _wait_for_an_empty_queue(time.monotonic() + WAIT_S)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(faults["_slurm_run"], plan, runs, faults["_slow_kd"])
        try:
            job = faults["_running_job"](runs, kd, time.monotonic() + WAIT_S)
            start = time.perf_counter()
            faults["_scheduler"](
                "scontrol", "update", f"nodename={node}", "state=down", "reason=kdanalysis test"
            )
            deadline = time.monotonic() + WAIT_S
            while "NODE_FAIL" not in _history(job):
                assert time.monotonic() < deadline, f"job {job} never ended NODE_FAIL: {_history(job)}"
                time.sleep(0.5)
            # the killed runs' processes end (SIGKILL after KillWait); launching a job again before
            # that would make slurmd refuse it ("Duplicate jobid") and drain the node
            while "No job steps exist" not in _listpids():
                assert time.monotonic() < deadline, f"the killed jobs' steps stay: {_listpids()}"
                time.sleep(0.5)
            _resume(node)
            deadline = time.monotonic() + WAIT_S
            while True:
                _release_begin_time(runs, list(plan.cells))
                try:
                    result = future.result(timeout=1)
                    break
                except FutureTimeout:
                    assert time.monotonic() < deadline, faults["_report"](runs)
        finally:
            _resume(node)
    print(f"node failure to grid end: {time.perf_counter() - start:.1f} s")
    assert result.counts == {"done": len(plan)}, f"{result.failed}\n{faults['_report'](runs)}"
    # the same job computed the cell once the node was back (a worker job ends once its executor
    # closed it), and the cell says why it ran twice
    deadline = time.monotonic() + WAIT_S
    while _history(job)[-1:] in (["RUNNING"], ["COMPLETING"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _history(job) == ["NODE_FAIL", "COMPLETED"], _history(job)
    status = read_json(cells_dir(runs) / kd / "status.json")
    assert status["state"] == "done" and status["slurm_job_id"] == job
    assert status["slurm_earlier_runs"] == ["NODE_FAIL"], status
    log = (cells_dir(runs) / kd / "log.txt").read_text()
    assert f"SLURM job {job} was restarted by the scheduler; its earlier runs ended NODE_FAIL" in log, log
    got = read_results(result.results_path)
    assert not got.duplicated(subset=["run_id", "metric"]).any()
    pd.testing.assert_frame_equal(got, faults["_reference"](plan, tmp_path / "reference"))
    assert _node_state(node) in ("idle", "mixed", "allocated"), _node_state(node)


def _wait_for_an_empty_queue(deadline: float) -> None:
    """Downing the node kills every job on it: wait until no other job is queued (earlier tests' workers)."""
    while jobs := subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, (
            f"other jobs stay on the cluster; downing its node would kill them\n{jobs}"
        )
        time.sleep(1)


def _history(job: str) -> list[str]:
    """The states of each run of ``job`` (``sacct -D``)."""
    out = subprocess.run(
        ["sacct", "-D", "-X", "-n", "-P", "-o", "State", f"-j{job}"], capture_output=True, text=True
    ).stdout
    return out.split()
