"""Tidy statistics: a DataFrame and column names (or a formula) in, a DataFrame out.

Every table-returning function has a fixed, documented column order (see each
docstring), a generic ``by=`` (one row per group, keys first, identical to per-group
calls) and never rounds. Degenerate data (n < 3, constant input, a single level) gives a
row of NaNs with a ``note`` and a :class:`DegenerateDataWarning` instead of an exception;
invalid arguments raise :class:`~kdanalysis.errors.ConfigError` (options, with the
allowed values) or :class:`~kdanalysis.errors.SchemaError` (missing/non-numeric columns)
at once. The mathematics is scipy's and statsmodels' (statsmodels loads on first use).

Functions
---------
corr, partial_corr
    Pearson / Spearman / Kendall correlation with CI; partial correlation.
ttest, anova
    One-sample, paired and two-sample t-tests; one-way ANOVA.
ols, mixedlm
    Formula regressions returning :class:`OLSResult` / :class:`MixedLMResult` (mixed
    models: crossed/nested random intercepts, Satterthwaite or Kenward-Roger df); the same
    fits from ready design matrices (no formula per fit) are
    :func:`kdanalysis.stats.regression.ols_matrices` / :func:`kdanalysis.stats.mixed.mixedlm_matrices`, with
    patsy-identical pieces in :mod:`kdanalysis.stats.design`.
wild_bootstrap
    Wild cluster bootstrap p-value and interval of one OLS coefficient (few clusters);
    from a design matrix: :func:`kdanalysis.stats.wild.wild_bootstrap_matrices`.
adjust_pvalues
    Holm, Bonferroni, Benjamini-Hochberg.
bootstrap_ci
    Vectorised seeded bootstrap interval of any vectorised statistic.
mcnemar, paired_bootstrap
    Per-item paired comparisons of two systems.
gains
    KD minus baseline per unit and task (:mod:`kdanalysis.stats.gains`).
"""

from __future__ import annotations

from kdanalysis.stats._checks import DegenerateDataWarning
from kdanalysis.stats.correlation import corr, partial_corr
from kdanalysis.stats.gains import gains
from kdanalysis.stats.mixed import MixedLMResult, mixedlm
from kdanalysis.stats.multiplicity import adjust_pvalues
from kdanalysis.stats.paired import mcnemar, paired_bootstrap
from kdanalysis.stats.parametric import anova, ttest
from kdanalysis.stats.regression import OLSResult, ols
from kdanalysis.stats.resampling import bootstrap_ci
from kdanalysis.stats.wild import wild_bootstrap

__all__ = [
    "DegenerateDataWarning",
    "MixedLMResult",
    "OLSResult",
    "adjust_pvalues",
    "anova",
    "bootstrap_ci",
    "corr",
    "gains",
    "mcnemar",
    "mixedlm",
    "ols",
    "paired_bootstrap",
    "partial_corr",
    "ttest",
    "wild_bootstrap",
]
