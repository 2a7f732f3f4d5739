"""Time `kdanalysis report` on the bundled study (HTML + PDF): figures drawn in parallel vs in-process.

Prints one JSON object on its last line: ``report_s`` (wall time of the default build:
figures drawn in worker processes while the statistics are computed), ``serial_s`` (the
same report with every figure drawn in this process, the baseline), their ratio,
``serial_cpu_s`` (CPU seconds of the in-process build: the whole job's work, a figure that
does not depend on what else runs on the machine; the parallel build's workers live under
a fork server and are not counted by ``getrusage``, so no CPU figure is given for it), the
CPU count and the load average at the end (wall times on a busy machine are inflated).

    python bench/report_speed.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")


def _cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _time_build(workers: int | None, repeat: int) -> tuple[float, float]:
    """Fastest wall time of ``repeat`` builds and the CPU seconds of that build."""
    from kdanalysis.report import build_report

    best = (float("inf"), float("nan"))
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start, cpu = time.perf_counter(), _cpu_s()
            paths = build_report(out_dir=Path(tmp) / "report", formats=("html", "pdf"), workers=workers)
            best = min(best, (time.perf_counter() - start, _cpu_s() - cpu))
            if paths.pdf is None:
                raise SystemExit("WeasyPrint is missing: pip install 'kdanalysis[pdf]'")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="builds per variant; the fastest counts")
    args = parser.parse_args()
    start = time.perf_counter()
    import kdanalysis.report  # noqa: F401  (import time is reported separately)

    import_s = time.perf_counter() - start
    report_s, _ = _time_build(None, args.repeat)
    serial_s, serial_cpu_s = _time_build(1, args.repeat)
    print(
        json.dumps(
            {
                "report_s": round(report_s, 2),
                "serial_s": round(serial_s, 2),
                "speedup": round(serial_s / report_s, 2),
                        "serial_cpu_s": round(serial_cpu_s, 2),
                "import_s": round(import_s, 2),
                "cpus": os.cpu_count(),
                "load_avg_1min": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
