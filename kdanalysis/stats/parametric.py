"""Parametric tests of means: :func:`ttest` (one-sample, paired, two-sample) and one-way :func:`anova`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from kdanalysis.errors import ConfigError
from kdanalysis.stats._checks import (
    ALTERNATIVES,
    MIN_N,
    as_column_list,
    check_ci,
    check_columns,
    check_option,
    degenerate,
    numeric_values,
)
from kdanalysis.stats._grouping import rows_by_group

__all__ = ["ANOVA_COLUMNS", "TTEST_COLUMNS", "anova", "ttest"]

TTEST_COLUMNS = (
    "test",
    "n",
    "mean_diff",
    "statistic",
    "dof",
    "p_val",
    "ci_low",
    "ci_high",
    "cohen_d",
    "note",
    "alternative",
)
ANOVA_COLUMNS = ("n", "k", "statistic", "dof_between", "dof_within", "p_val", "eta_sq", "note")


def ttest(
    data: pd.DataFrame,
    x: str,
    y: str | None = None,
    mu: float = 0.0,
    paired: bool = False,
    alternative: str = "two-sided",
    *,
    by: str | Sequence[str] | None = None,
    ci: float = 0.95,
    equal_var: bool = False,
) -> pd.DataFrame:
    """Student t-test of a mean or of a difference of means.

    Three designs, chosen by the arguments:

    * ``y=None``: one-sample test of ``mean(x) = mu`` (:func:`scipy.stats.ttest_1samp`);
      rows with missing ``x`` are dropped.
    * ``y`` given, ``paired=True``: paired test of ``mean(x - y) = mu`` over the rows where
      both are present (:func:`scipy.stats.ttest_1samp` of the differences, which is
      :func:`scipy.stats.ttest_rel` for ``mu=0``).
    * ``y`` given, ``paired=False``: two-sample test of ``mean(x) = mean(y)`` on the
      non-missing values of the columns ``x`` and ``y`` (:func:`scipy.stats.ttest_ind`),
      Welch's by default (``equal_var=False``). For a long table (values + a two-level
      group column), give the groups their own columns first, e.g. with ``DataFrame.pivot``.

    Parameters
    ----------
    data : DataFrame
    x : str
        Numeric column.
    y : str, optional
        Second numeric column (paired or two-sample designs).
    mu : float
        Hypothesised mean (one-sample) or mean difference (paired); must be 0 for two samples.
    paired : bool
        Pair ``x`` and ``y`` by row.
    alternative : {"two-sided", "greater", "less"}
        Direction of the alternative on ``mean_diff``; one-sided tests give a one-sided
        interval with an infinite bound.
    by : str or list of str, optional
        Grouping columns; one row per group.
    ci : float
        Confidence level in (0, 1).
    equal_var : bool
        Two-sample design only: pooled-variance Student test instead of Welch's.

    Returns
    -------
    DataFrame
        Columns ``[*by], test, n, mean_diff, statistic, dof, p_val, ci_low, ci_high, cohen_d,
        note, alternative``. ``test`` is ``"ttest_1samp"``, ``"ttest_rel"`` or ``"ttest_ind"``;
        ``n`` counts the observations used (both samples for ``ttest_ind``);
        ``mean_diff`` is ``mean(x) - mu``, ``mean(x - y) - mu`` or ``mean(x) - mean(y)`` and
        ``ci_low``/``ci_high`` bound it (scipy's ``confidence_interval`` shifted by ``-mu``).
        ``cohen_d`` is ``mean_diff`` over the standard deviation of ``x`` (one-sample), of
        ``x - y`` (paired, d_z), or over the pooled standard deviation (two-sample).
        Degenerate groups (n < 3 in a sample, zero variance) give NaNs, a ``note`` and a
        :class:`DegenerateDataWarning`.
    """
    check_option("alternative", alternative, ALTERNATIVES)
    check_ci(ci)
    if y is None and paired:
        raise ConfigError("ttest(paired=True) needs a second column y=")
    if y is not None and not paired and mu != 0:
        raise ConfigError(f"mu={mu!r} is not allowed for two independent samples; only mu=0 is tested")
    groups = as_column_list(by)
    columns = [x] if y is None else [x, y]
    check_columns(data, groups, numeric=columns)
    test = "ttest_1samp" if y is None else ("ttest_rel" if paired else "ttest_ind")

    def compute(frame: pd.DataFrame) -> dict[str, Any]:
        row: dict[str, Any] = dict.fromkeys(TTEST_COLUMNS, np.nan)
        row.update(test=test, note="", alternative=alternative)
        if test == "ttest_ind":
            samples = [numeric_values(frame, [column])[:, 0] for column in columns]
        elif test == "ttest_rel":
            pairs = numeric_values(frame, columns)
            samples = [pairs[:, 0] - pairs[:, 1]]
        else:
            samples = [numeric_values(frame, [x])[:, 0]]
        row["n"] = sum(len(s) for s in samples)
        note = _degenerate_samples_note(samples)
        if note:
            row["note"] = degenerate(f"{test}({x!r}{'' if y is None else f', {y!r}'}): {note}")
            return row
        if test == "ttest_ind":
            result = sps.ttest_ind(samples[0], samples[1], equal_var=equal_var, alternative=alternative)
            mean_diff = samples[0].mean() - samples[1].mean()
            sd = _pooled_sd(samples[0], samples[1])
            shift = 0.0
        else:
            result = sps.ttest_1samp(samples[0], mu, alternative=alternative)
            mean_diff, sd, shift = samples[0].mean() - mu, samples[0].std(ddof=1), mu
        low, high = result.confidence_interval(confidence_level=ci)
        row.update(
            mean_diff=float(mean_diff),
            statistic=float(result.statistic),
            dof=float(result.df),
            p_val=float(result.pvalue),
            ci_low=float(low - shift),
            ci_high=float(high - shift),
            cohen_d=float(mean_diff / sd),
        )
        return row

    return rows_by_group(data, groups, compute, TTEST_COLUMNS)


def anova(
    data: pd.DataFrame,
    dv: str,
    between: str,
    *,
    by: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """One-way between-subjects ANOVA of ``dv`` across the levels of ``between``.

    The F test is :func:`scipy.stats.f_oneway` over the levels present (rows with a missing
    ``dv`` or level are dropped); ``eta_sq`` = SS_between / SS_total, computed as
    ``F dof_between / (F dof_between + dof_within)``.

    Parameters
    ----------
    data : DataFrame
    dv : str
        Numeric dependent variable.
    between : str
        Column whose levels define the groups.
    by : str or list of str, optional
        Grouping columns; one row per group.

    Returns
    -------
    DataFrame
        Columns ``[*by], n, k, statistic, dof_between, dof_within, p_val, eta_sq, note``:
        ``n`` observations, ``k`` levels, ``statistic`` F. Degenerate groups (n < 3, fewer
        than two levels, no within-level degree of freedom, no within-level variance)
        give NaNs, a ``note`` and a :class:`DegenerateDataWarning`.
    """
    groups = as_column_list(by)
    check_columns(data, [*groups, between], numeric=[dv])

    def compute(frame: pd.DataFrame) -> dict[str, Any]:
        complete = frame.loc[frame[dv].notna() & frame[between].notna(), [dv, between]]
        levels = [g[dv].to_numpy(dtype=float) for _, g in complete.groupby(between, sort=True, observed=True)]
        n, k = len(complete), len(levels)
        row: dict[str, Any] = dict.fromkeys(ANOVA_COLUMNS, np.nan)
        row.update(n=n, k=k, note="")
        note = ""
        if n < MIN_N:
            note = f"n={n} observations, need at least {MIN_N}"
        elif k < 2:
            note = f"{k} level(s) of {between!r}, need at least 2"
        elif n - k < 1:
            note = "no within-level degrees of freedom (one observation per level)"
        elif all(np.ptp(level) == 0 for level in levels):
            note = "constant within every level (no within-level variance)"
        if note:
            row["note"] = degenerate(f"anova({dv!r} ~ {between!r}): {note}")
            return row
        result = sps.f_oneway(*levels)
        f, dof_between, dof_within = float(result.statistic), k - 1, n - k
        row.update(
            statistic=f,
            dof_between=dof_between,
            dof_within=dof_within,
            p_val=float(result.pvalue),
            eta_sq=f * dof_between / (f * dof_between + dof_within),
        )
        return row

    return rows_by_group(data, groups, compute, ANOVA_COLUMNS)


def _pooled_sd(a: np.ndarray, b: np.ndarray) -> float:
    """Pooled standard deviation of two samples (the Cohen's d denominator)."""
    pooled_ss = (len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)
    return float(np.sqrt(pooled_ss / (len(a) + len(b) - 2)))


def _degenerate_samples_note(samples: list[np.ndarray]) -> str:
    """Why a t-test on ``samples`` is undefined, or ``""``."""
    sizes = [len(s) for s in samples]
    if min(sizes) < MIN_N:
        return f"sample size(s) {sizes}, need at least {MIN_N} each"
    if all(np.ptp(s) == 0 for s in samples):
        return "zero variance (constant input)"
    return ""
