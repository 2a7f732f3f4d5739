"""Per-item paired tests: each KD student against its SFT twin on the same items.

A KD run and the SFT run of the same student answered the same questions; comparing
them item by item (exact McNemar test, paired bootstrap of the accuracy difference) uses
the pairing that per-task accuracies throw away. The runs come from the results table
(rows with ``metric == "accuracy"``: a run's ``run_id`` names its student, method,
teacher, temperature and seed), the outcomes from the per-item table (the results
contract's :data:`~kdanalysis.results.ITEM_COLUMNS`), whether written by ``kdanalysis``'
runners or imported from lm-evaluation-harness.

Pairing: every KD run (``method`` in :data:`~kdanalysis.results.KD_METHODS`) with items is
compared with the SFT run (``method="sft"``, no teacher) of the same student and seed;
without one, with the student's only SFT run (``pairing="other seed"``). The tests are
:func:`kdanalysis.stats.mcnemar` and :func:`kdanalysis.stats.paired_bootstrap`; McNemar's
exact p-values are Holm-adjusted (:func:`kdanalysis.stats.adjust_pvalues`) across the
tasks of each pair.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from kdanalysis.errors import SchemaError
from kdanalysis.results import KD_METHODS, NO_TEACHER, validate_items, validate_results
from kdanalysis.stats import DegenerateDataWarning, adjust_pvalues, mcnemar, paired_bootstrap

__all__ = ["PAIRED_ITEM_COLUMNS", "paired_item_tests"]

#: Columns of :func:`paired_item_tests`, in order.
PAIRED_ITEM_COLUMNS: tuple[str, ...] = (
    "domain",
    "task",
    "student",
    "teacher",
    "method",
    "teacher_kind",
    "temperature",
    "teacher_noise",
    "seed",
    "kd_run",
    "sft_run",
    "pairing",
    "n",
    "n_discordant",
    "n_kd_only",
    "n_sft_only",
    "acc_kd",
    "acc_sft",
    "diff",
    "ci_low",
    "ci_high",
    "p_mcnemar",
    "p_holm",
    "p_bootstrap",
    "p_method",
    "note",
)
_RUN_COLUMNS = ["student", "teacher", "method", "teacher_kind", "temperature", "teacher_noise", "seed"]


def _runs(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run_id of the accuracy rows with its study cell; refuses a run_id with two cells."""
    acc = results[(results["metric"] == "accuracy") & (results["run_id"] != "")]
    runs = acc[["run_id", *_RUN_COLUMNS]].drop_duplicates()
    twice = runs["run_id"].duplicated(keep=False)
    if twice.any():
        raise SchemaError(
            f"run_id {runs.loc[twice, 'run_id'].iloc[0]!r} names more than one (student, method, teacher, "
            "temperature, seed) in the accuracy rows; per-item pairing needs one run per run_id"
        )
    return runs.reset_index(drop=True)


def _pairs(runs: pd.DataFrame) -> list[tuple[pd.Series, str, str]]:
    sft = runs[(runs["method"] == "sft") & (runs["teacher"] == NO_TEACHER)]
    pairs = []
    for _, kd in runs[runs["method"].isin(KD_METHODS)].iterrows():
        twins = sft[sft["student"] == kd["student"]]
        same_seed = twins[twins["seed"] == kd["seed"]]
        if len(same_seed) == 1:
            pairs.append((kd, same_seed["run_id"].iloc[0], "same seed"))
        elif len(twins) == 1:
            pairs.append((kd, twins["run_id"].iloc[0], "other seed"))
    return pairs


