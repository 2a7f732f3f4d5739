"""Temperature ablation: KD gain by temperature per method, paired by unit."""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd

from kdanalysis.errors import ConfigError
from kdanalysis.results import KD_METHODS, validate_results
from kdanalysis.stats import adjust_pvalues, bootstrap_ci, ttest
from kdanalysis.studies._batched import stacked_cells
from kdanalysis.studies._units import accuracy_gains_each, single_study

__all__ = ["TEMPERATURE_COLUMNS", "paired_units", "temperature_ablation", "temperature_table"]

#: Output columns of :func:`temperature_ablation`.
TEMPERATURE_COLUMNS: tuple[str, ...] = (
    "domain",
    "method",
    "temperature",
    "n_units",
    "mean_gain",
    "ci_low",
    "ci_high",
    "diff_vs_reference",
    "diff_ci_low",
    "diff_ci_high",
    "p_val",
    "p_holm",
)
_UNIT = ["domain", "method", "task", "teacher", "student"]


def paired_units(table: pd.DataFrame) -> pd.DataFrame:
    """Units (domain, method, task, teacher, student) observed at every ablated temperature."""
    counts = table.groupby(_UNIT)["temperature"].transform("nunique")
    ablated = table[counts > 1]
    temps = ablated.groupby(["domain", "method"])["temperature"].transform("nunique")
    return ablated[counts[counts > 1] == temps]


def temperature_ablation(
    results: pd.DataFrame, *, reference: float = 1.0, n_boot: int = 10_000, seed: int = 0, ci: float = 0.95
) -> pd.DataFrame:
    """Mean KD gain at each temperature, and its paired difference to ``reference``.

    Units are (domain, KD method, task, teacher, student) with a task-aware teacher, no
    teacher noise and no ``average`` column, kept only if observed at every temperature
    of the ablation of their domain and method (in the paper: forward and reverse KL
    with the Qwen2.5-3B/7B teachers at tau = 1, 2, 5), so all temperatures are compared on
    the same units. The mean gain has a seeded percentile bootstrap interval over units
    (``n_boot`` resamples, :func:`kdanalysis.stats.bootstrap_ci`); the difference to the
    reference temperature a paired t-test (:func:`kdanalysis.stats.ttest`) with its
    interval, Holm-adjusted across the comparisons of a domain. Both treat units as
    independent, although units share pairs and tasks: read the intervals as descriptive.

    Parameters
    ----------
    results : DataFrame
        Results of one study.
    reference : float
        Temperature the others are compared with.
    n_boot, seed : int
        Bootstrap resamples and seed.
    ci : float
        Confidence level.

    Returns
    -------
    DataFrame
        Columns :data:`TEMPERATURE_COLUMNS`: ``domain, method, temperature``, ``n_units``,
        ``mean_gain`` (points of accuracy over SFT) with ``ci_low, ci_high``;
        ``diff_vs_reference`` (mean paired gain difference to the reference temperature)
        with ``diff_ci_low, diff_ci_high``, ``p_val`` (two-sided paired t-test) and
        ``p_holm``; the difference columns are NaN on the reference rows.
    """
    results = single_study(validate_results(results), "temperature ablation")
    return temperature_table(results, reference=reference, n_boot=n_boot, seed=seed, ci=ci)


def temperature_table(
    results: pd.DataFrame,
    *,
    reference: float = 1.0,
    n_boot: int = 10_000,
    seed: int = 0,
    ci: float = 0.95,
    each: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`temperature_ablation` of an already validated one-study table.

    ``each``: the accuracy gains of ``results`` at each temperature, if already computed
    (see :func:`kdanalysis.studies._units.accuracy_gains_each`).
    """
    table = accuracy_gains_each(results, sorted(KD_METHODS), each)
    table = table[
        (table["teacher_kind"] == "task_aware")
        & (table["teacher_noise"] == 0)
        & (table["task"] != "average")
        & table["temperature"].notna()
    ]
    units = paired_units(table)
    if units.empty:
        return pd.DataFrame(columns=list(TEMPERATURE_COLUMNS))
    temperatures = sorted(set(units["temperature"]))
    if temperatures and reference not in temperatures:
        raise ConfigError(
            f"reference={reference!r} is not a temperature of the ablation; choose one of: "
            f"{', '.join(map(str, temperatures))}"
        )
    cells = ["domain", "method", "temperature"]
    parts = []
    for keys, arrays in stacked_cells(units, cells, ["gain"]):
        low, high = bootstrap_ci(arrays["gain"], np.mean, n_boot=n_boot, ci=ci, seed=seed, axis=1)
        parts.append(
            keys.assign(
                n_units=arrays["gain"].shape[1],
                mean_gain=arrays["gain"].mean(axis=1),
                ci_low=low,
                ci_high=high,
            )
        )
    summary = pd.concat(parts, ignore_index=True)
    wide = units.pivot_table(index=_UNIT, columns="temperature", values="gain").reset_index()
    diffs = []
    for temperature in [t for t in temperatures if t != reference]:
        pairs = wide.dropna(subset=[temperature, reference]).rename(
            columns={temperature: "at_temperature", reference: "at_reference"}
        )
        test = ttest(pairs, "at_temperature", "at_reference", paired=True, by=["domain", "method"], ci=ci)
        diffs.append(test.assign(temperature=temperature))
    columns = {"mean_diff": "diff_vs_reference", "ci_low": "diff_ci_low", "ci_high": "diff_ci_high"}
    if diffs:
        tests = cast(pd.DataFrame, adjust_pvalues(pd.concat(diffs, ignore_index=True), "holm", by=["domain"]))
        tests = tests.rename(columns={**columns, "p_adj": "p_holm"})[
            [*cells, *columns.values(), "p_val", "p_holm"]
        ]
        summary = summary.merge(tests, on=cells, how="left")
    else:
        summary = summary.assign(**dict.fromkeys([*columns.values(), "p_val", "p_holm"], np.nan))
    return summary[list(TEMPERATURE_COLUMNS)].sort_values(cells).reset_index(drop=True)
