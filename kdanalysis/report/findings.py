"""Findings and caveats as sentences generated from the study tables.

Every relation a sentence states comes from a declared primary test
(:attr:`~kdanalysis.studies.StudyTables.primary_tests`): a relation is stated ("falls",
"rises", "benefit") only when its test is significant after the family-wide Holm
adjustment; otherwise the sentence says the test does not establish it. Sentences quoting
a naive analysis say so ("as published (units treated as independent)"). Mixed models
that did not converge or whose fit is singular are said. Numbers are formatted by
:mod:`kdanalysis.report.formatting`.
"""

from __future__ import annotations

import pandas as pd

from kdanalysis.plots.style import method_label, task_label
from kdanalysis.report.formatting import fmt_ci, fmt_int, fmt_num, fmt_p, fmt_pp, fmt_signed
from kdanalysis.studies import StudyTables
from kdanalysis.studies.claims import ALPHA

__all__ = [
    "ALPHA",
    "AS_PUBLISHED",
    "caveat_sentences",
    "claim_sentences",
    "finding_sentences",
    "primary_sentence",
    "sensitivity_sentences",
]

#: Label of every sentence that treats the units as independent.
AS_PUBLISHED = "as published (units treated as independent)"
#: Per question: what a significant positive / negative estimate states, and the relation in
#: question (for a sentence saying the test does not establish it).
_RELATIONS: dict[str, tuple[str, str, str]] = {
    "mean_gain": (
        "KD gains over SFT on average",
        "KD loses against SFT on average",
        "an average gain over SFT",
    ),
    "size_vs_gain": (
        "the gain rises with student size",
        "the gain falls with student size: smaller students benefit more",
        "a relation between student size and gain",
    ),
    "teacher_score_vs_gain": (
        "the gain rises with the teacher's accuracy",
        "the gain falls with the teacher's accuracy",
        "a relation between the teacher's accuracy and the gain",
    ),
    "task_aware_vs_base": (
        "a task-aware teacher gives more accuracy than the un-tuned base teacher",
        "the un-tuned base teacher gives more accuracy than a task-aware one",
        "a difference between task-aware and base teachers",
    ),
    "agreement_vs_gain": (
        "the gain rises with agreement with the teacher",
        "the gain falls with agreement with the teacher",
        "a relation between agreement with the teacher and the gain",
    ),
    "bleu_vs_gain": (
        "the gain rises with fidelity (BLEU) to the teacher",
        "the gain falls with fidelity (BLEU) to the teacher",
        "a relation between fidelity (BLEU) and the gain",
    ),
    "temperature_vs_gain": (
        "this temperature gives more gain than τ = 1",
        "this temperature gives less gain than τ = 1",
        "a difference to τ = 1",
    ),
}
_UNITS = {
    "mean_gain": "pp",
    "size_vs_gain": "pp per doubling of size",
    "teacher_score_vs_gain": "pp per point of teacher accuracy",
    "task_aware_vs_base": "pp",
    "agreement_vs_gain": "pp per point of agreement",
    "bleu_vs_gain": "pp per BLEU point",
    "temperature_vs_gain": "pp",
}


def _numbers(row: pd.Series | dict) -> str:
    return (
        f"{fmt_signed(row['estimate'])} {_UNITS.get(row['question'], '')}, 95 % CI "
        f"{fmt_ci(row['ci_low'], row['ci_high'])}, df = {fmt_num(row['df'])}, p = {fmt_p(row['p_val'])}, "
        f"Holm p = {fmt_p(row['p_holm'])}, wild-bootstrap p = {fmt_p(row['p_wild'])}"
    )


def primary_sentence(row: pd.Series | dict) -> str:
    """One sentence on a primary test: the relation only if Holm-significant."""
    rises, falls, relation = _RELATIONS.get(
        row["question"], ("the estimate is positive", "the estimate is negative", "an effect")
    )
    where = f"{str(row['domain']).capitalize()} ({row['term']}, {row['analysis']})"
    if pd.isna(row["p_val"]):
        return f"{where}: the primary test could not be computed ({row['note'] or 'degenerate data'})."
    if row["p_holm"] < ALPHA:
        return f"{where}: {rises if row['estimate'] > 0 else falls} ({_numbers(row)})."
    return f"{where}: the primary test does not establish {relation} ({_numbers(row)})."


