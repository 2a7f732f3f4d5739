"""Beyond the paper: the product's three questions answered with dependence-aware models.

The paper's 33 units per task share students, teachers and teacher-student pairs, so its
pooled t-tests and Spearman p-values treat dependent values as independent. Here every
question is answered, per domain, with

- ``ols_cluster_pair``: OLS with standard errors clustered by teacher-student pair
  (:func:`kdanalysis.stats.ols`). Per task, the slopes come from one joint model with a
  separate intercept, slope and method effect per task (so one pair's results on all tasks
  form one cluster); the pooled row (``task == "all"``) has task fixed effects and one
  common slope. Assumes a linear mean and independence *between* pairs (errors may be
  correlated and heteroscedastic within a pair); with about 11 pairs the cluster-robust
  SEs are themselves noisy (t with G - 1 degrees of freedom is used).
- ``mixedlm_task_student``: a linear mixed model (:func:`kdanalysis.stats.mixedlm`) with
  crossed random intercepts for task and student and one common slope (``task == "all"``).
  Assumes normal random intercepts and errors, a linear mean, and exchangeable tasks and
  students; with six students the student variance is poorly determined, so check
  ``converged``/``note``.

Every estimate carries a confidence interval; p-values of per-task rows are Holm-adjusted
across the tasks of a domain (``p_holm``; a pooled row is a single test, ``p_holm == p_val``).
The models are fitted from design matrices assembled per domain
(:mod:`kdanalysis.stats.design`, :func:`~kdanalysis.stats.regression.ols_matrices`,
:func:`~kdanalysis.stats.mixed.mixedlm_matrices`): the formulas' matrices and numbers
(tested), without parsing a formula per model.

Units. A KD result at one temperature (default tau = 1, the setting every unit has, so no
selection over temperatures takes place; ``temperature=None`` takes the paper's max over
temperatures), task-aware teacher, no teacher noise, tasks without the ``average``
column (its values are functions of the tasks). Gain is KD accuracy minus the same
student's SFT accuracy (:func:`kdanalysis.stats.gains`), in percentage points. In the
paper's commonsense results several reverse-KL runs at tau = 1 collapsed (e.g.
Qwen2.5-3B -> 1.5B: 10.55 % average accuracy); the tau = 1 analysis keeps them as
measured, ``temperature=None`` applies the paper's selection instead.

A domain whose focal variable does not vary within every task is skipped with a
:class:`~kdanalysis.stats.DegenerateDataWarning`; a mixed model that fails numerically
gives a NaN row with a ``note``, so a batch never stops on one degenerate question.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdanalysis.results import validate_results
from kdanalysis.stats import (
    DegenerateDataWarning,
    MixedLMResult,
    OLSResult,
    adjust_pvalues,
    partial_corr,
    ttest,
)
from kdanalysis.stats.design import indicators, interactions, intercept
from kdanalysis.stats.gains import gains
from kdanalysis.stats.mixed import mixedlm_matrices
from kdanalysis.stats.regression import ols_matrices
from kdanalysis.studies._threads import single_threaded_blas
from kdanalysis.studies._units import accuracy_gains_each, add_covariates, models_table, single_study
from kdanalysis.studies.paper import METHOD_GROUPS

__all__ = [
    "BEYOND_COLUMNS",
    "kd_units",
    "prepare_units",
    "size_table",
    "expertise_table",
    "fidelity_table",
    "size_vs_gain",
    "teacher_expertise",
    "fidelity_vs_gain",
]

#: Output columns of :func:`size_vs_gain`, :func:`teacher_expertise`, :func:`fidelity_vs_gain`.
BEYOND_COLUMNS: tuple[str, ...] = (
    "question",
    "domain",
    "task",
    "model",
    "term",
    "estimate",
    "se",
    "statistic",
    "p_val",
    "ci_low",
    "ci_high",
    "p_holm",
    "n",
    "n_groups",
    "converged",
    "note",
)
POOLED_TASK = "all"
_ONE_GROUP = "_one_group"
#: One output row, keyed by :data:`BEYOND_COLUMNS` (``p_holm`` is added at the end).
_Row = dict[str, object]
#: Unit columns the models use besides the focal variable and the controls.
_MODEL_VARIABLES = ("gain", "task", "method", "student", "pair", _ONE_GROUP)
#: Coefficient-table columns copied to the output rows.
_ESTIMATES = ("estimate", "se", "statistic", "p_val", "ci_low", "ci_high")
_PER_TASK_TERM = re.compile(r"^C\(task\)\[(?P<task>[^\]]+)\]:(?P<term>.+)$")


def kd_units(
    results: pd.DataFrame,
    models: pd.DataFrame | None = None,
    *,
    temperature: float | None = 1.0,
    teacher_kinds: tuple[str, ...] = ("task_aware",),
) -> pd.DataFrame:
    """KD units with their gain and covariates, the data of the beyond-paper models.

    Parameters
    ----------
    results : DataFrame
        Results of one study.
    models : DataFrame, optional
        Models table (default: the bundled paper models).
    temperature : float or None
        KD temperature to use (default 1.0); ``None`` takes the maximum over temperatures.
    teacher_kinds : tuple of str
        Teacher kinds kept (default task-aware teachers only).

    Returns
    -------
    DataFrame
        The :func:`~kdanalysis.stats.gains` columns (metric accuracy, baseline SFT, methods
        fkl/rkl/gkd, teacher_noise 0, no ``average``) plus ``pair`` (``"teacher>student"``),
        ``teacher_score``, ``student_size``, ``log2_size`` (log2 of billions of parameters),
        ``agreement`` and ``bleu``.
    """
    results = single_study(validate_results(results), "beyond-paper study")
    units = prepare_units(results, models_table(models), temperature)
    return units[units["teacher_kind"].isin(teacher_kinds)].reset_index(drop=True)


def prepare_units(
    results: pd.DataFrame,
    models: pd.DataFrame,
    temperature: float | None,
    *,
    each: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`kd_units` of a validated one-study table, every teacher kind kept.

    ``each``: the accuracy gains of ``results`` at each temperature, if already computed
    (see :func:`kdanalysis.studies._units.accuracy_gains_each`; unused for
    ``temperature=None``).
    """
    if temperature is None:
        table = gains(results, "sft", "max", "accuracy", methods=list(METHOD_GROUPS), validate=False)
    else:
        table = accuracy_gains_each(results, METHOD_GROUPS, each)
    keep = (table["teacher_noise"] == 0) & (table["task"] != "average")
    if temperature is not None:
        keep &= table["temperature"] == temperature
    units = add_covariates(table[keep], results, models)
    units["pair"] = units["teacher"] + ">" + units["student"]
    units["log2_size"] = np.log2(units["student_size"])
    units[_ONE_GROUP] = 1
    return units.reset_index(drop=True)


