"""Regression models from formula strings: :func:`ols` (optionally cluster-robust) and :func:`mixedlm`.

Both return a frozen result object holding tidy tables (``coefs``, ``fit``) and the raw
statsmodels result for anything else (``raw.summary()``, predictions, diagnostics).
Formulas use patsy syntax as in ``statsmodels.formula.api``.

:func:`ols_matrices` and :func:`mixedlm_matrices` fit the same models from ready design
matrices (see :mod:`kdanalysis.stats.design`), for callers that fit many models and would
otherwise spend most of their time building formulas; the fit and the result tables are
shared with the formula functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kdanalysis.errors import SchemaError
from kdanalysis.stats._checks import check_ci, check_columns, degenerate

__all__ = [
    "COEF_COLUMNS",
    "MIXEDLM_FIT_COLUMNS",
    "OLS_FIT_COLUMNS",
    "MixedLMResult",
    "OLSResult",
    "mixedlm",
    "mixedlm_matrices",
    "ols",
    "ols_matrices",
]

COEF_COLUMNS = ("term", "estimate", "se", "statistic", "p_val", "ci_low", "ci_high")
OLS_FIT_COLUMNS = ("n", "r2", "adj_r2", "aic", "bic", "cov_type", "n_clusters", "note")
MIXEDLM_FIT_COLUMNS = ("n", "n_groups", "converged", "method", "log_lik", "aic", "bic", "scale", "note")
VARIANCE_COLUMNS = ("component", "variance")


@dataclass(frozen=True, eq=False)
class OLSResult:
    """Result of :func:`ols`.

    Attributes
    ----------
    coefs : DataFrame
        One row per term: ``term, estimate, se, statistic, p_val, ci_low, ci_high``
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
        return _summary_text("OLS", self.coefs, self.fit)

    def __repr__(self) -> str:
        return self.summary()


