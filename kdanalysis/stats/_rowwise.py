"""Correlation statistics vectorised over leading axes, for bootstrap resamples.

:func:`scipy.stats.bootstrap` with ``vectorized=True`` calls a statistic on arrays of
shape ``(..., n)`` holding thousands of resamples at once. Ranking those rows with
:func:`scipy.stats.rankdata` dominates the cost, so the rank statistics here work on
*dense codes* instead: every value is replaced once by its dense rank in the full
sample (:func:`dense_codes`), which preserves order and ties; within a resample, the
average rank of a code then follows from code counts in O(n) per row. Results equal
``scipy.stats.spearmanr`` / ``kendalltau`` (tau-b) on the resampled values (tested).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["dense_codes", "average_ranks", "rowwise_pearson", "rowwise_spearman", "rowwise_kendall"]

#: Upper bound on elements of one pairwise-sign block in :func:`rowwise_kendall`.
_KENDALL_BLOCK_ELEMENTS = 4_000_000


def dense_codes(values: np.ndarray) -> np.ndarray:
    """Dense ranks ``0..m-1`` of a 1-d sample (ties share a code), as float for scipy's resampler."""
    return rankdata(values, method="dense").astype(float) - 1.0


def average_ranks(codes: np.ndarray) -> np.ndarray:
    """Average (1-based, tie-averaged) ranks of integer codes along the last axis.

    Codes are counted per row in one flat table (row r, code c at ``r * n_codes + c``);
    its running sum at (r, c) is ``r * n`` plus the number of row-r values with a code
    <= c, so the average rank of c is that minus ``r * n`` and ``(count - 1) / 2``.
    """
    ints = codes.astype(np.int64)
    n = ints.shape[-1]
    rows = ints.reshape(-1, n)
    n_codes = int(rows.max()) + 1 if rows.size else 0
    row_index = np.arange(rows.shape[0])[:, None]
    positions = rows + row_index * n_codes
    counts = np.bincount(positions.ravel(), minlength=rows.shape[0] * n_codes)
    # in-place steps: fresh temporaries of this size cost more than the arithmetic
    average = np.cumsum(counts, dtype=np.float64)
    average -= 0.5 * counts
    average += 0.5
    ranks = average[positions]
    ranks -= row_index * n
    return ranks.reshape(ints.shape)


def rowwise_pearson(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson r along ``axis``; NaN where a row is constant."""
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    denominator = np.sqrt((xc * xc).sum(axis=axis) * (yc * yc).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (xc * yc).sum(axis=axis) / denominator, np.nan)


def rowwise_spearman(x_codes: np.ndarray, y_codes: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman rho of dense-coded samples along ``axis`` (Pearson r of average ranks)."""
    x_codes, y_codes = np.moveaxis(x_codes, axis, -1), np.moveaxis(y_codes, axis, -1)
    return rowwise_pearson(average_ranks(x_codes), average_ranks(y_codes))


def rowwise_kendall(x_codes: np.ndarray, y_codes: np.ndarray, axis: int = -1) -> np.ndarray:
    """Kendall tau-b of dense-coded samples along ``axis``, from the signs of all pairs i < j.

    Rows are processed in blocks of bounded size, so memory stays flat for any number
    of resamples; the cost grows with n^2 per row (fine for n up to a few hundred).
    """
    x_codes, y_codes = np.moveaxis(x_codes, axis, -1), np.moveaxis(y_codes, axis, -1)
    shape, n = x_codes.shape[:-1], x_codes.shape[-1]
    width = np.int8 if n < 127 else np.int32
    xs: np.ndarray = x_codes.reshape(-1, n).astype(width)
    ys: np.ndarray = y_codes.reshape(-1, n).astype(width)
    first, second = np.triu_indices(n, 1)
    out = np.empty(xs.shape[0])
    block = max(1, _KENDALL_BLOCK_ELEMENTS // max(first.size, 1))
    for start in range(0, xs.shape[0], block):
        xb, yb = xs[start : start + block], ys[start : start + block]
        sx = np.sign(xb[:, first] - xb[:, second])
        sy = np.sign(yb[:, first] - yb[:, second])
        concordance = (sx * sy).sum(axis=1, dtype=np.int64)
        denominator = np.sqrt(np.count_nonzero(sx, axis=1) * np.count_nonzero(sy, axis=1).astype(float))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + block] = np.where(denominator > 0, concordance / denominator, np.nan)
    return out.reshape(shape)
