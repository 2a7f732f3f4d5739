"""The toy grid through a real SLURM cluster (``sbatch`` via submitit) equals the local executor's run.

Needs a cluster answering ``sinfo`` (``scripts/slurm-local.sh start``; ``.ci/run`` starts one);
skipped otherwise (``tests/conftest.py``). The cells are packed into a few SLURM worker jobs
(:mod:`runners.grid.slurm_pool`); the wall times of both runs and their difference are printed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kdanalysis.io import read_json
from kdanalysis.results import read_items, read_results
from runners.grid.plan import build_plan
from runners.grid.spec import load_grid

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slurm

GRID = Path(__file__).with_name("slurm_grid.yaml")


def scheduler_report(runs: Path) -> str:
    """``squeue``, ``sacct`` of the grid's jobs and their submitit log tails (for failure messages)."""
    parts = [subprocess.run(["squeue"], capture_output=True, text=True).stdout]
    folder = runs / "submitit"
    ids = sorted({p.name.split("_")[0] for p in folder.glob("*_submission.sh")}) if folder.is_dir() else []
    if ids:
        sacct = ["sacct", "-X", "-o", "JobID,JobName%20,State%20,Elapsed,Reason", *(f"-j{i}" for i in ids)]
        parts.append(subprocess.run(sacct, capture_output=True, text=True).stdout)
    for log in sorted(folder.glob("*_log.err"))[-4:] if folder.is_dir() else []:
        parts.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-8:]))
    return "\n".join(parts)


def ended_states(job_ids: set[str], deadline: float) -> dict[str, str]:
    """Accounting state of each job of ``job_ids`` once the accounting has them all ended (it may
    lag a moment behind the controller)."""
    command = ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(sorted(job_ids))]
    while True:
        sacct = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        states = dict(line.split("|") for line in sacct.splitlines())
        live = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING"} & set(states.values())
        if not live or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def _run_grid(grid: Path, runs: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    command = [sys.executable, "-m", "runners", "run-grid", str(grid), "--runs-dir", str(runs)]
    start = time.perf_counter()
    proc = subprocess.run(
        [*command, "--no-progress", "--no-report"], capture_output=True, text=True, timeout=900
    )
    return proc, time.perf_counter() - start


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns[:8])).reset_index(drop=True)


def test_toy_grid_through_sbatch_equals_the_local_executor(tmp_path: Path) -> None:
    plan = build_plan(load_grid(GRID), root=GRID.parent)
    slurm_runs = tmp_path / "slurm"
    proc, slurm_s = _run_grid(GRID, slurm_runs)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{scheduler_report(slurm_runs)}"

    local_grid = tmp_path / "local.yaml"
    spec = yaml.safe_load(GRID.read_text(encoding="utf-8"))
    del spec["executor"]
    local_grid.write_text(yaml.safe_dump(spec), encoding="utf-8")
    local_runs = tmp_path / "local"
    proc_local, local_s = _run_grid(local_grid, local_runs)
    assert proc_local.returncode == 0, proc_local.stderr
    print(f"slurm {slurm_s:.1f} s, local {local_s:.1f} s, slurm_overhead_s {slurm_s - local_s:.1f}")

    # every cell is done, computed by a SLURM worker job that computed others too (one process for
    # several cells), and each such job completed once the driver closed it
    job_ids = {}
    for cid in plan.cells:
        status = read_json(slurm_runs / "cells" / cid / "status.json")
        assert status["state"] == "done", (cid, status.get("error"))
        job_ids[cid] = status["slurm_job_id"]
    workers = set(job_ids.values())
    assert None not in workers and len(workers) <= 4 < len(plan), job_ids
    left = subprocess.run(["squeue", "-h", "-j", ",".join(workers)], capture_output=True, text=True)
    assert not left.stdout.strip(), f"workers still queued after run-grid returned:\n{left.stdout}"
    states = ended_states(workers, time.monotonic() + 60)
    assert set(states.values()) == {"COMPLETED"}, states
    assert not list((slurm_runs / "cells").glob(".job-*"))  # every job record forgotten

    slurm_results = read_results(slurm_runs / "results.parquet")
    assert len(slurm_results) == 8
    pd.testing.assert_frame_equal(
        _sorted(slurm_results), _sorted(read_results(local_runs / "results.parquet"))
    )
    pd.testing.assert_frame_equal(
        _sorted(read_items(slurm_runs / "items.parquet")), _sorted(read_items(local_runs / "items.parquet"))
    )
