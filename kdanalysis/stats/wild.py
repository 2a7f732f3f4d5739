"""Wild cluster bootstrap test and confidence interval of one OLS coefficient.

:func:`wild_bootstrap` (formula) and :func:`wild_bootstrap_matrices` (ready design matrix)
return one tidy row. The bootstrap is the WCR of MacKinnon, Nielsen & Webb (2023): the
null is imposed on the bootstrap data-generating process, each cluster's restricted
residuals are multiplied by one Rademacher or Webb weight, and each bootstrap sample's
CR1 t-statistic is compared with the observed one (as Stata's ``boottest``, R's
``fwildclusterboot`` and Python's ``wildboottest``). Written by hand in vectorised numpy
because wildboottest (0.3.2) has no confidence interval and imports numba (about 1 s),
and pyfixest wraps the same code; the p-values and bootstrap t-statistics are pinned
against wildboottest 0.3.2 in ``tests/stats/golden/ols_wild_wildboottest.json``.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import pandas as pd

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.stats._checks import check_ci, check_columns, check_option, check_positive_int, degenerate
from kdanalysis.stats._models import check_matrices, clustered_formula_model
from kdanalysis.stats._sandwich import identified_columns

__all__ = ["WILD_COLUMNS", "WILD_WEIGHTS", "wild_bootstrap", "wild_bootstrap_matrices"]

#: Columns of the :func:`wild_bootstrap` row.
WILD_COLUMNS = (
    "term",
    "estimate",
    "statistic",
    "p_val",
    "ci_low",
    "ci_high",
    "n_clusters",
    "n_boot",
    "weights",
    "seed",
    "note",
)

#: Allowed ``weights=``: Rademacher (+-1) or Webb's six-point distribution (+-sqrt(1/2), +-1,
#: +-sqrt(3/2)), which has more distinct draws and suits fewer than about 12 clusters.
WILD_WEIGHTS = ("rademacher", "webb")

_WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])

#: A bootstrap statistic within this relative distance of the observed one counts as a tie
#: (at least as extreme): the draw of all ones reproduces the observed statistic exactly.
_TIE = 1e-9

#: Doublings of the search step (starting at one CR1 standard error) before an interval end is
#: declared unbounded: beyond about 2^20 standard errors the p-value stays above 1 - ci.
_MAX_DOUBLINGS = 20


def wild_bootstrap(
    formula: str,
    data: pd.DataFrame,
    term: str,
    cluster: str,
    *,
    weights: str = "rademacher",
    n_boot: int = 9999,
    seed: int = 0,
    impose_null: bool = True,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Wild cluster bootstrap p-value and confidence interval of one coefficient of an OLS fit.

    The model is :func:`kdanalysis.stats.ols`'s (rows with a missing formula variable dropped,
    non-identified columns removed). With ``impose_null`` (WCR, recommended), the bootstrap
    samples are ``y* = X b~ + v_g u~`` from the fit restricted to ``term = 0`` (restricted
    residuals ``u~``, one weight ``v_g`` per cluster); otherwise (WCU) from the unrestricted
    fit. Each sample is refitted and its CR1 t-statistic (factor G/(G-1) (n-1)/(n-k), as
    ``ols(..., vcov="CR1")``) for the null is compared with the observed one; the p-value is
    the share of samples with ``|t*| >= |t|`` (ties count, so it is never 0). With Rademacher
    weights and ``2**G <= n_boot`` all ``2**G`` sign vectors are used once (full enumeration,
    exact; the note says so), and then no p-value is below ``2 / 2**G``. The interval inverts
    the test as ``boottest`` does: all values ``r`` whose null ``term = r`` has p-value above
    ``1 - ci`` under the same weights, its ends found by bisection; an end is infinite (said in
    the note) when the p-value does not fall to ``1 - ci`` within about 2^20 CR1 standard
    errors of the estimate, e.g. with 5 or fewer clusters and Rademacher weights.

    Parameters
    ----------
    formula : str
        Patsy formula, as in :func:`~kdanalysis.stats.ols`.
    data : DataFrame
    term : str
        The coefficient to test, by its term name (e.g. ``"log2_size"``).
    cluster : str
        Column identifying the clusters (one-way).
    weights : {"rademacher", "webb"}
        Distribution of the cluster weights; prefer ``"webb"`` with fewer than about 12 clusters
        when enumeration is not used.
    n_boot : int
        Number of bootstrap draws (unless enumerated).
    seed : int
        Seed of the weights (``numpy.random.default_rng``); recorded in the output.
    impose_null : bool
        WCR (True) or WCU (False).
    ci : float
        Confidence level of the interval.

    Returns
    -------
    DataFrame
        One row: ``term, estimate, statistic, p_val, ci_low, ci_high, n_clusters, n_boot,
        weights, seed, note`` (``statistic`` is the CR1 t; ``n_boot`` the draws used, ``2**G``
        under enumeration, 0 when degenerate). A term that is not identified, fewer than 2
        clusters or no residual degree of freedom give NaN values, a note and a
        :class:`~kdanalysis.stats.DegenerateDataWarning`.

    Raises
    ------
    ConfigError
        For an invalid ``weights``, ``n_boot``, ``seed`` (``None`` included), ``impose_null``,
        ``ci`` or a ``cluster`` that is not one column name.
    SchemaError
        For a formula that cannot be built, a missing column or cluster label, or a ``term``
        the design does not have.
    """
    import statsmodels.formula.api as smf

    _check_options(weights, n_boot, seed, impose_null, ci)
    if not isinstance(cluster, str):
        raise ConfigError(f"cluster={cluster!r} is not allowed; the wild bootstrap takes one column name")
    check_columns(data, [cluster])
    model, clusters = clustered_formula_model(smf.ols, formula, data, [cluster])
    return _wild(
        model.endog,
        model.exog,
        list(model.exog_names),
        cast(pd.DataFrame, clusters)[cluster],
        term,
        (weights, n_boot, seed, impose_null, ci),
        f"wild_bootstrap({formula!r})",
    )


