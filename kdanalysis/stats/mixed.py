"""Linear mixed models from formula strings (:func:`mixedlm`) or ready design matrices
(:func:`mixedlm_matrices`), returning a frozen :class:`MixedLMResult` with tidy tables
(``coefs``, ``variances``, ``fit``) and the raw statsmodels result.

statsmodels fits the model (with a fallback chain of optimizers that keeps the best REML
value); small-sample inference for the fixed effects (Satterthwaite or Kenward-Roger
degrees of freedom, :mod:`kdanalysis.stats._reml`) is computed at its estimates.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.stats._checks import check_ci, check_columns, check_option, degenerate
from kdanalysis.stats._kenward_roger import kenward_roger
from kdanalysis.stats._models import check_matrices, coef_table, from_formula, summary_text
from kdanalysis.stats._reml import Structure, profiled_optimum, satterthwaite, structure_of, theta_of

__all__ = [
    "DF_METHODS",
    "MIXEDLM_FIT_COLUMNS",
    "OPTIMIZERS",
    "SINGULAR_TOL",
    "VARIANCE_COLUMNS",
    "MixedLMResult",
    "mixedlm",
    "mixedlm_matrices",
]

MIXEDLM_FIT_COLUMNS = (
    "n",
    "n_groups",
    "converged",
    "optimizer",
    "singular",
    "method",
    "df_method",
    "log_lik",
    "aic",
    "bic",
    "scale",
    "note",
)
VARIANCE_COLUMNS = ("component", "variance")

#: Allowed ``df=``: the reference distribution of the fixed-effect tests.
DF_METHODS = ("satterthwaite", "kenward-roger", "wald")

#: The optimizer chain, every member started at the profiled-REML optimum
#: (:func:`~kdanalysis.stats._reml.profiled_optimum`): statsmodels' default (``bfgs``, retried
#: with ``lbfgs`` and ``cg``), then, only if that did not converge cleanly, each alternative.
OPTIMIZERS = ("default", "lbfgs", "powell", "nm")

#: A fit is singular when a random term's relative Cholesky factor has a diagonal entry
#: (``sd / sigma`` for a variance component) below this (lme4's ``isSingular``).
SINGULAR_TOL = 1e-4

#: A later optimizer replaces the kept fit only if it raises the log-likelihood by more.
_LOG_LIK_GAIN = 1e-6

#: Smallest relative variance statsmodels is started at (it inverts them).
_START_FLOOR = 1e-10

_ONE_GROUP = "__mixedlm_one_group__"
_RANDOM_FORM = re.compile(r"^[^:\s]+(:[^:\s]+)*$")


@dataclass(frozen=True, eq=False)
class MixedLMResult:
    """Result of :func:`mixedlm`.

    Attributes
    ----------
    coefs : DataFrame
        Fixed effects: ``term, estimate, se, statistic, df, p_val, ci_low, ci_high``
        (``statistic`` is t with ``df`` degrees of freedom, or z with ``df = inf`` under
        ``df="wald"``).
    variances : DataFrame
        ``component, variance``: random-effect variances (and covariances) of the
        ``groups`` effects, the variance components, and ``Residual``.
    fit : DataFrame
        One row: ``n, n_groups, converged, optimizer, singular, method, df_method, log_lik,
        aic, bic, scale, note`` (``optimizer`` the one whose fit was kept, see
        :data:`OPTIMIZERS`; ``singular`` as lme4's ``isSingular``, see
        :data:`SINGULAR_TOL`; ``note`` the optimizer's convergence warnings, the fallback
        taken, a singular fit or degenerate data, ``""`` if none; ``aic`` and ``bic`` are
        NaN under REML, as in statsmodels).
    raw : statsmodels MixedLMResultsWrapper or None
        The kept statsmodels result (None for degenerate data).
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
    groups: str | None = None,
    re_formula: str | None = None,
    vc_formula: Mapping[str, str] | None = None,
    *,
    random: Sequence[str] | None = None,
    df: str = "satterthwaite",
    reml: bool = True,
    ci: float = 0.95,
) -> MixedLMResult:
    """Linear mixed model from a formula (``statsmodels`` ``MixedLM.from_formula``).

    Random effects, in lme4 terms:

    - ``random=["task", "student"]``: crossed random intercepts ``(1|task) + (1|student)``;
      an entry ``"pair:task"`` is the intercept of each observed pair × task cell,
      ``(1|pair:task)``. Built as variance components within one group (statsmodels' way
      of crossing), so no grouping column is needed.
    - ``groups="student"``: a random intercept per student, ``(1|student)``;
      ``re_formula="~x"`` makes it a correlated random intercept and slope,
      ``(1 + x|student)``; ``vc_formula`` adds statsmodels variance components nested in
      ``groups``.
    - ``groups`` and ``random`` together: the ``random`` terms are nested in ``groups``,
      e.g. ``groups="pair", random=["task"]`` is ``(1|pair) + (1|pair:task)``.

    The model assumes normal random effects and errors and a linear mean. Rows with a
    missing formula variable are dropped.

    Fitting: lme4's profiled REML (or ML) deviance is minimised over the relative Cholesky
    factors by L-BFGS-B (bounded at 0, leaving a zero variance where the deviance falls
    off the boundary; written here, see :mod:`kdanalysis.stats._reml`); statsmodels then
    fits from that start. If its default optimizer does not converge cleanly (not converged,
    or it had to retry another method), the other :data:`OPTIMIZERS` are tried from the
    same start and the fit with the highest (REML) log-likelihood among the converged ones
    is kept (``fit.optimizer``; the note says so). statsmodels' own default start can stop
    at a worse optimum. ``fit.singular`` flags a random-effect variance at ~0 (a boundary
    fit: a diagonal entry of a relative Cholesky factor below :data:`SINGULAR_TOL`, lme4's
    ``isSingular``); the note names the term.

    Inference (``df``): ``"satterthwaite"`` (default) gives t tests and intervals with
    per-coefficient Satterthwaite degrees of freedom, as ``summary(lmerTest::lmer(...))``;
    ``"kenward-roger"`` uses the Kenward-Roger adjusted covariance and df (pbkrtest, as
    ``summary(m, ddf="Kenward-Roger")``; REML only); ``"wald"`` is statsmodels' z test
    (``df = inf``). Both small-sample methods are computed here by hand at statsmodels'
    estimates (no Python library provides them; see :mod:`kdanalysis.stats._reml`).

    Degenerate data (no more rows than fixed effects, a rank-deficient fixed-effects
    design, a random term with one level, or every level of a random term holding a single
    row) gives all-NaN coefficient and variance rows (estimates included) with a note and a
    :class:`~kdanalysis.stats.DegenerateDataWarning`, without a fit.

    Parameters
    ----------
    formula : str
        Fixed-effects patsy formula, e.g. ``"gain ~ log2_size + C(method)"``.
    data : DataFrame
    groups : str, optional
        Column of the grouping factor (required with ``re_formula``).
    re_formula : str, optional
        Random-effects formula for ``groups`` (default: random intercept).
    vc_formula : dict of str to str, optional
        Variance-component formulas (nested in ``groups``).
    random : sequence of str, optional
        Random intercepts: column names, or ``"a:b"`` interactions of columns.
    df : {"satterthwaite", "kenward-roger", "wald"}
        Degrees of freedom of the fixed-effect tests.
    reml : bool
        Restricted maximum likelihood (default) or maximum likelihood.
    ci : float
        Confidence level of the fixed-effect intervals.

    Returns
    -------
    MixedLMResult
        ``coefs`` (fixed effects: ``term, estimate, se, statistic, df, p_val, ci_low, ci_high``),
        ``variances`` (``component, variance``), ``fit`` (one row: ``n, n_groups,
        converged, optimizer, singular, method, df_method, log_lik, aic, bic, scale, note``),
        ``raw``.

    Raises
    ------
    ConfigError
        For an unknown ``df``, Kenward-Roger with ``reml=False``, no random effects, a
        ``re_formula`` without ``groups``, a malformed ``random`` entry or a name in both
        ``random`` and ``vc_formula``.
    SchemaError
        For a missing column or a formula that cannot be built.
    """
    import statsmodels.formula.api as smf

    check_ci(ci)
    _check_df(df, reml)
    components = _random_components(random, vc_formula)
    if groups is None:
        if re_formula is not None:
            raise ConfigError(
                "re_formula needs groups: random slopes vary by a grouping column; allowed forms: "
                "groups='g' (+ re_formula='~x'), random=['a', 'b', 'a:b'], or both (random nested in groups)"
            )
        if not components:
            raise ConfigError(
                "mixedlm needs random effects: pass groups='g' and/or random=['a', 'b', 'a:b'] "
                "(or vc_formula with groups)"
            )
        data = data.assign(**{_ONE_GROUP: 1})
        groups, re_formula = _ONE_GROUP, "0"
    if str(re_formula).replace(" ", "") == "0" and not components:
        raise ConfigError(
            "re_formula='0' without variance components leaves the model with no random effects"
        )
    check_columns(data, [groups, *(part for name in random or [] for part in name.split(":"))])
    if data[groups].isna().any():
        raise SchemaError(f"groups column {groups!r} is missing in {int(data[groups].isna().sum())} row(s)")
    model = from_formula(
        smf.mixedlm, formula, data, groups=groups, re_formula=re_formula, vc_formula=components or None
    )
    return _mixedlm_result(model, reml=reml, df=df, ci=ci, label="mixedlm")


