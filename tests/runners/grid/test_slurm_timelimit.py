"""A training cell whose SLURM job reaches its time limit is checkpointed, requeued and resumed.

Before a job's time limit SLURM sends it the signal submitit asks for (``--signal=USR2@90``);
submitit then checkpoints the worker running the cell (``Worker.checkpoint``) and requeues the
job; the requeued worker first computes the cell it was interrupted in, taking over the killed
run's folder so that the trainer resumes from its last checkpoint. SLURM's
periodic timer sends that signal up to 30 s early, at a moment a test cannot choose, so the test
sends the same signal to the job's step itself (``scancel --signal=USR2``, as submitit's own
``_interrupt(timeout=True)`` does) once the KD run has a checkpoint. The resumed run must end
where an uninterrupted run ends. Needs a cluster answering ``sinfo``
(``scripts/slurm-local.sh start``); skipped otherwise (``tests/conftest.py``).
"""

from __future__ import annotations

import re
import runpy
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from kdanalysis.io import read_json
from kdanalysis.results import read_results
from runners.grid.executors import SequentialExecutor, SubmititExecutor
from runners.grid.plan import Plan, build_plan
from runners.grid.runner import run_grid
from runners.grid.spec import load_grid
from runners.grid.state import cells_dir

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.slurm

HERE = Path(__file__).parent
GRID = HERE / "slurm_timelimit_grid.yaml"
_faults = runpy.run_path(str(HERE / "test_slurm_faults.py"))
WAIT_S = 240


def _first_checkpoint(runs: Path, cid: str, deadline: float) -> None:
    """Wait until the training run of cell ``cid`` saved a checkpoint."""
    while time.monotonic() < deadline:
        if any(cells_dir(runs).glob(f".tmp-{cid}-*/run/checkpoints/step_*")):
            return
        time.sleep(0.1)
    raise AssertionError(f"cell {cid} saved no checkpoint\n{_faults['_report'](runs)}")


def _requeued(job: str, deadline: float, report: str) -> None:
    """Wait until the scheduler requeued ``job``; then let it start now."""
    history: list[str] = []
    while time.monotonic() < deadline:
        history = subprocess.run(
            ["sacct", "-D", "-X", "-n", "-P", "-o", "State", f"-j{job}"], capture_output=True, text=True
        ).stdout.split()
        queued = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True
        ).stdout
        if history[:1] == ["REQUEUED"] and queued.startswith("PENDING"):
            # SLURM holds a requeued job back ~2 min
            _faults["_scheduler"]("scontrol", "update", f"JobId={job}", "StartTime=now")
            return
        time.sleep(0.5)
    raise AssertionError(f"job {job} was not requeued after its time-limit signal: {history}\n{report}")


def _weights(cell: Path) -> dict[str, object]:
    return safetensors_torch.load_file(cell / "run" / "model" / "adapter_model.safetensors")


def test_time_limit_checkpoints_requeues_and_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    plan = build_plan(load_grid(GRID), root=GRID.parent)
    (kd,) = [c.id for c in plan if c.stage == "kd"]
    reference = tmp_path / "reference"
    assert run_grid(plan, reference, executor=SequentialExecutor(reference)).counts == {"done": len(plan)}
    runs = tmp_path / "runs"  # the cells up to the KD cell computed here, KD and its dependents through SLURM
    later = {kd, *plan.dependents({kd})}
    upstream = Plan(grid=plan.grid, root=plan.root, cells={c.id: c for c in plan if c.id not in later})
    assert run_grid(upstream, runs, executor=SequentialExecutor(runs)).counts == {"done": len(upstream)}

    with ThreadPoolExecutor(1) as pool:
        executor = SubmititExecutor(runs, plan.grid.executor.slurm)
        future = pool.submit(run_grid, plan, runs, executor=executor, poll_s=0.5)
        job = _faults["_running_job"](runs, kd, time.monotonic() + WAIT_S)
        _first_checkpoint(runs, kd, time.monotonic() + WAIT_S)
        _faults["_scheduler"]("scancel", "--signal=USR2", job)  # what SLURM sends before the time limit
        _requeued(job, time.monotonic() + WAIT_S, _faults["_report"](runs))
        result = future.result(timeout=WAIT_S)
    assert result.counts == {"done": len(plan)}, f"{result.failed}\n{_faults['_report'](runs)}"
    assert sorted(result.computed) == sorted(later)

    # submitit saw the time limit (not a preemption) and requeued the job; the run resumed mid-way
    logs = "".join(p.read_text(errors="replace") for p in (runs / "submitit").glob("*_log.err"))
    assert "timed-out" in logs, logs[-2000:]
    log = (cells_dir(runs) / kd / "log.txt").read_text()
    resumed = re.findall(r"resuming \S+ from step (\d+)", log)
    assert len(resumed) == 1 and 0 < int(resumed[0]) < 400, log[-2000:]
    assert int(resumed[0]) % 10 == 0  # a checkpoint's step
    # ... and ended exactly where the uninterrupted run ended
    status = read_json(cells_dir(runs) / kd / "status.json")
    assert status["state"] == "done" and status["slurm_job_id"] == job
    got, want = _weights(cells_dir(runs) / kd), _weights(cells_dir(reference) / kd)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=name)
    pd.testing.assert_frame_equal(
        read_results(result.results_path), read_results(reference / "results.parquet")
    )