def wild_bootstrap_matrices(
    endog: pd.Series,
    exog: pd.DataFrame,
    clusters: pd.Series,
    term: str,
    *,
    weights: str = "rademacher",
    n_boot: int = 9999,
    seed: int = 0,
    impose_null: bool = True,
    ci: float = 0.95,
    label: str = "wild_bootstrap_matrices",
) -> pd.DataFrame:
    """:func:`wild_bootstrap` from a ready design matrix (for many fits of one design).

    With the matrices a formula would build, the row is :func:`wild_bootstrap`'s.

    Parameters
    ----------
    endog : Series
        Response, one value per row of ``exog``.
    exog : DataFrame
        Design matrix; ``term`` is one of its column names.
    clusters : Series
        Cluster label per row.
    term, weights, n_boot, seed, impose_null, ci
        As in :func:`wild_bootstrap`.
    label : str
        Names the model in notes.

    Returns
    -------
    DataFrame
        As :func:`wild_bootstrap`.

    Raises
    ------
    ConfigError, SchemaError
        As :func:`wild_bootstrap`; :class:`SchemaError` also for a missing value or a length
        mismatch in the inputs.
    """
    _check_options(weights, n_boot, seed, impose_null, ci)
    check_matrices(label, endog, exog, {"clusters": clusters})
    return _wild(
        np.asarray(endog, dtype=float),
        exog.to_numpy(dtype=float),
        [str(name) for name in exog.columns],
        clusters,
        term,
        (weights, n_boot, seed, impose_null, ci),
        label,
    )


def _check_options(weights: str, n_boot: int, seed: Any, impose_null: bool, ci: float) -> None:
    check_option("weights", weights, WILD_WEIGHTS)
    check_positive_int("n_boot", n_boot)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(
            f"seed={seed!r} is not allowed; it must be a non-negative integer (it is recorded in the output)"
        )
    if not isinstance(impose_null, bool):
        raise ConfigError(f"impose_null={impose_null!r} is not allowed; choose True or False")
    check_ci(ci)


