"""The report section of the per-item paired tests (KD vs SFT of the same student).

Present when the study has a per-item table with KD and SFT runs of the same student;
the statistics are :func:`kdanalysis.studies.paired_items.paired_item_tests`.
"""

from __future__ import annotations

import pandas as pd

from kdanalysis.report.formatting import fmt_p, fmt_pp
from kdanalysis.report.sections import Section, TableSpec
from kdanalysis.stats.paired import MCNEMAR_EXACT_BELOW
from kdanalysis.studies.paired_items import paired_item_tests

__all__ = ["paired_items_section"]

_ID, _TITLE = "paired_items", "Per-item paired tests: each KD student against its SFT twin"
_ALPHA = 0.05
_N_BOOT = 10_000
_COLUMNS = {
    "task": "task",
    "student": "student",
    "method": "method",
    "teacher": "teacher",
    "temperature": "τ",
    "seed": "seed",
    "n": "items",
    "n_discordant": "discordant",
    "n_kd_only": "only KD right",
    "n_sft_only": "only SFT right",
    "acc_kd": "KD %",
    "acc_sft": "SFT %",
    "diff": "KD − SFT (pp)",
    "ci_low": "CI low",
    "ci_high": "CI high",
    "p_mcnemar": "p (exact McNemar)",
    "p_holm": "p Holm (tasks)",
    "p_bootstrap": "p (bootstrap)",
    "note": "note",
}


def _bullets(table: pd.DataFrame) -> list[str]:
    bullets = []
    for (kd_run, sft_run), rows in table.groupby(["kd_run", "sft_run"], sort=True):
        tested = rows[rows["p_holm"].notna()]
        supported = tested[tested["p_holm"] < _ALPHA]
        head = f"{kd_run} vs {sft_run} ({rows['student'].iloc[0]}, {rows['method'].iloc[0]})"
        if tested.empty:
            bullets.append(f"{head}: no task could be tested (see the notes).")
        elif supported.empty:
            bullets.append(
                f"{head}: no task differs at Holm-adjusted {_ALPHA:.0%} "
                f"({len(tested)} task(s), {int(tested['n_discordant'].sum())} discordant items in all)."
            )
        else:
            parts = ", ".join(
                f"{r.task} {fmt_pp(r.diff)} (p Holm {fmt_p(r.p_holm)}, {r.n_discordant} discordant)"
                for r in supported.itertuples()
            )
            bullets.append(f"{head}: differs on {parts}.")
    return bullets


def paired_items_section(results: pd.DataFrame, items: pd.DataFrame | None) -> Section:
    """The section, or an omitted one saying which data it needs.

    Parameters
    ----------
    results : DataFrame
        The study's validated results table.
    items : DataFrame or None
        Its per-item table (None or empty: the section is omitted).
    """
    if items is None or items.empty:
        return Section.omitted(_ID, _TITLE, "No per-item table (items.parquet) beside these results.")
    table = paired_item_tests(results, items, n_boot=_N_BOOT)
    if table.empty:
        return Section.omitted(
            _ID, _TITLE, "The per-item table has no KD run with an SFT run of the same student."
        )
    return Section(
        id=_ID,
        title=_TITLE,
        paragraphs=[
            "Each KD run is compared with the SFT run of the same student (same seed where there is one) on "
            "the same items of each task. Only the discordant items (answered correctly by exactly one of "
            "the two) carry information: the exact McNemar test is the binomial test of their split, its "
            "p-values are Holm-adjusted across the tasks of each pair. The interval of the accuracy "
            f"difference is a paired bootstrap over items (percentile, {_N_BOOT:,} resamples); its p-value "
            f"is the exact McNemar one when fewer than {MCNEMAR_EXACT_BELOW} items are discordant.",
        ],
        bullets=_bullets(table),
        tables=[
            TableSpec(
                _ID,
                "KD vs SFT on the same items",
                "Accuracies in %, difference in pp with its 95% paired-bootstrap interval; one row per KD "
                "run and task. Run ids, pairing and p-value sources are in the CSV.",
                table,
                _COLUMNS,
            )
        ],
    )
