"""The tidy tables behind the report's figures, built from a results table and a models table.

Everything here is computed from the data with :mod:`kdanalysis.stats`; nothing is
rounded (rounding happens in :mod:`kdanalysis.report.formatting`). The report's gain is
the paper's: the best KD score over temperatures minus the same student's SFT score, per
unit (study, domain, student, teacher, method, teacher kind, noise, seed) and task, for
accuracy.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from kdanalysis.results import NO_TEACHER
from kdanalysis.stats import corr
from kdanalysis.stats.gains import gains

__all__ = [
    "pair_label",
    "all_gains",
    "kd_gains",
    "accuracy_table",
    "expertise_pairs",
    "temperature_table",
    "behaviour_table",
    "heatmap_table",
    "task_correlations",
]

#: Predictors of the per-task correlation forest: column → display name.
FOREST_PREDICTORS: dict[str, str] = {
    "student_params_b": "student size",
    "teacher_score": "teacher accuracy",
    "baseline_value": "student SFT accuracy",
    "agreement": "agreement with teacher",
    "bleu": "fidelity (BLEU)",
}


def pair_label(teacher: pd.Series, student: pd.Series) -> pd.Series:
    """``"teacher → student"`` labels."""
    return teacher.astype(str) + " → " + student.astype(str)


def _task_aware(results: pd.DataFrame) -> pd.DataFrame:
    """Rows without base teachers and without teacher noise (the main grid)."""
    return results[(results["teacher_kind"] != "base") & (results["teacher_noise"] == 0)]


def all_gains(results: pd.DataFrame, *, over_temperature: str = "max") -> pd.DataFrame:
    """Accuracy gains over SFT of every KD unit (:func:`kdanalysis.stats.gains`, ``baseline="sft"``).

    KD rows without an SFT baseline are left out silently (the report states the units it
    covers). Returns the columns of :func:`kdanalysis.stats.gains`.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="gains: .* without a", category=UserWarning)
        return gains(results, baseline="sft", over_temperature=over_temperature)


