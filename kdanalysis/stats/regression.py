"""Ordinary least squares from a formula (:func:`ols`) or a ready design matrix
(:func:`ols_matrices`), optionally cluster-robust (one- or two-way).

Both return a frozen :class:`OLSResult` holding tidy tables (``coefs``, ``fit``) and the raw
statsmodels result for anything else (``raw.summary()``, predictions, diagnostics).
Formulas use patsy syntax as in ``statsmodels.formula.api``. :func:`ols_matrices` is for
callers that fit many models and would otherwise spend most of their time building
formulas (see :mod:`kdanalysis.stats.design`); the fit and the result tables are shared
with :func:`ols`. The wild cluster bootstrap of one coefficient is
:func:`kdanalysis.stats.wild.wild_bootstrap`; mixed models live in :mod:`kdanalysis.stats.mixed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kdanalysis.errors import ConfigError
from kdanalysis.stats._checks import as_column_list, check_ci, check_columns, check_option, degenerate
from kdanalysis.stats._models import (
    COEF_COLUMNS,
    check_matrices,
    cluster_frame,
    clustered_formula_model,
    coef_table,
    summary_text,
)
from kdanalysis.stats._sandwich import cr2, identified_columns, psd_repair

__all__ = ["COEF_COLUMNS", "OLS_FIT_COLUMNS", "VCOV_TYPES", "OLSResult", "ols", "ols_matrices"]

OLS_FIT_COLUMNS = ("n", "r2", "adj_r2", "aic", "bic", "cov_type", "n_clusters", "note")

#: Allowed ``vcov=`` values with one cluster column (two-way clustering is CR1 only).
VCOV_TYPES = ("CR1", "CR2", "CR3")

#: statsmodels' ``cov_type`` of the estimators it computes (CR2 is :func:`~kdanalysis.stats._sandwich.cr2`).
_STATSMODELS_COV = {"CR1": "cluster", "CR3": "cluster-crv3", "CR1 two-way": "cluster"}

_NAN_INFERENCE = "standard errors, tests and intervals are NaN"


@dataclass(frozen=True, eq=False)
class OLSResult:
    """Result of :func:`ols`.

    Attributes
    ----------
    coefs : DataFrame
        One row per term: ``term, estimate, se, statistic, df, p_val, ci_low, ci_high``
        (``statistic`` is t, referred to a t distribution with ``df`` degrees of freedom;
        NaN for a term that is not identified).
    fit : DataFrame
        One row: ``n, r2, adj_r2, aic, bic, cov_type, n_clusters, note`` (``cov_type`` is
        ``"nonrobust"``, ``"CR1"``, ``"CR2"``, ``"CR3"`` or ``"CR1 two-way"``; ``n_clusters`` is
        the number of clusters, the smaller one with two-way clustering, NA without clusters).
    raw : statsmodels RegressionResultsWrapper
        The fitted statsmodels result on the identified columns: with ``cov_type`` CR1, CR3 or
        CR1 two-way its covariance is the one in ``coefs`` (before a two-way positive
        semi-definite repair); with CR2, without clusters and on degenerate data it is the
        plain non-robust fit (read CR2 inference from ``coefs``).
    """

    coefs: pd.DataFrame
    fit: pd.DataFrame
    raw: Any

    def summary(self) -> str:
        """The coefficient and fit tables as plain text."""
        return summary_text("OLS", self.coefs, self.fit)

    def __repr__(self) -> str:
        return self.summary()


def ols(
    formula: str,
    data: pd.DataFrame,
    cluster: str | list[str] | None = None,
    vcov: str | None = None,
    ci: float = 0.95,
) -> OLSResult:
    """Ordinary least squares from a formula, optionally with cluster-robust inference.

    Rows with a missing value in a formula variable are dropped. The model assumes a linear
    mean; without ``cluster``, independent homoscedastic errors (classical t inference with
    n - rank df); with ``cluster``, errors may be correlated and heteroscedastic within
    clusters but independent across them.

    Parameters
    ----------
    formula : str
        Patsy formula, e.g. ``"gain ~ np.log(params_b) + C(method)"``.
    data : DataFrame
    cluster : str or list of str, optional
        Column identifying the clusters (e.g. a student id), or two columns for two-way
        clustering.
    vcov : {"CR1", "CR2", "CR3"}, optional
        Cluster-robust covariance (needs ``cluster``); default ``"CR2"`` with one cluster
        column, ``"CR1"`` (the only one allowed) with two.
    ci : float
        Confidence level of the coefficient intervals.

    Returns
    -------
    OLSResult
        ``coefs`` (``term, estimate, se, statistic, df, p_val, ci_low, ci_high``), ``fit`` (one
        row: ``n, r2, adj_r2, aic, bic, cov_type, n_clusters, note``), ``raw``. Coefficients
        that are not identified (a column within relative tolerance 1e-7 of the span of the
        earlier columns, R ``lm``'s rule: the later of two collinear columns) get NaN in every
        column, the model is fitted on the identified columns, and the note names them.
        Degenerate data (no residual degree of freedom, fewer than 2 clusters) keep the
        least-squares estimates but give NaN inference. Both come with a
        :class:`DegenerateDataWarning`.

    Raises
    ------
    ConfigError
        For a ``vcov`` other than the allowed ones, ``vcov`` without ``cluster``, a non-CR1
        ``vcov`` or more than two columns with two-way clustering.
    SchemaError
        For a formula that cannot be built, a missing cluster column, or a cluster label
        missing in a used row.

    Notes
    -----
    Covariance estimators (``vcov``), with one cluster column:

    ``"CR2"`` (default)
        Bell–McCaffrey bias-reduced sandwich with per-coefficient Satterthwaite df, as R
        clubSandwich ``coef_test(lm_fit, vcov = "CR2", test = "Satterthwaite")`` (working
        model: independent errors; a cluster whose ``I - H_gg`` is singular, e.g. under
        cluster-level fixed effects, uses the generalised inverse square root as clubSandwich
        does). Computed by hand (:mod:`kdanalysis.stats._sandwich`), pinned against R.
    ``"CR1"``
        statsmodels' cluster sandwich (``cov_type="cluster"``: factor
        G/(G-1) (n-1)/(n-k), as R ``sandwich::vcovCL(type = "HC1")``) with t(G - 1).
    ``"CR3"``
        statsmodels' cluster jackknife (``cov_type="cluster-crv3"``): (G-1)/G times the sum
        of the squared leave-one-cluster-out changes of the estimates, as pyfixest's CRV3 and
        MacKinnon, Nielsen & Webb (2023); R clubSandwich's ``"CR3"`` is the same without the
        (G-1)/G factor. Inference with t(G - 1).

    With two cluster columns: two-way clustering of Cameron, Gelbach & Miller (2011),
    ``V_A + V_B - V_{A∩B}`` with CR1 components (statsmodels; R ``sandwich::vcovCL(cluster =
    ~ a + b, multi0 = FALSE)``), negative eigenvalues set to 0 when the sum is not positive
    semi-definite (said in ``note``), and t(min(G_A, G_B) - 1).

    **Which inference.** With few clusters (under about 40, and certainly with the 4-11 of a
    KD grid) CR1 with t(G - 1) is too liberal: use CR2 with Satterthwaite df (this default)
    and look at ``df`` — a df of 2-5 says the clusters carry little information whatever G
    is. For the one coefficient a conclusion rests on, add the wild cluster bootstrap
    (:func:`kdanalysis.stats.wild.wild_bootstrap`, restricted; Webb weights when G is under
    about 10, where the 2^G Rademacher draws make the p-value coarse), which does not rely
    on the t approximation. Cluster at the coarsest level whose units share errors (e.g. by
    student when pairs share students); when two non-nested dimensions both matter, two-way
    clustering is CR1-based and so rests on the smaller G. CR1 is kept for comparison with
    published (Stata/statsmodels-default) numbers.
    """
    import statsmodels.formula.api as smf

    columns = as_column_list(cluster)
    cov_type = _cov_type(len(columns), vcov)
    check_ci(ci)
    check_columns(data, columns)
    model, clusters = clustered_formula_model(smf.ols, formula, data, columns)
    return _ols_result(model, clusters, cov_type, f"ols({formula!r})", ci)


def ols_matrices(
    endog: pd.Series,
    exog: pd.DataFrame,
    clusters: pd.Series | pd.DataFrame | None = None,
    *,
    vcov: str | None = None,
    ci: float = 0.95,
    label: str = "ols_matrices",
) -> OLSResult:
    """:func:`ols` from a ready design matrix, without a formula (for many fits of one design).

    The fit, the covariance estimators, the rank and degenerate-data rules and the result
    are :func:`ols`'s: with the matrices a formula would build (same columns in the same
    order), the result is the same.

    Parameters
    ----------
    endog : Series
        Response, one value per row of ``exog``.
    exog : DataFrame
        Design matrix; its column names become the ``term`` names (include an intercept
        column yourself).
    clusters : Series or DataFrame, optional
        Cluster label per row; a DataFrame of two columns clusters two-way.
    vcov : {"CR1", "CR2", "CR3"}, optional
        As in :func:`ols`.
    ci : float
        Confidence level of the coefficient intervals.
    label : str
        Names the model in notes.

    Returns
    -------
    OLSResult
        As :func:`ols`.

    Raises
    ------
    ConfigError
        As :func:`ols`.
    SchemaError
        If a value of ``endog``, ``exog`` or ``clusters`` is missing, or their lengths differ.
    """
    import statsmodels.api as sm

    frame = cluster_frame(clusters)
    cov_type = _cov_type(0 if frame is None else frame.shape[1], vcov)
    check_ci(ci)
    check_matrices(label, endog, exog, {} if frame is None else {"clusters": frame})
    return _ols_result(sm.OLS(np.asarray(endog, dtype=float), exog), frame, cov_type, label, ci)


def _cov_type(n_columns: int, vcov: str | None) -> str:
    """The estimator's ``cov_type`` name for ``n_columns`` cluster columns and ``vcov``."""
    if n_columns == 0:
        if vcov is not None:
            raise ConfigError(f"vcov={vcov!r} needs cluster=; without clusters the fit is non-robust")
        return "nonrobust"
    check_option("vcov", vcov if vcov is not None else "CR2", VCOV_TYPES)
    if n_columns == 1:
        return vcov or "CR2"
    if n_columns > 2 or vcov not in (None, "CR1"):
        raise ConfigError(
            f"two-way clustering supports vcov='CR1' only and at most two cluster columns; "
            f"got vcov={vcov!r} with {n_columns} columns"
        )
    return "CR1 two-way"