def mixedlm_matrices(
    endog: pd.Series,
    exog: pd.DataFrame,
    groups: pd.Series,
    exog_vc: Mapping[str, pd.DataFrame],
    *,
    df: str = "satterthwaite",
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
    one group for crossed random intercepts). The fit, optimizer chain, inference and
    degenerate-data handling are :func:`mixedlm`'s.

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
    df : {"satterthwaite", "kenward-roger", "wald"}
        Degrees of freedom of the fixed-effect tests.
    reml : bool
        Restricted maximum likelihood (default) or maximum likelihood.
    ci : float
        Confidence level of the fixed-effect intervals.
    label : str
        Names the model in error messages and notes.

    Returns
    -------
    MixedLMResult
        As :func:`mixedlm`.

    Raises
    ------
    SchemaError
        If a value is missing in any input, or their lengths differ.
    ConfigError
        For an unknown ``df``, Kenward-Roger with ``reml=False`` or no variance component.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

    check_ci(ci)
    _check_df(df, reml)
    check_matrices(label, endog, exog, {"groups": groups, **exog_vc})
    if not exog_vc:
        raise ConfigError(f"{label}: exog_vc is empty; the model needs at least one variance component")
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
    return _mixedlm_result(model, reml=reml, df=df, ci=ci, label=label)