def _wild(
    endog: np.ndarray,
    exog: np.ndarray,
    names: list[str],
    clusters: pd.Series,
    term: str,
    options: tuple[str, int, int, bool, float],
    label: str,
) -> pd.DataFrame:
    """The bootstrap row of ``term`` (see :func:`wild_bootstrap`)."""
    weights, n_boot, seed, impose_null, ci = options
    if term not in names:
        raise SchemaError(f"{label}: no term {term!r}; the design has: {', '.join(map(repr, names))}")
    codes, uniques = pd.factorize(clusters)
    n_clusters = len(uniques)
    row: dict[str, Any] = dict.fromkeys(WILD_COLUMNS, np.nan)
    row.update(term=term, n_clusters=n_clusters, n_boot=0, weights=weights, seed=int(seed), note="")
    keep = identified_columns(exog)
    position = names.index(term)
    exog = exog[:, keep]
    j = int(keep[:position].sum())  # the term's column among the identified ones
    n_rows, n_coefs = exog.shape
    problem = ""
    if not keep[position]:
        problem = f"term {term!r} is not identified (collinear with earlier columns)"
    elif n_rows <= n_coefs:
        problem = f"{n_rows} rows for {n_coefs} identified coefficients"
    elif n_clusters < 2:
        problem = f"{n_clusters} cluster(s), need at least 2"
    if problem:
        row["note"] = degenerate(f"{label}: {problem}; the bootstrap is not computed")
        if keep[position]:
            row["estimate"] = float(np.linalg.lstsq(exog, endog, rcond=None)[0][j])
        return pd.DataFrame([row], columns=WILD_COLUMNS)
    draws, enumerated = _draws(weights, n_boot, seed, n_clusters)
    test = _WildTest(endog, exog, j, codes, n_clusters, impose_null, draws)
    if not test.se > 0:
        note = f"{label}: the residuals are all zero (exact fit); the bootstrap is not computed"
        row.update(estimate=test.estimate, note=degenerate(note))
        return pd.DataFrame([row], columns=WILD_COLUMNS)
    alpha = 1 - ci
    low, low_open = test.interval_end(alpha, -1.0)
    high, high_open = test.interval_end(alpha, 1.0)
    notes = []
    if enumerated:
        notes.append(f"full enumeration of the 2^{n_clusters} = {len(draws)} Rademacher weight vectors")
    if low_open or high_open:
        notes.append(
            f"the p-value stays above {alpha:g} within 2^{_MAX_DOUBLINGS} standard errors: "
            "the interval is unbounded"
        )
    row.update(
        estimate=test.estimate,
        statistic=test.t_observed(0.0),
        p_val=test.p_value(0.0),
        ci_low=low,
        ci_high=high,
        n_boot=len(draws),
        note=f"{label}: {'; '.join(notes)}" if notes else "",
    )
    return pd.DataFrame([row], columns=WILD_COLUMNS)


def _draws(weights: str, n_boot: int, seed: int, n_clusters: int) -> tuple[np.ndarray, bool]:
    """Weights, one row per bootstrap sample and one column per cluster; whether enumerated."""
    if weights == "rademacher" and n_clusters < 63 and 2**n_clusters <= n_boot:
        signs = (np.arange(2**n_clusters)[:, None] >> np.arange(n_clusters)) & 1
        return 2.0 * signs - 1.0, True
    rng = np.random.default_rng(seed)
    if weights == "rademacher":
        return 2.0 * rng.integers(0, 2, size=(n_boot, n_clusters)) - 1.0, False
    return _WEBB[rng.integers(0, 6, size=(n_boot, n_clusters))], False