@dataclass(frozen=True, eq=False)
class MixedLMResult:
    """Result of :func:`mixedlm`.

    Attributes
    ----------
    coefs : DataFrame
        Fixed effects: ``term, estimate, se, statistic, p_val, ci_low, ci_high``
        (``statistic`` is z, Wald inference).
    variances : DataFrame
        ``component, variance``: random-effect variances (and covariances) of the
        ``groups`` effects, the variance components of ``vc_formula``, and ``Residual``.
    fit : DataFrame
        One row: ``n, n_groups, converged, method, log_lik, aic, bic, scale, note``
        (``note`` holds the optimizer's convergence warnings, ``""`` if none; ``aic`` and
        ``bic`` are NaN under REML, as in statsmodels).
    raw : statsmodels MixedLMResultsWrapper
        The fitted statsmodels result.
    """

    coefs: pd.DataFrame
    variances: pd.DataFrame
    fit: pd.DataFrame
    raw: Any

    def summary(self) -> str:
        """The fixed effects, variance components and fit as plain text."""
        return _summary_text("MixedLM", self.coefs, self.fit, self.variances)

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
        ``coefs`` (``term, estimate, se, statistic, p_val, ci_low, ci_high``), ``fit`` (one
        row: ``n, r2, adj_r2, aic, bic, cov_type, n_clusters, note``), ``raw``. Degenerate
        data (no residual degree of freedom, fewer than 2 clusters) keep the least-squares
        estimates but give NaN inference, a ``note`` and a :class:`DegenerateDataWarning`.
    """
    import statsmodels.formula.api as smf

    check_ci(ci)
    check_columns(data, [] if cluster is None else [cluster])
    data = data.reset_index(drop=True)  # unique labels, so clusters align with the rows used
    model = _from_formula(smf.ols, formula, data)
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
    _check_matrices(label, endog, exog, {} if clusters is None else {"clusters": clusters})
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
    coefs = _coef_table(result.params, result.bse, result.tvalues, result.pvalues, result.conf_int(1 - ci))
    if note:
        coefs.loc[:, ["se", "statistic", "p_val", "ci_low", "ci_high"]] = np.nan
    return OLSResult(coefs=coefs, fit=fit_frame, raw=result)


def mixedlm(
    formula: str,
    data: pd.DataFrame,
    groups: str,
    re_formula: str | None = None,
    vc_formula: Mapping[str, str] | None = None,
    *,
    reml: bool = True,
    ci: float = 0.95,
) -> MixedLMResult:
    """Linear mixed model from a formula (``statsmodels`` ``MixedLM.from_formula``).

    By default a random intercept per level of ``groups``; ``re_formula`` adds random
    slopes (e.g. ``"~x"``), ``vc_formula`` adds variance components nested in ``groups``
    (e.g. ``{"task": "0 + C(task)"}``). Crossed random intercepts (say, for task *and*
    student) are variance components within a single group: pass a constant column as
    ``groups`` with ``re_formula="0"`` and
    ``vc_formula={"task": "0 + C(task)", "student": "0 + C(student)"}``. The model assumes
    normal random effects and errors, and a linear mean. Rows with a missing formula
    variable are dropped. Convergence problems are reported, not raised: ``fit.converged``
    and ``fit.note`` (the optimizer's ConvergenceWarnings).

    Parameters
    ----------
    formula : str
        Fixed-effects patsy formula, e.g. ``"gain ~ np.log(params_b)"``.
    data : DataFrame
    groups : str
        Column of the grouping factor.
    re_formula : str, optional
        Random-effects formula for ``groups`` (default: random intercept).
    vc_formula : dict of str to str, optional
        Variance-component formulas.
    reml : bool
        Restricted maximum likelihood (default) or maximum likelihood.
    ci : float
        Confidence level of the fixed-effect intervals.

    Returns
    -------
    MixedLMResult
        ``coefs`` (fixed effects: ``term, estimate, se, statistic, p_val, ci_low, ci_high``),
        ``variances`` (``component, variance``), ``fit`` (one row: ``n, n_groups,
        converged, method, log_lik, aic, bic, scale, note``), ``raw``.
    """
    import statsmodels.formula.api as smf

    check_ci(ci)
    check_columns(data, [groups])
    if data[groups].isna().any():
        raise SchemaError(f"groups column {groups!r} is missing in {int(data[groups].isna().sum())} row(s)")
    model = _from_formula(
        smf.mixedlm, formula, data, groups=groups, re_formula=re_formula, vc_formula=vc_formula
    )
    return _mixedlm_result(model, reml, ci)


def mixedlm_matrices(
    endog: pd.Series,
    exog: pd.DataFrame,
    groups: pd.Series,
    exog_vc: Mapping[str, pd.DataFrame],
    *,
    reml: bool = True,
    ci: float = 0.95,
    label: str = "mixedlm_matrices",
) -> MixedLMResult:
    """:func:`mixedlm` from ready design matrices, random effects as variance components only.

    The model of ``mixedlm(formula, data, groups, re_formula="0", vc_formula=...)``
    without the formulas: ``exog`` is the fixed-effects design, and ``exog_vc`` maps each
    variance component's name to its design (one row per observation; its columns are
    used as given within every group, where a formula's ``0 + C(x)`` keeps only the levels
    present in the group, so the two agree when every group holds every level, e.g. with
    one group for crossed random intercepts). The fit and the result are :func:`mixedlm`'s.

    Parameters
    ----------
    endog : Series
        Response, one value per row of ``exog``.
    exog : DataFrame
        Fixed-effects design; its column names become the ``term`` names.
    groups : Series
        Group label per row.
    exog_vc : dict of str to DataFrame
        Variance-component designs, each with the rows of ``exog``.
    reml : bool
        Restricted maximum likelihood (default) or maximum likelihood.
    ci : float
        Confidence level of the fixed-effect intervals.
    label : str
        Names the model in error messages.

    Returns
    -------
    MixedLMResult
        As :func:`mixedlm`.

    Raises
    ------
    SchemaError
        If a value is missing in any input, or their lengths differ.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

    check_ci(ci)
    _check_matrices(label, endog, exog, {"groups": groups, **exog_vc})
    labels, rows = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(rows == k) for k in range(len(labels))]
    names = sorted(exog_vc)
    # Column-major blocks and an empty random-effects design (not None), as MixedLM.from_formula
    # builds them for re_formula="0": the optimizer then does the same floating-point
    # operations and its path is the formula's bit for bit.
    spec = VCSpec(
        names,
        [[list(exog_vc[name].columns)] * len(members) for name in names],
        [[np.asfortranarray(exog_vc[name].to_numpy(dtype=float)[ii]) for ii in members] for name in names],
    )
    model = MixedLM(np.asarray(endog, dtype=float), exog, np.asarray(groups), np.zeros((len(exog), 0)), spec)
    return _mixedlm_result(model, reml, ci)


