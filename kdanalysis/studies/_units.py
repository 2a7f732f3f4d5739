"""Covariates of KD units shared by the paper study and the beyond-paper studies."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from kdanalysis.datasets import load_paper_models
from kdanalysis.errors import SchemaError
from kdanalysis.results import KD_METHODS, NO_TEACHER, validate_models
from kdanalysis.stats.gains import gains

__all__ = [
    "COVARIATE_COLUMNS",
    "accuracy_gains_each",
    "add_covariates",
    "all_accuracy_gains_each",
    "models_table",
    "single_study",
]

#: Columns added by :func:`add_covariates`.
COVARIATE_COLUMNS: tuple[str, ...] = ("teacher_score", "student_size", "agreement", "bleu")
_PAIR_KEYS = ["domain", "task", "teacher", "student"]


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


def add_covariates(units: pd.DataFrame, results: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Join the unit-level covariates to a table with ``domain, task, teacher, student``.

    Parameters
    ----------
    units : DataFrame
        One row per unit (any further columns are kept).
    results : DataFrame
        Validated results of one study.
    models : DataFrame
        Validated models table (:func:`models_table`).

    Returns
    -------
    DataFrame
        ``units`` plus ``teacher_score`` (the teacher's own SFT accuracy on the task),
        ``student_size`` (params_b of the student), ``agreement`` and ``bleu`` (the
        ``kd`` rows of those metrics for the pair and task); NaN where absent.

    Raises
    ------
    SchemaError
        If a student is missing from the models table.
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
        raise SchemaError(
            f"student(s) {', '.join(unknown)} missing from the models table; pass models= with their params_b"
        )
    out["student_size"] = out["student"].map(sizes).astype(float)
    for metric in ("agreement", "bleu"):
        out = out.merge(_behaviour(results, metric), on=_PAIR_KEYS, how="left")
    return out
