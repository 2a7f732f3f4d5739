"""Model fits of the beyond-paper studies, as output rows with fixed columns.

Every question is answered with the same three fits on a domain's units (see
:mod:`kdanalysis.studies.beyond` for why):

- ``ols_cr2_student`` (the primary analysis): OLS with the bias-reduced cluster-robust
  covariance CR2 (Bell-McCaffrey), clusters = students, t tests with per-coefficient
  Satterthwaite degrees of freedom (:func:`kdanalysis.stats.regression.ols_matrices`,
  ``vcov="CR2"``);
- ``wild_bootstrap_student``: the restricted wild cluster bootstrap of the same
  coefficient, clusters = students, Webb's six-point weights (with six or fewer clusters
  Rademacher weights give at most 2^G distinct resamples),
  :func:`kdanalysis.stats.wild.wild_bootstrap_matrices`;
- ``mixedlm_task_student``: a linear mixed model with crossed random intercepts for task
  and student, Satterthwaite degrees of freedom
  (:func:`kdanalysis.stats.mixed.mixedlm_matrices`, ``df="satterthwaite"``).

The design matrices are assembled from :mod:`kdanalysis.stats.design` pieces (each equals
its formula's patsy matrix, tested) rather than parsed from a formula per fit.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdanalysis.stats import DegenerateDataWarning, MixedLMResult, OLSResult, adjust_pvalues
from kdanalysis.stats.design import indicators, interactions, intercept
from kdanalysis.stats.mixed import mixedlm_matrices
from kdanalysis.stats.regression import ols_matrices
from kdanalysis.stats.wild import wild_bootstrap_matrices

__all__ = [
    "BEYOND_COLUMNS",
    "CLUSTER",
    "PRIMARY_MODEL",
    "POOLED_TASK",
    "ROLES",
    "WILD_BOOT",
    "WILD_SEED",
    "Design",
    "Row",
    "finish",
    "mean_designs",
    "model_rows",
    "slope_designs",
    "stat_rows",
]

#: Output columns of every beyond-paper table.
BEYOND_COLUMNS: tuple[str, ...] = (
    "question",
    "domain",
    "task",
    "analysis",
    "role",
    "model",
    "term",
    "estimate",
    "se",
    "statistic",
    "df",
    "p_val",
    "ci_low",
    "ci_high",
    "p_holm",
    "n",
    "n_groups",
    "converged",
    "singular",
    "note",
)
#: Values of the ``role`` column: the declared primary test, its bootstrap check, the
#: mixed model, per-task slopes, sensitivity analyses, and the naive tests labelled as such.
ROLES: tuple[str, ...] = ("primary", "check", "secondary", "per_task", "sensitivity", "naive")
POOLED_TASK = "all"
#: Cluster variable of the primary analysis.
CLUSTER = "student"
PRIMARY_MODEL = "ols_cr2_student"
WILD_MODEL = "wild_bootstrap_student"
MIXED_MODEL = "mixedlm_task_student"
#: Resamples and seed of the wild cluster bootstrap.
WILD_BOOT = 9999
WILD_SEED = 0
ONE_GROUP = "_one_group"
#: One output row, keyed by :data:`BEYOND_COLUMNS` (``p_holm`` is added by :func:`finish`).
Row = dict[str, object]
_ESTIMATES = ("estimate", "se", "statistic", "df", "p_val", "ci_low", "ci_high")
_PER_TASK_TERM = re.compile(r"^C\(task\)\[(?P<task>[^\]]+)\]:(?P<term>.+)$")


@dataclass(frozen=True)
class Design:
    """A model's design matrix and the patsy formula it equals (column for column)."""

    formula: str
    exog: pd.DataFrame


