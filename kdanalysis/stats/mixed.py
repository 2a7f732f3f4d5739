"""Linear mixed models from formula strings (:func:`mixedlm`) or ready design matrices
(:func:`mixedlm_matrices`), returning a frozen :class:`MixedLMResult` with tidy tables
(``coefs``, ``variances``, ``fit``) and the raw statsmodels result."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kdanalysis.errors import SchemaError
from kdanalysis.stats._checks import check_ci, check_columns
from kdanalysis.stats._models import check_matrices, coef_table, from_formula, summary_text

__all__ = ["MIXEDLM_FIT_COLUMNS", "VARIANCE_COLUMNS", "MixedLMResult", "mixedlm", "mixedlm_matrices"]

MIXEDLM_FIT_COLUMNS = ("n", "n_groups", "converged", "method", "log_lik", "aic", "bic", "scale", "note")
VARIANCE_COLUMNS = ("component", "variance")


@dataclass(frozen=True, eq=False)
class MixedLMResult:
    """Result of :func:`mixedlm`.

    Attributes
    ----------
    coefs : DataFrame
        Fixed effects: ``term, estimate, se, statistic, df, p_val, ci_low, ci_high``
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
        return summary_text("MixedLM", self.coefs, self.fit, self.variances)

    def __repr__(self) -> str:
        return self.summary()


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
        ``coefs`` (fixed effects: ``term, estimate, se, statistic, df, p_val, ci_low, ci_high``),
        ``variances`` (``component, variance``), ``fit`` (one row: ``n, n_groups,
        converged, method, log_lik, aic, bic, scale, note``), ``raw``.
    """
    import statsmodels.formula.api as smf

    check_ci(ci)
    check_columns(data, [groups])
    if data[groups].isna().any():
        raise SchemaError(f"groups column {groups!r} is missing in {int(data[groups].isna().sum())} row(s)")
    model = from_formula(
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
    check_matrices(label, endog, exog, {"groups": groups, **exog_vc})
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
    coefs = coef_table(
        result.fe_params,
        result.bse_fe,
        result.fe_params / result.bse_fe,
        np.inf,  # Wald z
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
