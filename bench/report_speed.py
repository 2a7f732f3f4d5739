"""Time `kdanalysis report` on the bundled study (HTML + PDF): figures drawn in parallel vs in-process.

Prints one JSON object on its last line:

- ``report_s`` / ``report_cpu_s``: wall and CPU seconds of the default build (figures drawn
  in worker processes while the statistics are computed). The CPU figure adds this
  process's CPU time to that of every process below it (the figure workers live under a
  fork server, which ``getrusage`` does not see), sampled with ``psutil`` every 0.1 s.
- ``serial_s`` / ``serial_cpu_s``: the same report with every figure drawn in this
  process (the baseline), and ``speedup`` = serial_s / report_s.
- ``import_s``, the CPU count and the load average at the end: wall times on a busy
  machine are inflated, CPU times much less.

    python bench/report_speed.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import matplotlib
import psutil

matplotlib.use("Agg")


class _TreeCPU:
    """CPU seconds of this process and all its descendants (live ones sampled in a thread)."""

    def __init__(self, interval: float = 0.1) -> None:
        self._me = psutil.Process()
        self._interval = interval
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> None:
        for child in self._me.children(recursive=True):
            try:
                times = child.cpu_times()
            except psutil.Error:
                continue
            self._last[child.pid] = times.user + times.system

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> _TreeCPU:
        self._sample()
        self._before = dict(self._last)
        times = self._me.cpu_times()
        self._own = times.user + times.system
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        times = self._me.cpu_times()
        children = sum(cpu - self._before.get(pid, 0.0) for pid, cpu in self._last.items())
        self.seconds = times.user + times.system - self._own + children


def _time_build(workers: int | None, repeat: int) -> tuple[float, float]:
    """Fastest wall time of ``repeat`` builds and the CPU seconds of that build."""
    from kdanalysis.report import build_report

    best = (float("inf"), float("nan"))
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            with _TreeCPU() as cpu:
                paths = build_report(out_dir=Path(tmp) / "report", formats=("html", "pdf"), workers=workers)
            best = min(best, (time.perf_counter() - start, cpu.seconds))
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
    report_s, report_cpu_s = _time_build(None, args.repeat)
    serial_s, serial_cpu_s = _time_build(1, args.repeat)
    print(
        json.dumps(
            {
                "report_s": round(report_s, 2),
                "report_cpu_s": round(report_cpu_s, 2),
                "serial_s": round(serial_s, 2),
                "serial_cpu_s": round(serial_cpu_s, 2),
                "speedup": round(serial_s / report_s, 2),
                "import_s": round(import_s, 2),
                "cpus": os.cpu_count(),
                "load_avg_1min": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