def slope_designs(
    data: pd.DataFrame, focal: str, controls: Sequence[str], factors: Sequence[str] = ("method",)
) -> tuple[Design, Design, Design]:
    """The joint per-task OLS, pooled OLS and mixed-model designs of one domain's units.

    ``factors``: categorical controls (each used only where it has two or more levels).
    """
    used = [f for f in factors if data[f].nunique() > 1]
    categorical = (
        pd.concat([indicators(data[f], f, reference=True) for f in used], axis=1) if used else data[[]]
    )
    numeric = data[[focal, *controls]].astype(float)
    tasks = indicators(data["task"], "task", reference=False)
    ones = intercept(data.index)
    terms = [f"C({f})" for f in used]
    per_task_terms = " + ".join(f"C(task):{term}" for term in [focal, *controls, *terms])
    fixed = " + ".join([focal, *controls, *terms])
    return (
        Design(
            f"gain ~ 0 + C(task) + {per_task_terms}",
            pd.concat([tasks, interactions(tasks, categorical), interactions(tasks, numeric)], axis=1),
        ),
        Design(
            f"gain ~ {fixed} + C(task)",
            pd.concat([ones, categorical, indicators(data["task"], "task", reference=True), numeric], axis=1),
        ),
        Design(f"gain ~ {fixed}", pd.concat([ones, categorical, numeric], axis=1)),
    )


def mean_designs(data: pd.DataFrame) -> Design:
    """``gain ~ 1``: the mean of ``gain`` (the same design serves the OLS and the mixed model)."""
    return Design("gain ~ 1", intercept(data.index))


def _coef_rows(
    fitted: OLSResult | MixedLMResult,
    ids: Row,
    terms: dict[str, str],
    *,
    n_groups: int,
    per_task: str | None = None,
    task_sizes: pd.Series | None = None,
) -> list[Row]:
    """Rows of a fitted model's focal terms (``terms``: raw name -> output name).

    With ``per_task``, the terms ``C(task)[t]:<per_task>`` give one row per task ``t``
    whose ``n`` is taken from ``task_sizes``.
    """
    coefs, fit = fitted.coefs, fitted.fit
    positions, tasks, names = [], [], []
    for position, raw in enumerate(coefs["term"]):
        match = _PER_TASK_TERM.match(raw) if per_task is not None else None
        if match is not None and match["term"] == per_task:
            positions.append(position)
            tasks.append(match["task"])
            names.append(terms[per_task])
        elif per_task is None and raw in terms:
            positions.append(position)
            tasks.append(POOLED_TASK)
            names.append(terms[raw])
    if task_sizes is not None:
        sizes = [int(task_sizes[t]) for t in tasks]
    else:
        sizes = [int(fit["n"].iat[0])] * len(tasks)
    estimates = zip(*(coefs[c].to_numpy()[positions].tolist() for c in _ESTIMATES), strict=True)
    common = {
        "n_groups": n_groups,
        "converged": bool(fit["converged"].iat[0]) if "converged" in fit else pd.NA,
        "singular": bool(fit["singular"].iat[0]) if "singular" in fit else pd.NA,
        "note": str(fit["note"].iat[0]),
    }
    return [
        {**ids, "task": task, "term": name, **dict(zip(_ESTIMATES, values, strict=True)), "n": n, **common}
        for task, name, values, n in zip(tasks, names, estimates, sizes, strict=True)
    ]


def model_rows(
    data: pd.DataFrame,
    pooled: Design,
    terms: dict[str, str],
    ids: Row,
    *,
    role: str = "primary",
    joint: Design | None = None,
    mixed: Design | None = None,
) -> list[Row]:
    """Rows of the primary fit (``role``), and, when asked, its checks.

    Parameters
    ----------
    data : DataFrame
        The units (``gain``, ``task``, ``student`` columns).
    pooled : Design
        Design of the pooled model; ``terms`` maps its focal column to the output term.
    ids : dict
        ``question``, ``domain`` and ``analysis`` of the rows.
    role : str
        Role of the pooled CR2 row (``primary`` or ``sensitivity``). Only a primary fit
        gets the wild bootstrap check, the mixed model and the per-task rows.
    joint, mixed : Design, optional
        Per-task (interaction) design and mixed-model design.
    """
    ((raw, _name),) = terms.items()
    clusters = data[CLUSTER]
    n_clusters = clusters.nunique()
    label = f"ols({pooled.formula!r}, cluster={CLUSTER!r}, vcov='CR2')"
    fitted = ols_matrices(data["gain"], pooled.exog, clusters, vcov="CR2", label=label)
    rows = _coef_rows(fitted, {**ids, "role": role, "model": PRIMARY_MODEL}, terms, n_groups=n_clusters)
    if role != "primary":
        return rows
    rows.append(_wild_row(data, pooled, raw, terms[raw], ids, n_clusters))
    if joint is not None:
        label = f"ols({joint.formula!r}, cluster={CLUSTER!r}, vcov='CR2')"
        per_task = ols_matrices(data["gain"], joint.exog, clusters, vcov="CR2", label=label)
        rows += _coef_rows(
            per_task,
            {**ids, "role": "per_task", "model": PRIMARY_MODEL},
            terms,
            n_groups=n_clusters,
            per_task=raw,
            task_sizes=data.groupby("task").size(),
        )
    if mixed is not None:
        rows += _mixed_rows(data, mixed, terms, {**ids, "role": "secondary", "model": MIXED_MODEL})
    return rows


