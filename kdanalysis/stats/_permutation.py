"""Permutation p-values of a correlation coefficient: exact enumeration or seeded Monte Carlo.

Under H0 (x independent of y) every pairing of the observed x values with the observed
y values is equally likely, so the p-value is the share of pairings whose coefficient
is at least as extreme as the observed one. :func:`scipy.stats.permutation_test`
(``permutation_type="pairings"``) enumerates all n! pairings or draws them at random.

The enumerated null distribution depends only on the two multisets of values (pairing
sorted x with sorted y gives the same n! coefficients, and the coefficients used here
are symmetric in x and y), so it is kept in a small cache keyed by them: without ties
the rank statistics share one null distribution per n, computed once per process.
Reading the p-value off a cached null distribution is the one step written here; it
follows :func:`scipy.stats.permutation_test` exactly (its comparison tolerance, its
two-sided rule ``2 * min(P(T <= t), P(T >= t))`` capped at 1), and the tests check it
against ``permutation_test`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy import stats as sps

__all__ = ["EXACT_MAX_N", "permutation_pvalue"]

#: Largest n whose n! pairings are enumerated (9! = 362,880); above it, Monte Carlo.
EXACT_MAX_N = 9

#: ``statistic(a, b)``: coefficient of each row of ``a`` (shape ``(..., n)``) with ``b`` (shape ``(n,)``).
Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Pairings scored per vectorised call, bounding memory.
_BATCH = 2**16


def permutation_pvalue(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Statistic,
    *,
    alternative: str,
    exact: bool,
    n_perm: int,
    seed: int,
) -> tuple[float, str]:
    """P-value of ``statistic(a, b)`` under random pairing, and how it was obtained.

    ``exact`` with ``len(a) <=`` :data:`EXACT_MAX_N` enumerates every pairing
    (returns ``"exact"``); otherwise ``n_perm`` pairings are drawn with
    ``numpy.random.default_rng(seed)`` and p = (k + 1) / (n_perm + 1)
    (returns ``"permutation"``), unless n! <= ``n_perm``, where scipy enumerates
    instead (``"exact"``).
    """
    n = len(a)
    if exact and n <= EXACT_MAX_N:
        # the coefficients are symmetric in x and y, so (a, b) and (b, a) share one null distribution
        first, second = sorted((tuple(np.sort(a)), tuple(np.sort(b))))
        null = _null_distribution(statistic, first, second)
        return _p_from_null(null, float(statistic(a, b)), alternative), "exact"
    result = sps.permutation_test(
        (a,),
        lambda values, axis: statistic(np.moveaxis(values, axis, -1), b),
        permutation_type="pairings",
        vectorized=True,
        n_resamples=n_perm,
        batch=_BATCH,
        alternative=alternative,
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue), "exact" if math.factorial(n) <= n_perm else "permutation"


@lru_cache(maxsize=16)
def _null_distribution(statistic: Statistic, a: tuple[float, ...], b: tuple[float, ...]) -> np.ndarray:
    """All n! values of ``statistic`` over the pairings of ``a`` with ``b`` (scipy's enumeration)."""
    fixed = np.asarray(b)
    result = sps.permutation_test(
        (np.asarray(a),),
        lambda values, axis: statistic(np.moveaxis(values, axis, -1), fixed),
        permutation_type="pairings",
        vectorized=True,
        n_resamples=np.inf,
        batch=_BATCH,
    )
    null: np.ndarray = result.null_distribution
    null.setflags(write=False)
    return null


def _p_from_null(null: np.ndarray, observed: float, alternative: str) -> float:
    """``scipy.stats.permutation_test``'s p-value of ``observed`` against an enumerated null."""
    gamma = abs(observed) * np.finfo(float).eps * 100
    less = np.count_nonzero(null <= observed + gamma) / null.size
    greater = np.count_nonzero(null >= observed - gamma) / null.size
    p = {"less": less, "greater": greater, "two-sided": 2 * min(less, greater)}[alternative]
    return float(min(max(p, 0.0), 1.0))
