"""Single-threaded BLAS for the studies' many small linear-algebra problems.

The studies fit dozens of small models (design matrices of a few hundred rows). For such
sizes a multi-threaded BLAS/LAPACK (OpenBLAS by default in numpy's wheels) spends far
more on waking and synchronising its threads than on arithmetic, and on a busy machine
its spinning threads make one pseudo-inverse hundreds of times slower than on one thread.
:func:`single_threaded_blas` limits BLAS to one thread for the duration of a study, with
``threadpoolctl`` when it is installed (otherwise it changes nothing). Results are the
same either way; only the time differs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["single_threaded_blas"]


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Context in which BLAS/LAPACK calls use one thread (no-op without ``threadpoolctl``)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
