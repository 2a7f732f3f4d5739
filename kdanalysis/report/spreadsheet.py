"""CSV tables that spreadsheets open as text, never as formulas.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a
formula by spreadsheet programs (CSV injection); model and task names reach the report's
tables unchanged, so such text cells get a leading ``'`` (OWASP's advice). Numbers, and
text that reads as a number (``-0.5``), are kept as they are.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["FORMULA_STARTS", "spreadsheet_safe"]

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _neutralise(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number(value):
        return "'" + value
    return value


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells cannot start a spreadsheet formula (column names too).

    Returns
    -------
    pandas.DataFrame
        Same columns (names neutralised likewise) and dtypes; numeric columns untouched.
    """
    out = df.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_bool_dtype(out[col]):
            out[col] = out[col].map(_neutralise).astype(out[col].dtype)
    out.columns = [_neutralise(c) for c in out.columns]
    return out