def _ols_result(model: Any, clusters: pd.DataFrame | None, cov_type: str, label: str, ci: float) -> OLSResult:
    """Fit a statsmodels OLS model with the ``cov_type`` estimator into an :class:`OLSResult`."""
    import statsmodels.api as sm
    from scipy import stats

    names = list(model.exog_names)
    keep = identified_columns(model.exog)
    notes = []
    if not keep.all():
        dropped = ", ".join(repr(name) for name, kept in zip(names, keep, strict=True) if not kept)
        notes.append(f"term(s) {dropped} not identified (collinear with earlier columns) and NaN")
        exog = pd.DataFrame(model.exog[:, keep], columns=[n for n, k in zip(names, keep, strict=True) if k])
        model = sm.OLS(model.endog, exog)
    n_rows, rank = model.exog.shape
    codes: list[np.ndarray] = []
    n_clusters: Any = pd.NA
    if clusters is not None:
        codes = [pd.factorize(clusters[column])[0] for column in clusters.columns]
        n_clusters = min(int(c.max()) + 1 for c in codes)
    inference = True
    if n_rows <= rank:
        notes.append(f"{n_rows} rows for {rank} identified coefficients; {_NAN_INFERENCE}")
        inference = False
    elif clusters is not None and n_clusters < 2:
        where = " or ".join(map(repr, clusters.columns))
        notes.append(f"{n_clusters} cluster(s) in {where}, need at least 2; {_NAN_INFERENCE}")
        inference = False
    note = degenerate(f"{label}: {'; '.join(notes)}") if notes else ""
    if inference and cov_type in _STATSMODELS_COV:
        groups = codes[0] if len(codes) == 1 else np.column_stack(codes)
        raw = model.fit(cov_type=_STATSMODELS_COV[cov_type], cov_kwds={"groups": groups}, use_t=True)
    else:
        raw = model.fit()
    # every statistic has one entry per term of the design, NaN where not identified
    estimate = np.full(len(names), np.nan)
    estimate[keep] = np.asarray(raw.params, dtype=float)
    cov = np.full((rank, rank), np.nan)
    df = np.full(len(names), np.nan)
    if inference and cov_type == "CR2":
        cov, df[keep] = cr2(model.exog, np.asarray(raw.resid, dtype=float), codes[0], n_clusters)
    elif inference:
        cov = np.asarray(raw.cov_params(), dtype=float)
        df[keep] = float(raw.df_resid) if cov_type == "nonrobust" else float(n_clusters - 1)
        if cov_type == "CR1 two-way":
            cov, repaired = psd_repair(cov)
            if repaired:
                repair = "two-way covariance not positive semi-definite: negative eigenvalues set to 0"
                note = f"{note}; {repair}" if note else f"{label}: {repair}"
    se = np.full(len(names), np.nan)
    se[keep] = np.sqrt(np.diag(cov))
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = estimate / se
        half = stats.t.ppf(0.5 + ci / 2, df) * se
    fit = {
        "n": [int(raw.nobs)],
        "r2": [float(raw.rsquared)],
        "adj_r2": [float(raw.rsquared_adj)],
        "aic": [float(raw.aic)],
        "bic": [float(raw.bic)],
        "cov_type": [cov_type],
        "n_clusters": pd.array([n_clusters], dtype="Int64"),
        "note": [note],
    }
    coefs = coef_table(
        pd.Series(estimate, index=names),
        se,
        statistic,
        df,
        2 * stats.t.sf(np.abs(statistic), df),
        np.column_stack([estimate - half, estimate + half]),
    )
    return OLSResult(coefs=coefs, fit=pd.DataFrame(fit, columns=OLS_FIT_COLUMNS), raw=raw)
