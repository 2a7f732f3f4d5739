"""Collapsed KD runs: training runs that failed rather than distilled.

Definition. A KD run (domain, teacher, student, method, teacher kind, teacher noise,
temperature, seed) is *collapsed* when its accuracy averaged over the domain's tasks is
more than :data:`COLLAPSE_LOSS_PP` percentage points below the same student's SFT accuracy
averaged over the same tasks (the ``average`` column where the results have one, else the
mean over tasks). SFT trains the same student on the same data, so a loss that large is a
run that broke down (in the released results: reverse-KL runs whose students stop giving
answers in the expected format), not a smaller benefit of distillation.

The rule looks at the outcome (the gain), so dropping collapsed runs is only a sensitivity
analysis: the primary analyses keep every run as measured.
"""

from __future__ import annotations

import pandas as pd

from kdanalysis.studies._units import pair_label

__all__ = ["COLLAPSE_LOSS_PP", "COLLAPSED_COLUMNS", "RUN_KEYS", "collapsed_runs"]

#: A run is collapsed when its domain-average accuracy is more than this many points below SFT.
COLLAPSE_LOSS_PP = 20.0
#: Columns identifying one KD run in a gains table.
RUN_KEYS: tuple[str, ...] = (
    "domain",
    "teacher",
    "student",
    "method",
    "teacher_kind",
    "teacher_noise",
    "temperature",
    "seed",
)
#: Output columns of :func:`collapsed_runs`.
COLLAPSED_COLUMNS: tuple[str, ...] = (
    *RUN_KEYS,
    "pair",
    "kd_accuracy",
    "sft_accuracy",
    "gain",
    "collapsed",
)


def collapsed_runs(each: pd.DataFrame) -> pd.DataFrame:
    """Every KD run with its domain-average accuracy, SFT accuracy and the collapse flag.

    Parameters
    ----------
    each : DataFrame
        Accuracy gains over SFT at each temperature (:func:`kdanalysis.stats.gains` with
        ``over_temperature="each"``).

    Returns
    -------
    DataFrame
        Columns :data:`COLLAPSED_COLUMNS`: the run keys, ``pair`` ("teacher → student"),
        ``kd_accuracy`` and ``sft_accuracy`` (domain averages, %), ``gain`` (their
        difference, pp) and ``collapsed`` (``gain < -COLLAPSE_LOSS_PP``); sorted by gain.
    """
    keys = list(RUN_KEYS)
    if each.empty:
        return pd.DataFrame(columns=list(COLLAPSED_COLUMNS))
    has_average = each.groupby("domain")["task"].transform(lambda t: (t == "average").any())
    rows = each[(each["task"] == "average") | ~has_average.astype(bool)]
    runs = rows.groupby(keys, dropna=False, sort=True).agg(
        kd_accuracy=("kd_value", "mean"), sft_accuracy=("baseline_value", "mean")
    )
    runs = runs.reset_index()
    runs["gain"] = runs["kd_accuracy"] - runs["sft_accuracy"]
    runs["collapsed"] = runs["gain"] < -COLLAPSE_LOSS_PP
    runs["pair"] = pair_label(runs["teacher"], runs["student"])
    return runs[list(COLLAPSED_COLUMNS)].sort_values("gain", kind="stable").reset_index(drop=True)
