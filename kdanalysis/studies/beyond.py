"""Beyond the paper: the product's questions answered with small-sample-valid inference.

The paper's units share students, teachers and teacher-student pairs; the residuals of
pairs that share a student are strongly correlated (0.80 in math), and the questions
about student size vary *only* between the six students. So every question is answered,
per domain, with one declared **primary analysis**:

    OLS with the CR2 (Bell-McCaffrey) cluster-robust covariance, clustered by student,
    t tests with Satterthwaite degrees of freedom (``model == "ols_cr2_student"``,
    ``role == "primary"``).

Clustering by student allows any correlation between the units of a student (all its
pairs, methods and tasks); CR2 with Satterthwaite df keeps tests near their level with as
few as five or six clusters, where CR1 with t(G - 1) and Wald z do not. Each primary row
is checked by a restricted wild cluster bootstrap (Webb weights, ``role == "check"``),
shown beside a mixed model with crossed random intercepts for task and student and
Satterthwaite df (``role == "secondary"``), per-task slopes from one joint model
(``role == "per_task"``, Holm across tasks) and **sensitivity analyses** of the same
model (``role == "sensitivity"``, column ``analysis``): the paper's best temperature
instead of tau = 1, without collapsed runs (:mod:`kdanalysis.studies.collapsed`), one KD
method at a time, and teacher family as a covariate of teacher accuracy. The p-values of
the primary rows are Holm-adjusted across the whole family of primary tests by
:func:`kdanalysis.studies.primary_tests`; ``p_holm`` in these tables adjusts per-task rows
across tasks only.

Units. A KD result at one temperature (default tau = 1, the setting every unit has, so no
selection over temperatures takes place; ``temperature=None`` takes the paper's max over
temperatures), task-aware teacher, no teacher noise, tasks without the ``average`` column.
Gain is KD accuracy minus the same student's SFT accuracy, in percentage points.

Agreement and fidelity are paired with the gain of the run they were measured on wherever
the results identify it (a row with a KD method id: same pair, task, method, temperature,
teacher kind, noise and seed). The released files of the paper label every KD student
"KD" (``method == "kd"``, no temperature): there the value is paired with the mean gain
over the KD methods of its pair and task, so each agreement value is counted once.

A domain whose focal variable does not vary within every task is skipped with a
:class:`~kdanalysis.stats.DegenerateDataWarning`; degenerate fits give NaN rows with a
``note``, so a batch never stops on one degenerate question.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdanalysis.results import KD_METHODS, validate_results
from kdanalysis.stats import DegenerateDataWarning, ttest
from kdanalysis.stats.gains import gains
from kdanalysis.studies._models import (
    BEYOND_COLUMNS,
    ONE_GROUP,
    Row,
    finish,
    mean_designs,
    model_rows,
    slope_designs,
    stat_rows,
)
from kdanalysis.studies._threads import single_threaded_blas
from kdanalysis.studies._units import (
    accuracy_gains_each,
    add_covariates,
    all_accuracy_gains_each,
    models_table,
    pair_label,
    single_study,
    task_aware,
)
from kdanalysis.studies.collapsed import RUN_KEYS, collapsed_runs
from kdanalysis.studies.paper import METHOD_GROUPS
from kdanalysis.studies.temperature import paired_units

__all__ = [
    "BEYOND_COLUMNS",
    "BEHAVIOUR_MEASURES",
    "UnitSets",
    "fidelity_units",
    "kd_units",
    "prepare_units",
    "prepare_unit_sets",
    "gain_table",
    "size_table",
    "expertise_table",
    "fidelity_table",
    "kd_gain",
    "size_vs_gain",
    "teacher_expertise",
    "fidelity_vs_gain",
]

#: Agreement / fidelity metrics paired with the gain.
BEHAVIOUR_MEASURES: tuple[str, ...] = ("agreement", "bleu")
_VARIABLES = ("gain", "task", "method", "student", "pair", "teacher_family", *RUN_KEYS)


@dataclass(frozen=True)
class UnitSets:
    """The unit tables every beyond-paper question draws on.

    Attributes
    ----------
    units : DataFrame
        :func:`prepare_units` at the chosen temperature (every teacher kind).
    best : DataFrame or None
        The same with the paper's best temperature (None when ``units`` already is).
    each : DataFrame
        Accuracy gains at each temperature (every KD method).
    collapsed : DataFrame
        :func:`kdanalysis.studies.collapsed.collapsed_runs` of ``each``.
    behaviour : DataFrame
        The agreement and BLEU rows of the results.
    label : str
        The main analysis: ``"τ = 1"`` (the chosen temperature) or ``"best τ"``.
    """

    units: pd.DataFrame
    best: pd.DataFrame | None
    each: pd.DataFrame
    collapsed: pd.DataFrame
    behaviour: pd.DataFrame
    label: str


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
        fkl/rkl/gkd, teacher_noise 0, no ``average``) plus the covariates of
        :func:`kdanalysis.studies._units.add_covariates`, ``pair`` ("teacher → student")
        and ``log2_size`` (log2 of billions of parameters).
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
    units = add_covariates(table[keep], results, models, strict=False)
    units["pair"] = pair_label(units["teacher"], units["student"])
    units["log2_size"] = np.log2(units["student_size"])
    units[ONE_GROUP] = 1
    return units.reset_index(drop=True)


def prepare_unit_sets(
    results: pd.DataFrame,
    models: pd.DataFrame,
    temperature: float | None,
    *,
    each: pd.DataFrame | None = None,
) -> UnitSets:
    """The :class:`UnitSets` of a validated one-study table and a validated models table."""
    each = all_accuracy_gains_each(results) if each is None else each
    best = None if temperature is None else prepare_units(results, models, None)
    return UnitSets(
        units=prepare_units(results, models, temperature, each=each),
        best=best,
        each=each,
        collapsed=collapsed_runs(each),
        behaviour=results[results["metric"].isin(BEHAVIOUR_MEASURES)],
        label="best τ" if temperature is None else f"τ = {temperature:g}",
    )


def _sets_of(results: pd.DataFrame, models: pd.DataFrame | None, temperature: float | None) -> UnitSets:
    results = single_study(validate_results(results), "beyond-paper study")
    return prepare_unit_sets(results, models_table(models), temperature)


def _without_collapsed(units: pd.DataFrame, collapsed: pd.DataFrame) -> pd.DataFrame:
    """``units`` without the rows of collapsed runs."""
    bad = collapsed.loc[collapsed["collapsed"], list(RUN_KEYS)]
    if bad.empty:
        return units
    marked = units[list(RUN_KEYS)].merge(bad.assign(_bad=True), on=list(RUN_KEYS), how="left")
    return units[~marked["_bad"].fillna(False).astype(bool).to_numpy()]


def _analyses(sets: UnitSets, methods: bool = True) -> list[tuple[str, pd.DataFrame]]:
    """(analysis label, task-aware units) of the main analysis and its sensitivity analyses."""
    main = task_aware(sets.units)
    out = [(sets.label, main)]
    if sets.best is not None:
        out.append(("best τ", task_aware(sets.best)))
    out.append(("without collapsed runs", _without_collapsed(main, sets.collapsed)))
    if methods:
        out += [(f"method = {m}", main[main["method"] == m]) for m in sorted(main["method"].unique())]
    return out


def _slope_rows(
    analyses: list[tuple[str, pd.DataFrame]],
    question: str,
    focal: str,
    controls: Sequence[str],
    factors: Sequence[str] = ("method",),
    extra: Sequence[tuple[str, Sequence[str]]] = (),
) -> list[Row]:
    """Primary, check, mixed, per-task and sensitivity rows of ``gain ~ focal + controls``.

    ``analyses``: the main analysis first, then the sensitivity analyses; ``extra``:
    further sensitivity analyses of the main units with other factors (label, factors).
    """
    rows: list[Row] = []
    main_label = analyses[0][0]
    specs = [(label, data, factors) for label, data in analyses]
    specs += [(label, analyses[0][1], more) for label, more in extra]
    for label, units, used in specs:
        variables = list(dict.fromkeys(["domain", *_VARIABLES, focal, *controls, *used]))
        present = [v for v in variables if v in units]
        for domain, data in units.dropna(subset=[focal, *controls])[present].groupby("domain", sort=True):
            if data.groupby("task")[focal].nunique().min() < 2:
                warnings.warn(
                    f"{question} ({label}): {focal} does not vary within every task of domain "
                    f"{domain!r}; skipped",
                    DegenerateDataWarning,
                    stacklevel=3,
                )
                continue
            joint, pooled, mixed = slope_designs(data, focal, controls, used)
            ids = {"question": question, "domain": domain, "analysis": label}
            primary = label == main_label and used is factors
            rows += model_rows(
                data,
                pooled,
                {focal: focal},
                ids,
                role="primary" if primary else "sensitivity",
                joint=joint,
                mixed=mixed,
            )
    return rows


def _mean_rows(
    analyses: list[tuple[str, pd.DataFrame]], question: str, term: str, *, mixed: bool = True
) -> list[Row]:
    """Primary (with checks) and sensitivity rows of the mean of ``gain`` (``gain ~ 1``)."""
    rows: list[Row] = []
    for position, (label, units) in enumerate(analyses):
        for domain, data in units.groupby("domain", sort=True):
            design = mean_designs(data)
            rows += model_rows(
                data,
                design,
                {"Intercept": term},
                {"question": question, "domain": domain, "analysis": label},
                role="primary" if position == 0 else "sensitivity",
                mixed=design if mixed else None,
            )
    return rows


def kd_gain(
    results: pd.DataFrame, models: pd.DataFrame | None = None, *, temperature: float | None = 1.0
) -> pd.DataFrame:
    """Is the KD gain over SFT above zero, and does the KD temperature change it?

    Two questions, per domain:

    - ``mean_gain``: the mean gain over SFT of the task-aware KD units (``gain ~ 1``),
      term ``mean_gain`` in pp;
    - ``temperature_vs_gain``: units (method, task, teacher, student) run at every
      temperature of their domain's ablation; per temperature ``t`` other than 1 the mean
      paired difference ``gain(t) - gain(1)`` (term ``tau_t_minus_1``, pp). Its
      sensitivity analysis drops units of which either run collapsed.

    Returns
    -------
    DataFrame
        Columns :data:`BEYOND_COLUMNS` (see :func:`size_vs_gain`).
    """
    return gain_table(_sets_of(results, models, temperature))


@single_threaded_blas()
def gain_table(sets: UnitSets) -> pd.DataFrame:
    """:func:`kd_gain` on :func:`prepare_unit_sets` output."""
    rows = _mean_rows(_analyses(sets), "mean_gain", "mean_gain")
    return finish(rows + _temperature_rows(sets))


def _temperature_rows(sets: UnitSets, reference: float = 1.0) -> list[Row]:
    runs = task_aware(sets.each)
    runs = runs[(runs["task"] != "average") & runs["temperature"].notna()]
    units = paired_units(runs)
    if units.empty or reference not in set(units["temperature"]):
        return []
    kept = units.index.isin(_without_collapsed(units, sets.collapsed).index)
    keys = ["domain", "method", "task", "teacher", "student"]
    wide = units.pivot_table(index=keys, columns="temperature", values="gain").reset_index()
    clean = units.assign(_kept=kept).groupby(keys, as_index=False)["_kept"].all()
    wide = wide.merge(clean, on=keys)
    rows: list[Row] = []
    for temperature in sorted(t for t in set(units["temperature"]) if t != reference):
        diff = wide.assign(gain=wide[temperature] - wide[reference]).dropna(subset=["gain"])
        term = f"tau_{temperature:g}_minus_{reference:g}"
        analyses = [("paired τ", diff), ("without collapsed runs", diff[diff["_kept"]])]
        rows += _mean_rows(analyses, "temperature_vs_gain", term, mixed=False)
    return rows


def size_vs_gain(
    results: pd.DataFrame, models: pd.DataFrame | None = None, *, temperature: float | None = 1.0
) -> pd.DataFrame:
    """Does the KD gain fall with student size?

    Model (per domain): ``gain ~ log2_size + C(method) + C(task)``, term ``log2_size`` =
    change of gain in points per doubling of the student's parameter count. See the
    module docstring for the primary analysis, its checks and sensitivity analyses.

    Returns
    -------
    DataFrame
        Columns :data:`BEYOND_COLUMNS`: ``question`` ("size_vs_gain"), ``domain``, ``task``
        (a task id, or ``"all"`` for the pooled models), ``analysis`` (``"τ = 1"``, or a
        sensitivity analysis: ``"best τ"``, ``"without collapsed runs"``,
        ``"method = <id>"``), ``role`` (primary, check, secondary, per_task, sensitivity,
        naive), ``model`` (``ols_cr2_student``, ``wild_bootstrap_student``,
        ``mixedlm_task_student``), ``term``, ``estimate``, ``se``, ``statistic`` (t),
        ``df`` (Satterthwaite), ``p_val``, ``ci_low``, ``ci_high`` (95 %), ``p_holm``
        (per-task rows: Holm across tasks; else ``p_val``), ``n`` (units), ``n_groups``
        (students), ``converged`` and ``singular`` (mixed model), ``note``.
    """
    return size_table(_sets_of(results, models, temperature))


@single_threaded_blas()
def size_table(sets: UnitSets) -> pd.DataFrame:
    """:func:`size_vs_gain` on :func:`prepare_unit_sets` output."""
    return finish(_slope_rows(_analyses(sets), "size_vs_gain", "log2_size", []))


def teacher_expertise(
    results: pd.DataFrame, models: pd.DataFrame | None = None, *, temperature: float | None = 1.0
) -> pd.DataFrame:
    """Does the teacher's expertise drive the KD gain?

    Two questions, per domain:

    - ``teacher_score_vs_gain``: ``gain ~ teacher_score + log2_size + C(method) + C(task)``;
      term ``teacher_score`` = change of gain in points per point of the teacher's own SFT
      accuracy on the task, holding student size fixed (larger teachers teach larger
      students in this design). Sensitivity ``"+ teacher family"`` adds ``C(teacher_family)``.
    - ``task_aware_vs_base``: forward-KL KD with an un-tuned teacher against the
      task-aware one (same pair, task and temperature); term ``task_aware_minus_base`` =
      accuracy with the task-aware teacher minus accuracy with the base teacher, its mean
      over pairs and tasks as the primary analysis; per task a paired t-test across pairs
      (``role == "naive"``: pairs treated as independent).

    Returns
    -------
    DataFrame
        Columns :data:`BEYOND_COLUMNS` (see :func:`size_vs_gain`).
    """
    return expertise_table(_sets_of(results, models, temperature))


@single_threaded_blas()
def expertise_table(sets: UnitSets) -> pd.DataFrame:
    """:func:`teacher_expertise` on :func:`prepare_unit_sets` output."""
    rows = _slope_rows(
        _analyses(sets),
        "teacher_score_vs_gain",
        "teacher_score",
        ["log2_size"],
        extra=[("+ teacher family", ("method", "teacher_family"))],
    )
    return finish(rows + _task_aware_vs_base(sets.units))


def _task_aware_vs_base(units: pd.DataFrame) -> list[Row]:
    units = units[(units["method"] == "fkl") & (units["teacher_noise"] == 0)]
    keys = ["domain", "task", "teacher", "student", "pair"]
    wide = units.pivot_table(index=keys, columns="teacher_kind", values="kd_value").reset_index()
    if not {"task_aware", "base"} <= set(wide.columns):
        return []
    wide = wide.dropna(subset=["task_aware", "base"])
    wide["gain"] = wide["task_aware"] - wide["base"]
    term = "task_aware_minus_base"
    tests = ttest(wide, "task_aware", "base", paired=True, by=["domain", "task"])
    rows = stat_rows(
        tests,
        "mean_diff",
        question="task_aware_vs_base",
        analysis="paired t per task",
        role="naive",
        model="paired_ttest",
        term=term,
    )
    return rows + _mean_rows([("fkl, same τ", wide)], "task_aware_vs_base", term)


def fidelity_units(units: pd.DataFrame, behaviour: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Each ``measure`` value once, beside the gain of the run(s) it was measured on.

    Parameters
    ----------
    units : DataFrame
        Task-aware KD units (:func:`prepare_units` rows).
    behaviour : DataFrame
        Results rows of the metric ``measure`` (and possibly others).
    measure : str
        ``"agreement"`` or ``"bleu"``.

    Returns
    -------
    DataFrame
        One row per ``measure`` value with a matching unit: ``domain, task, teacher,
        student, pair, method, temperature, teacher_kind, teacher_noise, seed`` of the
        value, ``gain``, ``measure`` (the value), ``log2_size``, ``student_size``,
        ``n_runs`` (gains averaged) and ``pairing`` (``"same run"`` where the value's
        row names its KD method; ``"mean over methods"`` for the paper's ``kd`` rows,
        which name none: the gain is averaged over the KD methods of the pair and task).
    """
    rows = behaviour[(behaviour["metric"] == measure) & (behaviour["task"] != "average")]
    rows = rows.rename(columns={"value": measure})
    units = units.drop(columns=[c for c in BEHAVIOUR_MEASURES if c in units])
    base = ["domain", "task", "teacher", "student", "seed"]
    run_keys = [*base, "method", "temperature", "teacher_kind", "teacher_noise"]
    named = rows[rows["method"].isin(KD_METHODS)][[*run_keys, measure]]
    same = units.merge(named, on=run_keys).assign(n_runs=1, pairing="same run")
    unnamed = rows[rows["method"] == "kd"][[*base, measure]]
    firsts = ["pair", "log2_size", "student_size", "temperature", "teacher_kind", "teacher_noise"]
    grouped = units[[*base, *firsts, "gain"]].groupby(base, sort=False)
    grouped = pd.concat(
        [grouped[firsts].first(), grouped["gain"].mean(), grouped["gain"].size().rename("n_runs")], axis=1
    ).reset_index()
    averaged = grouped.merge(unnamed, on=base).assign(method="kd", pairing="mean over methods")
    columns = [*run_keys[:5], "pair", *run_keys[5:], "gain", measure, "log2_size", "student_size"]
    out = pd.concat([same[[*columns, "n_runs", "pairing"]], averaged[[*columns, "n_runs", "pairing"]]])
    return out.reset_index(drop=True)