def _fit_notes(tables: StudyTables) -> list[str]:
    """Mixed models that did not converge or have a singular fit, and degenerate primary fits."""
    out = []
    for name in ("kd_gain", "size_vs_gain", "teacher_expertise", "fidelity_vs_gain"):
        table = getattr(tables, name)
        mixed = table[(table["role"] == "secondary") & (table["task"] == "all")]
        for row in mixed.to_dict("records"):
            problems = []
            if row["converged"] is False or (not pd.isna(row["converged"]) and not row["converged"]):
                problems.append("did not converge")
            if not pd.isna(row["singular"]) and bool(row["singular"]):
                problems.append("has a singular fit (a variance component is about zero)")
            if problems:
                out.append(
                    f"The mixed model of {row['question']} ({row['domain']}, {row['term']}) "
                    + " and ".join(problems)
                    + "; its row is shown for comparison only."
                )
    return out


def _gain_sentences(tables: StudyTables) -> list[str]:
    out = []
    for domain, part in tables.gain_tests.groupby("domain", sort=False):
        part = part.dropna(subset=["p_holm"])
        if part.empty:
            continue
        tasks = part[part["task"] != "average"] if (part["task"] != "average").any() else part
        hits = tasks[tasks["p_holm"] < ALPHA]
        out.append(
            f"{domain.capitalize()}, {AS_PUBLISHED}: the one-sided t-test of the mean KD gain over SFT is "
            f"significant after Holm correction in {len(hits)} of {len(tasks)} tasks "
            "(mean gain per task from "
            f"{fmt_pp(tasks['mean_diff'].min())} to {fmt_pp(tasks['mean_diff'].max())})."
        )
    kd = tables.kd
    for label, part in (
        ("on a domain average", kd[kd["task"] == "average"]),
        ("on a single task", kd[kd["task"] != "average"]),
    ):
        if part.empty:
            continue
        top = part.loc[part["gain"].idxmax()]
        out.append(
            f"Largest gain {label} (best temperature, as published): {fmt_pp(top['gain'])} "
            f"for {top['student']} "
            f"({task_label(top['task'])}, {top['domain']}; {method_label(top['method'])} "
            f"from {top['teacher']}; "
            f"SFT {fmt_num(top['baseline_value'])} % → KD {fmt_num(top['kd_value'])} %)."
        )
    return out


def _paper_sentences(paper: pd.DataFrame) -> list[str]:
    out = []
    pooled = paper[(paper["methods"] == "all") & (paper["task"] == "average")]
    for row in pooled[pooled["hypothesis"] == "H1"].dropna(subset=["statistic"]).to_dict("records"):
        ttest = row["test"].startswith("ttest")
        name, stat = ("one-sided t-test", "t") if ttest else ("ANOVA across methods", "F")
        out.append(
            f"Paper H1 ({row['domain']}, average, {name}, {AS_PUBLISHED}): "
            f"{stat} = {fmt_num(row['statistic'])}, "
            f"p = {fmt_p(row['p_val'])}, n = {fmt_int(row['n'])} units."
        )
    for row in pooled[pooled["hypothesis"] == "H3"].dropna(subset=["statistic"]).to_dict("records"):
        out.append(
            f"Paper H3 ({row['domain']}, average, {AS_PUBLISHED}): Spearman ρ(gain, student size) = "
            f"{fmt_signed(row['statistic'])}, p = {fmt_p(row['p_val'])}."
        )
    return out


