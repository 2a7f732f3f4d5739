"""Vectorised, seeded bootstrap confidence intervals (a thin layer over ``scipy.stats.bootstrap``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.stats._checks import (
    ALTERNATIVES,
    MIN_N,
    check_ci,
    check_option,
    check_positive_int,
    degenerate,
)

__all__ = [
    "BOOTSTRAP_METHODS",
    "BootstrapCI",
    "bootstrap_ci",
    "bootstrap_result",
    "check_bootstrap_options",
    "check_seed",
    "percentile_interval",
]

#: Interval methods of :func:`scipy.stats.bootstrap`.
BOOTSTRAP_METHODS = ("percentile", "basic", "BCa")


class BootstrapCI(tuple):
    """``(low, high)`` returned by :func:`bootstrap_ci`, with the settings that reproduce it.

    It unpacks and compares like the plain pair; the attributes ``low``, ``high``,
    ``seed``, ``n_boot``, ``ci``, ``method`` and ``alternative`` record the call.
    """

    low: Any
    high: Any
    seed: int
    n_boot: int
    ci: float
    method: str
    alternative: str

    def __new__(
        cls, low: Any, high: Any, *, seed: int, n_boot: int, ci: float, method: str, alternative: str
    ) -> BootstrapCI:
        pair = super().__new__(cls, (low, high))
        pair.__dict__.update(
            low=low, high=high, seed=seed, n_boot=n_boot, ci=ci, method=method, alternative=alternative
        )
        return pair

    def __getnewargs_ex__(self) -> tuple[tuple[Any, Any], dict[str, Any]]:  # pickling and copying
        settings = {key: self.__dict__[key] for key in ("seed", "n_boot", "ci", "method", "alternative")}
        return (self.low, self.high), settings

    def __repr__(self) -> str:
        return (
            f"BootstrapCI(low={self.low!r}, high={self.high!r}, seed={self.seed}, n_boot={self.n_boot}, "
            f"ci={self.ci}, method={self.method!r}, alternative={self.alternative!r})"
        )


def check_seed(seed: object) -> None:
    """Raise :class:`ConfigError` unless ``seed`` is an integer >= 0.

    ``None`` is refused: an unseeded resampling gives results nobody can reproduce.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(
            f"seed={seed!r} is not allowed; pass an integer >= 0 so that the resampling can be reproduced"
        )


def check_bootstrap_options(n_boot: int, ci: float, method: str, alternative: str, seed: object = 0) -> None:
    """Raise :class:`~kdanalysis.errors.ConfigError` for an invalid bootstrap option (seed included)."""
    check_positive_int("n_boot", n_boot)
    check_ci(ci)
    check_option("method", method, BOOTSTRAP_METHODS)
    check_option("alternative", alternative, ALTERNATIVES)
    check_seed(seed)


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


def percentile_interval(distribution: np.ndarray, ci: float, alternative: str) -> tuple[float, float]:
    """Percentile interval of the defined (non-NaN) values of a 1-d bootstrap distribution.

    The quantiles are :func:`scipy.stats.quantile` (``nan_policy="omit"``) at the levels
    :func:`scipy.stats.bootstrap` uses, so on a distribution without NaN this is scipy's
    percentile interval; a one-sided ``alternative`` gives an infinite bound.
    """
    alpha = (1.0 - ci) / 2.0 if alternative == "two-sided" else 1.0 - ci
    low, high = sps.quantile(distribution, np.array([alpha, 1.0 - alpha]), nan_policy="omit")
    if alternative == "less":
        low = -np.inf
    elif alternative == "greater":
        high = np.inf
    return float(low), float(high)