def _task_aware(units: pd.DataFrame) -> pd.DataFrame:
    return units[units["teacher_kind"] == "task_aware"]


def _rows(
    fitted: OLSResult | MixedLMResult,
    ids: dict[str, str],
    *,
    model: str,
    n_groups: int,
    terms: dict[str, str] | None = None,
    per_task: str | None = None,
    task_sizes: pd.Series | None = None,
) -> list[_Row]:
    """Output rows of a fitted model's focal terms (``terms``: raw name -> output name).

    ``ids``: the question and domain of the rows. With ``per_task``, the terms
    ``C(task)[t]:<per_task>`` give one row per task ``t``, whose ``n`` is taken from
    ``task_sizes`` (rows per task).
    """
    coefs, fit = fitted.coefs, fitted.fit
    converged = bool(fit["converged"].iat[0]) if "converged" in fit.columns else pd.NA
    positions, tasks, names = [], [], []
    for position, raw in enumerate(coefs["term"]):
        if per_task is not None and task_sizes is not None:
            match = _PER_TASK_TERM.match(raw)
            if match is not None and match["term"] == per_task:
                positions.append(position)
                tasks.append(match["task"])
                names.append(per_task)
        elif terms and raw in terms:
            positions.append(position)
            tasks.append(POOLED_TASK)
            names.append(terms[raw])
    if per_task is not None and task_sizes is not None:
        sizes = [int(task_sizes[t]) for t in tasks]
    else:
        sizes = [int(fit["n"].iat[0])] * len(tasks)
    estimates = zip(*(coefs[column].to_numpy()[positions].tolist() for column in _ESTIMATES), strict=True)
    common = {"model": model, "n_groups": n_groups, "converged": converged, "note": str(fit["note"].iat[0])}
    return [
        {**ids, "task": task, "term": name, **dict(zip(_ESTIMATES, values, strict=True)), "n": n, **common}
        for task, name, values, n in zip(tasks, names, estimates, sizes, strict=True)
    ]