def _wild_row(data: pd.DataFrame, design: Design, raw: str, name: str, ids: Row, n_clusters: int) -> Row:
    table = wild_bootstrap_matrices(
        data["gain"],
        design.exog,
        data[CLUSTER],
        raw,
        weights="webb",
        n_boot=WILD_BOOT,
        seed=WILD_SEED,
    )
    row = table.iloc[0]
    return {
        **ids,
        "role": "check",
        "model": WILD_MODEL,
        "task": POOLED_TASK,
        "term": name,
        **{c: row[c] for c in ("estimate", "statistic", "p_val", "ci_low", "ci_high")},
        "n": len(data),
        "n_groups": n_clusters,
        "note": str(row["note"]),
    }


def _mixed_rows(data: pd.DataFrame, design: Design, terms: dict[str, str], ids: Row) -> list[Row]:
    """The mixed model's focal rows; a fit that fails numerically gives NaN rows with a note.

    The model is ``mixedlm(design.formula, data, groups=<one group>, re_formula="0",
    vc_formula={"task": "0 + C(task)", "student": "0 + C(student)"}, df="satterthwaite")``.
    """
    crossed = {column: indicators(data[column], column, reference=False) for column in ("task", "student")}
    label = f"mixedlm({design.formula!r}, random=['task', 'student'])"
    groups = pd.Series(1, index=data.index, name=ONE_GROUP)
    try:
        fitted = mixedlm_matrices(data["gain"], design.exog, groups, crossed, df="satterthwaite", label=label)
    except (np.linalg.LinAlgError, ValueError) as error:
        note = f"{label} failed: {error}"
        warnings.warn(note, DegenerateDataWarning, stacklevel=2)
        return [
            {
                **ids,
                "term": name,
                "task": POOLED_TASK,
                "n": len(data),
                "n_groups": data["student"].nunique(),
                "converged": False,
                "note": note,
            }
            for name in terms.values()
        ]
    return _coef_rows(fitted, ids, terms, n_groups=data["student"].nunique())


def stat_rows(tests: pd.DataFrame, estimate: str, **constants: object) -> list[Row]:
    """Rows of a ``by=["domain", "task"]`` test table (``estimate``: its estimate column)."""
    columns = list(
        dict.fromkeys(["domain", "task", estimate, "statistic", "p_val", "ci_low", "ci_high", "n", "note"])
    )
    return [
        {**row, "estimate": row[estimate], "n_groups": row["n"], **constants}
        for row in tests[columns].to_dict("records")
    ]


def finish(rows: list[Row]) -> pd.DataFrame:
    """The output table of ``rows`` (absent values NaN); ``p_holm`` across tasks for per-task rows.

    Per-task rows (``task != "all"``) are Holm-adjusted across the tasks of a domain, per
    question, analysis, model and term; a pooled row is one test (``p_holm == p_val``; the
    family-wide adjustment of the primary tests is :func:`kdanalysis.studies.primary_tests`).
    """
    if not rows:
        table = pd.DataFrame(columns=list(BEYOND_COLUMNS))
        return table.astype({"n_groups": "Int64", "converged": "boolean", "singular": "boolean"})
    table = pd.DataFrame.from_records(rows, columns=[c for c in BEYOND_COLUMNS if c != "p_holm"])
    per_task = table["task"] != POOLED_TASK
    table["p_holm"] = table["p_val"].astype(float)
    if per_task.any():
        adjusted = adjust_pvalues(
            table[per_task], "holm", by=["question", "domain", "analysis", "role", "model", "term"]
        )
        table.loc[per_task, "p_holm"] = adjusted["p_adj"]
    table["n_groups"] = table["n_groups"].astype("Int64")
    table["converged"] = table["converged"].astype("boolean")
    table["singular"] = table["singular"].astype("boolean")
    return table[list(BEYOND_COLUMNS)].reset_index(drop=True)
