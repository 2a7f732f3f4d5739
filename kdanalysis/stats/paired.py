"""Per-item paired comparisons of two systems scored on the same items.

Input is a per-item table in the shape of :data:`kdanalysis.results.ITEM_COLUMNS`: one
row per (system, item) with a boolean (or 0/1) ``correct``. The two systems' rows are
joined on the item key; an item scored for only one system is refused with a
:class:`~kdanalysis.errors.SchemaError` naming the counts, because silently dropping it
would bias the comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.stats._checks import MIN_N, as_column_list, check_columns, check_option, degenerate
from kdanalysis.stats._grouping import rows_by_group
from kdanalysis.stats.resampling import bootstrap_result, check_bootstrap_options

__all__ = [
    "MCNEMAR_COLUMNS",
    "MCNEMAR_EXACT_BELOW",
    "PAIRED_BOOTSTRAP_COLUMNS",
    "PAIRED_P_METHODS",
    "mcnemar",
    "paired_bootstrap",
]

MCNEMAR_COLUMNS = (
    "a",
    "b",
    "n",
    "n_a_only",
    "n_b_only",
    "acc_a",
    "acc_b",
    "diff",
    "statistic",
    "p_val",
    "note",
)
PAIRED_BOOTSTRAP_COLUMNS = (
    "a",
    "b",
    "n",
    "acc_a",
    "acc_b",
    "diff",
    "ci_low",
    "ci_high",
    "p_val",
    "note",
    "p_method",
)
#: ``p_method=`` of :func:`paired_bootstrap`.
PAIRED_P_METHODS = ("auto", "bootstrap", "exact_mcnemar")
#: With fewer discordant items than this, ``p_method="auto"`` takes the exact McNemar p-value.
MCNEMAR_EXACT_BELOW = 25


def mcnemar(
    data: pd.DataFrame,
    a: str,
    b: str,
    *,
    system: str = "run_id",
    correct: str = "correct",
    item: str | Sequence[str] = "item_id",
    by: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Exact McNemar test of two systems' accuracy on the same items.

    The discordant items decide the test: under H0 an item one system gets right and
    the other wrong is equally likely either way, so ``min(n_a_only, n_b_only)`` is
    Binomial(n_a_only + n_b_only, 1/2) (``statsmodels.stats.contingency_tables.mcnemar``
    with ``exact=True``; two-sided).

    Parameters
    ----------
    data : DataFrame
        Per-item table, one row per (system, item).
    a, b : str
        The two systems, values of ``system``.
    system : str
        Column naming the system (default ``run_id`` of the per-item contract).
    correct : str
        Boolean or 0/1 column.
    item : str or list of str
        Item key the rows are joined on (e.g. ``["task", "item_id"]``).
    by : str or list of str, optional
        Grouping columns (e.g. ``"task"``); one row per group.

    Returns
    -------
    DataFrame
        Columns ``[*by], a, b, n, n_a_only, n_b_only, acc_a, acc_b, diff, statistic, p_val,
        note``: ``n`` paired items, ``n_a_only`` items only ``a`` got right (b01),
        ``n_b_only`` items only ``b`` got right (b10), accuracies as proportions in [0, 1],
        ``diff = acc_a - acc_b``, ``statistic = min(n_a_only, n_b_only)``. Fewer than 3
        items give NaNs, a ``note`` and a :class:`DegenerateDataWarning`.
    """
    keys, groups = _check_paired_args(data, a, b, system, correct, item, by)

    def compute(frame: pd.DataFrame) -> dict[str, Any]:
        ca, cb = _joined_correct(frame, a, b, system, correct, keys)
        row = _accuracy_row(MCNEMAR_COLUMNS, a, b, ca, cb)
        row["n_a_only"], row["n_b_only"] = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
        if row["note"]:
            return row
        row["statistic"], row["p_val"] = _exact_mcnemar(ca, cb)
        return row

    return rows_by_group(data, groups, compute, MCNEMAR_COLUMNS)