def _test_rows(tests: pd.DataFrame, estimate: str, **constants: object) -> list[_Row]:
    """Output rows of a ``by=["domain", "task"]`` test table (``estimate``: its estimate column)."""
    columns = list(
        dict.fromkeys(["domain", "task", estimate, "statistic", "p_val", "ci_low", "ci_high", "n", "note"])
    )
    return [
        {
            **row,
            "estimate": row[estimate],
            "se": np.nan,
            "n_groups": row["n"],
            "converged": pd.NA,
            **constants,
        }
        for row in tests[columns].to_dict("records")
    ]


@dataclass(frozen=True)
class _Design:
    """A model's design matrix and the patsy formula it equals (column for column)."""

    formula: str
    exog: pd.DataFrame


def _slope_designs(
    data: pd.DataFrame, focal: str, controls: list[str], with_method: bool
) -> tuple[_Design, _Design, _Design]:
    """The joint per-task OLS, pooled OLS and mixed-model designs of one domain's units.

    Built from :mod:`kdanalysis.stats.design` pieces in patsy's column order (a formula
    per model costs more than its fit); each equals its ``formula``'s patsy matrix.
    """
    use_method = with_method and data["method"].nunique() > 1
    method = indicators(data["method"], "method", reference=True) if use_method else data[[]]
    numeric = data[[focal, *controls]].astype(float)
    tasks = indicators(data["task"], "task", reference=False)
    ones = intercept(data.index)
    method_term = ["C(method)"] if use_method else []
    per_task_terms = " + ".join(f"C(task):{term}" for term in [focal, *controls, *method_term])
    fixed = " + ".join([focal, *controls, *method_term])
    return (
        _Design(
            f"gain ~ 0 + C(task) + {per_task_terms}",
            pd.concat([tasks, interactions(tasks, method), interactions(tasks, numeric)], axis=1),
        ),
        _Design(
            f"gain ~ {fixed} + C(task)",
            pd.concat([ones, method, indicators(data["task"], "task", reference=True), numeric], axis=1),
        ),
        _Design(f"gain ~ {fixed}", pd.concat([ones, method, numeric], axis=1)),
    )


def _ols_rows(
    data: pd.DataFrame, joint: _Design, pooled: _Design, focal: str, ids: dict[str, str]
) -> list[_Row]:
    """Per-task slopes (one joint model) and the pooled slope, SE clustered by pair."""
    n_pairs = data["pair"].nunique()
    return [
        *_rows(
            _ols_cluster_pair(data, joint),
            ids,
            model="ols_cluster_pair",
            n_groups=n_pairs,
            per_task=focal,
            task_sizes=data.groupby("task").size(),
        ),
        *_rows(
            _ols_cluster_pair(data, pooled),
            ids,
            model="ols_cluster_pair",
            n_groups=n_pairs,
            terms={focal: focal},
        ),
    ]


def _ols_cluster_pair(data: pd.DataFrame, design: _Design) -> OLSResult:
    return ols_matrices(data["gain"], design.exog, data["pair"], label=f"ols({design.formula!r})")


def _mixed_rows(
    data: pd.DataFrame, design: _Design, terms: dict[str, str], ids: dict[str, str]
) -> list[_Row]:
    """The mixed model's focal rows; a fit that fails numerically gives NaN rows with a note.

    The model is ``mixedlm(design.formula, data, groups=<one group>, re_formula="0",
    vc_formula={"task": "0 + C(task)", "student": "0 + C(student)"})``: crossed random
    intercepts for task and student.
    """
    crossed = {column: indicators(data[column], column, reference=False) for column in ("task", "student")}
    try:
        fitted = mixedlm_matrices(
            data["gain"], design.exog, data[_ONE_GROUP], crossed, label=f"mixedlm({design.formula!r})"
        )
    except (np.linalg.LinAlgError, ValueError) as error:
        note = f"mixedlm({design.formula!r}) failed: {error}"
        warnings.warn(note, DegenerateDataWarning, stacklevel=2)
        return [
            {
                **ids,
                "term": name,
                "task": POOLED_TASK,
                "model": "mixedlm_task_student",
                "n": len(data),
                "n_groups": data["student"].nunique(),
                "converged": False,
                "note": note,
            }
            for name in terms.values()
        ]
    return _rows(fitted, ids, model="mixedlm_task_student", n_groups=data["student"].nunique(), terms=terms)


