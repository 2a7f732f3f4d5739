"""Benchmark: the demo grid end to end, idle and under a competing load, and re-running it.

Runs ``kdanalysis run-grid demo --runs-dir DIR`` (the bundled CPU demo, HTML report included)
into a fresh folder and times it (``demo_s``, goal <= 600 s on 2 cores), then runs the very
same command again, three times, and times it (``rerun_s``: the median, goal < 3 s; each run in
``rerun_runs_s``): a finished grid must do no model work and, its inputs being unchanged, must
not build its report again (``report_rebuilt_on_rerun`` says whether any rerun did). Every
run-grid here is the command a user types, with its defaults (progress display, the grid's
report setting). ``rerun_no_report_s`` times the rerun with ``--no-report`` too, as a side
figure: the difference is what the report step costs when nothing changed. The rerun is also
repeated in-process to check that no cell was computed and that torch was never imported.
Then the demo runs again into another fresh folder while the bench keeps one busy process per
usable core running (``demo_loaded_s``; ``loaded_over_idle`` = ``demo_loaded_s / demo_s``,
goal <= 1.5: the cells choose their torch threads from the cores actually free, so a loaded
machine must not slow them down many times over). To tell the thread choice from the share of
the CPU a fair scheduler leaves the demo, the demo also runs idle with one torch thread
(``demo_one_thread_s``, ``--threads 1``): with ``busy`` processes on ``cores`` cores a one-thread
demo gets ``cores / (busy + 1)`` of a core, so ``loaded_over_fair_share`` =
``demo_loaded_s / (demo_one_thread_s * (busy + 1) / cores)`` is 1 when the loaded run loses
nothing beyond that share (``fair_share_s`` is the denominator). All figures are measured in the same
invocation; the JSON on the last line also holds the demo's accuracies and teacher agreements
(percent) per model and method, so that a run that learned nothing shows, and the 1-minute
load average at the start and the end (other work on the machine distorts every figure).

Where a SLURM cluster answers ``sinfo`` (``scripts/slurm-local.sh start``), the small toy grid
of ``tests/runners/grid/slurm_grid.yaml`` (13 cells) also runs through SLURM and, without its
``executor:`` block, with the local executor: ``slurm_overhead_s`` is the difference of the two
wall times (goal < 30 s); ``null`` with ``slurm_skipped`` saying why where there is no cluster.

Usage::

    python bench/grid_resume.py [--runs-dir DIR] [--reuse] [--no-loaded] [--no-slurm]

``--reuse`` skips the full runs when DIR already holds a finished demo (rerun only): the
command runs once untimed first (``reuse_settle_s``), so that a folder last run by other code
(e.g. a report built by an older version) is brought up to date before the reruns are timed;
``--no-loaded`` skips the run under load; ``--no-slurm`` the SLURM comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Reruns timed; ``rerun_s`` is their median.
RERUNS = 3
UNCHANGED = "(unchanged)"


def _cli(runs_dir: Path, *flags: str) -> tuple[float, str]:
    """Wall time and output of ``kdanalysis run-grid demo --runs-dir RUNS_DIR [FLAGS]``."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "runners", "run-grid", "demo", "--runs-dir", str(runs_dir), *flags]
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"run-grid demo failed with exit code {proc.returncode}")
    return wall, proc.stdout


def _reruns(runs_dir: Path) -> dict[str, object]:
    """The finished demo's rerun, timed :data:`RERUNS` times as users run it and once without the report."""
    walls, rebuilt = [], False
    for _ in range(RERUNS):
        wall, out = _cli(runs_dir)
        print(out.strip(), file=sys.stderr)
        walls.append(wall)
        rebuilt |= UNCHANGED not in out
    no_report_s, out = _cli(runs_dir, "--no-report")
    print(out.strip(), file=sys.stderr)
    return {
        "rerun_s": round(statistics.median(walls), 3),
        "rerun_runs_s": [round(w, 3) for w in walls],
        "report_rebuilt_on_rerun": rebuilt,
        "rerun_no_report_s": round(no_report_s, 3),
    }