def kd_gains(
    results: pd.DataFrame,
    models: pd.DataFrame,
    *,
    over_temperature: str = "max",
    gains_table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Accuracy gains over SFT of the task-aware, noise-free KD units, with their covariates.

    Parameters
    ----------
    results : DataFrame
        Results table (contract).
    models : DataFrame
        Models table (``model``, ``params_b``, ...); sizes of unknown models are NaN.
    over_temperature : {"max", "each"}
        As in :func:`kdanalysis.stats.gains`.
    gains_table : DataFrame, optional
        :func:`all_gains` of ``results`` with the same ``over_temperature``, when already
        computed (e.g. the ``gains`` table of :func:`kdanalysis.studies.run_all`); the
        task-aware, noise-free units are taken from it instead of computing the gains again
        (gains are per unit, so filtering before or after gives the same rows).

    Returns
    -------
    DataFrame
        The columns of :func:`kdanalysis.stats.gains` plus ``pair`` ("teacher → student"),
        ``student_params_b`` (billions), ``teacher_score`` (the teacher's own SFT accuracy
        on the task, %, NaN if absent), ``agreement`` and ``bleu`` (the KD student's
        agreement / BLEU with its teacher on the task, %, NaN if absent).
    """
    if gains_table is None:
        gains_table = all_gains(results, over_temperature=over_temperature)
    out = _task_aware(gains_table).reset_index(drop=True)
    if out.empty:
        return out.assign(
            pair=pd.Series(dtype=str),
            student_params_b=pd.Series(dtype=float),
            teacher_score=pd.Series(dtype=float),
            agreement=pd.Series(dtype=float),
            bleu=pd.Series(dtype=float),
        )
    out["pair"] = pair_label(out["teacher"], out["student"])
    sizes = models.set_index("model")["params_b"].astype(float)
    out["student_params_b"] = out["student"].map(sizes)
    own_sft = results[
        (results["metric"] == "accuracy") & (results["method"] == "sft") & (results["teacher"] == NO_TEACHER)
    ]
    teacher_sft = own_sft[["study", "domain", "task", "student", "seed", "value"]].rename(
        columns={"student": "teacher", "value": "teacher_score"}
    )
    out = out.merge(teacher_sft, on=["study", "domain", "task", "teacher", "seed"], how="left")
    for metric in ("agreement", "bleu"):
        kd_rows = results[
            (results["metric"] == metric)
            & (results["method"] != "sft")
            & (results["teacher_kind"] == "task_aware")
        ]
        kd_rows = (
            kd_rows.groupby(["study", "domain", "task", "student", "teacher", "seed"], as_index=False)[
                "value"
            ]
            .mean()
            .rename(columns={"value": metric})
        )
        out = out.merge(kd_rows, on=["study", "domain", "task", "student", "teacher", "seed"], how="left")
    return out


def accuracy_table(results: pd.DataFrame, kd: pd.DataFrame, domain: str) -> pd.DataFrame:
    """Rows for :func:`kdanalysis.plots.accuracy_by_task`: base, SFT and best-temperature KD accuracy.

    Returns
    -------
    DataFrame
        Columns ``student``, ``task``, ``method``, ``teacher``, ``value`` (accuracy, %) for
        the students of ``kd`` in ``domain``, ordered by student size then name; KD rows
        have one row per teacher.
    """
    students = (
        kd[kd["domain"] == domain]
        .sort_values(["student_params_b", "student"])["student"]
        .drop_duplicates()
        .tolist()
    )
    acc = results[
        (results["metric"] == "accuracy")
        & (results["domain"] == domain)
        & results["student"].isin(students)
        & results["method"].isin(["base", "sft"])
        & (results["teacher"] == NO_TEACHER)
    ]
    base = acc[["student", "task", "method", "teacher", "value"]]
    kd_rows = kd[kd["domain"] == domain][["student", "task", "method", "teacher", "kd_value"]].rename(
        columns={"kd_value": "value"}
    )
    table = pd.concat([base, kd_rows], ignore_index=True)
    order = {s: i for i, s in enumerate(students)}
    return table.sort_values("student", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def expertise_pairs(each: pd.DataFrame) -> pd.DataFrame:
    """Matched KD runs with a task-aware and a base (un-tuned) teacher.

    A match shares study, domain, task, student, teacher, method, temperature, noise and
    seed; the gain is over the student's SFT accuracy.

    Parameters
    ----------
    each : DataFrame
        :func:`all_gains` with ``over_temperature="each"``.

    Returns
    -------
    DataFrame
        Columns ``domain``, ``task``, ``student``, ``teacher``, ``method``, ``temperature``,
        ``pair_id``, ``teacher_kind``, ``kd_value``, ``gain``; two rows per match. Empty
        when the results hold no base-teacher runs.
    """
    keys = ["study", "domain", "task", "student", "teacher", "method", "temperature", "teacher_noise", "seed"]
    base_keys = each.loc[each["teacher_kind"] == "base", keys].drop_duplicates()
    matched = each.merge(base_keys, on=keys)
    counts = matched.groupby(keys, dropna=False)["teacher_kind"].transform("nunique")
    matched = matched[counts == 2].copy()
    matched["pair_id"] = (
        matched["domain"]
        + "|"
        + matched["task"]
        + "|"
        + pair_label(matched["teacher"], matched["student"])
        + "|"
        + matched["method"]
        + "|"
        + matched["temperature"].astype(str)
    )
    return matched[
        [
            "domain",
            "task",
            "student",
            "teacher",
            "method",
            "temperature",
            "pair_id",
            "teacher_kind",
            "kd_value",
            "gain",
        ]
    ].reset_index(drop=True)


def temperature_table(kd_each: pd.DataFrame) -> pd.DataFrame:
    """Units evaluated at more than one temperature (the temperature ablation).

    Parameters
    ----------
    kd_each : DataFrame
        :func:`kd_gains` with ``over_temperature="each"``.

    Returns
    -------
    DataFrame
        Its rows for units with two or more distinct temperatures, plus ``unit``
        ("domain: teacher → student, method, task"). Empty when there is no ablation.
    """
    keyed = kd_each.dropna(subset=["temperature"])
    unit = keyed["domain"] + ": " + keyed["pair"] + ", " + keyed["method"] + ", " + keyed["task"]
    keyed = keyed.assign(unit=unit)
    n_temps = keyed.groupby("unit")["temperature"].transform("nunique")
    return keyed[n_temps > 1].reset_index(drop=True)


def behaviour_table(kd: pd.DataFrame) -> pd.DataFrame:
    """Gains beside agreement and fidelity, long: one row per (unit, task, measure) with a value.

    Returns
    -------
    DataFrame
        Columns of ``kd`` plus ``measure`` ("agreement (math)", "BLEU (math)", ...) and
        ``measure_value`` (%), for tasks other than ``average`` with the measure present.
    """
    frames = []
    per_task = kd[kd["task"] != "average"]
    for column, name in (("agreement", "agreement"), ("bleu", "BLEU")):
        part = per_task.dropna(subset=[column])
        if part.empty:
            continue
        frames.append(part.assign(measure=name + " (" + part["domain"] + ")", measure_value=part[column]))
    if not frames:
        return per_task.iloc[0:0].assign(measure=pd.Series(dtype=str), measure_value=pd.Series(dtype=float))
    return pd.concat(frames, ignore_index=True)


def heatmap_table(kd: pd.DataFrame) -> pd.DataFrame:
    """Mean gain over KD methods per domain, teacher→student pair and task.

    Returns
    -------
    DataFrame
        Columns ``domain``, ``pair``, ``task``, ``gain`` (pp), ``n_methods``; pairs
        ordered by teacher then student size.
    """
    order = kd.sort_values(["teacher", "student_params_b", "student"])["pair"].drop_duplicates().tolist()
    table = kd.groupby(["domain", "pair", "task"], as_index=False, sort=False).agg(
        gain=("gain", "mean"), n_methods=("method", "nunique")
    )
    rank = {p: i for i, p in enumerate(order)}
    return table.sort_values(
        ["domain", "pair"], key=lambda s: s.map(rank) if s.name == "pair" else s, kind="stable"
    ).reset_index(drop=True)


def task_correlations(kd: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Spearman correlation of the gain with each available covariate, per domain and task.

    Parameters
    ----------
    kd : DataFrame
        :func:`kd_gains` output.
    n_boot, seed : int
        Bootstrap resamples and seed of the CIs (:func:`kdanalysis.stats.corr`).

    Returns
    -------
    DataFrame
        Columns ``predictor`` (display name), ``domain``, ``task`` followed by the
        columns of :func:`kdanalysis.stats.corr` (``x``, ``y``, ``method``, ``n``,
        ``statistic``, ``p_val``, ``ci_low``, ``ci_high``, ``note``, ...). Covariates
        without any value, or constant everywhere, are left out.
    """
    frames = []
    for column, name in FOREST_PREDICTORS.items():
        if column not in kd or kd[column].nunique(dropna=True) < 2:
            continue
        part = kd.dropna(subset=[column, "gain"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = corr(
                part, x=column, y="gain", method="spearman", by=["domain", "task"], n_boot=n_boot, seed=seed
            )
        frames.append(table.assign(predictor=name))
    if not frames:
        return pd.DataFrame(columns=["predictor", "domain", "task", "statistic", "ci_low", "ci_high"])
    out = pd.concat(frames, ignore_index=True)
    first = ["predictor", "domain", "task"]
    out = out[first + [c for c in out.columns if c not in first]]
    out["statistic"] = out["statistic"].astype(float).replace([np.inf, -np.inf], np.nan)
    return out