def _mixedlm_result(model: Any, reml: bool, ci: float) -> MixedLMResult:
    """Fit a statsmodels MixedLM model into a :class:`MixedLMResult` (convergence warnings as a note)."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        result = model.fit(reml=reml)
    messages = []
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            messages.append(str(warning.message))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    k_fe = len(result.fe_params)
    coefs = _coef_table(
        result.fe_params,
        result.bse_fe,
        result.fe_params / result.bse_fe,
        result.pvalues.iloc[:k_fe],  # the fixed effects lead the parameter vector
        result.conf_int(1 - ci).iloc[:k_fe],
    )
    random_names = list(result.params.index[k_fe:])
    random_values = [*result.cov_re.to_numpy()[np.tril_indices(model.k_re)], *np.atleast_1d(result.vcomp)]
    variances = pd.DataFrame(
        {"component": [*random_names, "Residual"], "variance": [*random_values, float(result.scale)]},
        columns=VARIANCE_COLUMNS,
    )
    fit = {
        "n": int(model.nobs),
        "n_groups": int(model.n_groups),
        "converged": bool(result.converged),
        "method": "REML" if reml else "ML",
        "log_lik": float(result.llf),
        "aic": float(result.aic),
        "bic": float(result.bic),
        "scale": float(result.scale),
        "note": "; ".join(dict.fromkeys(messages)),
    }
    return MixedLMResult(
        coefs=coefs, variances=variances, fit=pd.DataFrame([fit], columns=MIXEDLM_FIT_COLUMNS), raw=result
    )


def _check_matrices(
    label: str, endog: pd.Series, exog: pd.DataFrame, others: Mapping[str, pd.Series | pd.DataFrame]
) -> None:
    """Raise :class:`SchemaError` if a ``*_matrices`` input has a missing value or another length."""
    inputs: dict[str, pd.Series | pd.DataFrame] = {"endog": endog, "exog": exog, **others}
    for name, values in inputs.items():
        if len(values) != len(exog):
            raise SchemaError(f"{label}: {name} has {len(values)} rows, exog has {len(exog)}")
        missing = int(pd.isna(values.to_numpy()).reshape(len(values), -1).any(axis=1).sum())
        if missing:
            raise SchemaError(f"{label}: {name} is missing in {missing} row(s)")


def _from_formula(factory: Any, formula: str, data: pd.DataFrame, **kwargs: Any) -> Any:
    """Build a statsmodels formula model, turning formula errors into :class:`SchemaError`."""
    from patsy import PatsyError

    try:
        return factory(formula, data, missing="drop", **kwargs)
    except PatsyError as error:
        raise SchemaError(f"formula {formula!r} cannot be built from the data: {error}") from error


def _coef_table(
    estimate: pd.Series, se: pd.Series, statistic: pd.Series, p_val: pd.Series, interval: pd.DataFrame
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "term": list(estimate.index),
            "estimate": estimate.to_numpy(dtype=float),
            "se": np.asarray(se, dtype=float),
            "statistic": np.asarray(statistic, dtype=float),
            "p_val": np.asarray(p_val, dtype=float),
            "ci_low": interval.iloc[:, 0].to_numpy(dtype=float),
            "ci_high": interval.iloc[:, 1].to_numpy(dtype=float),
        },
        columns=COEF_COLUMNS,
    )


def _summary_text(
    name: str, coefs: pd.DataFrame, fit: pd.DataFrame, variances: pd.DataFrame | None = None
) -> str:
    parts = [f"{name} result", coefs.to_string(index=False)]
    if variances is not None:
        parts.append(variances.to_string(index=False))
    parts.append(fit.to_string(index=False))
    return "\n\n".join(parts)