def _pair_rows(
    items: pd.DataFrame, kd: pd.Series, sft_run: str, n_boot: int, ci: float, seed: int
) -> list[dict[str, object]]:
    kd_run = kd["run_id"]
    both = items[items["run_id"].isin([kd_run, sft_run])]
    rows = []
    for task, frame in both.groupby("task", sort=True):
        row: dict[str, object] = dict.fromkeys(PAIRED_ITEM_COLUMNS, np.nan)
        row.update({c: kd[c] for c in _RUN_COLUMNS}, task=task, kd_run=kd_run, sft_run=sft_run, note="")
        present = set(frame["run_id"])
        try:
            if present != {kd_run, sft_run}:
                missing = sft_run if kd_run in present else kd_run
                raise SchemaError(f"no items of run {missing!r}")
            test = mcnemar(frame, kd_run, sft_run, item="item_id").iloc[0]
            boot = paired_bootstrap(
                frame, kd_run, sft_run, item="item_id", n_boot=n_boot, ci=ci, seed=seed
            ).iloc[0]
        except SchemaError as exc:
            note = f"task {task!r}, {kd_run!r} vs {sft_run!r}: {exc}"
            warnings.warn(note, DegenerateDataWarning, stacklevel=3)
            row["note"] = note
            rows.append(row)
            continue
        row.update(
            n=test["n"],
            n_kd_only=test["n_a_only"],
            n_sft_only=test["n_b_only"],
            n_discordant=test["n_a_only"] + test["n_b_only"],
            acc_kd=100 * test["acc_a"],
            acc_sft=100 * test["acc_b"],
            diff=100 * test["diff"],
            ci_low=100 * boot["ci_low"],
            ci_high=100 * boot["ci_high"],
            p_mcnemar=test["p_val"],
            p_bootstrap=boot["p_val"],
            p_method=boot["p_method"],
            note=test["note"],
        )
        rows.append(row)
    return rows


def paired_item_tests(
    results: pd.DataFrame,
    items: pd.DataFrame,
    *,
    n_boot: int = 10_000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """KD vs SFT of the same student, item by item, per task (see the module docstring).

    Parameters
    ----------
    results : DataFrame
        Results table of the study (its accuracy rows name each run).
    items : DataFrame
        Per-item table of the same runs.
    n_boot, ci, seed
        Paired bootstrap settings (:func:`kdanalysis.stats.paired_bootstrap`).

    Returns
    -------
    DataFrame
        Columns :data:`PAIRED_ITEM_COLUMNS`, one row per (KD run, task): the KD run's
        study cell, ``kd_run``/``sft_run`` and ``pairing`` (``"same seed"`` or ``"other
        seed"``), ``n`` paired items, ``n_discordant = n_kd_only + n_sft_only`` (items only
        one of the two answers correctly), accuracies ``acc_kd``/``acc_sft`` and ``diff =
        acc_kd - acc_sft`` in percent with its paired-bootstrap percentile interval
        ``ci_low``/``ci_high``, ``p_mcnemar`` (exact McNemar, two-sided), ``p_holm`` (Holm
        across the tasks of the pair), ``p_bootstrap`` and its ``p_method``. A task where the
        two runs' items differ or fewer than 3 items are paired gives NaNs, a ``note`` and a
        :class:`~kdanalysis.stats.DegenerateDataWarning`. Empty (same columns) without items
        or without KD/SFT pairs.
    """
    results = validate_results(results)
    items = validate_items(items)
    domains = results[["task", "domain"]].drop_duplicates("task")
    rows: list[dict[str, object]] = []
    for kd, sft_run, pairing in _pairs(_runs(results)):
        pair_rows = _pair_rows(items, kd, sft_run, n_boot, ci, seed)
        for row in pair_rows:
            row["pairing"] = pairing
        rows.extend(pair_rows)
    table = pd.DataFrame(rows, columns=list(PAIRED_ITEM_COLUMNS))
    if table.empty:
        return table
    table["p_holm"] = adjust_pvalues(table, "holm", p_col="p_mcnemar", by=["kd_run", "sft_run"])["p_adj"]
    table["domain"] = table["task"].map(domains.set_index("task")["domain"]).fillna("")
    for column in ("n", "n_discordant", "n_kd_only", "n_sft_only"):
        table[column] = table[column].astype("Int64")
    return table[list(PAIRED_ITEM_COLUMNS)]