def fidelity_vs_gain(
    results: pd.DataFrame, models: pd.DataFrame | None = None, *, temperature: float | None = 1.0
) -> pd.DataFrame:
    """Does a larger accuracy gain come with more agreement / fidelity to the teacher?

    Units: :func:`fidelity_units` (each agreement / BLEU value once, with the gain of its
    run, or the mean gain over methods of its pair and task where the value names no KD
    method). Per domain and measure (``agreement``; ``bleu`` where present):
    ``gain ~ measure + log2_size + C(task)`` (+ ``C(method)`` where runs are matched), with
    the primary analysis, checks and sensitivity analyses of :func:`size_vs_gain`; the
    per-method sensitivity rows pair each value with that method's gain. Agreement partly
    follows from accuracy (two correct answers agree), so a positive association is
    expected even without any transfer of behaviour.

    Returns
    -------
    DataFrame
        Columns :data:`BEYOND_COLUMNS` (see :func:`size_vs_gain`); ``question`` is
        ``agreement_vs_gain`` or ``bleu_vs_gain``; ``term`` the measure, in gain points per
        point of agreement / BLEU.
    """
    return fidelity_table(_sets_of(results, models, temperature))


@single_threaded_blas()
def fidelity_table(sets: UnitSets) -> pd.DataFrame:
    """:func:`fidelity_vs_gain` on :func:`prepare_unit_sets` output."""
    rows: list[Row] = []
    for measure in BEHAVIOUR_MEASURES:
        analyses = [
            (label, fidelity_units(units, sets.behaviour, measure)) for label, units in _analyses(sets)
        ]
        if analyses[0][1].empty:
            continue
        rows += _slope_rows(analyses, f"{measure}_vs_gain", measure, ["log2_size"])
    return finish(rows)