@contextmanager
def _usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _busy_cores() -> Iterator[int]:
    """Keep every usable core busy with one spinning process each; yields their number."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(_usable_cores())]
    try:
        yield len(spinners)
    finally:
        for proc in spinners:
            proc.kill()
        for proc in spinners:
            proc.wait()


def _slurm_overhead(root: Path) -> dict[str, object]:
    """Wall time of the small toy grid through SLURM and with the local executor (both via the CLI)."""
    try:
        answer = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
        reason = None if answer.returncode == 0 and answer.stdout.strip() else answer.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = str(exc)
    if reason is not None:
        return {"slurm_overhead_s": None, "slurm_skipped": f"no SLURM cluster answers: {reason}"}
    import yaml

    from runners.grid.plan import build_plan
    from runners.grid.spec import load_grid

    grid = Path(__file__).resolve().parents[1] / "tests" / "runners" / "grid" / "slurm_grid.yaml"
    cells = len(build_plan(load_grid(grid), root=grid.parent))
    root.mkdir(parents=True, exist_ok=True)
    spec = yaml.safe_load(grid.read_text(encoding="utf-8"))
    del spec["executor"]
    local = root / "slurm_grid_local.yaml"
    local.write_text(yaml.safe_dump(spec), encoding="utf-8")
    wall = {}
    for name, path in (("slurm", grid), ("local", local)):
        start = time.perf_counter()
        command = [
            sys.executable,
            "-m",
            "runners",
            "run-grid",
            str(path),
            "--runs-dir",
            str(root / name),
            "--no-progress",
            "--no-report",
        ]
        proc = subprocess.run(command, capture_output=True, text=True)
        wall[name] = time.perf_counter() - start
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"run-grid {path.name} ({name}) failed with exit code {proc.returncode}")
    return {
        "slurm_s": round(wall["slurm"], 2),
        "slurm_local_s": round(wall["local"], 2),
        "slurm_overhead_s": round(wall["slurm"] - wall["local"], 2),
        "slurm_cells": cells,
        "goal_slurm_overhead_s": 30,
    }


def _in_process_rerun(runs_dir: Path) -> dict[str, object]:
    from runners.grid.executors import SequentialExecutor
    from runners.grid.plan import build_plan
    from runners.grid.runner import bundled_grids, run_grid
    from runners.grid.spec import load_grid

    path = bundled_grids()["demo"]
    plan = build_plan(load_grid(path), root=path.parent)
    result = run_grid(plan, runs_dir, executor=SequentialExecutor(runs_dir))
    return {
        "cells": len(plan),
        "computed_on_rerun": len(result.computed),
        "torch_imported_on_rerun": "torch" in sys.modules,
    }


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
    parser.add_argument("--no-loaded", action="store_true", help="skip the demo under a competing load")
    parser.add_argument("--no-slurm", action="store_true", help="skip the toy grid through SLURM")
    args = parser.parse_args()
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="kd_demo_")) / "runs"
    demo_s = loaded_s = settle_s = None
    busy = 0
    load_start = os.getloadavg()[0]
    if args.reuse:
        settle_s, out = _cli(runs_dir)
    else:
        demo_s, out = _cli(runs_dir)
    print(out.strip(), file=sys.stderr)
    reruns = _reruns(runs_dir)
    rerun = _in_process_rerun(runs_dir)
    one_thread_s = fair_share_s = None
    if not (args.reuse or args.no_loaded):
        with _busy_cores() as busy:
            loaded_s, out = _cli(runs_dir.with_name(runs_dir.name + "-loaded"))
        print(out.strip(), file=sys.stderr)
        one_thread_s, out = _cli(runs_dir.with_name(runs_dir.name + "-one-thread"), "--threads", "1")
        print(out.strip(), file=sys.stderr)
        fair_share_s = one_thread_s * (busy + 1) / _usable_cores()
    slurm = {} if args.no_slurm else _slurm_overhead(runs_dir.with_name(runs_dir.name + "-slurm"))
    figures = {
        "demo_s": None if demo_s is None else round(demo_s, 2),
        "reuse_settle_s": None if settle_s is None else round(settle_s, 2),
        **reruns,
        **rerun,
        "goal_demo_s": 600,
        "goal_rerun_s": 3,
        "rerun_over_demo": None if demo_s is None else round(reruns["rerun_s"] / demo_s, 5),
        "demo_loaded_s": None if loaded_s is None else round(loaded_s, 2),
        "busy_processes": busy,
        "loaded_over_idle": None if None in (loaded_s, demo_s) else round(loaded_s / demo_s, 3),
        "goal_loaded_over_idle": 1.5,
        "demo_one_thread_s": None if one_thread_s is None else round(one_thread_s, 2),
        "fair_share_s": None if fair_share_s is None else round(fair_share_s, 2),
        "loaded_over_fair_share": None
        if None in (loaded_s, fair_share_s)
        else round(loaded_s / fair_share_s, 3),
        **slurm,
        "load_avg_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        **_scores(runs_dir),
        "runs_dir": str(runs_dir),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