def _finish(rows: list[_Row]) -> pd.DataFrame:
    """The output table of ``rows`` (absent values NaN), with Holm across the tasks of a domain."""
    if not rows:
        return pd.DataFrame(columns=list(BEYOND_COLUMNS))
    table = pd.DataFrame.from_records(rows, columns=[c for c in BEYOND_COLUMNS if c != "p_holm"])
    per_task = table["task"] != POOLED_TASK
    adjusted = adjust_pvalues(table[per_task], "holm", by=["question", "domain", "model", "term"])
    table["p_holm"] = table["p_val"]
    table.loc[per_task, "p_holm"] = adjusted["p_adj"]
    table["n_groups"] = table["n_groups"].astype("Int64")
    table["converged"] = table["converged"].astype("boolean")
    return table[list(BEYOND_COLUMNS)].reset_index(drop=True)


def _slope_question(
    units: pd.DataFrame, question: str, focal: str, controls: list[str], with_method: bool = True
) -> list[_Row]:
    rows: list[_Row] = []
    variables = list(dict.fromkeys(["domain", *_MODEL_VARIABLES, focal, *controls]))
    for domain, data in units.dropna(subset=[focal, *controls])[variables].groupby("domain", sort=True):
        if data.groupby("task")[focal].nunique().min() < 2:
            warnings.warn(
                f"{question}: {focal} does not vary within every task of domain {domain!r}; domain skipped",
                DegenerateDataWarning,
                stacklevel=3,
            )
            continue
        joint, pooled, mixed = _slope_designs(data, focal, controls, with_method)
        ids = {"question": question, "domain": domain}
        rows += [*_ols_rows(data, joint, pooled, focal, ids), *_mixed_rows(data, mixed, {focal: focal}, ids)]
    return rows


def size_vs_gain(
    results: pd.DataFrame, models: pd.DataFrame | None = None, *, temperature: float | None = 1.0
) -> pd.DataFrame:
    """Does the KD gain fall with student size?

    Models (per domain): ``gain ~ log2_size + method`` (+ task effects), term ``log2_size``
    = change of gain in points per doubling of the student's parameter count. See the
    module docstring for the models' assumptions and the units.

    Returns
    -------
    DataFrame
        Columns :data:`BEYOND_COLUMNS`: ``question`` ("size_vs_gain"), ``domain``, ``task``
        (a task id, or ``"all"`` for the pooled models), ``model`` (``ols_cluster_pair`` or
        ``mixedlm_task_student``), ``term``, ``estimate``, ``se``, ``statistic`` (t or z),
        ``p_val``, ``ci_low``, ``ci_high`` (95 %), ``p_holm`` (Holm across tasks),
        ``n`` (units), ``n_groups`` (pairs for OLS, students for the mixed model),
        ``converged`` (mixed model only), ``note`` (fit warnings).
    """
    return size_table(_units_of(results, models, temperature))


def _units_of(results: pd.DataFrame, models: pd.DataFrame | None, temperature: float | None) -> pd.DataFrame:
    results = single_study(validate_results(results), "beyond-paper study")
    return prepare_units(results, models_table(models), temperature)


@single_threaded_blas()
def size_table(units: pd.DataFrame) -> pd.DataFrame:
    """:func:`size_vs_gain` on :func:`prepare_units` output."""
    return _finish(_slope_question(_task_aware(units), "size_vs_gain", "log2_size", []))


def _task_aware_vs_base(units: pd.DataFrame) -> list[_Row]:
    units = units[units["method"] == "fkl"]
    keys = ["domain", "task", "teacher", "student", "pair", "_one_group"]
    wide = units.pivot_table(index=keys, columns="teacher_kind", values="kd_value").reset_index()
    if not {"task_aware", "base"} <= set(wide.columns):
        return []
    wide = wide.dropna(subset=["task_aware", "base"])
    wide["gain"] = wide["task_aware"] - wide["base"]
    term = "task_aware_minus_base"
    tests = ttest(wide, "task_aware", "base", paired=True, by=["domain", "task"])
    rows = _test_rows(tests, "mean_diff", question="task_aware_vs_base", model="paired_ttest", term=term)
    for domain, data in wide.groupby("domain", sort=True):
        mean = _Design("gain ~ 1", intercept(data.index))
        ids = {"question": "task_aware_vs_base", "domain": domain}
        terms = {"Intercept": term}
        rows += [
            *_rows(
                _ols_cluster_pair(data, mean),
                ids,
                model="ols_cluster_pair",
                n_groups=data["pair"].nunique(),
                terms=terms,
            ),
            *_mixed_rows(data, mean, terms, ids),
        ]
    return rows


