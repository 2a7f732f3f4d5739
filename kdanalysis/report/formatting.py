"""Number formatting for the report: the only place where statistics are rounded.

Every function takes a raw value (float, int, NaN or None) and returns a string; missing
values become an en dash. Tables keep full precision in ``tables/*.csv``; only the HTML
and PDF show the rounded forms produced here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

__all__ = [
    "MISSING",
    "fmt_num",
    "fmt_signed",
    "fmt_p",
    "fmt_ci",
    "fmt_int",
    "fmt_general",
    "fmt_pp",
    "column_formatter",
    "format_table",
]

#: Shown for missing values (NaN, None, NA).
MISSING = "–"


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return bool(math.isnan(float(value)))
    except (TypeError, ValueError):
        return False


def fmt_num(value: Any, digits: int = 2) -> str:
    """A number with ``digits`` decimals and a true minus sign (``−0.40``; ``-0.00`` is ``0.00``; ``∞``)."""
    if _missing(value):
        return MISSING
    if math.isinf(float(value)):
        return "∞" if float(value) > 0 else "−∞"
    text = f"{float(value):.{digits}f}"
    if text.startswith("-"):
        return text[1:] if float(text) == 0 else "−" + text[1:]
    return text


def fmt_signed(value: Any, digits: int = 2) -> str:
    """A number with an explicit sign (``+1.25``, ``−0.40``; a true minus sign)."""
    if _missing(value):
        return MISSING
    text = fmt_num(value, digits)
    if text.startswith("−") or set(text) <= set("0."):
        return text
    return "+" + text


def fmt_int(value: Any) -> str:
    """An integer count with thousands separators."""
    if _missing(value):
        return MISSING
    return f"{int(value):,}"


def fmt_general(value: Any) -> str:
    """A number in its shortest form (``1``, ``0.5``, ``14``), for settings such as τ or sizes."""
    if _missing(value):
        return MISSING
    return f"{float(value):g}"


def fmt_p(value: Any) -> str:
    """A p-value: 3 decimals down to 0.001, then scientific with 2 significant digits.

    Text (e.g. a ``p_method`` column naming how the p-value was computed) is shown as is.
    """
    if _missing(value):
        return MISSING
    if isinstance(value, str):
        return value
    p = float(value)
    if p >= 0.001:
        return f"{p:.3f}"
    if p == 0:
        return "< 1e-300"
    mantissa, exponent = f"{p:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def fmt_ci(low: Any, high: Any, digits: int = 2) -> str:
    """A confidence interval ``[low, high]``."""
    if _missing(low) or _missing(high):
        return MISSING
    return f"[{fmt_num(low, digits)}, {fmt_num(high, digits)}]"


def fmt_pp(value: Any, digits: int = 2) -> str:
    """A signed difference in percentage points (``+10.37 pp``)."""
    if _missing(value):
        return MISSING
    return f"{fmt_signed(value, digits)} pp"


_P_COLUMNS = ("p_val", "p_adj", "p_holm", "p_naive", "p_robust", "p_mixed", "p_cluster")
_GENERAL_COLUMNS = ("temperature", "params_b", "student_size", "teacher_noise")
_INT_COLUMNS = ("n", "k", "dof_between", "dof_within", "n_clusters", "n_units", "n_tasks", "n_pairs")


def column_formatter(column: str) -> Callable[[Any], str]:
    """The formatter the report uses for a column, chosen from its name.

    p-value columns (``p_val``, ``p_adj``, ``p_*``) use :func:`fmt_p`; count columns
    (``n``, ``k``, degrees of freedom of ANOVA, ``n_*``) use :func:`fmt_int`; settings
    (``temperature``, ``params_b``) :func:`fmt_general`; other
    numeric columns :func:`fmt_num` with 2 decimals (3 for ``r2``-like columns);
    non-numeric values are shown as text.
    """
    if column in _P_COLUMNS or column.startswith("p_"):
        return fmt_p
    if column in _INT_COLUMNS or column.startswith("n_"):
        return fmt_int
    if column in _GENERAL_COLUMNS:
        return fmt_general
    digits = 3 if column in ("r2", "adj_r2", "eta_sq") else 2

    def _format(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "yes" if value else "no"
        return fmt_num(value, digits)

    return _format


def format_table(
    table: pd.DataFrame,
    formatters: Mapping[str, Callable[[Any], str]] | None = None,
) -> list[list[tuple[str, str]]]:
    """Format a table for display.

    Parameters
    ----------
    table : DataFrame
        Raw statistics (never rounded).
    formatters : mapping, optional
        Column → formatter overriding :func:`column_formatter`.

    Returns
    -------
    list of list of (str, str)
        Per row, per column, ``(text, sort_key)``: the formatted text and the raw value
        as a string (for sorting numbers in the browser; ``""`` for missing values).
    """
    formatters = dict(formatters or {})
    funcs = [formatters.get(col) or column_formatter(str(col)) for col in table.columns]
    rows = []
    for record in table.itertuples(index=False, name=None):
        cells = []
        for func, value in zip(funcs, record, strict=True):
            key = "" if _missing(value) else (repr(float(value)) if _is_number(value) else str(value))
            cells.append((func(value), key))
        rows.append(cells)
    return rows


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iuf")
    )