def bootstrap_ci(
    data: np.ndarray | Sequence[Any],
    statistic: Callable[..., Any] = np.mean,
    *,
    n_boot: int = 10_000,
    ci: float = 0.95,
    seed: int = 0,
    axis: int = 0,
    paired: bool = False,
    method: str = "percentile",
    alternative: str = "two-sided",
    nan_policy: str = "raise",
) -> BootstrapCI:
    """Seeded bootstrap confidence interval of ``statistic``, all resamples at once.

    Parameters
    ----------
    data : array-like, or a list or tuple of array-likes
        One sample (an array, a Series, or a list of numbers), or several samples passed
        to ``statistic`` together (a list or tuple whose items are array-likes). Batched
        data (one interval per row) must be one array with ``axis`` holding the
        observations, not a list of lists.
    statistic : callable
        Vectorised statistic: ``statistic(*samples, axis=-1)`` reduces the last axis,
        like ``np.mean`` or ``np.median``.
    n_boot : int
        Number of resamples.
    ci : float
        Confidence level in (0, 1).
    seed : int
        Seed (>= 0) of the :class:`numpy.random.Generator`; equal seeds give equal
        intervals. ``None`` raises :class:`~kdanalysis.errors.ConfigError`: an unseeded
        interval cannot be reproduced. The seed is recorded in the result.
    axis : int
        Axis of every sample holding the observations; other axes are batched (one interval each).
    paired : bool
        Resample the observations of several samples together (the same indices); the
        samples must then have equal lengths along ``axis``.
    method : {"percentile", "basic", "BCa"}
        Interval method of :func:`scipy.stats.bootstrap`.
    alternative : {"two-sided", "greater", "less"}
        ``"greater"`` gives ``(low, inf)``, ``"less"`` gives ``(-inf, high)``.
    nan_policy : {"raise", "propagate"}
        ``"raise"``: a sample holding NaN raises :class:`~kdanalysis.errors.SchemaError`
        naming it; ``"propagate"``: NaN is passed to ``statistic`` (for a NaN-aware
        statistic such as ``np.nanmean``).

    Returns
    -------
    BootstrapCI
        ``(low, high)``: floats for 1-d samples, arrays over the batch axes otherwise,
        with the attributes ``seed``, ``n_boot``, ``ci``, ``method`` and ``alternative``.
        A sample with fewer than 3 observations gives NaN bounds and a
        :class:`DegenerateDataWarning`; the bounds are NaN too where the statistic is
        undefined on some resample (e.g. a constant resample).

    Raises
    ------
    SchemaError
        A sample that is not numeric, that holds NaN (``nan_policy="raise"``), that has
        no ``axis``, or paired samples of unequal lengths.
    """
    check_bootstrap_options(n_boot, ci, method, alternative, seed)
    check_option("nan_policy", nan_policy, ("raise", "propagate"))
    samples = _samples(data)
    lengths = []
    for index, sample in enumerate(samples):
        name = "data" if len(samples) == 1 else f"sample {index}"
        if not -sample.ndim <= axis < sample.ndim:
            raise SchemaError(f"bootstrap_ci: {name} has {sample.ndim} dimension(s), no axis={axis}")
        missing = int(np.isnan(sample).sum())
        if missing and nan_policy == "raise":
            raise SchemaError(
                f"bootstrap_ci: {name} holds {missing} missing value(s) (NaN); drop them, or pass "
                "nan_policy='propagate' with a NaN-aware statistic"
            )
        lengths.append(sample.shape[axis])
    if paired and len(set(lengths)) > 1:
        raise SchemaError(
            f"bootstrap_ci: paired samples must have equal lengths along axis={axis}, got {lengths}"
        )
    settings = {"seed": int(seed), "n_boot": n_boot, "ci": ci, "method": method, "alternative": alternative}
    short = [(index, length) for index, length in enumerate(lengths) if length < MIN_N]
    if short:
        index, length = short[0]
        name = "" if len(samples) == 1 else f"sample {index} has "
        degenerate(f"bootstrap_ci: {name}{length} observation(s), need at least {MIN_N}")
        missing_bounds = _scalar_or_array(np.full(np.delete(samples[0].shape, axis), np.nan))
        return BootstrapCI(missing_bounds, missing_bounds, **settings)
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
    return BootstrapCI(_scalar_or_array(low), _scalar_or_array(high), **settings)


def _samples(data: Any) -> tuple[np.ndarray, ...]:
    """``data`` as a tuple of float arrays: a list/tuple of array-likes is several samples."""
    several = isinstance(data, (list, tuple)) and any(
        isinstance(item, (np.ndarray, pd.Series, list, tuple)) for item in data
    )
    items = list(data) if several else [data]
    samples = []
    for index, item in enumerate(items):
        try:
            samples.append(np.asarray(item, dtype=float))
        except (TypeError, ValueError) as error:
            name = "data" if len(items) == 1 else f"sample {index}"
            raise SchemaError(f"bootstrap_ci: {name} must be numeric ({error})") from None
    return tuple(samples)


def _scalar_or_array(value: Any) -> Any:
    array = np.asarray(value, dtype=float)
    return float(array) if array.ndim == 0 else array
