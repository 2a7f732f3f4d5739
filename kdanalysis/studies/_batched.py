"""Many small tests at once: scipy's vectorised (``axis=``) tests over stacked cells.

A study runs the same test on hundreds of small cells (one per domain x task x method
group x hypothesis). Calling scipy once per cell costs far more in overhead than in
arithmetic; here cells of equal size are stacked into 2-D arrays and each scipy test runs
once per stack along ``axis=1``. The statistics are scipy's own:
:func:`scipy.stats.ttest_1samp`, :func:`scipy.stats.f_oneway`, and Spearman's rho as
:func:`scipy.stats.pearsonr` of :func:`scipy.stats.rankdata` ranks (average ties), whose
two-sided p-value equals :func:`scipy.stats.spearmanr`'s t-distribution p-value. Cells with
fewer than three observations give NaN. The tests compare every cell with
:mod:`kdanalysis.stats` (``corr``, ``ttest``, ``anova`` with ``by=``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

__all__ = ["MIN_CELL_N", "stacked_cells", "spearman_cells", "ttest_1samp_cells", "anova_cells"]

#: Fewest observations a cell is tested on.
MIN_CELL_N = 3
_RESULT = ["statistic", "p_val", "n"]


def stacked_cells(
    frame: pd.DataFrame, keys: Sequence[str], columns: Sequence[str]
) -> Iterator[tuple[pd.DataFrame, dict[str, np.ndarray]]]:
    """Split ``frame`` into cells by ``keys`` and stack the cells of equal size.

    Yields
    ------
    (cell_keys, arrays)
        ``cell_keys``: one row per cell of the stack (the key values); ``arrays``: for each
        of ``columns`` a float array of shape (cells, cell size), rows in ``frame``'s order
        within a cell.
    """
    keys = list(keys)
    ordered = frame.sort_values(keys, kind="stable")
    sizes = ordered.groupby(keys, sort=True, observed=True).size()
    counts = sizes.to_numpy()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    values = {c: ordered[c].to_numpy(dtype=float) for c in columns}
    for size in np.unique(counts):
        which = np.flatnonzero(counts == size)
        index = starts[which, None] + np.arange(size)
        yield sizes.index[which].to_frame(index=False), {c: v[index] for c, v in values.items()}


def _tabulate(parts: list[pd.DataFrame], keys: Sequence[str]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame(columns=[*keys, *_RESULT])
    return pd.concat(parts, ignore_index=True).sort_values(list(keys), kind="stable").reset_index(drop=True)


def _with_result(cells: pd.DataFrame, statistic: np.ndarray, p_val: np.ndarray, n: int) -> pd.DataFrame:
    return cells.assign(
        statistic=np.asarray(statistic, dtype=float), p_val=np.asarray(p_val, dtype=float), n=n
    )


def spearman_cells(frame: pd.DataFrame, x: str, y: str, keys: Sequence[str]) -> pd.DataFrame:
    """Spearman's rho of ``x`` and ``y`` (two-sided p) in every cell of ``keys``.

    Rows with a missing ``x`` or ``y`` are dropped first.

    Returns
    -------
    DataFrame
        Columns ``[*keys], statistic, p_val, n`` (NaN statistic and p-value for n < 3 or a
        constant column), one row per cell, sorted by the keys.
    """
    complete = frame.dropna(subset=[x, y])
    parts = []
    for cells, arrays in stacked_cells(complete, keys, [x, y]):
        n = arrays[x].shape[1]
        if n < MIN_CELL_N:
            nan = np.full(len(cells), np.nan)
            parts.append(_with_result(cells, nan, nan, n))
            continue
        rx = sps.rankdata(arrays[x], axis=1)
        ry = sps.rankdata(arrays[y], axis=1)
        constant = (np.ptp(rx, axis=1) == 0) | (np.ptp(ry, axis=1) == 0)
        stat = np.full(len(cells), np.nan)
        p_val = np.full(len(cells), np.nan)
        if (~constant).any():
            result = sps.pearsonr(rx[~constant], ry[~constant], axis=1)
            stat[~constant], p_val[~constant] = result.statistic, result.pvalue
        parts.append(_with_result(cells, stat, p_val, n))
    return _tabulate(parts, keys)


def ttest_1samp_cells(
    frame: pd.DataFrame, x: str, keys: Sequence[str], *, mu: float = 0.0, alternative: str = "two-sided"
) -> pd.DataFrame:
    """One-sample t-test of ``mean(x) = mu`` in every cell of ``keys``.

    Returns
    -------
    DataFrame
        Columns ``[*keys], statistic, p_val, n`` (t statistic; NaN for n < 3).
    """
    complete = frame.dropna(subset=[x])
    parts = []
    for cells, arrays in stacked_cells(complete, keys, [x]):
        n = arrays[x].shape[1]
        if n < MIN_CELL_N:
            nan = np.full(len(cells), np.nan)
            parts.append(_with_result(cells, nan, nan, n))
            continue
        result = sps.ttest_1samp(arrays[x], mu, axis=1, alternative=alternative)
        parts.append(_with_result(cells, result.statistic, result.pvalue, n))
    return _tabulate(parts, keys)


def anova_cells(frame: pd.DataFrame, dv: str, between: str, keys: Sequence[str]) -> pd.DataFrame:
    """One-way ANOVA of ``dv`` across the levels of ``between`` in every cell of ``keys``.

    Cells are stacked when they have the same levels with the same sizes.

    Returns
    -------
    DataFrame
        Columns ``[*keys], statistic, p_val, n`` (F statistic; NaN for fewer than two
        levels or n < 3).
    """
    keys = list(keys)
    complete = frame.dropna(subset=[dv, between])
    if complete.empty:
        return pd.DataFrame(columns=[*keys, "statistic", "p_val", "n"])
    design = complete.groupby([*keys, between], sort=True, observed=True).size().rename("size").reset_index()
    signature = (
        design.groupby(keys, sort=True, observed=True)[[between, "size"]]
        .apply(lambda g: tuple(zip(g[between], g["size"], strict=True)))
        .rename("signature")
        .reset_index()
    )
    parts = []
    for sig, cells_of_sig in signature.groupby("signature", sort=False):
        rows = complete.merge(cells_of_sig[keys], on=keys)
        rows = rows.sort_values([*keys, between], kind="stable")
        cells, arrays = next(iter(stacked_cells(rows, keys, [dv])))
        n = arrays[dv].shape[1]
        if len(sig) < 2 or n < MIN_CELL_N:
            nan = np.full(len(cells), np.nan)
            parts.append(_with_result(cells, nan, nan, n))
            continue
        bounds = np.cumsum([0, *(size for _, size in sig)])
        samples = [arrays[dv][:, lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        result = sps.f_oneway(*samples, axis=1)
        parts.append(_with_result(cells, result.statistic, result.pvalue, n))
    return _tabulate(parts, keys)
