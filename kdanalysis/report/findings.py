"""Findings and caveats as sentences generated from the report's statistics.

Both functions read the tables the section builders computed (see
:mod:`kdanalysis.report.content`, keys listed below) and return plain-text sentences with
the numbers formatted by :mod:`kdanalysis.report.formatting`; a sentence is produced only
when its table is present, so nothing is stated that the data do not show.

Tables read: ``gains`` (KD gains), ``gain_tests``, ``size_rho``, ``teacher_rho``,
``expertise``, ``temperature_best``, ``paradox``, ``paper``, ``beyond_size_vs_gain``,
``beyond_fidelity_vs_gain``, ``dependence``, ``selection``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from kdanalysis.plots.style import method_label, task_label
from kdanalysis.report.formatting import fmt_ci, fmt_int, fmt_num, fmt_p, fmt_pp, fmt_signed

__all__ = ["ALPHA", "finding_sentences", "caveat_sentences"]

#: Significance level the sentences use.
ALPHA = 0.05


def _rho_text(row: pd.Series) -> str:
    return (
        f"ρ = {fmt_signed(row['statistic'])}, 95 % CI {fmt_ci(row['ci_low'], row['ci_high'])}, "
        f"n = {fmt_int(row['n'])}"
    )


def _relation(row: pd.Series, rises: str, falls: str, none: str) -> str:
    low, high = float(row["ci_low"]), float(row["ci_high"])
    if low > 0:
        return rises
    if high < 0:
        return falls
    return none


def _gain_sentences(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    out = []
    tests = tables.get("gain_tests")
    if tests is not None:
        for domain, part in tests.groupby("domain", sort=False):
            part = part.dropna(subset=["p_holm"])
            if part.empty:
                continue
            tasks = part[part["task"] != "average"] if (part["task"] != "average").any() else part
            hits = tasks[tasks["p_holm"] < ALPHA]
            out.append(
                f"{domain.capitalize()}: the mean KD gain over SFT is above zero after Holm correction in "
                f"{len(hits)} of {len(tasks)} tasks (mean gain per task from "
                f"{fmt_pp(tasks['mean_diff'].min())} to {fmt_pp(tasks['mean_diff'].max())})."
            )
    kd = tables.get("gains")
    if kd is not None and not kd.empty:
        for label, part in (
            ("on a domain average", kd[kd["task"] == "average"]),
            ("on a single task", kd[kd["task"] != "average"]),
        ):
            if part.empty:
                continue
            top = part.loc[part["gain"].idxmax()]
            out.append(
                f"Largest gain {label}: {fmt_pp(top['gain'])} for {top['student']} "
                f"({task_label(top['task'])}, {top['domain']}; {method_label(top['method'])} from "
                f"{top['teacher']}; SFT {fmt_num(top['baseline_value'])} % → KD {fmt_num(top['kd_value'])} "
                "%)."
            )
    return out


def finding_sentences(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Key findings, one sentence each, with their numbers.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        The report's computed tables (keys in the module docstring); missing keys are
        skipped.

    Returns
    -------
    list of str
    """
    out = _gain_sentences(tables)
    for row in _rows(tables.get("size_rho")):
        verb = _relation(row, "rises", "falls", "shows no clear trend")
        out.append(f"{row['domain'].capitalize()}: the gain {verb} with student size ({_rho_text(row)}).")
    for row in _pooled(tables.get("beyond_size_vs_gain"), "log2_size"):
        out.append(
            f"{row['domain'].capitalize()}, respecting the dependence between units (τ = 1, per-task "
            f"gains, SE clustered by {fmt_int(row['n_groups'])} pairs): each doubling of student size "
            f"changes the gain by {fmt_pp(row['estimate'])} (95 % CI {fmt_ci(row['ci_low'], row['ci_high'])}"
            f", p = {fmt_p(row['p_val'])})."
        )
    for row in _rows(tables.get("teacher_rho")):
        verb = _relation(row, "rises", "falls", "barely tracks")
        out.append(
            f"{row['domain'].capitalize()}: the gain {verb} with the teacher's own accuracy "
            f"({_rho_text(row)})."
        )
    for row in _pooled(tables.get("expertise"), "task_aware_minus_base"):
        out.append(
            f"{row['domain'].capitalize()}: a task-aware teacher gives {fmt_pp(row['estimate'])} more "
            f"gain than the un-tuned base teacher (95 % CI {fmt_ci(row['ci_low'], row['ci_high'])}, "
            f"{fmt_int(row['n'])} matched results, SE clustered by pair, p = {fmt_p(row['p_val'])})."
        )
    best = tables.get("temperature_best")
    if best is not None and not best.empty:
        for domain, part in best.groupby("domain", sort=False):
            wins = part.groupby("temperature")["n_best"].sum()
            out.append(
                f"{domain.capitalize()}: the best temperature was "
                + ", ".join(f"τ = {t:g} for {fmt_int(n)}" for t, n in wins.items())
                + f" of {fmt_int(wins.sum())} units."
            )
    for row in _rows(tables.get("paradox")):
        verb = _relation(row, "rises", "falls", "is not clearly related to")
        text = f"The gain {verb} {row['measure']} ({_rho_text(row)}"
        if "statistic_partial" in row and not pd.isna(row["statistic_partial"]):
            text += f"; controlling for student size ρ = {fmt_signed(row['statistic_partial'])}"
        out.append(text + ").")
    for term, what in (("agreement", "point of agreement"), ("bleu", "BLEU point")):
        for row in _pooled(tables.get("beyond_fidelity_vs_gain"), term):
            out.append(
                f"{row['domain'].capitalize()}, respecting the dependence between units and controlling "
                f"for student size: each {what} with the teacher goes with {fmt_pp(row['estimate'])} of "
                f"gain (95 % CI {fmt_ci(row['ci_low'], row['ci_high'])}, p = {fmt_p(row['p_val'])})."
            )
    out.extend(_paper_sentences(tables.get("paper")))
    return out


