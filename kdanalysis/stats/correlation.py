"""Correlations with confidence intervals: :func:`corr` and :func:`partial_corr`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial
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
    check_positive_int,
    degenerate,
    numeric_values,
)
from kdanalysis.stats._grouping import rows_by_group
from kdanalysis.stats._permutation import EXACT_MAX_N, permutation_pvalue
from kdanalysis.stats._rowwise import dense_codes, rowwise_kendall, rowwise_pearson, rowwise_spearman
from kdanalysis.stats.resampling import bootstrap_result, check_seed, percentile_interval

__all__ = [
    "CORR_COLUMNS",
    "CORR_METHODS",
    "CORR_P_METHODS",
    "EXACT_MAX_N",
    "KENDALL_EXACT_MAX_N",
    "MIN_DEFINED_SHARE",
    "PARTIAL_CORR_COLUMNS",
    "PARTIAL_CORR_METHODS",
    "corr",
    "fisher_z_ci",
    "partial_corr",
]

CORR_METHODS = ("pearson", "spearman", "kendall")
PARTIAL_CORR_METHODS = ("pearson", "spearman")
CORR_COLUMNS = (
    "x",
    "y",
    "method",
    "n",
    "statistic",
    "p_val",
    "ci_low",
    "ci_high",
    "note",
    "alternative",
    "p_method",
)
#: ``p_method=`` of :func:`corr`.
CORR_P_METHODS = ("auto", "exact", "asymptotic", "permutation")
#: scipy's exact Kendall p (no ties) is used up to this n by ``p_method="auto"`` (scipy's own limit).
KENDALL_EXACT_MAX_N = 33
#: A rank bootstrap interval needs the coefficient defined on at least this share of resamples.
MIN_DEFINED_SHARE = 0.5
PARTIAL_CORR_COLUMNS = (
    "x",
    "y",
    "covar",
    "method",
    "n",
    "statistic",
    "p_val",
    "ci_low",
    "ci_high",
    "note",
    "alternative",
)

#: scipy's coefficient and asymptotic test (Kendall's would be exact without ties at n <= 33 by default).
_SCIPY_TESTS = {
    "pearson": sps.pearsonr,
    "spearman": sps.spearmanr,
    "kendall": partial(sps.kendalltau, method="asymptotic"),
}
_ROWWISE_RANK_STATISTICS = {"spearman": rowwise_spearman, "kendall": rowwise_kendall}
#: ``1 - |r|`` below this is rounding error of collinear residuals (a partial r of exactly ±1).
_COLLINEAR_TOL = 1e-12


def corr(
    data: pd.DataFrame,
    x: str,
    y: str,
    method: str = "pearson",
    *,
    by: str | Sequence[str] | None = None,
    ci: float | None = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
    alternative: str = "two-sided",
    p_method: str = "auto",
    n_perm: int = 10_000,
) -> pd.DataFrame:
    """Correlation of two numeric columns, with test and confidence interval.

    Rows with a missing ``x`` or ``y`` are dropped. The coefficient is
    :func:`scipy.stats.pearsonr`, :func:`~scipy.stats.spearmanr` or
    :func:`~scipy.stats.kendalltau` (tau-b).

    The p-value (``p_method``):

    - ``"asymptotic"``: scipy's reference distribution: Student t with n - 2 df for
      Pearson (exact under bivariate normality) and Spearman (an approximation that is
      far too small at small n: a perfect monotone relation at n = 4 gets p = 0), the
      normal approximation with tie correction for Kendall.
    - ``"exact"``: the permutation distribution of the coefficient over all n! pairings
      of the observed x with the observed y (ties kept as observed), for n <=
      :data:`EXACT_MAX_N` (9); for Kendall without ties scipy's exact distribution
      (``kendalltau(method="exact")``) at any n. Where no exact p is available (n > 9,
      except Kendall without ties) it falls back to ``"permutation"``, recorded as such.
    - ``"permutation"``: ``n_perm`` random pairings drawn with ``seed``, p = (k + 1) /
      (n_perm + 1) (:func:`scipy.stats.permutation_test`; exact when n! <= ``n_perm``).
    - ``"auto"`` (default): ``"exact"`` for Spearman and Kendall with n <= 9, and for
      Kendall without ties up to n = :data:`KENDALL_EXACT_MAX_N` (33, where scipy's own
      default already is exact); ``"asymptotic"`` otherwise, and always for Pearson.

    Two-sided permutation p-values are ``2 * min(P(T <= t), P(T >= t))`` capped at 1
    (scipy's convention; the Spearman null distribution without ties is symmetric, so this
    equals ``P(|T| >= |t|)``).

    The interval is Fisher's z for Pearson (scipy's ``confidence_interval``) and a seeded
    percentile bootstrap over (x, y) pairs for the rank methods (``n_boot`` resamples,
    vectorised). A resample in which x or y is constant has no rank coefficient (common
    with ties and at very small n); such resamples are left out and the interval is the
    percentile interval of the others, i.e. of the bootstrap distribution conditional on
    a defined coefficient (the same as redrawing each constant resample). The number left
    out is said in ``note``; when fewer than :data:`MIN_DEFINED_SHARE` (half) of the
    resamples are usable the interval is NaN with a note and a
    :class:`DegenerateDataWarning`. When every usable resample gives the same coefficient
    (e.g. a perfectly monotone sample: each resample is monotone too) the interval has no
    width, which says nothing about the uncertainty; the note says so, and the exact
    p-value is the evidence to read. A one-sided ``alternative`` gives a one-sided
    interval bounded by -1 or 1.

    Parameters
    ----------
    data : DataFrame
        Tidy input.
    x, y : str
        Numeric columns.
    method : {"pearson", "spearman", "kendall"}
    by : str or list of str, optional
        Grouping columns; one row per group, equal to calling ``corr`` on each group.
    ci : float or None
        Confidence level in (0, 1); ``None`` skips the interval (``ci_low``/``ci_high``
        NaN), which saves the bootstrap where only the test is needed.
    n_boot : int
        Bootstrap resamples (rank methods only).
    seed : int
        Seed (>= 0; ``None`` raises) of the bootstrap and of Monte Carlo permutations.
    alternative : {"two-sided", "greater", "less"}
    p_method : {"auto", "exact", "asymptotic", "permutation"}
        How the p-value is computed (see above).
    n_perm : int
        Random pairings drawn for a Monte Carlo permutation p-value.

    Returns
    -------
    DataFrame
        Columns ``[*by], x, y, method, n, statistic, p_val, ci_low, ci_high, note,
        alternative, p_method``: ``x``/``y`` hold the column names, ``n`` the complete
        pairs, ``statistic`` the coefficient, ``p_method`` how ``p_val`` was obtained
        (``"exact"``, ``"asymptotic"`` or ``"permutation"``; NaN when ``p_val`` is).
        ``note`` is ``""``, says why the row is NaN (n < 3, constant input; a
        :class:`DegenerateDataWarning` is emitted too), or says how many constant
        bootstrap resamples were left out of the interval, or that it has no width.
    """
    check_option("method", method, CORR_METHODS)
    check_option("alternative", alternative, ALTERNATIVES)
    check_option("p_method", p_method, CORR_P_METHODS)
    check_positive_int("n_boot", n_boot)
    check_positive_int("n_perm", n_perm)
    check_seed(seed)
    if ci is not None:
        check_ci(ci)
    groups = as_column_list(by)
    check_columns(data, [*groups], numeric=[x, y])

    def compute(frame: pd.DataFrame) -> dict[str, Any]:
        pairs = numeric_values(frame, [x, y])
        row = _empty_row(CORR_COLUMNS, x=x, y=y, method=method, n=len(pairs), alternative=alternative)
        note = _degenerate_pairs_note(pairs, ("x", "y"), MIN_N)
        if note:
            row["note"] = degenerate(f"corr({x!r}, {y!r}): {note}")
            return row
        xs, ys = pairs[:, 0], pairs[:, 1]
        result = _SCIPY_TESTS[method](xs, ys, alternative=alternative)
        row["statistic"] = float(result.statistic)
        row["p_val"], row["p_method"] = _corr_pvalue(
            xs, ys, method, alternative, p_method, n_perm, seed, asymptotic_p=float(result.pvalue)
        )
        if ci is None:
            return row
        if method == "pearson":
            low, high = result.confidence_interval(confidence_level=ci)
        else:
            low, high, row["note"] = _rank_bootstrap_ci(xs, ys, method, ci, n_boot, seed, alternative)
            if row["note"] and np.isnan(low):
                row["note"] = degenerate(f"corr({x!r}, {y!r}): {row['note']}")
        row["ci_low"], row["ci_high"] = float(low), float(high)
        return row

    return rows_by_group(data, groups, compute, CORR_COLUMNS)


def partial_corr(
    data: pd.DataFrame,
    x: str,
    y: str,
    covar: str | Sequence[str],
    method: str = "pearson",
    *,
    by: str | Sequence[str] | None = None,
    ci: float = 0.95,
    alternative: str = "two-sided",
) -> pd.DataFrame:
    """Partial correlation of ``x`` and ``y`` controlling for ``covar``.

    ``x`` and ``y`` (ranks of all columns first for ``"spearman"``) are each regressed on
    the covariates with an intercept by least squares, and the residuals are correlated.
    With k covariates the test has n - k - 2 degrees of freedom (t = r sqrt(dof / (1 - r^2)))
    and the Fisher z interval uses n - k in place of n; this is pingouin's
    ``partial_corr``, and for Pearson the p-value equals that of ``x`` in the OLS
    ``y ~ x + covar``. Rows with any missing value among the columns are dropped.

    Unlike :func:`corr` there is no exact or permutation p-value: permuting residuals
    (Freedman-Lane) is exact only asymptotically, since residuals are not exchangeable,
    so the t reference is kept at every n; at small n (a few residual degrees of freedom)
    read the p-value of a Spearman partial correlation as approximate.

    Parameters
    ----------
    data : DataFrame
    x, y : str
        Numeric columns to correlate.
    covar : str or list of str
        Numeric covariates to partial out (at least one).
    method : {"pearson", "spearman"}
    by : str or list of str, optional
        Grouping columns; one row per group.
    ci : float
        Confidence level in (0, 1).
    alternative : {"two-sided", "greater", "less"}

    Returns
    -------
    DataFrame
        Columns ``[*by], x, y, covar, method, n, statistic, p_val, ci_low, ci_high, note,
        alternative``; ``covar`` joins the covariate names with ``", "``. Degenerate
        groups (n < k + 3, constant input, x or y fully explained by the covariates)
        give NaNs, a ``note`` and a :class:`DegenerateDataWarning`.
    """
    check_option("method", method, PARTIAL_CORR_METHODS)
    check_option("alternative", alternative, ALTERNATIVES)
    check_ci(ci)
    covars = as_column_list(covar)
    if not covars:
        raise ConfigError("partial_corr needs at least one covariate in covar=; use corr() for none")
    overlap = sorted({x, y} & set(covars))
    if overlap:
        raise ConfigError(f"covar= must not contain x or y, got {overlap}")
    groups = as_column_list(by)
    check_columns(data, groups, numeric=[x, y, *covars])

    def compute(frame: pd.DataFrame) -> dict[str, Any]:
        values = numeric_values(frame, [x, y, *covars])
        n, k = len(values), len(covars)
        row = _empty_row(
            PARTIAL_CORR_COLUMNS,
            x=x,
            y=y,
            covar=", ".join(covars),
            method=method,
            n=n,
            alternative=alternative,
        )
        note = _degenerate_pairs_note(values[:, :2], ("x", "y"), k + MIN_N)
        if not note:
            if method == "spearman":
                values = sps.rankdata(values, axis=0)
            design = np.column_stack([np.ones(n), values[:, 2:]])
            coefs, *_ = np.linalg.lstsq(design, values[:, :2], rcond=None)
            residuals = values[:, :2] - design @ coefs
            scale = np.abs(values[:, :2]).max(axis=0) + 1.0
            if np.any(np.abs(residuals).max(axis=0) <= 1e-12 * scale):
                note = "x or y is fully explained by the covariates"
        if note:
            row["note"] = degenerate(f"partial_corr({x!r}, {y!r} | {', '.join(covars)}): {note}")
            return row
        r = float(np.clip(np.corrcoef(residuals, rowvar=False)[0, 1], -1.0, 1.0))
        if 1.0 - abs(r) < _COLLINEAR_TOL:  # exactly collinear residuals, up to rounding: |r| = 1, p = 0
            r = float(np.copysign(1.0, r))
        dof = n - k - 2
        with np.errstate(divide="ignore"):
            t = r * np.sqrt(dof / (1.0 - r * r)) if abs(r) < 1.0 else np.copysign(np.inf, r)
        row["statistic"], row["p_val"] = r, _t_pvalue(t, dof, alternative)
        row["ci_low"], row["ci_high"] = fisher_z_ci(r, n - k, ci, alternative)
        return row

    return rows_by_group(data, groups, compute, PARTIAL_CORR_COLUMNS)


def fisher_z_ci(r: float, n_eff: int, ci: float, alternative: str = "two-sided") -> tuple[float, float]:
    """Fisher z interval of a correlation ``r`` from ``n_eff`` observations (se = 1 / sqrt(n_eff - 3)).

    One-sided alternatives give an interval bounded by 1 (``"greater"``) or -1 (``"less"``);
    with ``n_eff <= 3`` the interval is the whole [-1, 1], as in scipy's ``pearsonr``.
    """
    if n_eff <= 3:
        return -1.0, 1.0
    with np.errstate(divide="ignore"):
        z = np.arctanh(r)
    se = 1.0 / np.sqrt(n_eff - 3)
    if alternative == "two-sided":
        half = sps.norm.ppf(0.5 + ci / 2.0) * se
        return float(np.tanh(z - half)), float(np.tanh(z + half))
    half = sps.norm.ppf(ci) * se
    if alternative == "greater":
        return float(np.tanh(z - half)), 1.0
    return -1.0, float(np.tanh(z + half))


def _t_pvalue(t: float, dof: int, alternative: str) -> float:
    if alternative == "greater":
        return float(sps.t.sf(t, dof))
    if alternative == "less":
        return float(sps.t.cdf(t, dof))
    return float(min(1.0, 2.0 * sps.t.sf(abs(t), dof)))


def _corr_pvalue(
    xs: np.ndarray,
    ys: np.ndarray,
    method: str,
    alternative: str,
    p_method: str,
    n_perm: int,
    seed: int,
    *,
    asymptotic_p: float,
) -> tuple[float, str]:
    """P-value of the coefficient of ``xs`` and ``ys`` and the method that produced it (see :func:`corr`)."""
    n = len(xs)
    ties = len(np.unique(xs)) < n or len(np.unique(ys)) < n
    if p_method == "auto":
        small = method != "pearson" and n <= EXACT_MAX_N
        kendall_exact = method == "kendall" and not ties and n <= KENDALL_EXACT_MAX_N
        p_method = "exact" if small or kendall_exact else "asymptotic"
    if p_method == "asymptotic":
        if method == "kendall":
            return float(
                sps.kendalltau(xs, ys, method="asymptotic", alternative=alternative).pvalue
            ), p_method
        return float(_SCIPY_TESTS[method](xs, ys, alternative=alternative).pvalue), p_method
    if p_method == "exact" and method == "kendall" and not ties:
        return float(sps.kendalltau(xs, ys, method="exact", alternative=alternative).pvalue), p_method
    transform, statistic = _PERMUTATION_INPUTS[method]
    return permutation_pvalue(
        transform(xs),
        transform(ys),
        statistic,
        alternative=alternative,
        exact=p_method == "exact",
        n_perm=n_perm,
        seed=seed,
    )


def _pearson_against(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return rowwise_pearson(*np.broadcast_arrays(a, b))


def _kendall_against(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return rowwise_kendall(*np.broadcast_arrays(a, b))


#: What a permutation test pairs for each method, and the coefficient of a pairing:
#: Pearson r of the values, Pearson r of the average ranks (Spearman), tau-b of dense codes.
_PERMUTATION_INPUTS = {
    "pearson": (np.asarray, _pearson_against),
    "spearman": (sps.rankdata, _pearson_against),
    "kendall": (dense_codes, _kendall_against),
}


def _rank_bootstrap_ci(
    xs: np.ndarray, ys: np.ndarray, method: str, ci: float, n_boot: int, seed: int, alternative: str
) -> tuple[float, float, str]:
    """Percentile bootstrap interval of a rank coefficient over the resamples defining it, and a note."""
    with warnings.catch_warnings():
        # Constant resamples give NaN; they are left out below (scipy's warning names BCa).
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        result = bootstrap_result(
            (dense_codes(xs), dense_codes(ys)),
            _ROWWISE_RANK_STATISTICS[method],
            n_boot=n_boot,
            ci=ci,
            seed=seed,
            paired=True,
            method="percentile",
            alternative=alternative,
            axis=-1,
        )
    draws = result.bootstrap_distribution
    undefined = int(np.isnan(draws).sum())
    if n_boot - undefined < MIN_DEFINED_SHARE * n_boot:
        note = (
            f"bootstrap CI undefined: x or y is constant in {undefined} of {n_boot} resamples, "
            f"more than {1 - MIN_DEFINED_SHARE:.0%}"
        )
        return np.nan, np.nan, note
    low, high = percentile_interval(draws, ci, alternative)
    notes = []
    if undefined:
        notes.append(
            f"bootstrap CI from the {n_boot - undefined} of {n_boot} resamples where x and y vary; "
            f"{undefined} resamples with constant x or y left out"
        )
    if np.nanmin(draws) == np.nanmax(draws):
        notes.append("every resample gives the same coefficient, so the bootstrap interval has no width")
    return float(np.clip(low, -1.0, 1.0)), float(np.clip(high, -1.0, 1.0)), "; ".join(notes)


def _degenerate_pairs_note(values: np.ndarray, names: tuple[str, str], min_n: int) -> str:
    """Why a correlation on ``values`` (columns x, y) is undefined, or ``""``."""
    n = len(values)
    if n < min_n:
        return f"n={n} complete observations, need at least {min_n}"
    constant = [name for name, column in zip(names, values.T, strict=True) if np.ptp(column) == 0]
    if constant:
        return f"constant {' and '.join(constant)}"
    return ""


def _empty_row(columns: Sequence[str], **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(columns, np.nan)
    row["note"] = ""
    row.update(values)
    return row
