"""Descriptive tables of a study: the data behind the report's figures and its naive tests.

Everything here describes the units (gains per pair and task, accuracies, matched
task-aware/base runs, temperature units, correlations) or repeats the paper's kind of test
with units treated as independent — labelled so wherever it is shown. The inference that
respects the dependence between units is :mod:`kdanalysis.studies.beyond`. Nothing is
rounded here.

The report's gain is the paper's: best KD score over temperatures minus the same
student's SFT score, per unit (domain, student, teacher, method, teacher kind, noise,
seed) and task, for accuracy; units are joined to their covariates once, by
:func:`kdanalysis.studies._units.add_covariates`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from kdanalysis.results import NO_TEACHER
from kdanalysis.stats import adjust_pvalues, corr, mixedlm, ols, partial_corr, ttest
from kdanalysis.stats.correlation import CORR_COLUMNS
from kdanalysis.studies._units import add_covariates, pair_label, task_aware
from kdanalysis.studies.beyond import fidelity_units

__all__ = [
    "FOREST_PREDICTORS",
    "accuracy_table",
    "best_units",
    "dependence_table",
    "expertise_pairs",
    "fidelity_correlations",
    "fidelity_long",
    "gain_tests",
    "heatmap_table",
    "paper_holm",
    "selection_table",
    "task_correlations",
    "temperature_best",
    "temperature_units",
    "unit_correlation",
    "unit_gains",
]

#: Predictors of the per-task correlation forest: column -> display name.
FOREST_PREDICTORS: dict[str, str] = {
    "student_size": "student size",
    "teacher_score": "teacher accuracy",
    "baseline_value": "student SFT accuracy",
    "agreement": "agreement with teacher",
    "bleu": "fidelity (BLEU)",
}
_UNIT_KEYS = ["domain", "student", "teacher", "method", "pair"]


def _quiet(func, *args, **kwargs):  # type: ignore[no-untyped-def]
    """A batch statistic without its degenerate-row warnings (the rows carry a ``note``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


def _holm(table: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    """``table`` with ``p_holm``: Holm across its rows within ``by`` groups."""
    if table.empty:
        return table.assign(p_holm=pd.Series(dtype=float))
    return pd.DataFrame(adjust_pvalues(table, "holm", by=by)).rename(columns={"p_adj": "p_holm"})


def best_units(gains: pd.DataFrame, results: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Task-aware, noise-free KD units of a gains table with their covariates and pair label.

    Parameters
    ----------
    gains : DataFrame
        :func:`kdanalysis.stats.gains` of ``results`` (any ``over_temperature``).
    results, models : DataFrame
        The validated results and models tables.

    Returns
    -------
    DataFrame
        The rows of ``gains`` with a task-aware teacher and no noise (``average`` kept),
        plus ``pair`` and the covariates of :func:`~kdanalysis.studies._units.add_covariates`.
    """
    units = add_covariates(task_aware(gains), results, models, strict=False)
    units["pair"] = pair_label(units["teacher"], units["student"])
    return units.reset_index(drop=True)


def unit_gains(kd: pd.DataFrame) -> pd.DataFrame:
    """One gain per KD unit: its ``average`` task where the domain has one, else the mean over tasks.

    Returns
    -------
    DataFrame
        Columns ``domain, student, teacher, method, pair, gain, student_size, n_tasks``.
    """
    frames = []
    for _domain, part in kd.groupby("domain", sort=False):
        if (part["task"] == "average").any():
            part = part[part["task"] == "average"]
        frames.append(
            part.groupby(_UNIT_KEYS, as_index=False, sort=False).agg(
                gain=("gain", "mean"), student_size=("student_size", "first"), n_tasks=("task", "nunique")
            )
        )
    columns = [*_UNIT_KEYS, "gain", "student_size", "n_tasks"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def accuracy_table(results: pd.DataFrame, kd: pd.DataFrame) -> pd.DataFrame:
    """Base, SFT and best-temperature KD accuracy per student and task (every domain).

    Returns
    -------
    DataFrame
        Columns ``domain, student, task, method, teacher, value`` (accuracy, %) for the
        students of ``kd``, ordered by domain, then student size and name; KD rows have one
        row per teacher.
    """
    frames = []
    for domain in kd["domain"].unique():
        part = kd[kd["domain"] == domain]
        students = part.sort_values(["student_size", "student"])["student"].drop_duplicates().tolist()
        acc = results[
            (results["metric"] == "accuracy")
            & (results["domain"] == domain)
            & results["student"].isin(students)
            & results["method"].isin(["base", "sft"])
            & (results["teacher"] == NO_TEACHER)
        ]
        kd_rows = part[["student", "task", "method", "teacher", "kd_value"]].rename(
            columns={"kd_value": "value"}
        )
        table = pd.concat(
            [acc[["student", "task", "method", "teacher", "value"]], kd_rows], ignore_index=True
        )
        order = {s: i for i, s in enumerate(students)}
        table = table.sort_values("student", key=lambda s: s.map(order), kind="stable")
        frames.append(table.assign(domain=domain))
    columns = ["domain", "student", "task", "method", "teacher", "value"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def expertise_pairs(each: pd.DataFrame) -> pd.DataFrame:
    """Matched KD runs with a task-aware and a base (un-tuned) teacher.

    A match shares domain, task, student, teacher, method, temperature, noise and seed;
    the gain is over the student's SFT accuracy.

    Returns
    -------
    DataFrame
        Columns ``domain, task, student, teacher, method, temperature, pair_id,
        teacher_kind, kd_value, gain``; two rows per match. Empty without base-teacher runs.
    """
    keys = ["study", "domain", "task", "student", "teacher", "method", "temperature", "teacher_noise", "seed"]
    base_keys = each.loc[each["teacher_kind"] == "base", keys].drop_duplicates()
    matched = each.merge(base_keys, on=keys)
    counts = matched.groupby(keys, dropna=False)["teacher_kind"].transform("nunique")
    matched = matched[counts == 2].copy()
    pair = pair_label(matched["teacher"], matched["student"])
    matched["pair_id"] = (
        matched["domain"]
        + "|"
        + matched["task"]
        + "|"
        + pair
        + "|"
        + matched["method"]
        + "|"
        + matched["temperature"].astype(str)
    )
    columns = ["domain", "task", "student", "teacher", "method", "temperature", "pair_id", "teacher_kind"]
    return matched[[*columns, "kd_value", "gain"]].reset_index(drop=True)


def temperature_units(kd_each: pd.DataFrame) -> pd.DataFrame:
    """Units evaluated at more than one temperature (the temperature ablation), per task.

    Parameters
    ----------
    kd_each : DataFrame
        :func:`best_units` of the gains at each temperature.

    Returns
    -------
    DataFrame
        Its rows for units with two or more temperatures, plus ``unit`` ("domain: teacher →
        student, method, task"); only the ``average`` task where the domain has one.
    """
    keyed = kd_each.dropna(subset=["temperature"])
    unit = keyed["domain"] + ": " + keyed["pair"] + ", " + keyed["method"] + ", " + keyed["task"]
    keyed = keyed.assign(unit=unit)
    table = keyed[keyed.groupby("unit")["temperature"].transform("nunique") > 1]
    if (table["task"] == "average").any():
        table = table[table["task"] == "average"]
    return table.reset_index(drop=True)


def temperature_best(kd: pd.DataFrame) -> pd.DataFrame:
    """How often each temperature is a unit's best (the paper's selection).

    Returns
    -------
    DataFrame
        Columns ``domain, method, temperature, n_best`` for units run at several
        temperatures (their ``average`` task where the domain has one).
    """
    best = kd[kd["n_temperatures"] > 1]
    best = best[best["task"] == "average"] if (best["task"] == "average").any() else best
    return (
        best.groupby(["domain", "method", "temperature"], as_index=False)
        .size()
        .rename(columns={"size": "n_best"})
    )


def selection_table(temperature: pd.DataFrame) -> pd.DataFrame:
    """Mean gain with each unit's best temperature vs with each fixed temperature.

    Parameters
    ----------
    temperature : DataFrame
        :func:`temperature_units`.

    Returns
    -------
    DataFrame
        Columns ``domain, choice, n, mean_gain``; ``choice`` is "best τ (max)" or "τ = t".
    """
    if temperature.empty:
        return pd.DataFrame(columns=["domain", "choice", "n", "mean_gain"])
    best = temperature.loc[temperature.groupby("unit")["gain"].idxmax()].assign(choice="best τ (max)")
    fixed = temperature.assign(choice="τ = " + temperature["temperature"].map(lambda t: f"{t:g}"))
    both = pd.concat([best, fixed], ignore_index=True)
    return both.groupby(["domain", "choice"], as_index=False, sort=False).agg(
        n=("gain", "size"), mean_gain=("gain", "mean")
    )


def heatmap_table(kd: pd.DataFrame) -> pd.DataFrame:
    """Mean gain over KD methods per domain, pair and task.

    Returns
    -------
    DataFrame
        Columns ``domain, pair, task, gain`` (pp), ``n_methods``; pairs ordered by teacher
        then student size.
    """
    order = kd.sort_values(["teacher", "student_size", "student"])["pair"].drop_duplicates().tolist()
    table = kd.groupby(["domain", "pair", "task"], as_index=False, sort=False).agg(
        gain=("gain", "mean"), n_methods=("method", "nunique")
    )
    rank = {p: i for i, p in enumerate(order)}
    return table.sort_values(
        ["domain", "pair"], key=lambda s: s.map(rank) if s.name == "pair" else s, kind="stable"
    ).reset_index(drop=True)


def gain_tests(kd: pd.DataFrame) -> pd.DataFrame:
    """Per task: is the mean gain above zero? One-sided t-test, units treated as independent.

    Returns
    -------
    DataFrame
        :func:`kdanalysis.stats.ttest` columns (by domain and task) plus ``p_holm`` (Holm
        across the tasks of a domain).
    """
    tests = _quiet(ttest, kd, "gain", alternative="greater", by=["domain", "task"])
    return _holm(tests, "domain")


def unit_correlation(data: pd.DataFrame, x: str, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Spearman ρ of ``gain`` and ``x`` per domain, units treated as independent (bootstrap CI)."""
    data = data.dropna(subset=[x])
    if data.empty:
        return pd.DataFrame(columns=["domain", *CORR_COLUMNS])
    return _quiet(
        corr, data.dropna(subset=[x]), x, "gain", method="spearman", by="domain", n_boot=n_boot, seed=seed
    )


def fidelity_correlations(fidelity: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Spearman ρ of gain with each measure, and the partial ρ controlling for student size.

    Parameters
    ----------
    fidelity : DataFrame
        Long table: ``measure`` (e.g. "agreement (math)"), ``measure_value``, ``gain``,
        ``student_size``.

    Returns
    -------
    DataFrame
        :func:`kdanalysis.stats.corr` columns by ``measure``, plus ``statistic_partial``,
        ``ci_low_partial``, ``ci_high_partial``, ``p_val_partial``
        (:func:`kdanalysis.stats.partial_corr`, ranks); units treated as independent.
    """
    if fidelity.empty:
        partial = ["statistic_partial", "ci_low_partial", "ci_high_partial", "p_val_partial"]
        return pd.DataFrame(columns=["measure", *CORR_COLUMNS, *partial])
    rho = _quiet(
        corr, fidelity, "measure_value", "gain", method="spearman", by="measure", n_boot=n_boot, seed=seed
    )
    partial = _quiet(
        partial_corr, fidelity, "measure_value", "gain", covar="student_size", method="spearman", by="measure"
    )
    return rho.merge(
        partial[["measure", "statistic", "ci_low", "ci_high", "p_val"]],
        on="measure",
        suffixes=("", "_partial"),
    )


def task_correlations(kd: pd.DataFrame, fidelity: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Spearman ρ of the gain with each covariate, per domain and task (units independent).

    Parameters
    ----------
    kd : DataFrame
        :func:`best_units` (student size, teacher and SFT accuracy).
    fidelity : DataFrame
        Long agreement / BLEU table (``measure_name``, ``measure_value``, ``gain``).

    Returns
    -------
    DataFrame
        Columns ``predictor`` (display name), ``domain``, ``task`` followed by the columns of
        :func:`kdanalysis.stats.corr`, and ``p_holm`` (Holm across the tasks of a domain per
        predictor). Covariates constant everywhere are left out.
    """
    per_task = kd[kd["task"] != "average"]
    sources = [(per_task, column) for column in ("student_size", "teacher_score", "baseline_value")]
    sources += [
        (fidelity[fidelity["measure_name"] == name].assign(**{name: fidelity["measure_value"]}), name)
        for name in ("agreement", "bleu")
    ]
    frames = []
    for data, column in sources:
        if column not in data or data[column].nunique(dropna=True) < 2:
            continue
        part = data.dropna(subset=[column, "gain"])
        table = _quiet(
            corr, part, x=column, y="gain", method="spearman", by=["domain", "task"], n_boot=n_boot, seed=seed
        )
        frames.append(table.assign(predictor=FOREST_PREDICTORS[column]))
    if not frames:
        return pd.DataFrame(
            columns=["predictor", "domain", "task", "statistic", "ci_low", "ci_high", "p_holm"]
        )
    out = pd.concat(frames, ignore_index=True)
    out = out[
        ["predictor", "domain", "task", *[c for c in out.columns if c not in ("predictor", "domain", "task")]]
    ]
    out["statistic"] = out["statistic"].astype(float).replace([np.inf, -np.inf], np.nan)
    out = out.dropna(subset=["statistic"])
    return _holm(out, ["predictor", "domain"])


def paper_holm(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's H1-H5 table with ``p_holm``: Holm across the tasks of a domain per test family."""
    table = paper.dropna(subset=["statistic"])
    return _holm(table, ["domain", "hypothesis", "methods", "test"])


_DEPENDENCE_COLUMNS = [
    "domain",
    "question",
    "analysis",
    "n",
    "n_groups",
    "estimate",
    "se",
    "df",
    "ci_low",
    "ci_high",
    "p_val",
]


def _coef_row(
    domain: str, question: str, analysis: str, n: int, groups: int, coef: pd.Series
) -> dict[str, object]:
    values = {c: coef.get(c, np.nan) for c in ("estimate", "se", "df", "ci_low", "ci_high", "p_val")}
    return {
        "domain": domain,
        "question": question,
        "analysis": analysis,
        "n": n,
        "n_groups": groups,
        **values,
    }


def dependence_table(overall: pd.DataFrame) -> pd.DataFrame:
    """How much the inference changes when the units' shared students and pairs are respected.

    Per domain, on one gain per KD unit (:func:`unit_gains`): the mean gain (t-test with
    units independent; CR1 clustered by pair with t(G - 1); CR2 clustered by student with
    Satterthwaite df; a mixed model with a random intercept per student, Satterthwaite df)
    and the gain per doubling of student size (OLS with units independent; CR2 clustered by
    student).

    Returns
    -------
    DataFrame
        Columns ``domain, question, analysis, n, n_groups, estimate, se, df, ci_low,
        ci_high, p_val`` (two-sided).
    """
    rows = []
    mean = "mean gain ≠ 0"
    slope = "gain per doubling of size"
    for domain, part in overall.groupby("domain", sort=False):
        n = len(part)
        naive = _quiet(ttest, part, "gain").iloc[0].rename({"mean_diff": "estimate"})
        rows.append(_coef_row(domain, mean, "t-test, units independent", n, n, naive))
        if part["pair"].nunique() >= 3:
            fit = _quiet(ols, "gain ~ 1", part, cluster="pair", vcov="CR1")
            rows.append(
                _coef_row(
                    domain,
                    mean,
                    "OLS, CR1 clustered by pair, t(G−1)",
                    n,
                    part["pair"].nunique(),
                    fit.coefs.iloc[0],
                )
            )
        if part["student"].nunique() >= 3:
            students = part["student"].nunique()
            fit = _quiet(ols, "gain ~ 1", part, cluster="student", vcov="CR2")
            rows.append(
                _coef_row(
                    domain,
                    mean,
                    "OLS, CR2 clustered by student, Satterthwaite df",
                    n,
                    students,
                    fit.coefs.iloc[0],
                )
            )
            mixed = _quiet(mixedlm, "gain ~ 1", part, groups="student", df="satterthwaite")
            rows.append(
                _coef_row(
                    domain,
                    mean,
                    "mixed model, random intercept per student",
                    n,
                    students,
                    mixed.coefs.iloc[0],
                )
            )
        sized = part.dropna(subset=["student_size"]).assign(log2_size=lambda d: np.log2(d["student_size"]))
        if sized["student_size"].nunique() >= 2 and sized["student"].nunique() >= 3:
            fit = _quiet(ols, "gain ~ log2_size", sized)
            rows.append(
                _coef_row(domain, slope, "OLS, units independent", len(sized), len(sized), fit.coefs.iloc[1])
            )
            fit = _quiet(ols, "gain ~ log2_size", sized, cluster="student", vcov="CR2")
            rows.append(
                _coef_row(
                    domain,
                    slope,
                    "OLS, CR2 clustered by student, Satterthwaite df",
                    len(sized),
                    sized["student"].nunique(),
                    fit.coefs.iloc[1],
                )
            )
    return pd.DataFrame(rows, columns=_DEPENDENCE_COLUMNS)


def fidelity_long(units: pd.DataFrame, behaviour: pd.DataFrame) -> pd.DataFrame:
    """Agreement and BLEU beside the gain, long: one row per measured value (each counted once).

    Parameters
    ----------
    units : DataFrame
        Task-aware KD units (:func:`kdanalysis.studies.beyond.prepare_units` rows).
    behaviour : DataFrame
        The agreement / BLEU rows of the results.

    Returns
    -------
    DataFrame
        :func:`kdanalysis.studies.beyond.fidelity_units` rows of every measure plus
        ``measure_name`` ("agreement" / "bleu"), ``measure`` ("agreement (math)", "BLEU
        (math)", ...) and ``measure_value``.
    """
    frames = []
    for name, label in (("agreement", "agreement"), ("bleu", "BLEU")):
        part = fidelity_units(units, behaviour, name)
        if part.empty:
            continue
        frames.append(
            part.drop(columns=[name]).assign(
                measure_name=name, measure=label + " (" + part["domain"] + ")", measure_value=part[name]
            )
        )
    if not frames:
        return pd.DataFrame(
            columns=[
                "domain",
                "task",
                "pair",
                "gain",
                "student_size",
                "measure_name",
                "measure",
                "measure_value",
            ]
        )
    return pd.concat(frames, ignore_index=True)
