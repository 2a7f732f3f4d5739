"""Argument checks and the degenerate-data convention shared by the stats functions.

Invalid arguments raise at once (:class:`~kdanalysis.errors.ConfigError` for options,
:class:`~kdanalysis.errors.SchemaError` for missing or non-numeric columns). Degenerate
data (too few observations, constant input, a single group) is not an error: the
function returns a row of NaNs with a ``note`` and emits :class:`DegenerateDataWarning`,
so one bad group never stops a batch.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Sequence
from types import FrameType

import numpy as np
import pandas as pd

from kdanalysis.errors import ConfigError, SchemaError

__all__ = [
    "ALTERNATIVES",
    "MIN_N",
    "DegenerateDataWarning",
    "as_column_list",
    "check_ci",
    "check_columns",
    "check_option",
    "check_positive_int",
    "degenerate",
    "numeric_values",
]

#: Allowed values of every ``alternative=`` argument (scipy's names).
ALTERNATIVES = ("two-sided", "greater", "less")

#: Fewest observations a test is computed on; fewer give a NaN row with a note.
MIN_N = 3

_PACKAGE = __name__.rpartition(".")[0]  # "kdanalysis.stats"


class DegenerateDataWarning(UserWarning):
    """Data too small or too constant for a statistic; the result row holds NaNs and a ``note``."""


def degenerate(note: str) -> str:
    """Emit a :class:`DegenerateDataWarning` with ``note`` and return ``note`` for the result row.

    The warning is attributed to the first caller outside ``kdanalysis.stats`` (the user's
    line), however deep inside the package it was raised.
    """
    frame: FrameType | None = sys._getframe(1)
    stacklevel = 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith(_PACKAGE):
        frame, stacklevel = frame.f_back, stacklevel + 1
    warnings.warn(note, DegenerateDataWarning, stacklevel=stacklevel)
    return note


def check_option(name: str, value: object, allowed: Sequence[str]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``allowed`` (listed in the message)."""
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def check_ci(ci: float) -> None:
    """Raise :class:`ConfigError` unless ``0 < ci < 1``."""
    if not isinstance(ci, (int, float)) or not 0.0 < float(ci) < 1.0:
        raise ConfigError(f"ci={ci!r} is not allowed; the confidence level must lie strictly between 0 and 1")


def check_positive_int(name: str, value: object) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name}={value!r} is not allowed; it must be a positive integer")


def as_column_list(columns: str | Iterable[str] | None) -> list[str]:
    """Normalise a column name, an iterable of names, or ``None`` to a list of names."""
    if columns is None:
        return []
    if isinstance(columns, str):
        return [columns]
    return list(columns)


def check_columns(data: pd.DataFrame, columns: Iterable[str], *, numeric: Iterable[str] = ()) -> None:
    """Raise :class:`SchemaError` if ``data`` lacks any of ``columns`` or a ``numeric`` one is not numeric."""
    if not isinstance(data, pd.DataFrame):
        raise SchemaError(f"expected a pandas DataFrame, got {type(data).__name__}")
    wanted = list(dict.fromkeys([*columns, *numeric]))
    missing = [c for c in wanted if c not in data.columns]
    if missing:
        available = ", ".join(map(str, data.columns))
        raise SchemaError(f"missing column(s) {', '.join(map(repr, missing))}; available: {available}")
    for column in numeric:
        dtype = data[column].dtype
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
            raise SchemaError(f"column {column!r} must be numeric, got dtype {dtype}")


def numeric_values(data: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Float matrix of ``columns`` with every row holding a missing value dropped (listwise)."""
    # column by column: several times faster than converting a sub-frame (called once per group)
    values = np.column_stack([data[column].to_numpy(dtype=float, na_value=np.nan) for column in columns])
    return values[~np.isnan(values).any(axis=1)]
