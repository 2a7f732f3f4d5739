"""Vectorised, seeded bootstrap confidence intervals (a thin layer over ``scipy.stats.bootstrap``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from kdanalysis.stats._checks import (
    ALTERNATIVES,
    MIN_N,
    check_ci,
    check_option,
    check_positive_int,
    degenerate,
)

__all__ = ["BOOTSTRAP_METHODS", "bootstrap_ci", "bootstrap_result", "check_bootstrap_options"]

#: Interval methods of :func:`scipy.stats.bootstrap`.
BOOTSTRAP_METHODS = ("percentile", "basic", "BCa")


def check_bootstrap_options(n_boot: int, ci: float, method: str, alternative: str) -> None:
    """Raise :class:`~kdanalysis.errors.ConfigError` for an invalid bootstrap option."""
    check_positive_int("n_boot", n_boot)
    check_ci(ci)
    check_option("method", method, BOOTSTRAP_METHODS)
    check_option("alternative", alternative, ALTERNATIVES)


def bootstrap_result(
    samples: Sequence[np.ndarray],
    statistic: Callable[..., Any],
    *,
    n_boot: int,
    ci: float,
    seed: int,
    paired: bool,
    method: str,
    alternative: str,
    axis: int = 0,
) -> Any:
    """Run :func:`scipy.stats.bootstrap` vectorised with a seeded generator; return scipy's result.

    The result's ``confidence_interval`` and ``bootstrap_distribution`` are used by
    callers that need the resampled statistics (e.g. a bootstrap p-value). Callers
    validate the options first with :func:`check_bootstrap_options`.
    """
    return sps.bootstrap(
        tuple(samples),
        statistic,
        n_resamples=n_boot,
        vectorized=True,
        paired=paired,
        axis=axis,
        confidence_level=ci,
        alternative=alternative,
        method=method,
        rng=np.random.default_rng(seed),
    )


def bootstrap_ci(
    data: np.ndarray | Sequence[np.ndarray],
    statistic: Callable[..., Any] = np.mean,
    *,
    n_boot: int = 10_000,
    ci: float = 0.95,
    seed: int = 0,
    axis: int = 0,
    paired: bool = False,
    method: str = "percentile",
    alternative: str = "two-sided",
) -> tuple[Any, Any]:
    """Seeded bootstrap confidence interval of ``statistic``, all resamples at once.

    Parameters
    ----------
    data : array-like or tuple of array-likes
        One sample, or several samples passed to ``statistic`` together (a tuple).
    statistic : callable
        Vectorised statistic: ``statistic(*samples, axis=-1)`` reduces the last axis,
        like ``np.mean`` or ``np.median``.
    n_boot : int
        Number of resamples.
    ci : float
        Confidence level in (0, 1).
    seed : int
        Seed of the :class:`numpy.random.Generator`; equal seeds give equal intervals.
    axis : int
        Axis of ``data`` holding the observations; other axes are batched (one interval each).
    paired : bool
        Resample the observations of several samples together (the same indices).
    method : {"percentile", "basic", "BCa"}
        Interval method of :func:`scipy.stats.bootstrap`.
    alternative : {"two-sided", "greater", "less"}
        ``"greater"`` gives ``(low, inf)``, ``"less"`` gives ``(-inf, high)``.

    Returns
    -------
    (low, high)
        Floats for 1-d data, arrays over the batch axes otherwise. NaN where the
        statistic is undefined on some resample (e.g. a constant resample); missing
        values are not dropped (use a NaN-aware statistic such as ``np.nanmean``).
    """
    check_bootstrap_options(n_boot, ci, method, alternative)
    samples = (
        tuple(np.asarray(s, dtype=float) for s in data)
        if isinstance(data, tuple)
        else (np.asarray(data, dtype=float),)
    )
    n_obs = samples[0].shape[axis]
    if n_obs < MIN_N:
        degenerate(f"bootstrap_ci: {n_obs} observation(s), need at least {MIN_N}")
        missing = np.full(np.delete(samples[0].shape, axis), np.nan)
        return _scalar_or_array(missing), _scalar_or_array(missing)
    result = bootstrap_result(
        samples,
        statistic,
        n_boot=n_boot,
        ci=ci,
        seed=seed,
        paired=paired,
        method=method,
        alternative=alternative,
        axis=axis,
    )
    low, high = result.confidence_interval
    return _scalar_or_array(low), _scalar_or_array(high)


def _scalar_or_array(value: Any) -> Any:
    array = np.asarray(value, dtype=float)
    return float(array) if array.ndim == 0 else array