def sensitivity_sentences(tables: StudyTables) -> list[str]:
    """Sensitivity analyses whose unadjusted significance differs from their primary test's."""
    out = []
    rows = pd.concat(
        [tables.kd_gain, tables.size_vs_gain, tables.teacher_expertise, tables.fidelity_vs_gain],
        ignore_index=True,
    )
    sensitivity = rows[(rows["role"] == "sensitivity") & rows["p_val"].notna()]
    for primary in tables.primary_tests.dropna(subset=["p_val"]).to_dict("records"):
        keys = (sensitivity["question"] == primary["question"]) & (sensitivity["domain"] == primary["domain"])
        same = sensitivity[keys & (sensitivity["term"] == primary["term"])]
        flips = same[(same["p_val"] < ALPHA) != (primary["p_val"] < ALPHA)]
        if flips.empty:
            continue
        changes = "; ".join(
            f"{r['analysis']}: {fmt_signed(r['estimate'])} (p = {fmt_p(r['p_val'])})"
            for r in flips.to_dict("records")
        )
        out.append(
            f"Sensitivity ({primary['question']}, {primary['domain']}; "
            f"primary {fmt_signed(primary['estimate'])}, "
            f"p = {fmt_p(primary['p_val'])}): the unadjusted 5 % conclusion changes with {changes}."
        )
    return out


def finding_sentences(tables: StudyTables) -> list[str]:
    """Key findings, one sentence each: the primary tests first, then labelled naive analyses.

    Parameters
    ----------
    tables : StudyTables
        :func:`kdanalysis.studies.run_all` output.

    Returns
    -------
    list of str
    """
    out = [primary_sentence(row) for row in tables.primary_tests.to_dict("records")]
    out += _fit_notes(tables)
    return out + _gain_sentences(tables) + _paper_sentences(tables.paper_holm)


def claim_sentences(audit: pd.DataFrame) -> list[str]:
    """One sentence per audited claim: its verdict and the numbers behind it."""
    out = []
    for _claim_id, part in audit.groupby("claim_id", sort=False):
        first = part.iloc[0]
        parts = []
        for row in part.to_dict("records"):
            if pd.isna(row["value"]):
                parts.append(row["evidence"])
            elif pd.isna(row["p_val"]):
                parts.append(f"{row['evidence']}, {row['domain']}: {fmt_pp(row['value'])}")
            else:
                parts.append(
                    f"{row['domain']} {row['term']} {fmt_signed(row['value'])} "
                    f"(95 % CI {fmt_ci(row['ci_low'], row['ci_high'])}, "
                    f"Holm p = {fmt_p(row['p_holm'])})"
                )
        out.append(
            f"“{first['claim']}” (paper: {first['paper_figure']}) — {first['verdict']}: "
            + "; ".join(parts)
            + "."
        )
    return out


def caveat_sentences(tables: StudyTables) -> list[str]:
    """Where dependence, multiplicity or selection weakens a conclusion, with the numbers.

    Returns
    -------
    list of str
    """
    out = []
    for (domain, question), part in tables.dependence.groupby(["domain", "question"], sort=False):
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
            "independent gives "
            f"p = {fmt_p(first['p_val'])}; {others}."
            + (
                " The units are not independent, so the naive p-value overstates the evidence."
                if weaker
                else ""
            )
        )
    paper = tables.paper_holm
    if not paper.empty:
        corr = paper[(paper["test"] == "spearman") & (paper["methods"] == "all")]
        raw, held = int((corr["p_val"] < ALPHA).sum()), int((corr["p_holm"] < ALPHA).sum())
        if raw:
            out.append(
                f"Multiplicity: {raw} of the paper's {len(corr)} pooled per-task correlation tests "
                "(H2–H5) have "
                f"p < {ALPHA:g}; after Holm correction across tasks {held} remain."
            )
    for domain, part in tables.selection.groupby("domain", sort=False):
        best = part[part["choice"].str.startswith("best")]
        fixed = part[~part["choice"].str.startswith("best")]
        if best.empty or fixed.empty:
            continue
        out.append(
            f"Selection ({domain}): keeping each unit's best temperature gives a mean gain of "
            f"{fmt_pp(best['mean_gain'].iloc[0])}, against "
            + ", ".join(f"{fmt_pp(r['mean_gain'])} at {r['choice']}" for _, r in fixed.iterrows())
            + f" ({fmt_int(best['n'].iloc[0])} units): the maximum is chosen after seeing the test scores."
        )
    return out