def _check_df(df: str, reml: bool) -> None:
    check_option("df", df, DF_METHODS)
    if df == "kenward-roger" and not reml:
        raise ConfigError(
            "df='kenward-roger' needs reml=True (as pbkrtest); use 'satterthwaite' or 'wald' with ML"
        )


def _random_components(random: Sequence[str] | None, vc_formula: Mapping[str, str] | None) -> dict[str, str]:
    """The variance-component formulas of ``random`` (``0 + C(a):C(b)`` per entry) and ``vc_formula``."""
    components = dict(vc_formula or {})
    if random is None:
        return components
    if isinstance(random, str) or not all(isinstance(name, str) for name in random):
        raise ConfigError(
            f"random={random!r} is not allowed; pass a list such as ['task', 'student', 'pair:task']"
        )
    for name in random:
        if not _RANDOM_FORM.match(name):
            raise ConfigError(
                f"random entry {name!r} is not allowed; use a column name ('task') or an interaction of "
                "columns ('pair:task')"
            )
        if name in components:
            raise ConfigError(f"random entry {name!r} is also a vc_formula name; give it once")
        components[name] = "0 + " + ":".join(f"C({part})" for part in name.split(":"))
    return components


def _mixedlm_result(model: Any, *, reml: bool, df: str, ci: float, label: str) -> MixedLMResult:
    """Fit ``model`` (optimizer chain) into a :class:`MixedLMResult` with ``df`` inference."""
    structure = structure_of(model)
    if not structure.terms:
        raise ConfigError(
            f"{label}: the model has no random effects; add groups, random or variance components"
        )
    names = [str(name) for name in model.data.param_names]
    problem = _degenerate_structure(structure, int(model.k_fe))
    if problem:
        return _degenerate_result(model, names, f"{label}: {problem}", reml, df)
    result, optimizer, messages = _fit_best(model, structure, reml)
    k_fe = len(result.fe_params)
    theta, sigma = theta_of(result)
    singular = _singular_terms(structure, theta)
    if singular:
        messages.append(f"singular fit: {', '.join(singular)} variance ~0 (relative sd < {SINGULAR_TOL:g})")
    if df == "wald":
        coefs = coef_table(
            result.fe_params,
            result.bse_fe,
            result.fe_params / result.bse_fe,
            np.inf,
            result.pvalues.iloc[:k_fe],  # the fixed effects lead the parameter vector
            result.conf_int(1 - ci).iloc[:k_fe],
        )
    else:
        if df == "satterthwaite":
            inference = satterthwaite(structure, theta, sigma, reml)
            if inference.negative_eigenvalues:
                messages.append(
                    f"the deviance Hessian has {inference.negative_eigenvalues} negative eigenvalue(s): "
                    "not at a minimum; Satterthwaite df use its positive part (as lmerTest)"
                )
            vcov, dof = inference.vcov, inference.df
        else:
            vcov, dof = kenward_roger(structure, theta, sigma)
        coefs = _t_table(result.fe_params, np.sqrt(np.diag(vcov)), dof, ci)
    random_values = [*result.cov_re.to_numpy()[np.tril_indices(model.k_re)], *np.atleast_1d(result.vcomp)]
    variances = pd.DataFrame(
        {"component": [*names[k_fe:], "Residual"], "variance": [*random_values, float(result.scale)]},
        columns=VARIANCE_COLUMNS,
    )
    fit = {
        "n": int(model.nobs),
        "n_groups": int(model.n_groups),
        "converged": bool(result.converged),
        "optimizer": optimizer,
        "singular": bool(singular),
        "method": "REML" if reml else "ML",
        "df_method": df,
        "log_lik": float(result.llf),
        "aic": float(result.aic),
        "bic": float(result.bic),
        "scale": float(result.scale),
        "note": "; ".join(dict.fromkeys(messages)),
    }
    return MixedLMResult(
        coefs=coefs, variances=variances, fit=pd.DataFrame([fit], columns=MIXEDLM_FIT_COLUMNS), raw=result
    )


