"""KD gains: a distilled student's score minus the same student's baseline score.

:func:`gains` works on any results table of the contract (:mod:`kdanalysis.results`),
not only the paper's: a *unit* is one distillation setting, identified by
:data:`UNIT_COLUMNS`; the KD value of a unit on a task is compared with the baseline
(``sft`` or ``base``) of the same student, study, domain, task, seed and metric.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import pandas as pd

from kdanalysis.errors import SchemaError
from kdanalysis.results import KD_METHODS, METHODS, METRICS, NO_TEACHER, check_choice, validate_results

__all__ = ["UNIT_COLUMNS", "GAIN_COLUMNS", "BASELINES", "OVER_TEMPERATURE", "gains"]

#: Columns identifying one KD unit (temperature is selected or kept, see ``over_temperature``).
UNIT_COLUMNS: tuple[str, ...] = (
    "study",
    "domain",
    "student",
    "teacher",
    "method",
    "teacher_kind",
    "teacher_noise",
    "seed",
)
#: Output columns of :func:`gains`, in order.
GAIN_COLUMNS: tuple[str, ...] = (
    *UNIT_COLUMNS,
    "task",
    "metric",
    "temperature",
    "n_temperatures",
    "kd_value",
    "baseline",
    "baseline_value",
    "gain",
)
#: Methods that can serve as baseline.
BASELINES: tuple[str, ...] = tuple(m for m in METHODS if m not in KD_METHODS)
#: Allowed ``over_temperature`` values.
OVER_TEMPERATURE: tuple[str, ...] = ("max", "each")

_MATCH_COLUMNS = ["study", "domain", "task", "student", "seed", "metric"]


def _check_ids(kind: str, values: Iterable[str] | None, allowed: Iterable[str]) -> list[str] | None:
    if values is None:
        return None
    values = [values] if isinstance(values, str) else list(values)
    allowed = sorted(allowed)
    for value in values:
        check_choice(kind, value, allowed)
    return values


def _baseline_values(baseline_rows: pd.DataFrame, kd: pd.DataFrame, baseline: str) -> pd.Series:
    """Baseline value per KD row: the same teacher's baseline row if any, else the teacher-free one."""
    columns = [*_MATCH_COLUMNS, "teacher", "value"]
    base = baseline_rows[columns]
    dup = base.duplicated(subset=[*_MATCH_COLUMNS, "teacher"], keep=False)
    if dup.any():
        first = base.loc[dup].iloc[0]
        raise SchemaError(
            f"gains: {int(dup.sum())} ambiguous {baseline!r} baseline rows (several per "
            f"{', '.join(_MATCH_COLUMNS)}, teacher), e.g. student {first['student']!r}, task "
            f"{first['task']!r}; filter the results (e.g. by temperature or teacher_noise) first"
        )
    same_teacher = kd[[*_MATCH_COLUMNS, "teacher"]].merge(base, on=[*_MATCH_COLUMNS, "teacher"], how="left")
    teacher_free = kd[_MATCH_COLUMNS].merge(
        base[base["teacher"] == NO_TEACHER].drop(columns="teacher"), on=_MATCH_COLUMNS, how="left"
    )
    return same_teacher["value"].fillna(teacher_free["value"]).set_axis(kd.index)


def gains(
    results: pd.DataFrame,
    baseline: str = "sft",
    over_temperature: str = "max",
    metric: str = "accuracy",
    *,
    methods: Iterable[str] | None = None,
    tasks: Iterable[str] | None = None,
    validate: bool = True,
) -> pd.DataFrame:
    """KD value minus the same student's baseline value, per unit and task.

    A unit is one KD setting (:data:`UNIT_COLUMNS`: study, domain, student, teacher,
    method, teacher_kind, teacher_noise, seed). Its baseline is the row of method
    ``baseline`` with the same study, domain, task, student, seed and metric, taken from
    the same teacher where such a row exists (the paper's agreement/BLEU files give the
    SFT student's agreement with each teacher) and otherwise from the teacher-free row
    (``teacher == "none"``, e.g. the student's own SFT accuracy). KD rows without a
    baseline are dropped with a warning.

    Parameters
    ----------
    results : DataFrame
        A results table (validated here unless ``validate=False``).
    baseline : {"sft", "base"}
        Method the KD value is compared with.
    over_temperature : {"max", "each"}
        ``"max"``: one row per unit and task, the temperature with the highest KD value
        (the paper's selection step; ties go to the lowest temperature). ``"each"``: one
        row per KD result, temperature kept.
    metric : str
        One of :data:`kdanalysis.results.METRICS`.
    methods : iterable of str, optional
        KD method ids to keep (default: all KD methods present).
    tasks : iterable of str, optional
        Task ids to keep (default: all); must occur in ``results``.
    validate : bool
        Check ``results`` against the contract first (default). Pass False only for a
        table that :func:`kdanalysis.results.validate_results` has just returned.

    Returns
    -------
    DataFrame
        Columns :data:`GAIN_COLUMNS`: the unit columns, ``task``, ``metric``,
        ``temperature`` (the chosen or kept tau; NaN where unspecified),
        ``n_temperatures`` (KD results the maximum was taken over; 1 for ``"each"``),
        ``kd_value``, ``baseline`` (the baseline method id), ``baseline_value`` and
        ``gain = kd_value - baseline_value``, in the metric's unit. Sorted by unit, task
        and temperature.

    Raises
    ------
    SchemaError
        For a table failing the contract, unknown ``baseline``/``over_temperature``/
        ``metric``/method/task ids (the message lists the allowed ones), or ambiguous
        baselines.
    """
    check_choice("baseline", baseline, BASELINES)
    check_choice("over_temperature", over_temperature, OVER_TEMPERATURE)
    check_choice("metric", metric, METRICS)
    methods = _check_ids("method", methods, KD_METHODS)
    data = validate_results(results) if validate else results
    tasks = _check_ids("task", tasks, data["task"].unique())
    data = data[data["metric"] == metric]
    if tasks is not None:
        data = data[data["task"].isin(tasks)]
    kd = data[data["method"].isin(methods if methods is not None else KD_METHODS)]
    kd = kd.assign(baseline_value=_baseline_values(data[data["method"] == baseline], kd, baseline))
    missing = kd["baseline_value"].isna()
    if missing.any():
        first = kd.loc[missing].iloc[0]
        warnings.warn(
            f"gains: {int(missing.sum())} KD result(s) without a {baseline!r} baseline dropped, "
            f"e.g. student {first['student']!r}, task {first['task']!r}, metric {metric!r}",
            UserWarning,
            stacklevel=2,
        )
        kd = kd.loc[~missing]
    keys = [*UNIT_COLUMNS, "task", "metric"]
    kd = kd.sort_values([*keys, "temperature"], kind="stable")
    if over_temperature == "max":
        counts = kd.groupby(keys, sort=False).size().rename("n_temperatures")
        kd = kd.loc[kd.groupby(keys, sort=False)["value"].idxmax()].join(counts, on=keys)
    else:
        kd = kd.assign(n_temperatures=1)
    out = kd.rename(columns={"value": "kd_value"}).assign(baseline=baseline)
    out["gain"] = out["kd_value"] - out["baseline_value"]
    return out.loc[:, list(GAIN_COLUMNS)].sort_values([*keys, "temperature"]).reset_index(drop=True)