def teacher_expertise(
    results: pd.DataFrame, models: pd.DataFrame | None = None, *, temperature: float | None = 1.0
) -> pd.DataFrame:
    """Does the teacher's expertise drive the KD gain?

    Two questions, per domain:

    - ``teacher_score_vs_gain``: ``gain ~ teacher_score + log2_size + method`` (+ task
      effects); term ``teacher_score`` = change of gain in points per point of the teacher's
      own SFT accuracy on the task, holding student size fixed (larger teachers teach
      larger students in this design, so size must be controlled).
    - ``task_aware_vs_base``: the ablation rows (forward-KL KD, same pair, task and
      temperature) with an un-tuned teacher against the task-aware one; term
      ``task_aware_minus_base`` = accuracy with the task-aware teacher minus accuracy with
      the base teacher. Per task a paired t-test across pairs (``paired_ttest``; assumes
      normally distributed differences, pairs independent); pooled over tasks a
      cluster-robust mean (``ols_cluster_pair``; only five pairs, so its interval is rough)
      and a mixed model with crossed task and student intercepts.

    Returns
    -------
    DataFrame
        Columns :data:`BEYOND_COLUMNS` (see :func:`size_vs_gain`); ``question`` is
        ``teacher_score_vs_gain`` or ``task_aware_vs_base``.
    """
    return expertise_table(_units_of(results, models, temperature))


@single_threaded_blas()
def expertise_table(units: pd.DataFrame) -> pd.DataFrame:
    """:func:`teacher_expertise` on :func:`prepare_units` output."""
    rows = _slope_question(_task_aware(units), "teacher_score_vs_gain", "teacher_score", ["log2_size"])
    return _finish(rows + _task_aware_vs_base(units))


def fidelity_vs_gain(
    results: pd.DataFrame, models: pd.DataFrame | None = None, *, temperature: float | None = 1.0
) -> pd.DataFrame:
    """Does a larger accuracy gain come with more agreement / fidelity to the teacher?

    The paper's agreement (EM1) and BLEU files hold one KD row per pair and task, of an
    unnamed KD method, so the unit here is the pair and task, with the gain averaged over
    the KD methods. Per domain and fidelity measure (``agreement``; ``bleu`` where
    present): a partial Spearman correlation of gain and fidelity controlling for
    ``log2_size`` per task (``partial_spearman``; Fisher-z interval; assumes independent
    pairs), ``gain ~ fidelity + log2_size`` per task and pooled with SE clustered by pair,
    and the mixed model with crossed task and student intercepts. Agreement partly follows
    from accuracy (two correct answers agree), so a positive association is expected even
    without any transfer of behaviour.

    Returns
    -------
    DataFrame
        Columns :data:`BEYOND_COLUMNS` (see :func:`size_vs_gain`); ``question`` is
        ``agreement_vs_gain`` or ``bleu_vs_gain``; ``term`` the fidelity measure, in gain
        points per fidelity point (the correlation for ``partial_spearman``).
    """
    return fidelity_table(_units_of(results, models, temperature))


@single_threaded_blas()
def fidelity_table(units: pd.DataFrame) -> pd.DataFrame:
    """:func:`fidelity_vs_gain` on :func:`prepare_units` output."""
    units = _task_aware(units)
    keys = ["domain", "task", "teacher", "student", "pair", "_one_group"]
    pairs = (
        units.groupby(keys, sort=True)
        .agg(
            gain=("gain", "mean"),
            agreement=("agreement", "first"),
            bleu=("bleu", "first"),
            log2_size=("log2_size", "first"),
        )
        .reset_index()
    )
    rows: list[_Row] = []
    for measure in ("agreement", "bleu"):
        data = pairs.dropna(subset=[measure])
        if data.empty:
            continue
        question = f"{measure}_vs_gain"
        corr = partial_corr(data, "gain", measure, "log2_size", "spearman", by=["domain", "task"])
        rows += _test_rows(corr, "statistic", question=question, model="partial_spearman", term=measure)
        rows += _slope_question(data.assign(method="kd"), question, measure, ["log2_size"], with_method=False)
    return _finish(rows)