class _WildTest:
    """The bootstrap t-statistics of ``H0: beta_j = r`` for any ``r`` under fixed weights.

    With ``a`` the j-th column of ``X (X'X)^-1`` and ``u(r)`` the bootstrap residuals (restricted
    to ``beta_j = r``, hence linear in ``r``), a draw ``v`` gives ``beta*_j - r = v . s(r)``
    and CR1 score sums ``C(r) v`` with ``s_g = a_g' u_g`` and ``C_hg = a_h' (I - H)_hg u_g``
    (the algebra of Roodman, MacKinnon, Nielsen & Webb 2019, "Fast and wild"). Both are
    linear in ``r``, so each draw's t* is ``(n0 + r n1) / sqrt(q0 + 2 r q1 + r^2 q2)``: five
    numbers per draw, computed once, give the p-value of any null.
    """

    def __init__(
        self,
        endog: np.ndarray,
        exog: np.ndarray,
        j: int,
        codes: np.ndarray,
        n_clusters: int,
        impose_null: bool,
        draws: np.ndarray,
    ) -> None:
        from scipy import linalg

        n_rows, n_coefs = exog.shape
        q, r = np.linalg.qr(exog)
        a = (q @ linalg.solve_triangular(r, np.eye(n_coefs)).T)[:, j]
        beta = linalg.solve_triangular(r, q.T @ endog)
        indicator = np.zeros((n_rows, n_clusters))
        indicator[np.arange(n_rows), codes] = 1.0
        weighted = indicator * a[:, None]  # n x G
        k_mat = weighted.T - (weighted.T @ q) @ q.T  # G x n: rows of S' diag(a) (I - H)
        self.estimate = float(beta[j])
        scale = n_clusters / (n_clusters - 1) * (n_rows - 1) / (n_rows - n_coefs)
        self.se = math.sqrt(scale * np.sum((weighted.T @ (endog - exog @ beta)) ** 2))
        if impose_null:
            others = np.delete(exog, j, axis=1)
            resid, slope = _residuals(others, endog), -_residuals(others, exog[:, j])
        else:
            resid, slope = endog - exog @ beta, np.zeros(n_rows)
        # u(r) = resid + r * slope, so s(r) = s0 + r s1 and C(r) = C0 + r C1
        self._numerator = (draws @ (weighted.T @ resid), draws @ (weighted.T @ slope))
        score0 = draws @ ((k_mat * resid) @ indicator).T
        score1 = draws @ ((k_mat * slope) @ indicator).T
        self._quadratic = (
            scale * np.sum(score0**2, axis=1),
            scale * np.sum(score0 * score1, axis=1),
            scale * np.sum(score1**2, axis=1),
        )

    def t_observed(self, null: float) -> float:
        return (self.estimate - null) / self.se

    def p_value(self, null: float) -> float:
        """Share of draws whose |t*| is at least the observed |t| for ``beta_j = null``."""
        q0, q1, q2 = self._quadratic
        with np.errstate(divide="ignore", invalid="ignore"):
            t_boot = (self._numerator[0] + null * self._numerator[1]) / np.sqrt(
                q0 + 2 * null * q1 + null**2 * q2
            )
        return float(np.mean(np.abs(t_boot) >= abs(self.t_observed(null)) * (1 - _TIE)))

    def interval_end(self, alpha: float, side: float) -> tuple[float, bool]:
        """The interval end on ``side`` (-1 or +1) and whether it is unbounded."""
        inside, step = self.estimate, side * max(self.se, abs(self.estimate) * 1e-8, 1e-12)
        outside = inside + step
        for _ in range(_MAX_DOUBLINGS):
            if self.p_value(outside) <= alpha:
                break
            inside, step = outside, 2 * step
            outside = inside + step
        else:
            return side * math.inf, True
        # bisection to the jump of the p-value across alpha
        while abs(outside - inside) > 1e-10 * (abs(inside) + self.se):
            middle = 0.5 * (inside + outside)
            if self.p_value(middle) <= alpha:
                outside = middle
            else:
                inside = middle
        return 0.5 * (inside + outside), False


def _residuals(exog: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least-squares residuals of ``values`` on the columns of ``exog`` (``values`` without columns)."""
    if exog.shape[1] == 0:
        return values.copy()
    q, _ = np.linalg.qr(exog)
    return values - q @ (q.T @ values)