def paired_bootstrap(
    data: pd.DataFrame,
    a: str,
    b: str,
    *,
    system: str = "run_id",
    correct: str = "correct",
    item: str | Sequence[str] = "item_id",
    by: str | Sequence[str] | None = None,
    n_boot: int = 10_000,
    ci: float = 0.95,
    seed: int = 0,
    p_method: str = "auto",
) -> pd.DataFrame:
    """Paired bootstrap of the accuracy difference ``acc_a - acc_b`` over items.

    Items are resampled with replacement (both systems' outcomes on an item stay
    together), ``n_boot`` times at once with a seeded generator
    (``scipy.stats.bootstrap``, percentile interval).

    The bootstrap p-value is two-sided: twice the smaller share of resampled
    differences on either side of zero, each share counted as (k + 1) / (n_boot + 1)
    (the observed difference counts as one resample, so a finite bootstrap never gives
    p = 0; its smallest value is 2 / (n_boot + 1)), capped at 1. It is below 1 - ``ci``
    exactly when the percentile interval excludes zero (up to that +1 correction).

    With few discordant items (those only one system gets right) the bootstrap
    distribution of the difference is lumpy and its p-value far too small (five items
    only ``a`` gets right: bootstrap p about 0.004, exact 0.0625). ``p_method="auto"``
    therefore takes the exact McNemar p-value (:func:`mcnemar`; exact binomial test of
    the discordant items, two-sided) when ``n_a_only + n_b_only <`` :data:`MCNEMAR_EXACT_BELOW`
    (25, the usual rule for McNemar's exact test), and the bootstrap p-value otherwise.
    The interval stays the percentile bootstrap interval in both cases; with few
    discordant items it can exclude zero while the exact p is above 1 - ``ci``.

    Parameters
    ----------
    data, a, b, system, correct, item, by
        As in :func:`mcnemar`.
    n_boot : int
        Number of resamples.
    ci : float
        Confidence level in (0, 1).
    seed : int
        Seed (>= 0; ``None`` raises); equal seeds give equal intervals and p-values.
    p_method : {"auto", "bootstrap", "exact_mcnemar"}
        Where the p-value comes from (see above); ``"bootstrap"`` and ``"exact_mcnemar"``
        force one source.

    Returns
    -------
    DataFrame
        Columns ``[*by], a, b, n, acc_a, acc_b, diff, ci_low, ci_high, p_val, note, p_method``
        (accuracies as proportions, ``diff = acc_a - acc_b``; ``p_method`` is
        ``"bootstrap"`` or ``"exact_mcnemar"``, the source of ``p_val``). Fewer than 3
        items give NaNs, a ``note`` and a :class:`DegenerateDataWarning`.
    """
    check_bootstrap_options(n_boot, ci, "percentile", "two-sided", seed)
    check_option("p_method", p_method, PAIRED_P_METHODS)
    keys, groups = _check_paired_args(data, a, b, system, correct, item, by)

    def compute(frame: pd.DataFrame) -> dict[str, Any]:
        ca, cb = _joined_correct(frame, a, b, system, correct, keys)
        row = _accuracy_row(PAIRED_BOOTSTRAP_COLUMNS, a, b, ca, cb)
        if row["note"]:
            return row
        differences = ca.astype(float) - cb.astype(float)
        result = bootstrap_result(
            (differences,),
            np.mean,
            n_boot=n_boot,
            ci=ci,
            seed=seed,
            paired=False,
            method="percentile",
            alternative="two-sided",
        )
        low, high = result.confidence_interval
        row.update(ci_low=float(low), ci_high=float(high))
        discordant = int(np.sum(ca != cb))
        if p_method == "exact_mcnemar" or (p_method == "auto" and discordant < MCNEMAR_EXACT_BELOW):
            row.update(p_val=_exact_mcnemar(ca, cb)[1], p_method="exact_mcnemar")
            return row
        distribution = result.bootstrap_distribution
        share_below = (np.sum(distribution <= 0) + 1) / (n_boot + 1)
        share_above = (np.sum(distribution >= 0) + 1) / (n_boot + 1)
        row.update(p_val=float(min(1.0, 2 * min(share_below, share_above))), p_method="bootstrap")
        return row

    return rows_by_group(data, groups, compute, PAIRED_BOOTSTRAP_COLUMNS)


