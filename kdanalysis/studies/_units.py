"""Covariates of KD units shared by the paper study and the beyond-paper studies."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import pandas as pd

from kdanalysis.datasets import load_paper_models
from kdanalysis.errors import SchemaError
from kdanalysis.results import KD_METHODS, NO_TEACHER, validate_models
from kdanalysis.stats import DegenerateDataWarning
from kdanalysis.stats.gains import gains

__all__ = [
    "COVARIATE_COLUMNS",
    "PAIR_SEPARATOR",
    "accuracy_gains_each",
    "add_covariates",
    "all_accuracy_gains_each",
    "models_table",
    "pair_label",
    "single_study",
    "task_aware",
]

#: Columns added by :func:`add_covariates`.
COVARIATE_COLUMNS: tuple[str, ...] = ("teacher_score", "student_size", "teacher_family", "agreement", "bleu")
#: Between teacher and student in a pair label.
PAIR_SEPARATOR = " → "
_PAIR_KEYS = ["domain", "task", "teacher", "student"]


def pair_label(teacher: pd.Series, student: pd.Series) -> pd.Series:
    """``"teacher → student"``: the one label of a teacher-student pair (also its cluster id)."""
    return teacher.astype(str) + PAIR_SEPARATOR + student.astype(str)


def task_aware(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of KD runs with a task-aware teacher and no teacher noise (the main grid)."""
    return table[(table["teacher_kind"] == "task_aware") & (table["teacher_noise"] == 0)]


def single_study(results: pd.DataFrame, what: str) -> pd.DataFrame:
    """Return ``results`` if it holds exactly one study, else raise :class:`SchemaError`."""
    studies = sorted(results["study"].unique())
    if len(studies) != 1:
        raise SchemaError(
            f"{what}: expected results of one study, got {len(studies)}: "
            f"{', '.join(studies) or 'none'}; filter with results[results.study == ...]"
        )
    return results


def models_table(models: pd.DataFrame | None) -> pd.DataFrame:
    """The validated ``models`` table, or the bundled paper models when None."""
    return load_paper_models() if models is None else validate_models(models)


def accuracy_gains_each(
    results: pd.DataFrame, methods: Iterable[str], each: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Accuracy gains over SFT at each temperature for ``methods``.

    ``each`` is :func:`kdanalysis.stats.gains` (``over_temperature="each"``, accuracy, SFT
    baseline, every KD method) of the same validated ``results`` when the caller has it
    already (:func:`kdanalysis.studies.run_all` computes it once for all its studies); its
    rows of ``methods`` are the table ``gains`` gives for ``methods``, so it is filtered,
    not recomputed.
    """
    methods = list(methods)
    if each is None:
        return gains(results, "sft", "each", "accuracy", methods=methods, validate=False)
    return each[each["method"].isin(methods)].reset_index(drop=True)


def all_accuracy_gains_each(results: pd.DataFrame) -> pd.DataFrame:
    """The ``each`` table of :func:`accuracy_gains_each`: every KD method."""
    return gains(results, "sft", "each", "accuracy", methods=sorted(KD_METHODS), validate=False)


def _behaviour(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = results[(results["metric"] == metric) & (results["method"] == "kd")]
    return rows[[*_PAIR_KEYS, "value"]].rename(columns={"value": metric})


def add_covariates(
    units: pd.DataFrame, results: pd.DataFrame, models: pd.DataFrame, *, strict: bool = True
) -> pd.DataFrame:
    """Join the unit-level covariates to a table with ``domain, task, teacher, student``.

    Parameters
    ----------
    units : DataFrame
        One row per unit (any further columns are kept).
    results : DataFrame
        Validated results of one study.
    models : DataFrame
        Validated models table (:func:`models_table`).
    strict : bool
        Raise for a student missing from the models table (the paper's protocol needs every
        size); with False the student gets a NaN size and a
        :class:`~kdanalysis.stats.DegenerateDataWarning` names it (it leaves the size-based
        models only).

    Returns
    -------
    DataFrame
        ``units`` plus ``teacher_score`` (the teacher's own SFT accuracy on the task),
        ``student_size`` (params_b of the student), ``teacher_family`` (the teacher's
        family in the models table), ``agreement`` and ``bleu`` (the ``kd`` rows of those
        metrics for the pair and task: the released files' one KD row per pair, as the
        paper's H4/H5 use it); NaN where absent.

    Raises
    ------
    SchemaError
        With ``strict``, if a student is missing from the models table.
    """
    sft = results[
        (results["metric"] == "accuracy") & (results["method"] == "sft") & (results["teacher"] == NO_TEACHER)
    ]
    teacher_sft = sft[["domain", "task", "student", "value"]].rename(
        columns={"student": "teacher", "value": "teacher_score"}
    )
    out = units.merge(teacher_sft, on=["domain", "task", "teacher"], how="left")
    sizes = models.set_index("model")["params_b"]
    unknown = sorted(set(out["student"]) - set(sizes.index))
    if unknown:
        message = f"student(s) {', '.join(unknown)} missing from the models table"
        if strict:
            raise SchemaError(f"{message}; pass models= with their params_b")
        warnings.warn(
            f"{message}: their size is NaN and they leave the size-based models; pass models= with "
            "their params_b",
            DegenerateDataWarning,
            stacklevel=2,
        )
    out["student_size"] = out["student"].map(sizes).astype(float)
    out["teacher_family"] = out["teacher"].map(models.set_index("model")["family"])
    for metric in ("agreement", "bleu"):
        out = out.merge(_behaviour(results, metric), on=_PAIR_KEYS, how="left")
    return out
