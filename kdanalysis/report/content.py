"""The report's sections: a presentation of :func:`kdanalysis.studies.run_all`'s tables.

:func:`build_sections` returns the sections in display order. Every statistic comes from
the :class:`~kdanalysis.studies.StudyTables` of the results (read by attribute, so a
misspelt table name is an error); a builder only chooses rows and columns, writes text
around them and describes figures. A section without the data it needs is omitted with a
note naming that data.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from kdanalysis.errors import KDAnalysisError
from kdanalysis.plots import figures as plots
from kdanalysis.plots.style import method_label, task_order
from kdanalysis.report import methods_text
from kdanalysis.report.findings import (
    AS_PUBLISHED,
    caveat_sentences,
    claim_sentences,
    finding_sentences,
    sensitivity_sentences,
)
from kdanalysis.report.paired_section import paired_items_section
from kdanalysis.report.sections import FigureSpec, Section, TableSpec
from kdanalysis.results import KD_METHODS, METHODS, NO_TEACHER
from kdanalysis.studies import StudyTables
from kdanalysis.studies.collapsed import COLLAPSE_LOSS_PP

__all__ = ["ReportContext", "build_sections", "N_BOOT", "SEED"]

logger = logging.getLogger(__name__)

#: Bootstrap resamples and seed of every bootstrap CI in the report.
N_BOOT = 2000
SEED = 0


@dataclass(frozen=True)
class ReportContext:
    """The inputs and the study tables of a report.

    Attributes
    ----------
    results, models : DataFrame
        The validated results table and the models table.
    studies : StudyTables or None
        :func:`kdanalysis.studies.run_all` of the results (None if the studies do not apply).
    studies_error : str
        Why the studies do not apply ("" if they ran).
    """

    results: pd.DataFrame
    models: pd.DataFrame
    studies: StudyTables | None
    studies_error: str = ""

    @classmethod
    def from_results(cls, results: pd.DataFrame, models: pd.DataFrame) -> ReportContext:
        """Run the studies once for all sections."""
        from kdanalysis.studies import run_all

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                studies = run_all(results, models, n_boot=10_000, corr_boot=N_BOOT, seed=SEED)
        except KDAnalysisError as exc:
            logger.info("studies skipped: %s", exc)
            return cls(results, models, None, str(exc))
        if studies.kd.empty:
            return cls(results, models, studies, "no KD result has an SFT baseline of the same student")
        return cls(results, models, studies)

    @property
    def tables(self) -> StudyTables:
        """The study tables (read by sections after checking :attr:`studies`)."""
        if self.studies is None:
            raise RuntimeError(f"the studies did not run: {self.studies_error}")
        return self.studies


def _task_key(column: pd.Series) -> pd.Series:
    if column.name != "task":
        return column
    order = task_order(column.unique())
    return column.map({t: i for i, t in enumerate(order)})


def _rho_columns(key: str) -> dict[str, str]:
    """Display names of a correlation table keyed by ``key`` (domain or measure)."""
    return {key: key, "n": "n", "statistic": "ρ", "ci_low": "CI low", "ci_high": "CI high", "p_val": "p"}


# --------------------------------------------------------------------------- claims
_CLAIM_COLUMNS = {
    "claim_id": "claim",
    "domain": "domain",
    "evidence": "evidence",
    "term": "term",
    "value": "value",
    "ci_low": "CI low",
    "ci_high": "CI high",
    "p_holm": "p (Holm)",
    "p_wild": "p (wild)",
    "verdict": "verdict",
}


def _claims(ctx: ReportContext) -> Section:
    title = "Claims audit: the paper's headline claims against its released data"
    if ctx.studies is None:
        return Section.omitted(
            "claims", title, f"The studies do not apply to these results: {ctx.studies_error}"
        )
    audit = ctx.tables.claims_audit
    verdicts = audit.drop_duplicates("claim_id")["verdict"].value_counts()
    return Section(
        id="claims",
        title=title,
        paragraphs=[
            "Each claim of the paper's abstract, the figure the paper gives, our number from the "
            "released results and the declared primary test (CR2 cluster-robust OLS clustered by "
            "student, Satterthwaite df; p Holm-adjusted across all primary tests; wild cluster "
            "bootstrap p beside it). Verdicts follow the rules in 'Methods and caveats': "
            + ", ".join(f"{n} {v}" for v, n in verdicts.items())
            + ". The source column of tables/claims_audit.csv names the table and row behind every number."
        ],
        bullets=claim_sentences(audit),
        tables=[
            TableSpec(
                "claims_audit",
                "Headline claims, evidence and verdicts",
                "Values in pp (slopes: pp of gain per unit of the covariate); figures marked 'as published' "
                "use the paper's best temperature. The claims' wording, the paper's figures, df, unadjusted "
                "p and the source row of every number are in the CSV.",
                audit,
                _CLAIM_COLUMNS,
            )
        ],
    )


def _glance(ctx: ReportContext) -> Section:
    res = ctx.results
    title = "Study at a glance"
    kd_rows = res[res["teacher"] != NO_TEACHER]
    students = set(res.loc[res["method"].isin(KD_METHODS), "student"])
    teachers = set(kd_rows["teacher"])
    used = sorted(set(res["student"]) | teachers)

    def role(model: str) -> str:
        if model in students:
            return "both" if model in teachers else "student"
        return "teacher" if model in teachers else "baseline only"

    known = ctx.models.set_index("model")
    models = pd.DataFrame({"model": used})
    models["family"] = models["model"].map(known["family"]).fillna("unknown")
    models["params_b"] = models["model"].map(known["params_b"].astype(float))
    models["role"] = models["model"].map(role)
    models = models.sort_values(["family", "params_b", "model"]).reset_index(drop=True)

    pairs_src = res[(res["metric"] == "accuracy") & (res["teacher"] != NO_TEACHER)]
    pairs = pairs_src.groupby(["teacher", "student"], as_index=False).agg(
        domains=("domain", lambda s: ", ".join(sorted(s.unique()))),
        methods=("method", lambda s: ", ".join(m for m in METHODS if m in set(s))),
        teacher_kinds=("teacher_kind", lambda s: ", ".join(sorted(s.unique()))),
        temperatures=("temperature", lambda s: ", ".join(f"{t:g}" for t in sorted(s.dropna().unique()))),
        n_results=("value", "size"),
    )

    acc = res[res["metric"] == "accuracy"]
    tasks = acc.groupby(["domain", "task"], as_index=False, sort=False).agg(
        n_items=("n", "max"), n_results=("value", "size")
    )
    tasks = tasks.sort_values(
        ["domain", "task"],
        key=lambda s: (
            s.map({t: i for i, t in enumerate(task_order(tasks["task"]))}) if s.name == "task" else s
        ),
    )
    methods = res.groupby("method", as_index=False).agg(n_results=("value", "size"))
    methods["label"] = methods["method"].map(method_label)
    methods["description"] = methods["method"].map(METHODS)
    methods = methods.set_index("method").reindex([m for m in METHODS if m in set(methods["method"])])
    methods = methods.reset_index()[["method", "label", "description", "n_results"]]

    temps = sorted(res["temperature"].dropna().unique())
    seeds = sorted(res["seed"].unique())
    paragraph = (
        f"{len(res):,} measured values ({', '.join(sorted(res['metric'].unique()))}) from "
        f"{res['study'].nunique()} stud{'y' if res['study'].nunique() == 1 else 'ies'} "
        f"({', '.join(sorted(res['study'].unique()))}): {len(students)} student model(s), "
        f"{len(teachers)} teacher model(s), {len(pairs)} teacher→student pair(s), "
        f"{acc['task'].nunique()} task(s) in {res['domain'].nunique()} domain(s) "
        f"({', '.join(sorted(res['domain'].unique()))}); KD temperatures "
        f"{', '.join(f'{t:g}' for t in temps) or 'not recorded'}; seed(s) {', '.join(map(str, seeds))}."
    )
    return Section(
        id="glance",
        title=title,
        paragraphs=[paragraph],
        tables=[
            TableSpec(
                "models",
                "Models",
                "Family and size (billions of parameters) from the models table ('unknown' where it has no "
                "entry); role in these results: student (distilled), teacher, or both.",
                models,
                {"model": "model", "family": "family", "params_b": "size (B)", "role": "role"},
            ),
            TableSpec(
                "pairs",
                "Teacher → student pairs",
                "KD accuracy results per pair.",
                pairs,
                {
                    "teacher": "teacher",
                    "student": "student",
                    "domains": "domains",
                    "methods": "methods",
                    "teacher_kinds": "teacher kinds",
                    "temperatures": "τ",
                    "n_results": "results",
                },
            ),
            TableSpec(
                "methods",
                "Methods",
                "Method ids of the results contract.",
                methods,
                {"method": "id", "label": "label", "description": "description", "n_results": "results"},
            ),
            TableSpec(
                "tasks",
                "Tasks",
                "Items per test set (n) and accuracy results per task.",
                tasks,
                {"domain": "domain", "task": "task", "n_items": "n items", "n_results": "results"},
            ),
        ],
    )


# --------------------------------------------------------------------------- accuracy
def _no_kd(ctx: ReportContext, section_id: str, title: str, note: str) -> Section | None:
    """The omitted section when the studies did not run or found no KD unit, else None."""
    if ctx.studies is None or ctx.studies_error:
        return Section.omitted(section_id, title, note)
    return None


def _accuracy(ctx: ReportContext) -> Section:
    title = "Accuracy per task"
    omitted = _no_kd(
        ctx,
        "accuracy",
        title,
        "No KD results with an SFT baseline of the same student, so there is nothing to compare per task.",
    )
    if omitted:
        return omitted
    data = ctx.tables.accuracy
    figures = [
        FigureSpec(
            f"accuracy_{domain}",
            f"Accuracy per task — {domain}",
            "Accuracy (%) of the base checkpoint, SFT and each KD method (best temperature, task-aware "
            "teachers) per student. KD bars are the mean over the student's teachers; the black line spans "
            "the lowest to the highest teacher.",
            plots.accuracy_by_task,
            (part.drop(columns=["domain"]).reset_index(drop=True),),
        )
        for domain, part in data.groupby("domain", sort=False)
    ]
    return Section(
        id="accuracy",
        title=title,
        figures=figures,
        tables=[
            TableSpec(
                "accuracy",
                "Accuracy values behind the figures",
                "Every plotted value (%); KD rows per teacher at the best temperature.",
                data,
                show=False,
            )
        ],
    )


# --------------------------------------------------------------------------- gains
def _gains(ctx: ReportContext) -> Section:
    title = "Gains by pair and task"
    omitted = _no_kd(ctx, "gains", title, "No KD results with an SFT baseline.")
    if omitted:
        return omitted
    heat, tests = ctx.tables.heatmap, ctx.tables.gain_tests
    tests = tests.sort_values(["domain", "task"], key=_task_key).reset_index(drop=True)
    units = ctx.tables.kd.groupby("domain")["pair"].nunique()
    return Section(
        id="gains",
        title=title,
        paragraphs=[
            "Gain = best-temperature KD accuracy minus the same student's SFT accuracy, in percentage points "
            "(pp), for task-aware teachers. The per-task test is the paper's H1 "
            f"{AS_PUBLISHED}: a one-sided one-sample t-test of the mean gain over all KD units of a task, "
            "Holm-adjusted across the tasks of each domain. The primary test of the mean gain (τ = 1, "
            "clustered by student) is in the claims audit and in 'Beyond the paper'."
        ],
        figures=[
            FigureSpec(
                "gain_heatmap",
                "Gain by teacher→student pair and task",
                "Mean gain over KD methods (pp); blue: KD beats SFT, red: KD loses. "
                + "; ".join(f"{d}: {n} pairs" for d, n in units.items())
                + ".",
                plots.gain_heatmap,
                (heat,),
            )
        ],
        tables=[
            TableSpec(
                "gain_tests",
                f"Is the mean gain above zero? (per task, {AS_PUBLISHED})",
                "n = KD units; mean gain with its 95 % CI (pp); one-sided t-test; Holm across tasks within "
                "each domain.",
                tests,
                {
                    "domain": "domain",
                    "task": "task",
                    "n": "n",
                    "mean_diff": "mean gain (pp)",
                    "ci_low": "CI low",
                    "ci_high": "CI high",
                    "statistic": "t",
                    "p_val": "p",
                    "p_holm": "p (Holm)",
                },
            ),
            TableSpec(
                "gain_heatmap", "Gain by pair and task", "Values of the heatmap (pp).", heat, show=False
            ),
        ],
    )


# --------------------------------------------------------------------------- size
def _size(ctx: ReportContext) -> Section:
    title = "Student size and gain"
    note = "Needs KD results for students of at least two sizes listed in the models table."
    omitted = _no_kd(ctx, "size", title, note)
    if omitted:
        return omitted
    overall = ctx.tables.unit_gains.dropna(subset=["student_size"])
    if overall["student_size"].nunique() < 2:
        return Section.omitted("size", title, note)
    what = "the 'average' task" if (ctx.tables.kd["task"] == "average").any() else "the mean over tasks"
    return Section(
        id="size",
        title=title,
        paragraphs=[
            f"One point per KD unit (teacher, student, method); the gain is that of {what}. "
            "The line is a least-squares fit of gain on log(size) with its 95 % bootstrap band. "
            "The primary test of the size slope is in 'Beyond the paper'."
        ],
        figures=[
            FigureSpec(
                "gain_vs_size",
                "Gain vs student size",
                "Gain over SFT (pp) against student size (billions of parameters, log scale), "
                "per domain; points jittered horizontally.",
                plots.gain_scatter,
                (overall, "student_size"),
                {"xlabel": "Student size (billion parameters)", "logx": True, "jitter": 0.07},
            )
        ],
        tables=[
            TableSpec(
                "size_correlation",
                f"Spearman correlation of gain and student size ({AS_PUBLISHED})",
                f"Per domain; 95 % percentile-bootstrap CI ({N_BOOT} resamples, seed {SEED}).",
                ctx.tables.size_correlation,
                _rho_columns("domain"),
            ),
        ],
    )


# --------------------------------------------------------------------------- teacher
def _teacher(ctx: ReportContext) -> Section:
    title = "Teacher accuracy and gain"
    note = "Needs the teachers' own SFT accuracy (rows with method 'sft' whose student is the teacher)."
    omitted = _no_kd(ctx, "teacher", title, note)
    if omitted:
        return omitted
    per_task = ctx.tables.kd[ctx.tables.kd["task"] != "average"].dropna(subset=["teacher_score"])
    if per_task["teacher_score"].nunique() < 2:
        return Section.omitted("teacher", title, note)
    return Section(
        id="teacher",
        title=title,
        paragraphs=[
            "Teacher accuracy is the teacher's own SFT accuracy on the task; one point per KD unit and task "
            "(tasks differ in difficulty, which drives much of the spread). The primary test (controlling "
            "for student size, method and task) is in 'Beyond the paper'."
        ],
        figures=[
            FigureSpec(
                "gain_vs_teacher",
                "Gain vs teacher accuracy",
                "Gain over SFT (pp) against the teacher's accuracy (%) on the same task, with a linear fit "
                "and its 95 % band.",
                plots.gain_scatter,
                (per_task, "teacher_score"),
                {"xlabel": "Teacher accuracy on the task (%)"},
            )
        ],
        tables=[
            TableSpec(
                "teacher_correlation",
                f"Spearman correlation of gain and teacher accuracy ({AS_PUBLISHED})",
                f"Pooled over tasks, per domain; bootstrap CI ({N_BOOT} resamples).",
                ctx.tables.teacher_correlation,
                _rho_columns("domain"),
            )
        ],
    )


# --------------------------------------------------------------------------- expertise
def _expertise(ctx: ReportContext) -> Section:
    title = "Teacher expertise: task-aware vs base teacher"
    note = (
        "No KD runs with an un-tuned (base) teacher matched to a task-aware run of the same pair, method "
        "and temperature."
    )
    omitted = _no_kd(ctx, "expertise", title, note)
    if omitted:
        return omitted
    pairs = ctx.tables.expertise_pairs
    if pairs.empty:
        return Section.omitted("expertise", title, note)
    shown = pairs[pairs["task"] != "average"] if (pairs["task"] != "average").any() else pairs
    rows = ctx.tables.teacher_expertise
    rows = rows[rows["question"] == "task_aware_vs_base"]
    return Section(
        id="expertise",
        title=title,
        paragraphs=[
            "The same student, teacher model, method and temperature, distilled once from the task-aware "
            "(SFT) teacher and once from the un-tuned base checkpoint."
        ],
        figures=[
            FigureSpec(
                "teacher_expertise",
                "Task-aware vs base teacher (paired)",
                "Gain over SFT (pp) of each matched pair of runs per task (grey lines); black: mean with "
                "95 % bootstrap CI.",
                plots.teacher_expertise,
                (shown,),
            )
        ],
        tables=[
            TableSpec(
                "teacher_expertise_paired",
                "Task-aware minus base teacher (kdanalysis.studies.teacher_expertise)",
                "Accuracy difference in pp: the primary test (mean over pairs and tasks, CR2 clustered by "
                "student), its wild-bootstrap check and the mixed model; per task paired t-tests "
                f"{AS_PUBLISHED}, Holm across tasks.",
                rows,
                _MODEL_COLUMNS,
            )
        ]
        if not rows.empty
        else [],
    )


# --------------------------------------------------------------------------- temperature
def _temperature(ctx: ReportContext) -> Section:
    title = "Temperature ablation"
    note = "No KD unit was run at more than one temperature."
    omitted = _no_kd(ctx, "temperature", title, note)
    if omitted:
        return omitted
    units = ctx.tables.temperature_units
    if units.empty:
        return Section.omitted("temperature", title, note)
    tables = [
        TableSpec(
            "temperature_best",
            "How often each temperature is the best",
            "Units whose best score (the paper's selection) is at this τ.",
            ctx.tables.temperature_best,
            {"domain": "domain", "method": "method", "temperature": "τ", "n_best": "units"},
        )
    ]
    ablation = ctx.tables.temperature_ablation
    if not ablation.empty:
        tables.insert(
            0,
            TableSpec(
                "temperature_ablation",
                f"Mean gain per temperature ({AS_PUBLISHED})",
                "Per task-level unit: mean gain (pp) with bootstrap CI, and the paired difference to τ = 1 "
                "with a paired t-test (Holm across temperatures). The primary test of each difference "
                "(clustered by student) is in 'Beyond the paper'.",
                ablation,
                {
                    "domain": "domain",
                    "method": "method",
                    "temperature": "τ",
                    "n_units": "n",
                    "mean_gain": "mean gain (pp)",
                    "ci_low": "CI low",
                    "ci_high": "CI high",
                    "diff_vs_reference": "Δ vs τ=1 (pp)",
                    "diff_ci_low": "CI low",
                    "diff_ci_high": "CI high",
                    "p_val": "p",
                    "p_holm": "p (Holm)",
                },
            ),
        )
    return Section(
        id="temperature",
        title=title,
        paragraphs=[
            "Units evaluated at several temperatures; the paper keeps, per unit and task, the temperature "
            "with the best score."
        ],
        figures=[
            FigureSpec(
                "temperature",
                "Gain vs KD temperature",
                "Gain over SFT (pp) per unit (faint) and method mean with 95 % CI (bold).",
                plots.temperature_ablation,
                (units,),
            )
        ],
        tables=tables,
    )


# --------------------------------------------------------------------------- paradox
def _paradox(ctx: ReportContext) -> Section:
    title = "Agreement, fidelity and gain (the paradox)"
    note = "No agreement or BLEU (fidelity) results of KD students with their teachers."
    omitted = _no_kd(ctx, "paradox", title, note)
    if omitted:
        return omitted
    long = ctx.tables.fidelity
    if long.empty:
        return Section.omitted("paradox", title, note)
    columns = _rho_columns("measure")
    columns.update(
        {
            "statistic_partial": "partial ρ (size)",
            "ci_low_partial": "CI low",
            "ci_high_partial": "CI high",
            "p_val_partial": "p",
        }
    )
    return Section(
        id="paradox",
        title=title,
        paragraphs=[
            "Agreement: % of items where the KD student's answer equals the teacher's; fidelity: BLEU "
            "between "
            "student and teacher rationales. One point per measured value, beside the gain of the run it was "
            "measured on (τ = 1); where the results do not name the run's KD method (the released files), "
            "beside the mean gain over the KD methods of its pair and task, so each value counts once. If KD "
            "worked by making students imitate their teachers, gains would rise with both."
        ],
        figures=[
            FigureSpec(
                "gain_vs_behaviour",
                "Gain vs agreement and fidelity",
                "Gain over SFT (pp) against agreement (%) or BLEU (0–100) with the teacher, per measure and "
                "domain, with a linear fit and 95 % band.",
                plots.gain_scatter,
                (long, "measure_value"),
                {"xlabel": "Agreement / BLEU with teacher (%)", "col": "measure"},
            )
        ],
        tables=[
            TableSpec(
                "paradox",
                f"Spearman correlation of gain with agreement and fidelity ({AS_PUBLISHED})",
                "Bootstrap 95 % CIs for ρ; partial ρ controls for student size (ranks; Fisher-z CI). The "
                "primary tests are in 'Beyond the paper'.",
                ctx.tables.fidelity_correlation,
                columns,
            )
        ],
    )


# --------------------------------------------------------------------------- correlations
def _correlations(ctx: ReportContext) -> Section:
    title = "Per-task correlations"
    note = "No covariate varies across KD units within a task."
    omitted = _no_kd(ctx, "correlations", title, note)
    if omitted:
        return omitted
    table = ctx.tables.task_correlations
    if table.empty:
        return Section.omitted("correlations", title, note)
    return Section(
        id="correlations",
        title=title,
        paragraphs=[
            "Spearman ρ between the gain and each covariate, separately for every task, "
            f"{AS_PUBLISHED}, with "
            "95 % bootstrap CIs; p-values Holm-adjusted across the tasks of a domain per covariate. Student "
            "size, teacher and SFT accuracy use the best-temperature units; agreement and BLEU each measured "
            "value once (τ = 1)."
        ],
        figures=[
            FigureSpec(
                "correlation_forest",
                "Forest plot of per-task correlations",
                "Spearman ρ of gain with each covariate per task (95 % CI); dotted line: no correlation.",
                plots.correlation_forest,
                (table,),
            )
        ],
        tables=[
            TableSpec(
                "task_correlations",
                "Per-task correlations",
                "Every estimate of the forest plot with n, p and Holm-adjusted p.",
                table,
                show=False,
            )
        ],
    )


# --------------------------------------------------------------------------- paper
_PAPER_LABELS = {
    "H1": "H1: KD gain > 0 (t-test) and differences between methods (ANOVA)",
    "H2": "H2: gain vs teacher accuracy (Spearman ρ)",
    "H3": "H3: gain vs student size (Spearman ρ)",
    "H3.2": "H3.2: gain vs student SFT accuracy (Spearman ρ)",
    "H4": "H4: gain vs agreement (Spearman ρ)",
    "H5": "H5: gain vs fidelity, BLEU (Spearman ρ)",
}


def _paper(ctx: ReportContext) -> Section:
    title = "The paper's hypotheses H1–H5"
    if ctx.studies is None:
        return Section.omitted(
            "paper", title, f"The paper's protocol does not apply to these results: {ctx.studies_error}"
        )
    table = ctx.tables.paper_holm
    if table.empty:
        return Section.omitted(
            "paper",
            title,
            "The paper's protocol found no testable units (it needs fkl/rkl/gkd KD rows and SFT baselines).",
        )
    columns = {
        "domain": "domain",
        "task": "task",
        "test": "test",
        "statistic": "statistic",
        "p_val": "p",
        "p_holm": "p (Holm)",
        "n": "n",
    }
    tables = [
        TableSpec(
            f"paper_{hypothesis.lower().replace('.', '_')}",
            _PAPER_LABELS.get(hypothesis, hypothesis),
            "Pooled over methods (the per-method rows are in the CSV). Holm across the tasks of a domain.",
            part,
            columns,
            display_rows=part[part["methods"] == "all"],
        )
        for hypothesis, part in table.groupby("hypothesis", sort=False)
    ]
    return Section(
        id="paper",
        title=title,
        paragraphs=[
            "Exactly the published protocol (kdanalysis.studies.paper_hypotheses), "
            f"{AS_PUBLISHED}: 33 units = teacher–student pair × method group, best score over temperatures, "
            "gain over SFT; in commonsense the base-teacher runs enter that maximum, as in the released "
            "notebooks. The Holm column is ours: the paper reports raw p-values."
        ],
        tables=tables,
    )


# --------------------------------------------------------------------------- beyond
_MODEL_COLUMNS = {
    "domain": "domain",
    "task": "task",
    "analysis": "analysis",
    "role": "role",
    "model": "model",
    "term": "term",
    "estimate": "estimate",
    "ci_low": "CI low",
    "ci_high": "CI high",
    "df": "df",
    "p_val": "p",
    "p_holm": "p (Holm)",
    "n": "n",
    "n_groups": "groups",
}
_PRIMARY_COLUMNS = {
    "question": "question",
    "domain": "domain",
    "term": "term",
    "estimate": "estimate",
    "ci_low": "CI low",
    "ci_high": "CI high",
    "df": "df",
    "p_val": "p",
    "p_holm": "p (Holm, family)",
    "p_wild": "p (wild bootstrap)",
    "n": "n",
    "n_groups": "students",
}
_BEYOND = (
    ("kd_gain", "Mean gain and temperature", "mean_gain: pp over SFT; tau_t_minus_1: pp, τ = t minus τ = 1."),
    (
        "size_vs_gain",
        "Student size: gain per doubling of size",
        "Estimate in pp per doubling of student size.",
    ),
    (
        "teacher_expertise",
        "Teacher accuracy and expertise",
        "teacher_score: pp of gain per point of the teacher's own accuracy; task_aware_minus_base: pp.",
    ),
    (
        "fidelity_vs_gain",
        "Agreement and fidelity",
        "pp of gain per point of agreement / BLEU, controlling for student size.",
    ),
)


def _beyond(ctx: ReportContext) -> Section:
    title = "Beyond the paper: primary analyses that respect the dependence between units"
    if ctx.studies is None:
        return Section.omitted(
            "beyond", title, f"The studies do not apply to these results: {ctx.studies_error}"
        )
    primary = ctx.tables.primary_tests
    if primary.empty:
        return Section.omitted(
            "beyond", title, "No unit at temperature 1 with the covariates these models need."
        )
    tables = [
        TableSpec(
            "primary_tests",
            "The primary tests",
            "One declared test per question and domain: OLS, CR2 clustered by student, Satterthwaite df; "
            "p Holm-adjusted across all rows of this table; wild cluster bootstrap (Webb weights) beside it.",
            primary,
            _PRIMARY_COLUMNS,
        )
    ]
    for name, heading, caption in _BEYOND:
        table = getattr(ctx.tables, name)
        if table.empty:
            continue
        tables.append(
            TableSpec(
                name,
                heading,
                caption
                + " Roles: primary, check (wild bootstrap), secondary (mixed model: crossed task and student "
                "intercepts, Satterthwaite df), per_task (Holm across tasks), sensitivity, naive. Shown: "
                "pooled rows; every row and note in the CSV.",
                table,
                _MODEL_COLUMNS,
                display_rows=table[table["task"] == "all"],
            )
        )
    return Section(
        id="beyond",
        title=title,
        paragraphs=[methods_text.PRIMARY_ANALYSIS],
        bullets=sensitivity_sentences(ctx.tables),
        tables=tables,
    )


# --------------------------------------------------------------------------- methods
def _methods(ctx: ReportContext) -> Section:
    seeds = ctx.results.groupby(
        ["study", "domain", "student", "teacher", "method", "teacher_kind", "temperature", "task", "metric"],
        dropna=False,
    )["seed"].nunique()
    paragraphs = methods_text.paragraphs(N_BOOT, SEED, single_seed=bool(int(seeds.max()) == 1))
    if ctx.studies is None:
        return Section(id="methods", title="Methods and caveats", paragraphs=paragraphs)
    tables = ctx.tables
    collapsed = tables.collapsed_runs[tables.collapsed_runs["collapsed"]]
    specs = [
        TableSpec(
            "collapsed_runs",
            "Collapsed runs (sensitivity analyses leave them out)",
            "KD runs whose domain-average accuracy is more than "
            f"{COLLAPSE_LOSS_PP:g} pp below the student's SFT accuracy; every run with its "
            "average gain is in the CSV.",
            tables.collapsed_runs,
            {
                "domain": "domain",
                "pair": "pair",
                "method": "method",
                "teacher_kind": "teacher kind",
                "temperature": "τ",
                "kd_accuracy": "KD acc. (%)",
                "sft_accuracy": "SFT acc. (%)",
                "gain": "gain (pp)",
            },
            display_rows=collapsed,
        ),
        TableSpec(
            "dependence",
            "Dependence between units: naive vs dependence-aware inference",
            "Overall gain per KD unit; the units share students, teachers and pairs. Two-sided p-values.",
            tables.dependence,
            {
                "domain": "domain",
                "question": "question",
                "analysis": "analysis",
                "n": "n",
                "n_groups": "independent groups",
                "estimate": "estimate (pp)",
                "ci_low": "CI low",
                "ci_high": "CI high",
                "df": "df",
                "p_val": "p",
            },
        ),
    ]
    if not tables.selection.empty:
        specs.append(
            TableSpec(
                "selection",
                "Selecting the best temperature",
                "Mean gain (pp) of the units run at several temperatures.",
                tables.selection,
                {"domain": "domain", "choice": "temperature", "n": "n", "mean_gain": "mean gain (pp)"},
            )
        )
    specs.append(
        TableSpec(
            "gains",
            "Gains over SFT (every unit, best temperature)",
            "kdanalysis.stats.gains.",
            tables.gains,
            show=False,
        )
    )
    return Section(
        id="methods",
        title="Methods and caveats",
        paragraphs=paragraphs + methods_text.study_paragraphs(tables),
        bullets=caveat_sentences(tables),
        tables=specs,
    )


# --------------------------------------------------------------------------- assembly
_BUILDERS: tuple[tuple[str, Callable[[ReportContext], Section]], ...] = (
    ("claims audit", _claims),
    ("study at a glance", _glance),
    ("accuracy", _accuracy),
    ("gains", _gains),
    ("student size", _size),
    ("teacher accuracy", _teacher),
    ("teacher expertise", _expertise),
    ("temperature", _temperature),
    ("agreement and fidelity", _paradox),
    ("per-task correlations", _correlations),
    ("paper hypotheses", _paper),
    ("beyond the paper", _beyond),
    ("methods and caveats", _methods),
)


def build_sections(
    results: pd.DataFrame,
    models: pd.DataFrame,
    step: Callable[[str], None] | None = None,
    on_section: Callable[[Section], None] | None = None,
    items: pd.DataFrame | None = None,
) -> list[Section]:
    """All report sections, in display order (the claims audit first, the findings third).

    Parameters
    ----------
    results : DataFrame
        A validated results table.
    models : DataFrame
        Models table (family, params_b) for the models in ``results``.
    step : callable, optional
        Called with a short description before each section is built (progress).
    on_section : callable, optional
        Called with each section as soon as it is built (e.g. to start drawing its figures
        while the next sections are built).
    items : DataFrame, optional
        The per-item table of the same runs: adds the per-item paired tests
        (:mod:`kdanalysis.report.paired_section`) before the methods.

    Returns
    -------
    list of Section
    """
    if step is not None:
        step("studies")
    ctx = ReportContext.from_results(results, models)
    sections = []
    for name, builder in _BUILDERS:
        if step is not None:
            step(name)
        section = builder(ctx)
        if on_section is not None:
            on_section(section)
        sections.append(section)
    if items is not None:
        sections.insert(len(sections) - 1, paired_items_section(results, items))
    findings = finding_sentences(ctx.studies) if ctx.studies is not None and not ctx.studies_error else []
    summary = (
        Section(id="findings", title="Key findings", bullets=findings)
        if findings
        else Section.omitted("findings", "Key findings", "No statistic could be computed from these results.")
    )
    return [*sections[:2], summary, *sections[2:]]
