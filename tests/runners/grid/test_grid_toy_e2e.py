"""The real runners end to end on a tiny toy grid (models from runners.toy, synthetic task)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from kdanalysis.io import read_json
from kdanalysis.results import read_items, read_results
from runners.grid.plan import build_plan
from runners.grid.runner import GridRunResult, run_grid
from runners.grid.spec import load_grid

SMALL_GRID = (Path(__file__).parent / "small_grid.yaml").read_text(encoding="utf-8")

pytest.importorskip("torch")
pytest.importorskip("transformers")


def _run_grid(grid: Path, runs: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "runners",
        "run-grid",
        str(grid),
        "--runs-dir",
        str(runs),
        "--no-progress",
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _run_in_process(grid: Path, runs: Path) -> GridRunResult:
    return run_grid(build_plan(load_grid(grid), root=grid.parent), runs)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("toy_e2e")
    grid = root / "grid.yaml"
    grid.write_text(SMALL_GRID)
    result = _run_in_process(grid, root / "runs")
    assert result.counts == {"done": 16}, result.failed
    return grid, root / "runs"


def test_toy_grid_runs_every_stage(finished: tuple[Path, Path]) -> None:
    _, runs = finished
    results = read_results(runs / "results.parquet")
    accuracy = results[results["metric"] == "accuracy"]
    # student base, sft and 2 KD runs, and the teacher's SFT
    assert sorted(accuracy["method"]) == ["base", "fkl", "rkl", "sft", "sft"]
    fidelity = results[results["metric"].isin(["agreement", "bleu"])]
    assert set(fidelity["method"]) == {"fkl", "rkl", "sft"} and len(fidelity) == 6
    assert (fidelity["teacher"] == "teacher").all()
    kd = accuracy[accuracy["method"].isin(["fkl", "rkl"])]
    assert (kd["teacher"] == "teacher").all() and (kd["temperature"] == 1.0).all() and (kd["seed"] == 6).all()
    items = read_items(runs / "items.parquet")
    assert set(items["run_id"]) == set(accuracy["run_id"]) and len(items) == 5 * 6
    # the fkl cell (τ = 1) planned from the shared teacher-logit cache, rkl from the live teacher
    plan = read_json(runs / "plan.json")["cells"]
    cache = next(c["id"] for c in plan if c["stage"] == "teacher_cache")
    kd_cells = [c for c in plan if c["stage"] == "kd"]
    assert all((cache in c["deps"]) == (c["config"]["method"] == "fkl") for c in kd_cells)
    assert (runs / "cells" / cache / "cache" / "index.json").is_file()


def test_rerun_of_a_finished_grid_does_no_work(finished: tuple[Path, Path]) -> None:
    grid, runs = finished
    before = read_results(runs / "results.parquet")
    mtimes = {p: p.stat().st_mtime for p in (runs / "cells").rglob("*") if p.is_file()}
    result = _run_in_process(grid, runs)
    assert result.computed == [] and result.counts == {"done": 16}
    assert {p: p.stat().st_mtime for p in (runs / "cells").rglob("*") if p.is_file()} == mtimes
    pd.testing.assert_frame_equal(read_results(runs / "results.parquet"), before)


@pytest.mark.slow
def test_kill_minus_9_real_runners_resume_equals_uninterrupted(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    grid, reference = finished
    runs = tmp_path / "runs"
    command = [
        sys.executable,
        "-m",
        "runners",
        "run-grid",
        str(grid),
        "--runs-dir",
        str(runs),
        "--no-progress",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        cells = runs / "cells"
        done = [p for p in cells.iterdir() if not p.name.startswith(".")] if cells.is_dir() else []
        if len(done) >= 5 and any(p.name.startswith(".tmp-") for p in cells.iterdir()):
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = _run_grid(grid, runs)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    pd.testing.assert_frame_equal(
        read_results(runs / "results.parquet"), read_results(reference / "results.parquet")
    )


def test_grid_report_shows_the_per_item_paired_tests(finished: tuple[Path, Path]) -> None:
    """run-grid's own report reads the runs' per-item table, so KD-vs-SFT paired tests appear."""
    from rich.console import Console

    from runners.grid.command import _build_report  # the step run-grid ends with; no public entry of its own

    _, runs = finished
    _build_report(runs, Console(quiet=True))
    html = (runs / "report" / "report.html").read_text(encoding="utf-8")
    assert "Per-item paired tests: each KD student against its SFT twin" in html
