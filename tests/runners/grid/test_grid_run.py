"""Running a grid with fake stages: resume after kill -9, failures, retry, lock, executors."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pytest

from kdanalysis.errors import RunFailedError, RunFolderError
from kdanalysis.io import read_json
from kdanalysis.results import read_results, results_frame, write_results
from runners.grid.executors import GpuPoolExecutor, SequentialExecutor, SubmititExecutor
from runners.grid.plan import Cell, Plan, build_plan
from runners.grid.runner import plan_states, run_grid
from runners.grid.spec import SlurmSpec, load_grid, parse_grid
from runners.grid.state import CellState, GridLock, cells_dir

SMALL_GRID = (Path(__file__).parent / "small_grid.yaml").read_text(encoding="utf-8")


def fake_value(cell: Cell) -> float:
    """Deterministic 'measurement' of a cell."""
    return int(hashlib.sha256(cell.id.encode()).hexdigest()[:6], 16) % 1000 / 10


def fake_stage(cell: Cell, work: Path, deps: Mapping[str, Path], delay: float = 0.0) -> dict[str, str]:
    """Write what the real stages write, minus the models: results rows for eval/fidelity cells.

    Exercises the grid machinery (planning, state, resume, executors, collection) without
    models; ``test_grid_toy_e2e.py`` runs the real runners.
    """
    time.sleep(delay)
    for dep in deps.values():  # inputs must be published final folders
        assert (dep / "status.json").is_file()
    if cell.kind in ("eval", "fidelity"):
        labels = dict(cell.config["labels"])
        tau = labels.pop("temperature")
        rows = [
            {
                **labels,
                "temperature": float("nan") if tau is None else tau,
                "task": "arithmetic",
                "metric": "accuracy" if cell.kind == "eval" else "agreement",
                "value": fake_value(cell),
                "run_id": cell.id,
            }
        ]
        write_results(results_frame(rows), work / "results.parquet")
        return {"results": "results.parquet"}
    (work / "out.txt").write_text(cell.id)
    return {"out": "out.txt"}


@pytest.fixture()
def grid_file(tmp_path: Path) -> Path:
    """The small toy grid as a file."""
    path = tmp_path / "grid.yaml"
    path.write_text(SMALL_GRID)
    return path


def _plan() -> Plan:
    return build_plan(parse_grid(SMALL_GRID))


def _run(plan: Plan, runs: Path, stage=fake_stage, **kwargs):  # noqa: ANN001, ANN202
    return run_grid(plan, runs, executor=SequentialExecutor(runs, stage), **kwargs)


def _failing_kd(cell, work, deps):  # noqa: ANN001, ANN202
    if cell.stage == "kd" and cell.config["method"] == "rkl":
        raise RuntimeError("simulated out of memory")
    return fake_stage(cell, work, deps)


def test_finished_cells_are_never_recomputed(tmp_path: Path) -> None:
    plan = _plan()
    first = _run(plan, tmp_path)
    assert first.counts == {"done": len(plan)} and len(first.computed) == len(plan)
    results = read_results(first.results_path)
    # one row per eval cell (teacher, student base, student sft, 2 kd) and fidelity cell (2 kd, 1 sft)
    assert len(results) == 8
    assert set(results["method"]) == {"base", "sft", "fkl", "rkl"}
    assert results["metric"].value_counts().to_dict() == {"accuracy": 5, "agreement": 3}
    again = _run(plan, tmp_path)
    assert again.computed == [] and again.counts == first.counts
    status = read_json(cells_dir(tmp_path) / plan.cells[next(iter(plan.cells))].id / "status.json")
    assert status["state"] == "done" and status["duration_s"] >= 0


def test_cell_status_of_an_earlier_version_is_still_done_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    plan = _plan()
    _run(plan, tmp_path)
    status_file = cells_dir(tmp_path) / next(iter(plan.cells)) / "status.json"
    old = read_json(status_file)
    old["started"] = old.pop("started_utc")  # the grid's dialect before kdanalysis.runfolder
    del old["finished_utc"], old["error"]
    status_file.write_text(json.dumps(old), encoding="utf-8")
    assert plan_states(plan, tmp_path)[next(iter(plan.cells))].state is CellState.DONE
    status_file.write_text('{"state": "done", "outputs": ', encoding="utf-8")  # damaged by hand
    with pytest.raises(RunFolderError, match=f"^{re.escape(str(status_file))}: not valid JSON"):
        plan_states(plan, tmp_path)


def test_failed_cell_is_recorded_and_independent_cells_go_on(tmp_path: Path) -> None:
    plan = _plan()
    result = _run(plan, tmp_path, stage=_failing_kd)
    assert result.counts == {"done": len(plan) - 3, "failed": 1, "blocked": 2}
    ((failed_id, error),) = result.failed.items()
    assert error == "RuntimeError: simulated out of memory"
    folder = cells_dir(tmp_path) / failed_id
    status = read_json(folder / "status.json")
    assert status["state"] == "failed" and "Traceback" in status["traceback"]
    assert "simulated out of memory" in (folder / "log.txt").read_text()
    # the rkl eval and fidelity are blocked; everything else (fkl branch, baselines) was collected
    results = read_results(result.results_path)
    assert "rkl" not in set(results["method"]) and "fkl" in set(results["method"])
    # a plain rerun keeps the failure; --retry-failed recomputes it and its dependents
    assert _run(plan, tmp_path).counts == result.counts
    retried = _run(plan, tmp_path, retry_failed=True)
    assert retried.counts == {"done": len(plan)} and len(retried.computed) == 3
    assert read_json(folder / "status.json")["state"] == "done"


def test_second_run_on_the_same_folder_is_refused(tmp_path: Path, grid_file: Path) -> None:
    with GridLock(tmp_path):
        with pytest.raises(RunFailedError, match=f"in use by another run-grid \\(pid {os.getpid()}\\)"):
            _run(_plan(), tmp_path)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "runners",
                "run-grid",
                str(grid_file),
                "--runs-dir",
                str(tmp_path),
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode != 0 and "in use by another run-grid" in proc.stderr
    assert not (tmp_path / "cells").exists()


_KILL_SCRIPT = """
import functools, runpy
from pathlib import Path
fake_stage = runpy.run_path({tests!r})["fake_stage"]  # this test file, loaded by path
from runners.grid.executors import SequentialExecutor
from runners.grid.plan import build_plan
from runners.grid.runner import run_grid
from runners.grid.spec import load_grid
runs = Path({runs!r})
plan = build_plan(load_grid({grid!r}))
run_grid(plan, runs, executor=SequentialExecutor(runs, functools.partial(fake_stage, delay=0.4)))
"""


def test_kill_minus_9_then_resume_equals_uninterrupted_run(tmp_path: Path, grid_file: Path) -> None:
    reference = _run(build_plan(load_grid(grid_file)), tmp_path / "reference")
    runs = tmp_path / "killed"
    script = _KILL_SCRIPT.format(tests=__file__, runs=str(runs), grid=str(grid_file))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)])
    deadline = time.monotonic() + 60
    finished: list[Path] = []
    while time.monotonic() < deadline:  # kill mid-cell, after the first cells are done
        root = runs / "cells"
        finished = [p for p in root.iterdir() if not p.name.startswith(".")] if root.is_dir() else []
        busy = root.is_dir() and any(p.name.startswith(".tmp-") for p in root.iterdir())
        if len(finished) >= 4 and busy:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 4 <= len(finished) < len(reference.computed)
    assert any(p.name.startswith(".tmp-") for p in (runs / "cells").iterdir())  # a cell was interrupted
    plan = build_plan(load_grid(grid_file))
    resumed = _run(plan, runs)  # the same call resumes: the lock died with the process
    assert resumed.counts == {"done": len(plan)}
    assert 0 < len(resumed.computed) < len(plan)
    assert not any(p.name.startswith(".") for p in (runs / "cells").iterdir())
    got, want = read_results(resumed.results_path), read_results(reference.results_path)
    assert not got.duplicated(subset=["run_id", "metric"]).any()
    pd.testing.assert_frame_equal(got, want)


def test_plan_states_blocks_dependents_of_failures(tmp_path: Path) -> None:
    plan = _plan()
    _run(plan, tmp_path, stage=_failing_kd)
    states = plan_states(plan, tmp_path)
    assert sum(s.state is CellState.BLOCKED for s in states.values()) == 2
    assert all(
        s.state is CellState.PENDING or s.state is CellState.DONE
        for s in plan_states(plan, tmp_path, retry_failed=True).values()
    )


def test_submitit_debug_executor_runs_a_plan(tmp_path: Path) -> None:
    plan = _plan()
    executor = SubmititExecutor(tmp_path, SlurmSpec(cluster="debug"), stage_fn=functools.partial(fake_stage))
    result = run_grid(plan, tmp_path, executor=executor, poll_s=0.1)
    assert result.counts == {"done": len(plan)}
    pd.testing.assert_frame_equal(
        read_results(result.results_path), read_results(_run(plan, tmp_path / "seq").results_path)
    )


def test_gpu_pool_runs_one_worker_process_per_gpu(tmp_path: Path) -> None:
    two_domains = SMALL_GRID.replace(
        "domains:\n", 'domains:\n  other: {train: "toy:arithmetic", tasks: [arithmetic], toy_items: 12}\n'
    )
    full = build_plan(parse_grid(two_domains))
    data_cells = {c.id: c for c in full if c.config.get("what") == "toy_data"}
    assert len(data_cells) == 2
    plan = Plan(grid=full.grid, root=full.root, cells=data_cells)
    result = run_grid(plan, tmp_path, executor=GpuPoolExecutor(tmp_path, gpus=[0, 1]), poll_s=0.1)
    assert result.counts == {"done": 2} and result.results_path is None
    statuses = [read_json(cells_dir(tmp_path) / cid / "status.json") for cid in data_cells]
    assert {s["cuda_visible_devices"] for s in statuses} == {"0", "1"}
    assert all(s["pid"] != os.getpid() for s in statuses)
    for cid in data_cells:
        assert (cells_dir(tmp_path) / cid / "data" / "train.json").is_file()


def test_editing_the_grid_collects_only_the_current_cells(tmp_path: Path) -> None:
    _run(_plan(), tmp_path)
    edited = build_plan(parse_grid(SMALL_GRID.replace("lr: 0.003", "lr: 0.001")))
    result = _run(edited, tmp_path)  # same result keys from new cells: no duplicates with the old ones
    assert 0 < len(result.computed) < len(edited)  # untouched cells (toy data/models, base eval) reused
    results = read_results(result.results_path)
    assert len(results) == 8 and set(results["run_id"]) <= set(edited.cells)


def test_interrupted_call_in_the_same_process_resumes(tmp_path: Path) -> None:
    plan = _plan()

    def interrupt_kd(cell, work, deps):  # noqa: ANN001, ANN202
        if cell.stage == "kd":
            raise KeyboardInterrupt
        return fake_stage(cell, work, deps)

    with pytest.raises(KeyboardInterrupt):
        _run(plan, tmp_path, stage=interrupt_kd)
    assert any(p.name.startswith(".tmp-") for p in cells_dir(tmp_path).iterdir())
    assert _run(plan, tmp_path).counts == {"done": len(plan)}


def test_the_saved_grid_file_is_written_again_only_when_its_text_changed(tmp_path: Path) -> None:
    plan = _plan()
    _run(plan, tmp_path, grid_text=SMALL_GRID)
    saved = tmp_path / "grid.yaml"
    os.utime(saved, (1.0, 1.0))  # a marker mtime: a rewrite would replace it
    _run(plan, tmp_path, grid_text=SMALL_GRID)
    assert saved.stat().st_mtime == 1.0
    _run(plan, tmp_path, grid_text=SMALL_GRID + "# edited\n")
    assert saved.read_text(encoding="utf-8").endswith("# edited\n")
