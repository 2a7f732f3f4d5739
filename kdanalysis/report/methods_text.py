"""The Methods section's text: the primary analysis, the verdict rules, units and pairing.

Fixed text states the choices the studies make (their constants are read, not restated);
:func:`study_paragraphs` adds what the data of one report show (which runs collapsed,
which pairing of agreement with gain was used).
"""

from __future__ import annotations

from kdanalysis.report.formatting import fmt_int, fmt_pp
from kdanalysis.studies import StudyTables
from kdanalysis.studies._models import WILD_BOOT, WILD_SEED
from kdanalysis.studies.claims import ALPHA, VERDICT_RULES
from kdanalysis.studies.collapsed import COLLAPSE_LOSS_PP

__all__ = ["PRIMARY_ANALYSIS", "paragraphs", "study_paragraphs"]

PRIMARY_ANALYSIS = (
    "Primary analysis (one per question and domain): OLS of the per-task gain at τ = 1 (no selection "
    "over temperatures) on the question's variable with method and task effects (for the mean gain, the "
    "task-aware minus base difference and the temperature differences: their mean), and the bias-reduced "
    "cluster-robust covariance CR2 (Bell–McCaffrey) clustered by "
    "student, tested with per-coefficient Satterthwaite degrees of freedom (R clubSandwich's convention). "
    "Why by student: the units (teacher × student × method × task) share students, teachers and pairs; "
    "residuals of pairs that share a student are strongly correlated, and student size varies only between "
    "the six students, so clustering by pair (11 clusters) or treating units as independent overstates "
    "the evidence. Why CR2 with Satterthwaite df: with 3–6 clusters the usual CR1 with t(G − 1) rejects too "
    "often; CR2's small-sample df (often 2–4 here) keeps the test near its level, at the price of wide "
    f"intervals. Each primary p-value is checked with a restricted wild cluster bootstrap ({WILD_BOOT} "
    f"draws, seed {WILD_SEED}, Webb's six-point weights, because Rademacher weights give at most 2^6 = 64 "
    "distinct draws with six students). A linear mixed model with crossed random intercepts for task and "
    "student (Satterthwaite df) is shown as a secondary analysis. Holm's adjustment runs across the whole "
    "family of primary tests (every question, domain and term at once); significance means "
    f"Holm p < {ALPHA:g}."
)


def paragraphs(n_boot: int, seed: int, *, single_seed: bool) -> list[str]:
    """General method paragraphs (gain, intervals, seeds)."""
    out = [
        "Gain: accuracy of a KD student minus the accuracy of the same student after plain SFT, in "
        "percentage points, per unit (teacher, student, method) and task. The figures and the naive "
        "tables use each unit's best temperature (the paper's protocol: a selection step made before "
        "testing); the primary analyses use τ = 1, the one temperature every unit has, with the best "
        "temperature as a sensitivity analysis. Base-teacher runs appear only in the teacher expertise "
        "analyses (and, for commonsense, inside the paper's own tables, as published).",
        f"Confidence intervals of naive correlations are percentile bootstraps ({n_boot} resamples, seed "
        f"{seed}); regression intervals use the t reference with the degrees of freedom shown. Numbers are "
        "rounded only for display: the CSV files under tables/ hold full precision.",
    ]
    if single_seed:
        out.append(
            "Every value comes from a single run (one seed) and, in the published study, a single sampled "
            "answer per question: run-to-run variance cannot be estimated from these results, so no interval "
            "here covers it."
        )
    return out


def _collapsed_paragraph(tables: StudyTables) -> str:
    runs = tables.collapsed_runs
    caught = runs[runs["collapsed"]]
    text = (
        f"Collapsed runs: a KD run is collapsed when its accuracy averaged over the domain's tasks is more "
        f"than {COLLAPSE_LOSS_PP:g} pp below the same student's SFT accuracy (a broken training run rather "
        "than a smaller benefit). The rule looks at the outcome, so it defines a sensitivity analysis only "
        f"(primary analyses keep every run). It catches {fmt_int(len(caught))} of {fmt_int(len(runs))} runs "
        "(table 'Collapsed runs'; the base-teacher runs among them stay in the task-aware vs base "
        "comparison, whose question is that loss)"
    )
    main = runs[(runs["teacher_kind"] == "task_aware") & (runs["temperature"] == 1)]
    kept = main[~main["collapsed"]]
    if not main[main["collapsed"]].empty and not kept.empty:
        text += (
            f", {fmt_int(int(main['collapsed'].sum()))} of them among the task-aware runs at τ = 1; "
            "the largest "
            f"loss among the τ = 1 runs it keeps is {fmt_pp(kept['gain'].min())}, so any threshold between "
            "that loss and the smallest caught one picks the same τ = 1 runs"
        )
    return text + "."


_PAIRINGS = {"same run": "their own run", "mean over methods": "the mean gain over methods"}


def _pairing_paragraph(tables: StudyTables) -> str:
    pairing = tables.fidelity["pairing"].value_counts() if not tables.fidelity.empty else {}
    text = (
        "Agreement and fidelity: each measured value is used once, beside the gain of the run it was "
        "measured on where the results name that run (same pair, task, KD method, temperature, teacher kind, "
        "noise and seed: the rows of the project's own grids). The released agreement and BLEU files label "
        "every KD student 'KD' without its loss or temperature, so for them the value is paired with the "
        "mean gain over the three KD methods of its pair and task at τ = 1 (one value per pair and task, "
        "not three copies)."
    )
    if len(pairing):
        text += (
            " In these results: "
            + ", ".join(f"{fmt_int(n)} values paired by {_PAIRINGS.get(p, p)}" for p, n in pairing.items())
            + "."
        )
    return text


def study_paragraphs(tables: StudyTables) -> list[str]:
    """The primary analysis, the verdict rules, collapsed runs and the agreement pairing."""
    rules = " ".join(
        f"{name.replace('_', ' ').capitalize()} rule: {text}" for name, text in VERDICT_RULES.items()
    )
    return [
        PRIMARY_ANALYSIS,
        "Verdicts of the claims audit. " + rules,
        _collapsed_paragraph(tables),
        _pairing_paragraph(tables),
        "Sensitivity analyses (rows with role 'sensitivity'): the best temperature instead of τ = 1, without "
        "collapsed runs, one KD method at a time, and teacher family as a covariate of teacher accuracy. "
        "They are not part of the Holm family; 'Beyond the paper' names those that change an unadjusted "
        "conclusion.",
    ]
