"""Time importing an lm-evaluation-harness study and reporting it, as a user runs it.

A toy KD study (``runners.toy.lm_eval_study``: 4 runs, 3 tasks) is evaluated by
lm-evaluation-harness offline on CPU (not timed), then the two commands are timed as
separate processes, exactly as typed:

    kdanalysis collect --from lm-eval LM_DIR --out OUT
    kdanalysis report OUT/results.parquet --out OUT/report --format html

Prints one JSON object on its last line: ``import_report_s`` (wall seconds of both
commands; goal < 30 s), ``import_s``, ``report_s``, ``cpu_s`` (user + system seconds of the
two commands and the processes they waited for), ``lm_eval_s`` (the untimed evaluation),
the study's size, the CPU count and the load average at the end (wall times on a busy
machine are inflated, CPU times much less).

    python bench/import_report.py [--items N] [--lm-eval-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 30.0


def _timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kdanalysis", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40, help="items per task of the toy study")
    parser.add_argument(
        "--lm-eval-dir", type=Path, help="an lm-eval output folder with study.yaml (skips lm-eval)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kd-import-bench-") as tmp:
        lm_eval_s = 0.0
        lm_dir = args.lm_eval_dir
        if lm_dir is None:
            os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from runners.toy.lm_eval_study import write_toy_lm_eval_study

            start = time.perf_counter()
            lm_dir = write_toy_lm_eval_study(Path(tmp) / "study", n_items=args.items)
            lm_eval_s = time.perf_counter() - start
        out = Path(tmp) / "imported"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        import_s = _timed(["collect", "--from", "lm-eval", str(lm_dir), "--out", str(out)])
        report_s = _timed(
            ["report", str(out / "results.parquet"), "--out", str(out / "report"), "--format", "html"]
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        from kdanalysis.results import read_items, read_results

        results, items = read_results(out / "results.parquet"), read_items(out / "items.parquet")
        paired = (out / "report" / "tables" / "paired_items.csv").is_file()
    total = import_s + report_s
    print(
        json.dumps(
            {
                "import_report_s": round(total, 2),
                "goal_s": GOAL_S,
                "within_goal": total < GOAL_S,
                "import_s": round(import_s, 2),
                "report_s": round(report_s, 2),
                "cpu_s": round((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 2),
                "lm_eval_s": round(lm_eval_s, 2),
                "runs": int(results["run_id"].nunique()),
                "tasks": int(results["task"].nunique()),
                "result_rows": len(results),
                "items": len(items),
                "paired_section": paired,
                "cpus": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
