"""Ordinary least squares from a formula (:func:`ols`) or a ready design matrix
(:func:`ols_matrices`), optionally cluster-robust.

Both return a frozen :class:`OLSResult` holding tidy tables (``coefs``, ``fit``) and the raw
statsmodels result for anything else (``raw.summary()``, predictions, diagnostics).
Formulas use patsy syntax as in ``statsmodels.formula.api``. :func:`ols_matrices` is for
callers that fit many models and would otherwise spend most of their time building
formulas (see :mod:`kdanalysis.stats.design`); the fit and the result tables are shared
with :func:`ols`. Mixed models live in :mod:`kdanalysis.stats.mixed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kdanalysis.errors import SchemaError
from kdanalysis.stats._checks import check_ci, check_columns, degenerate
from kdanalysis.stats._models import COEF_COLUMNS, check_matrices, coef_table, from_formula, summary_text

__all__ = ["COEF_COLUMNS", "OLS_FIT_COLUMNS", "OLSResult", "ols", "ols_matrices"]

OLS_FIT_COLUMNS = ("n", "r2", "adj_r2", "aic", "bic", "cov_type", "n_clusters", "note")


@dataclass(frozen=True, eq=False)
class OLSResult:
    """Result of :func:`ols`.

    Attributes
    ----------
    coefs : DataFrame
        One row per term: ``term, estimate, se, statistic, df, p_val, ci_low, ci_high``
        (``statistic`` is t; with clusters, t with G - 1 degrees of freedom).
    fit : DataFrame
        One row: ``n, r2, adj_r2, aic, bic, cov_type, n_clusters, note`` (``cov_type`` is
        ``"nonrobust"`` or ``"cluster"``; ``n_clusters`` is NA without clusters).
    raw : statsmodels RegressionResultsWrapper
        The fitted statsmodels result (the plain, non-robust fit when the data are
        degenerate, see :func:`ols`).
    """

    coefs: pd.DataFrame
    fit: pd.DataFrame
    raw: Any

    def summary(self) -> str:
        """The coefficient and fit tables as plain text."""
        return summary_text("OLS", self.coefs, self.fit)

    def __repr__(self) -> str:
        return self.summary()


def ols(formula: str, data: pd.DataFrame, cluster: str | None = None, ci: float = 0.95) -> OLSResult:
    """Ordinary least squares from a formula, optionally with cluster-robust standard errors.

    Rows with a missing value in a formula variable are dropped. With ``cluster``, the
    covariance is statsmodels' cluster-robust sandwich (``cov_type="cluster"``, small-sample
    corrected) and inference uses t with G - 1 degrees of freedom (G clusters). The model
    assumes a linear mean and, without ``cluster``, independent homoscedastic errors;
    with ``cluster``, errors may be correlated and heteroscedastic within clusters but
    independent across them.

    Parameters
    ----------
    formula : str
        Patsy formula, e.g. ``"gain ~ np.log(params_b) + C(method)"``.
    data : DataFrame
    cluster : str, optional
        Column identifying the clusters (e.g. a teacher-student pair id).
    ci : float
        Confidence level of the coefficient intervals.

    Returns
    -------
    OLSResult
        ``coefs`` (``term, estimate, se, statistic, df, p_val, ci_low, ci_high``), ``fit`` (one
        row: ``n, r2, adj_r2, aic, bic, cov_type, n_clusters, note``), ``raw``. Degenerate
        data (no residual degree of freedom, fewer than 2 clusters) keep the least-squares
        estimates but give NaN inference, a ``note`` and a :class:`DegenerateDataWarning`.
    """
    import statsmodels.formula.api as smf

    check_ci(ci)
    check_columns(data, [] if cluster is None else [cluster])
    data = data.reset_index(drop=True)  # unique labels, so clusters align with the rows used
    model = from_formula(smf.ols, formula, data)
    labels = None
    if cluster is not None:
        labels = data.loc[model.data.row_labels, cluster]
        if labels.isna().any():
            raise SchemaError(
                f"cluster column {cluster!r} is missing in {int(labels.isna().sum())} used row(s)"
            )
    return _ols_result(model, labels, cluster, f"ols({formula!r})", ci)


def ols_matrices(
    endog: pd.Series,
    exog: pd.DataFrame,
    clusters: pd.Series | None = None,
    *,
    ci: float = 0.95,
    label: str = "ols_matrices",
) -> OLSResult:
    """:func:`ols` from a ready design matrix, without a formula (for many fits of one design).

    The fit, the cluster-robust covariance, the degenerate-data rules and the result are
    :func:`ols`'s: with the matrices a formula would build (same columns in the same
    order), the result is the same.

    Parameters
    ----------
    endog : Series
        Response, one value per row of ``exog``.
    exog : DataFrame
        Design matrix; its column names become the ``term`` names (include an intercept
        column yourself).
    clusters : Series, optional
        Cluster label per row (cluster-robust standard errors as in :func:`ols`).
    ci : float
        Confidence level of the coefficient intervals.
    label : str
        Names the model in degenerate-data notes.

    Returns
    -------
    OLSResult
        As :func:`ols`.

    Raises
    ------
    SchemaError
        If a value of ``endog``, ``exog`` or ``clusters`` is missing, or their lengths differ.
    """
    import statsmodels.api as sm

    check_ci(ci)
    check_matrices(label, endog, exog, {} if clusters is None else {"clusters": clusters})
    name = None if clusters is None else str(clusters.name or "clusters")
    return _ols_result(sm.OLS(np.asarray(endog, dtype=float), exog), clusters, name, label, ci)


def _ols_result(
    model: Any, clusters: pd.Series | None, cluster: str | None, label: str, ci: float
) -> OLSResult:
    """Fit a statsmodels OLS model (clustered by the labels ``clusters``) into an :class:`OLSResult`."""
    n_clusters: Any = pd.NA
    if clusters is not None:
        codes, uniques = pd.factorize(clusters)
        n_clusters = len(uniques)
    n_rows, n_coefs = model.exog.shape
    note = ""
    if n_rows <= n_coefs:
        note = f"{n_rows} rows for {n_coefs} coefficients"
    elif clusters is not None and n_clusters < 2:
        note = f"{n_clusters} cluster(s) in {cluster!r}, need at least 2"
    if note:
        note = degenerate(f"{label}: {note}; standard errors, tests and intervals are NaN")
    if note or clusters is None:
        result = model.fit()
    else:
        result = model.fit(cov_type="cluster", cov_kwds={"groups": codes}, use_t=True)
    fit = {
        "n": [int(result.nobs)],
        "r2": [float(result.rsquared)],
        "adj_r2": [float(result.rsquared_adj)],
        "aic": [float(result.aic)],
        "bic": [float(result.bic)],
        "cov_type": [result.cov_type],
        "n_clusters": pd.array([n_clusters], dtype="Int64"),
        "note": [note],
    }
    fit_frame = pd.DataFrame(fit, columns=OLS_FIT_COLUMNS)
    df = float(n_clusters - 1) if clusters is not None and not note else float(result.df_resid)
    coefs = coef_table(
        result.params, result.bse, result.tvalues, df, result.pvalues, result.conf_int(1 - ci)
    )
    if note:
        coefs.loc[:, ["se", "statistic", "df", "p_val", "ci_low", "ci_high"]] = np.nan
    return OLSResult(coefs=coefs, fit=fit_frame, raw=result)