def _pooled(table: pd.DataFrame | None, term: str, model: str = "ols_cluster_pair") -> list[pd.Series]:
    """Pooled-over-tasks rows of a beyond-paper table for one term and model."""
    if table is None or table.empty:
        return []
    rows = table[(table["task"] == "all") & (table["model"] == model) & (table["term"] == term)]
    return _rows(rows)


def _paper_sentences(paper: pd.DataFrame | None) -> list[str]:
    if paper is None or paper.empty:
        return []
    out = []
    pooled = paper[(paper["methods"] == "all") & (paper["task"] == "average")]
    for row in _rows(pooled[pooled["hypothesis"] == "H1"]):
        name = "one-sided t-test" if row["test"].startswith("ttest") else "ANOVA across methods"
        stat = "t" if row["test"].startswith("ttest") else "F"
        out.append(
            f"Paper H1 ({row['domain']}, average, {name}): {stat} = {fmt_num(row['statistic'])}, "
            f"p = {fmt_p(row['p_val'])}, n = {fmt_int(row['n'])} units."
        )
    for row in _rows(pooled[pooled["hypothesis"] == "H3"]):
        out.append(
            f"Paper H3 ({row['domain']}, average): Spearman ρ(gain, student size) = "
            f"{fmt_signed(row['statistic'])}, p = {fmt_p(row['p_val'])}."
        )
    return out


def _rows(table: pd.DataFrame | None) -> list[pd.Series]:
    if table is None or table.empty:
        return []
    return [row for _, row in table.iterrows() if not pd.isna(row.get("statistic", row.get("estimate")))]