def _t_table(estimate: pd.Series, se: np.ndarray, dof: np.ndarray, ci: float) -> pd.DataFrame:
    """Coefficient table of t tests and t intervals with per-coefficient ``dof`` (NaN df: NaN inference)."""
    statistic = estimate.to_numpy() / se
    half = stats.t.ppf(0.5 + ci / 2, dof) * se
    interval = pd.DataFrame({"low": estimate.to_numpy() - half, "high": estimate.to_numpy() + half})
    return coef_table(estimate, se, statistic, dof, 2 * stats.t.sf(np.abs(statistic), dof), interval)


def _start_params(model: Any, structure: Structure, theta: np.ndarray) -> Any:
    """statsmodels' parameters (relative to the residual variance) at lme4's ``theta``.

    statsmodels inverts the variances, so a variance of exactly 0 (a boundary optimum)
    starts at :data:`_START_FLOOR` instead.
    """
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    factor = structure.factor(theta)
    k_re = int(model.k_re)
    if k_re:
        block = factor[np.ix_(structure.terms[0].columns[0], structure.terms[0].columns[0])]
        cov_re = block @ block.T + _START_FLOOR * np.eye(k_re)
        vcomp = theta[k_re * (k_re + 1) // 2 :] ** 2
    else:
        cov_re, vcomp = np.zeros((0, 0)), theta**2
    return MixedLMParams.from_components(
        np.zeros(model.k_fe), cov_re=cov_re, vcomp=np.maximum(vcomp, _START_FLOOR)
    )


def _fit_once(model: Any, reml: bool, optimizer: str, start: Any) -> tuple[Any, list[str]]:
    """One statsmodels fit from ``start``; its ConvergenceWarnings returned as messages (other
    warnings re-emitted)."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            result = model.fit(
                reml=reml, start_params=start, method=None if optimizer == "default" else optimizer
            )
        except (np.linalg.LinAlgError, ValueError) as error:
            if optimizer == "default":
                raise
            return None, [f"{optimizer} failed: {error}"]
    messages = []
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            messages.append(str(warning.message))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return result, messages


def _fit_best(model: Any, structure: Structure, reml: bool) -> tuple[Any, str, list[str]]:
    """The kept fit of the optimizer chain (:data:`OPTIMIZERS`), its optimizer and note messages."""
    start = _start_params(model, structure, profiled_optimum(structure, reml))
    best, messages = _fit_once(model, reml, "default", start)
    trouble = not best.converged or any("Retrying" in message for message in messages)
    if not trouble:
        return best, "default", messages
    first = best
    kept, kept_messages = "default", messages
    for optimizer in OPTIMIZERS[1:]:
        result, result_messages = _fit_once(model, reml, optimizer, start)
        if result is None or not result.converged or not np.isfinite(result.llf):
            continue
        if not best.converged or result.llf > best.llf + _LOG_LIK_GAIN:
            best, kept, kept_messages = result, optimizer, result_messages
    state = "did not converge" if not first.converged else "converged only after retrying other methods"
    if kept == "default":
        summary = f"statsmodels' default optimizer {state}; no other optimizer found a better converged fit"
    else:
        summary = (
            f"statsmodels' default optimizer {state} (log-lik {first.llf:.6g}); "
            f"kept the {kept} fit (log-lik {best.llf:.6g})"
        )
    return best, kept, [summary, *(m for m in kept_messages if not m.startswith("Retrying"))]


def _singular_terms(structure: Structure, theta: np.ndarray) -> list[str]:
    """Names of the random terms whose relative Cholesky factor has a diagonal entry below the tolerance."""
    names = []
    values = iter(theta)
    for term in structure.terms:
        diagonal = [value for (i, j), value in zip(term.pairs, values, strict=False) if i == j]
        if min(diagonal) < SINGULAR_TOL:
            names.append(term.name)
    return names


def _degenerate_structure(structure: Structure, k_fe: int) -> str:
    """Why the random-effects structure cannot be estimated, or ``""``."""
    n = len(structure.y)
    if n <= k_fe:
        return f"{n} row(s) for {k_fe} fixed effect(s): no residual degrees of freedom"
    rank = int(np.linalg.matrix_rank(structure.x))
    if rank < k_fe:
        return (
            f"the fixed-effects design has rank {rank} < {k_fe} columns: not all coefficients are identified"
        )
    for term in structure.terms:
        used = structure.z[:, term.columns] != 0  # (n, levels, k)
        rows_per_level = used.any(axis=2).sum(axis=0)
        present = rows_per_level[rows_per_level > 0]
        if len(present) <= 1:
            return f"random term {term.name!r} has {len(present)} level(s): its variance is not identified"
        if (present == 1).all():
            return (
                f"every level of random term {term.name!r} holds a single row: "
                "its variance is not separable from the residual"
            )
    return ""


def _degenerate_result(model: Any, names: list[str], note: str, reml: bool, df: str) -> MixedLMResult:
    """NaN coefficient and variance rows with ``note`` (and a DegenerateDataWarning)."""
    note = degenerate(note)
    k_fe = int(model.k_fe)
    nan = np.full(k_fe, np.nan)
    coefs = coef_table(
        pd.Series(nan, index=names[:k_fe]), nan, nan, nan, nan, pd.DataFrame({"low": nan, "high": nan})
    )
    variances = pd.DataFrame(
        {"component": [*names[k_fe:], "Residual"], "variance": np.nan}, columns=VARIANCE_COLUMNS
    )
    fit = {
        "n": int(model.nobs),
        "n_groups": int(model.n_groups),
        "converged": False,
        "optimizer": "",
        "singular": False,
        "method": "REML" if reml else "ML",
        "df_method": df,
        "log_lik": np.nan,
        "aic": np.nan,
        "bic": np.nan,
        "scale": np.nan,
        "note": note,
    }
    return MixedLMResult(
        coefs=coefs, variances=variances, fit=pd.DataFrame([fit], columns=MIXEDLM_FIT_COLUMNS), raw=None
    )
