"""The generic ``by=`` of the stats functions: one result row per group, keys first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from kdanalysis.errors import ConfigError

__all__ = ["rows_by_group"]

Row = dict[str, Any]


def rows_by_group(
    data: pd.DataFrame,
    by: list[str],
    compute: Callable[[pd.DataFrame], Row | list[Row]],
    columns: Sequence[str],
) -> pd.DataFrame:
    """Apply ``compute`` to ``data`` (or to each group of ``by``) and tabulate the rows.

    Parameters
    ----------
    data : DataFrame
        Input table; its columns were checked by the caller.
    by : list of str
        Grouping columns (empty: no grouping). Groups are sorted by key; missing keys
        form their own group, so no row is dropped silently.
    compute : callable
        Maps a (sub-)frame to one result row (a dict keyed by ``columns``) or a list of rows.
    columns : sequence of str
        The output columns of ``compute``, in order.

    Returns
    -------
    DataFrame
        Columns ``[*by, *columns]``; with ``by``, exactly the rows of per-group calls
        concatenated in key order, preceded by the key values.
    """
    clash = sorted(set(by) & set(columns))
    if clash:
        raise ConfigError(f"by= column(s) {clash} clash with output columns of the same name; rename them")
    rows: list[Row] = []
    if not by:
        rows.extend(_as_rows(compute(data)))
    else:
        for key, group in data.groupby(by, sort=True, dropna=False, observed=True):
            keys = dict(zip(by, key, strict=True))
            rows.extend({**keys, **row} for row in _as_rows(compute(group)))
    return pd.DataFrame(rows, columns=[*by, *columns])


def _as_rows(result: Row | list[Row]) -> list[Row]:
    return result if isinstance(result, list) else [result]