def caveat_sentences(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Where dependence, multiplicity or selection weakens a conclusion, with the numbers.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        Needs ``dependence`` and, where present, ``paper`` and ``selection``.

    Returns
    -------
    list of str
    """
    out = []
    dependence = tables.get("dependence")
    if dependence is not None and not dependence.empty:
        for (domain, question), part in dependence.groupby(["domain", "question"], sort=False):
            first, rest = part.iloc[0], part.iloc[1:]
            if rest.empty:
                continue
            others = "; ".join(
                f"{r['analysis']} ({fmt_int(r['n_groups'])} groups): p = {fmt_p(r['p_val'])}"
                for _, r in rest.iterrows()
            )
            weaker = rest["p_val"].max() > first["p_val"]
            out.append(
                f"{domain.capitalize()}, {question}: treating the {fmt_int(first['n'])} units as "
                f"independent gives p = {fmt_p(first['p_val'])}; {others}."
                + (
                    " The units are not independent, so the naive p-value overstates the evidence."
                    if weaker
                    else ""
                )
            )
    paper = tables.get("paper")
    if paper is not None and not paper.empty:
        corr = paper[(paper["test"] == "spearman") & (paper["methods"] == "all")]
        raw = int((corr["p_val"] < ALPHA).sum())
        held = int((corr["p_holm"] < ALPHA).sum())
        if raw:
            out.append(
                f"Multiplicity: {raw} of the paper's {len(corr)} pooled per-task correlation tests "
                f"(H2–H5) have p < {ALPHA:g}; after Holm correction across tasks {held} remain."
            )
        h1 = paper[(paper["hypothesis"] == "H1") & (paper["test"] != "anova") & (paper["task"] != "average")]
        raw_h1, held_h1 = int((h1["p_val"] < ALPHA).sum()), int((h1["p_holm"] < ALPHA).sum())
        if len(h1):
            out.append(
                f"Of the paper's {len(h1)} per-task H1 t-tests (pooled and per method), {raw_h1} have "
                f"p < {ALPHA:g}, {held_h1} after Holm correction across tasks."
            )
    out.extend(_h3_caveat(tables.get("paper"), tables.get("beyond_size_vs_gain")))
    selection = tables.get("selection")
    if selection is not None and not selection.empty:
        for domain, part in selection.groupby("domain", sort=False):
            best = part[part["choice"].str.startswith("best")]
            fixed = part[~part["choice"].str.startswith("best")]
            if best.empty or fixed.empty:
                continue
            out.append(
                f"Selection ({domain}): keeping each unit's best temperature gives a mean gain of "
                f"{fmt_pp(best['mean_gain'].iloc[0])}, against "
                + ", ".join(f"{fmt_pp(r['mean_gain'])} at {r['choice']}" for _, r in fixed.iterrows())
                + f" ({fmt_int(best['n'].iloc[0])} units): the maximum is chosen after seeing the test "
                "scores."
            )
    return out


def _h3_caveat(paper: pd.DataFrame | None, beyond: pd.DataFrame | None) -> list[str]:
    """The paper's size-gain test next to the dependence-aware models of the same question."""
    if paper is None or paper.empty:
        return []
    h3 = paper[(paper["hypothesis"] == "H3") & (paper["methods"] == "all") & (paper["task"] == "average")]
    out = []
    for row in _rows(h3):
        models = [
            r
            for r in _pooled(beyond, "log2_size") + _pooled(beyond, "log2_size", "mixedlm_task_student")
            if r["domain"] == row["domain"]
        ]
        if not models:
            continue
        others = "; ".join(
            f"{r['model']}: {fmt_pp(r['estimate'])} per doubling, p = {fmt_p(r['p_val'])}" for r in models
        )
        out.append(
            f"Student size ({row['domain']}): the paper's Spearman test treats its {fmt_int(row['n'])} "
            f"units as independent (ρ = {fmt_signed(row['statistic'])}, p = {fmt_p(row['p_val'])}); "
            f"models that respect the shared students and pairs give {others}."
        )
    return out
