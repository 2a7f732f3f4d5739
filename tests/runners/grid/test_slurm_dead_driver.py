"""``kill -9`` of the grid driver while its SLURM jobs are queued and running: a rerun adopts them.

The driver is a subprocess running :func:`~runners.grid.runner.run_grid` (what ``kdanalysis
run-grid`` calls) with the grid tests' fake stage, three cells of which sleep so that two
jobs compute while a third cell waits for a free core. It is killed with SIGKILL at that
moment; the rerun must wait for those jobs instead of submitting their cells again (they
stay computed by the jobs submitted before the kill), must not recompute the cells done
before, and must end with the uninterrupted grid's results. Needs a cluster answering
``sinfo`` (``scripts/slurm-local.sh start``); skipped otherwise (``tests/conftest.py``).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from kdanalysis.io import read_json
from kdanalysis.results import read_results
from runners.grid.executors import SequentialExecutor
from runners.grid.plan import build_plan
from runners.grid.runner import run_grid
from runners.grid.spec import load_grid
from runners.grid.state import CellState, cell_state, cells_dir, recorded_job

pytestmark = pytest.mark.slurm

HERE = Path(__file__).parent
GRID = HERE / "slurm_grid.yaml"
FAKE = HERE / "test_grid_run.py"
fake_stage = runpy.run_path(str(FAKE))["fake_stage"]
SLOW = ("teacher_sft", "student_sft", "student_base_eval")
WAIT_S = 180

# the driver: run_grid through SLURM; the stage travels to the jobs by value (cloudpickle)
DRIVER = textwrap.dedent(
    """
    import json, logging, runpy, sys, time
    from pathlib import Path
    from runners.grid.executors import SubmititExecutor
    from runners.grid.plan import build_plan
    from runners.grid.runner import run_grid
    from runners.grid.spec import load_grid

    grid, runs, fake, slow, sleep_s = sys.argv[1:6]
    fake_stage = runpy.run_path(fake)["fake_stage"]
    SLOW, SLEEP_S = slow.split(","), float(sleep_s)

    def stage(cell, work, deps):
        if cell.stage in SLOW:
            time.sleep(SLEEP_S)
        return fake_stage(cell, work, deps)

    logging.basicConfig(level=logging.WARNING)  # as kdanalysis run-grid shows the driver's warnings
    plan = build_plan(load_grid(Path(grid)), root=Path(grid).parent)
    executor = SubmititExecutor(Path(runs), plan.grid.executor.slurm, stage_fn=stage)
    result = run_grid(plan, Path(runs), executor=executor, poll_s=0.5)
    print(json.dumps({"counts": result.counts, "computed": result.computed}))
    """
)


def _report(runs: Path) -> str:
    return runpy.run_path(str(HERE / "test_slurm_grid.py"))["scheduler_report"](runs)


def _squeue_state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout
    return out.split()[0] if out.split() else ""


def _raw_job_id(job: str) -> str:
    """The id a job sees as ``SLURM_JOB_ID`` (an array task ``600_1`` has its own number)."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobIDRaw", "-j", job], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out, f"sacct does not know job {job}"
    return out[0]


def _started(runs: Path, cid: str) -> bool:
    return any(cells_dir(runs).glob(f".tmp-{cid}-*")) or (cells_dir(runs) / cid).is_dir()


def test_rerun_after_kill_9_adopts_queued_and_running_jobs_and_recomputes_nothing(tmp_path: Path) -> None:
    plan = build_plan(load_grid(GRID), root=GRID.parent)
    runs = tmp_path / "runs"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    command = [sys.executable, str(driver), str(GRID), str(runs), str(FAKE), ",".join(SLOW), "20"]
    log = (tmp_path / "driver.log").open("w")
    first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        # wait until some cells are done, a job computes a cell and another cell waits in the queue
        deadline = time.monotonic() + WAIT_S
        while True:
            assert time.monotonic() < deadline, f"never running and pending at once\n{_report(runs)}"
            assert first.poll() is None, (tmp_path / "driver.log").read_text()
            records = {cid: r for cid in plan.cells if (r := recorded_job(runs, cid))}
            states = {cid: _squeue_state(r["job_id"]) for cid, r in records.items()}
            live = {cid for cid, s in states.items() if s in ("PENDING", "RUNNING")}
            slow = {cid for cid in live if plan.cells[cid].stage in SLOW}  # computing for a while
            computing = {cid for cid in slow if states[cid] == "RUNNING" and _started(runs, cid)}
            queued = {cid for cid in slow if states[cid] == "PENDING" and not _started(runs, cid)}
            done = {cid for cid in plan.cells if cell_state(runs, cid).state is CellState.DONE}
            if computing and queued and done:
                break
            time.sleep(0.3)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
        log.close()
    # no driver writes records any more: every recorded cell not done is left to its job
    adopted = {cid: r["job_id"] for cid in plan.cells if (r := recorded_job(runs, cid))}
    assert computing | queued <= set(adopted)
    done_before = {
        cid: (cells_dir(runs) / cid / "status.json").stat().st_mtime_ns
        for cid in plan.cells
        if cid not in adopted and cell_state(runs, cid).state is CellState.DONE
    }
    assert done <= set(done_before) | set(adopted)

    start = time.perf_counter()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=WAIT_S)
    print(f"rerun after kill -9: {time.perf_counter() - start:.1f} s, adopted {len(adopted)} cells")
    assert rerun.returncode == 0, f"{rerun.stdout}\n{rerun.stderr}\n{_report(runs)}"
    result = json.loads(rerun.stdout.splitlines()[-1])
    assert result["counts"] == {"done": len(plan)}, f"{result}\n{_report(runs)}"
    # the rerun submitted exactly the cells neither done nor queued/running at the kill
    assert set(result["computed"]) == set(plan.cells) - set(adopted) - set(done_before), result
    assert "submitted by an earlier run-grid" in rerun.stderr, rerun.stderr
    # each adopted cell was computed by the job submitted before the kill
    for cid, job in adopted.items():
        status = read_json(cells_dir(runs) / cid / "status.json")
        assert status["state"] == "done" and status["slurm_job_id"] == _raw_job_id(job), (cid, job)
    # the cells done before the kill were not computed again
    for cid, mtime in done_before.items():
        assert (cells_dir(runs) / cid / "status.json").stat().st_mtime_ns == mtime, cid
    assert not list(cells_dir(runs).glob(".job-*")) and not list(cells_dir(runs).glob(".tmp-*"))

    got = read_results(runs / "results.parquet")
    assert not got.duplicated(subset=["run_id", "metric"]).any()
    reference = tmp_path / "reference"
    expected = read_results(
        run_grid(plan, reference, executor=SequentialExecutor(reference, fake_stage)).results_path
    )
    pd.testing.assert_frame_equal(got, expected)