def _exact_mcnemar(ca: np.ndarray, cb: np.ndarray) -> tuple[float, float]:
    """Statistic ``min(n_a_only, n_b_only)`` and two-sided p of statsmodels' exact McNemar test."""
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    table = [[int(np.sum(ca & cb)), int(np.sum(ca & ~cb))], [int(np.sum(~ca & cb)), int(np.sum(~ca & ~cb))]]
    result = sm_mcnemar(table, exact=True)
    return float(result.statistic), float(result.pvalue)


def _check_paired_args(
    data: pd.DataFrame,
    a: str,
    b: str,
    system: str,
    correct: str,
    item: str | Sequence[str],
    by: str | Sequence[str] | None,
) -> tuple[list[str], list[str]]:
    keys, groups = as_column_list(item), as_column_list(by)
    check_columns(data, [system, correct, *keys, *groups])
    if a == b:
        raise ConfigError(f"a and b must be two different systems, got {a!r} twice")
    present = set(data[system].dropna().unique())
    absent = [name for name in (a, b) if name not in present]
    if absent:
        shown = ", ".join(map(str, sorted(present, key=str)[:10]))
        raise SchemaError(f"system(s) {absent} not found in column {system!r}; present: {shown}")
    values = data.loc[data[system].isin([a, b]), correct]
    if values.isna().any() or not values.isin([0, 1, True, False]).all():
        raise SchemaError(
            f"column {correct!r} must hold only True/False (or 1/0) for systems {a!r} and {b!r}"
        )
    return keys, groups


def _joined_correct(
    frame: pd.DataFrame, a: str, b: str, system: str, correct: str, keys: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean outcomes of ``a`` and ``b`` aligned on the item key; refuses duplicates and unmatched items."""
    rows = frame.loc[frame[system].isin([a, b]), [system, correct, *keys]]
    duplicated = rows.duplicated([system, *keys])
    if duplicated.any():
        first = rows.loc[duplicated, [system, *keys]].iloc[0].to_dict()
        raise SchemaError(f"{int(duplicated.sum())} duplicate (system, item) row(s), first: {first}")
    side_a = rows.loc[rows[system] == a, [*keys, correct]].rename(columns={correct: "_a"})
    side_b = rows.loc[rows[system] == b, [*keys, correct]].rename(columns={correct: "_b"})
    joined = side_a.merge(side_b, on=keys, how="outer", indicator=True)
    only_a = int((joined["_merge"] == "left_only").sum())
    only_b = int((joined["_merge"] == "right_only").sum())
    if only_a or only_b:
        raise SchemaError(
            f"items must be scored for both systems: {only_a} item(s) only for {a!r}, {only_b} only for "
            f"{b!r} ({int((joined['_merge'] == 'both').sum())} matched) on key {keys}"
        )
    return joined["_a"].to_numpy(dtype=bool), joined["_b"].to_numpy(dtype=bool)


def _accuracy_row(columns: Sequence[str], a: str, b: str, ca: np.ndarray, cb: np.ndarray) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(columns, np.nan)
    row.update(a=a, b=b, n=len(ca), note="")
    if len(ca) < MIN_N:
        row["note"] = degenerate(
            f"paired comparison {a!r} vs {b!r}: {len(ca)} item(s), need at least {MIN_N}"
        )
        return row
    row.update(acc_a=float(ca.mean()), acc_b=float(cb.mean()), diff=float(ca.mean() - cb.mean()))
    return row
