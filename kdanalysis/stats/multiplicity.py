"""Multiple-testing correction of p-values (``statsmodels.stats.multitest.multipletests``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from kdanalysis.errors import ConfigError
from kdanalysis.stats._checks import as_column_list, check_columns, check_option

__all__ = ["ADJUST_METHODS", "adjust_pvalues"]

#: Corrections offered (statsmodels' names): family-wise error (holm, bonferroni), false discovery rate.
ADJUST_METHODS = ("holm", "bonferroni", "fdr_bh")


def adjust_pvalues(
    p: pd.DataFrame | Sequence[float] | np.ndarray,
    method: str = "holm",
    *,
    p_col: str = "p_val",
    by: str | Sequence[str] | None = None,
) -> pd.DataFrame | np.ndarray:
    """Adjust p-values for multiple comparisons.

    Missing p-values (NaN, e.g. from degenerate rows) stay NaN and do not count in the
    family size.

    Parameters
    ----------
    p : array-like or DataFrame
        Raw p-values, or a table holding them in ``p_col``.
    method : {"holm", "bonferroni", "fdr_bh"}
        Holm step-down and Bonferroni control the family-wise error rate;
        ``fdr_bh`` (Benjamini-Hochberg) the false discovery rate.
    p_col : str
        Column of raw p-values (DataFrame input).
    by : str or list of str, optional
        DataFrame input: adjust within each group of these columns (one family per group)
        instead of across all rows.

    Returns
    -------
    ndarray or DataFrame
        For array input, the adjusted p-values in input order. For a DataFrame, a copy
        with a ``p_adj`` column appended (replaced if present), rows in input order.
    """
    check_option("method", method, ADJUST_METHODS)
    if not isinstance(p, pd.DataFrame):
        values = np.asarray(p, dtype=float)
        if values.ndim != 1:
            raise ConfigError(f"adjust_pvalues expects a 1-d array of p-values, got shape {values.shape}")
        return _adjust(values, method, "p")
    groups = as_column_list(by)
    check_columns(p, groups, numeric=[p_col])
    out = p.copy()
    raw = p[p_col].to_numpy(dtype=float, na_value=np.nan)
    adjusted = np.full(len(p), np.nan)
    if groups:
        for positions in p.groupby(groups, sort=False, dropna=False, observed=True).indices.values():
            adjusted[positions] = _adjust(raw[positions], method, p_col)
    else:
        adjusted = _adjust(raw, method, p_col)
    out["p_adj"] = adjusted
    return out


def _adjust(p: np.ndarray, method: str, name: str) -> np.ndarray:
    from statsmodels.stats.multitest import multipletests

    adjusted = np.full(p.shape, np.nan)
    present = ~np.isnan(p)
    outside = present & ((p < 0) | (p > 1))
    if outside.any():
        raise ConfigError(
            f"{name} holds {int(outside.sum())} value(s) outside [0, 1], e.g. {p[outside][0]!r}"
        )
    if present.any():
        values = p[present]
        adjusted[present] = _holm(values) if method == "holm" else multipletests(values, method=method)[1]
    return adjusted


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment: running maximum of ``(m - i) * p_(i)``, capped at 1.

    Identical to ``multipletests(p, method="holm")[1]`` (tested), written out because
    statsmodels runs a full ``gc.collect()`` on every Holm call, which costs tenths of
    a second per family in a process holding many objects (a study adjusts dozens).
    """
    order = np.argsort(p, kind="stable")
    steps = np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1))
    out = np.empty_like(p)
    out[order] = np.minimum(steps, 1.0)
    return out
