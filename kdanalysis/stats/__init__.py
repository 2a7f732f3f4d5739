"""Tidy statistics: a DataFrame and column names (or a formula) in, a DataFrame out.

Every table-returning function has a fixed, documented column order (see each
docstring), a generic ``by=`` (one row per group, keys first, identical to per-group
calls) and never rounds. Degenerate data (n < 3, constant input, a single level) gives a
row of NaNs with a ``note`` and a :class:`DegenerateDataWarning` instead of an exception;
invalid arguments raise :class:`~kdanalysis.errors.ConfigError` (options, with the
allowed values) or :class:`~kdanalysis.errors.SchemaError` (missing/non-numeric columns)
at once. The mathematics is scipy's and statsmodels'.
"""

from __future__ import annotations

from kdanalysis.stats._checks import DegenerateDataWarning
from kdanalysis.stats.correlation import corr, partial_corr
from kdanalysis.stats.parametric import anova, ttest
from kdanalysis.stats.resampling import bootstrap_ci

__all__ = [
    "DegenerateDataWarning",
    "anova",
    "bootstrap_ci",
    "corr",
    "partial_corr",
    "ttest",
]
