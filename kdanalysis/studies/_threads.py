"""Single-threaded BLAS for the studies' many small linear-algebra problems.

The studies fit dozens of small models (design matrices of a few hundred rows). For such
sizes a multi-threaded BLAS/LAPACK (OpenBLAS by default in numpy's wheels) spends far
more on waking and synchronising its threads than on arithmetic, and on a busy machine
its spinning threads make one pseudo-inverse hundreds of times slower than on one thread.
:func:`single_threaded_blas` limits BLAS to one thread for the duration of a study, with
``threadpoolctl`` when it is installed (otherwise it changes nothing). Results are the
same either way; only the time differs.

Setting and restoring the limit costs milliseconds (threadpoolctl inspects the loaded
libraries), so nested uses (``run_all`` around the table functions, which carry the limit
themselves) set it once: the outermost entry sets it, the last exit restores it. The
limit is process-wide, and so is the count of entries.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["single_threaded_blas"]

_lock = threading.Lock()
_depth = 0
_limiter: Any = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Context in which BLAS/LAPACK calls use one thread (no-op without ``threadpoolctl``)."""
    global _depth, _limiter
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with _lock:
        if _depth == 0:
            _limiter = threadpool_limits(limits=1, user_api="blas")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _limiter.restore_original_limits()
                _limiter = None
