"""The process environment: the snapshot written into every run folder, and CPU threads.

Threads
-------
torch uses one intra-op thread per core by default. On a machine whose cores are busy with
other work that oversubscribes them, and small CPU models then run many times slower than
with one thread. :func:`cpu_threads` chooses the count, first match wins:

1. an explicit request (``--threads`` of ``run-grid``, ``python -m runners.distill`` and
   ``python -m runners.evaluate``; ``executor.threads`` of a grid);
2. the environment variable :data:`THREADS_ENV` (``KDANALYSIS_THREADS``), through which
   ``run-grid`` passes its choice to worker processes;
3. ``OMP_NUM_THREADS``, the usual way to fix the count (``torchrun`` sets it to 1);
4. the cores free now (:func:`choose_threads`): the cores this process may run on
   (``os.sched_getaffinity``) minus those that other processes keep busy, rounded to the
   nearest integer, at least 1. The busy cores are measured over :data:`SAMPLE_S` seconds
   from ``/proc/stat`` (the process's own CPU time subtracted), not from the load average,
   which lags by a minute and counts this process's own previous work (a grid's previous
   cell) as competition. Without ``/proc/stat`` the 1-minute load average stands in.

:func:`torch_threads` applies the count for the length of a ``with`` block (a grid cell,
one run) and restores torch's previous setting afterwards.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kdanalysis.errors import ConfigError
from kdanalysis.runfolder import now_utc

__all__ = [
    "SAMPLE_S",
    "THREADS_ENV",
    "choose_threads",
    "busy_cores",
    "cpu_threads",
    "environment_snapshot",
    "torch_threads",
]

#: Environment variable holding a fixed thread count (set by ``run-grid --threads``).
THREADS_ENV = "KDANALYSIS_THREADS"
#: Seconds over which :func:`busy_cores` measures the other processes' CPU use.
SAMPLE_S = 0.2
_PROC_STAT = Path("/proc/stat")
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user, nice, system, irq, softirq, steal (guest is inside user)

_PACKAGES = (
    "kdanalysis",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "tokenizers",
    "vllm",
    "numpy",
    "pandas",
    "sacrebleu",
)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_snapshot() -> dict[str, Any]:
    """Return versions, platform and device facts as a JSON-ready dict.

    Torch is imported only if it is already installed; CUDA facts are included when a
    GPU is visible.
    """
    snap: dict[str, Any] = {
        "time_utc": now_utc(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "packages": {p: v for p in _PACKAGES if (v := _version(p)) is not None},
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if "torch" in snap["packages"]:
        import torch

        snap["torch_threads"] = torch.get_num_threads()
        snap["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            snap["cuda_version"] = torch.version.cuda
            snap["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return snap


def choose_threads(cores: int, busy: float) -> int:
    """Intra-op threads for ``cores`` usable cores of which ``busy`` are kept busy by others.

    Parameters
    ----------
    cores : int
        Cores this process may run on (>= 1).
    busy : float
        Cores' worth of CPU time other processes use (>= 0; may exceed ``cores``).

    Returns
    -------
    int
        ``cores - busy`` rounded half up, clipped to ``[1, cores]``.

    Raises
    ------
    ConfigError
        If ``cores < 1`` or ``busy`` is negative or not finite.
    """
    if cores < 1:
        raise ConfigError(f"cores must be >= 1, got {cores}")
    if not (math.isfinite(busy) and busy >= 0):
        raise ConfigError(f"busy must be a finite number >= 0, got {busy}")
    return max(1, min(cores, math.floor(cores - busy + 0.5)))


def _usable_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _busy_jiffies(stat_text: str, cpus: Sequence[int]) -> int:
    """Busy clock ticks of ``cpus`` summed from the per-CPU lines of ``/proc/stat``."""
    wanted = {f"cpu{i}" for i in cpus}
    total = 0
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if name in wanted:
            values = rest.split()
            total += sum(int(values[i]) for i in _BUSY_FIELDS if i < len(values))
    return total


def busy_cores(cpus: Sequence[int], sample_s: float = SAMPLE_S) -> float:
    """Cores' worth of CPU time that *other* processes use on ``cpus`` right now.

    Measured over ``sample_s`` seconds from ``/proc/stat``, minus this process's own CPU
    time (``os.times``); the 1-minute load average where ``/proc/stat`` is not readable.

    Returns
    -------
    float
        >= 0.
    """
    try:
        before = _PROC_STAT.read_text()
    except OSError:
        return max(0.0, os.getloadavg()[0])
    own_before, start = os.times(), time.perf_counter()
    time.sleep(sample_s)
    after, own_after, wall = _PROC_STAT.read_text(), os.times(), time.perf_counter() - start
    ticks = os.sysconf("SC_CLK_TCK")
    everyone = (_busy_jiffies(after, cpus) - _busy_jiffies(before, cpus)) / ticks
    own = (own_after.user + own_after.system) - (own_before.user + own_before.system)
    return max(0.0, (everyone - own) / wall)


def _positive_int(value: str, where: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{where} must be a positive integer, got {value!r}")
    return n


def cpu_threads(requested: int | None = None) -> int:
    """The intra-op thread count to use now (the rule is in the module docstring).

    Parameters
    ----------
    requested : int, optional
        An explicit count (>= 1); None chooses as the module docstring says.

    Raises
    ------
    ConfigError
        If ``requested``, ``KDANALYSIS_THREADS`` or ``OMP_NUM_THREADS`` is not a positive integer.
    """
    if requested is not None:
        return _positive_int(str(requested), "threads")
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            return _positive_int(value, name)
    cpus = _usable_cpus()
    return choose_threads(len(cpus), busy_cores(cpus))


@contextmanager
def torch_threads(requested: int | None = None) -> Iterator[int]:
    """Run a block with :func:`cpu_threads` torch intra-op threads; yields the count.

    torch's previous count is restored when the block ends.
    """
    import torch

    n = cpu_threads(requested)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
