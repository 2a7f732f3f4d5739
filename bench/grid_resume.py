"""Benchmark: the demo grid end to end, and re-running it when it is finished.

Runs ``kdanalysis run-grid demo`` (the bundled CPU demo, HTML report included) into a fresh
folder and times it (``demo_s``, goal <= 600 s on 2 cores), then runs the same command again
without the report and times the rerun (``rerun_s``, goal < 3 s): a finished grid must do no
model work. The rerun is also repeated in-process to check that no cell was computed and that
torch was never imported. Both figures are measured in the same invocation; the JSON on the
last line also holds the demo's accuracies and teacher agreements (percent) per model and
method, so that a run that learned nothing shows.

Usage::

    python bench/grid_resume.py [--runs-dir DIR] [--reuse]

``--reuse`` skips the full run when DIR already holds a finished demo (rerun only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cli(runs_dir: Path, *, report: bool) -> tuple[float, str]:
    start = time.perf_counter()
    command = [sys.executable, "-m", "runners", "run-grid", "demo", "--runs-dir", str(runs_dir),
               "--no-progress", "--report" if report else "--no-report"]
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"run-grid demo failed with exit code {proc.returncode}")
    return wall, proc.stdout


def _in_process_rerun(runs_dir: Path) -> dict[str, object]:
    from runners.grid.executors import SequentialExecutor
    from runners.grid.plan import build_plan
    from runners.grid.runner import bundled_grids, run_grid
    from runners.grid.spec import load_grid

    path = bundled_grids()["demo"]
    plan = build_plan(load_grid(path), root=path.parent)
    result = run_grid(plan, runs_dir, executor=SequentialExecutor(runs_dir))
    return {"cells": len(plan), "computed_on_rerun": len(result.computed),
            "torch_imported_on_rerun": "torch" in sys.modules}


def _scores(runs_dir: Path) -> dict[str, dict[str, float]]:
    """Accuracy and teacher agreement (percent) per ``student method[ τ]`` of the collected demo."""
    from kdanalysis.results import read_results

    results = read_results(runs_dir / "results.parquet")
    scores: dict[str, dict[str, float]] = {"accuracy": {}, "agreement": {}}
    for row in results[results["metric"].isin(list(scores))].itertuples():
        tau = "" if row.temperature != row.temperature else f" τ={row.temperature:g}"  # NaN: no τ
        scores[row.metric][f"{row.student} {row.method}{tau}"] = round(float(row.value), 2)
    return {metric: dict(sorted(values.items())) for metric, values in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="only time the rerun of an existing demo folder")
    args = parser.parse_args()
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="kd_demo_")) / "runs"
    demo_s = None
    load_start = os.getloadavg()[0]
    if not args.reuse:
        demo_s, out = _cli(runs_dir, report=True)
        print(out.strip(), file=sys.stderr)
    rerun_s, out = _cli(runs_dir, report=False)
    print(out.strip(), file=sys.stderr)
    figures = {"demo_s": None if demo_s is None else round(demo_s, 2), "rerun_s": round(rerun_s, 3),
               **_in_process_rerun(runs_dir), "goal_demo_s": 600, "goal_rerun_s": 3,
               "rerun_over_demo": None if demo_s is None else round(rerun_s / demo_s, 5),
               "load_avg_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)], **_scores(runs_dir),
               "runs_dir": str(runs_dir)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
