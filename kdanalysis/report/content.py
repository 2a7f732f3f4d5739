"""The report's sections, computed from a results table and a models table.

:func:`build_sections` returns the sections in display order. Each builder computes its
statistics with :mod:`kdanalysis.stats` / :mod:`kdanalysis.studies`, stores the tables in
the shared :class:`ReportContext` (so that the findings and the caveats quote the very
numbers the tables show) and returns a present section, or an omitted one with a note
naming the data it needs.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from kdanalysis.errors import KDAnalysisError
from kdanalysis.plots import figures as plots
from kdanalysis.plots.style import method_label, task_order
from kdanalysis.report import analysis
from kdanalysis.report.findings import caveat_sentences, finding_sentences
from kdanalysis.report.sections import FigureSpec, Section, TableSpec
from kdanalysis.results import KD_METHODS, METHODS, NO_TEACHER
from kdanalysis.stats import corr, partial_corr, ttest
from kdanalysis.stats.mixed import mixedlm
from kdanalysis.stats.multiplicity import adjust_pvalues
from kdanalysis.stats.regression import ols

__all__ = ["ReportContext", "build_sections", "N_BOOT", "SEED"]

logger = logging.getLogger(__name__)

#: Bootstrap resamples and seed of every bootstrap CI in the report.
N_BOOT = 2000
SEED = 0
_UNIT_KEYS = ["domain", "student", "teacher", "method", "pair"]


@dataclass
class ReportContext:
    """Inputs and the tables computed so far.

    Attributes
    ----------
    results, models : DataFrame
        The validated results table and the models table.
    kd : DataFrame
        :func:`kdanalysis.report.analysis.kd_gains` (best temperature).
    kd_each : DataFrame
        The same per temperature.
    gains_each : DataFrame
        :func:`kdanalysis.report.analysis.all_gains` per temperature: every KD unit,
        base teachers and noisy teachers included.
    studies : dict
        :func:`kdanalysis.studies.run_all` tables (empty if the studies do not apply).
    studies_error : str
        Why the studies do not apply ("" if they ran).
    tables : dict
        Statistics computed by the section builders, by name (read by the findings).
    """

    results: pd.DataFrame
    models: pd.DataFrame
    kd: pd.DataFrame
    kd_each: pd.DataFrame
    gains_each: pd.DataFrame
    studies: dict[str, pd.DataFrame] = field(default_factory=dict)
    studies_error: str = ""
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @classmethod
    def from_results(cls, results: pd.DataFrame, models: pd.DataFrame) -> ReportContext:
        """Compute the gains and run the studies once for all sections."""
        from kdanalysis.studies import run_all

        each = analysis.all_gains(results, over_temperature="each")
        kd_each = analysis.kd_gains(results, models, over_temperature="each", gains_table=each)
        studies, error = {}, ""
        if kd_each.empty:
            error = "no KD result has an SFT baseline of the same student"
        else:
            try:
                studies = _quiet(run_all, results, models, n_boot=N_BOOT, seed=SEED)
            except KDAnalysisError as exc:
                error = str(exc)
                logger.info("studies skipped: %s", exc)
        # run_all's ``gains`` table is kdanalysis.stats.gains of these results (SFT baseline, max
        # over temperatures): reused, not computed again; computed here only where run_all did not run
        kd = analysis.kd_gains(results, models, gains_table=studies.get("gains"))
        return cls(
            results=results,
            models=models,
            kd=kd,
            kd_each=kd_each,
            gains_each=each,
            studies=studies,
            studies_error=error,
        )

    def study(self, name: str) -> pd.DataFrame | None:
        """A :func:`~kdanalysis.studies.run_all` table with at least one estimate, else None."""
        table = self.studies.get(name)
        if table is None or table.empty:
            return None
        column = "estimate" if "estimate" in table else ("statistic" if "statistic" in table else "mean_gain")
        return table if table[column].notna().any() else None

    def overall(self) -> pd.DataFrame:
        """One gain per KD unit: its ``average`` task where the domain has one, else the mean over tasks.

        Returns
        -------
        DataFrame
            Columns ``domain, student, teacher, method, pair, gain, student_params_b,
            n_tasks``.
        """
        frames = []
        for _domain, part in self.kd.groupby("domain", sort=False):
            if (part["task"] == "average").any():
                part = part[part["task"] == "average"]
            frames.append(
                part.groupby(_UNIT_KEYS, as_index=False, sort=False).agg(
                    gain=("gain", "mean"),
                    student_params_b=("student_params_b", "first"),
                    n_tasks=("task", "nunique"),
                )
            )
        return (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=[*_UNIT_KEYS, "gain", "student_params_b", "n_tasks"])
        )


def _quiet(func: Callable[..., Any], *args: object, **kwargs: object) -> Any:
    """Run a batch statistic without its degenerate-row warnings (the rows carry a ``note``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


# --------------------------------------------------------------------------- glance
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
    ctx.tables.update(glance_models=models, glance_pairs=pairs)

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
def _accuracy(ctx: ReportContext) -> Section:
    title = "Accuracy per task"
    if ctx.kd.empty:
        return Section.omitted(
            "accuracy",
            title,
            "No KD results with an SFT baseline of the same student, "
            "so there is nothing to compare per task.",
        )
    figures, frames = [], []
    for domain in ctx.kd["domain"].unique():
        table = analysis.accuracy_table(ctx.results, ctx.kd, domain)
        frames.append(table.assign(domain=domain))
        figures.append(
            FigureSpec(
                f"accuracy_{domain}",
                f"Accuracy per task — {domain}",
                "Accuracy (%) of the base checkpoint, SFT and each KD method (best temperature, task-aware "
                "teachers) per student. KD bars are the mean over the student's teachers; the black line "
                "spans "
                "the lowest to the highest teacher.",
                plots.accuracy_by_task,
                (table,),
            )
        )
    data = pd.concat(frames, ignore_index=True)[["domain", "student", "task", "method", "teacher", "value"]]
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
    if ctx.kd.empty:
        return Section.omitted("gains", title, "No KD results with an SFT baseline.")
    heat = analysis.heatmap_table(ctx.kd)
    tests = _quiet(ttest, ctx.kd, "gain", alternative="greater", by=["domain", "task"])
    tests = pd.DataFrame(adjust_pvalues(tests, "holm", by="domain")).rename(columns={"p_adj": "p_holm"})
    tests = tests.sort_values(["domain", "task"], key=_task_key).reset_index(drop=True)
    ctx.tables.update(gain_tests=tests, gains=ctx.kd)
    units = ctx.kd.groupby(["domain"])["pair"].nunique()
    return Section(
        id="gains",
        title=title,
        paragraphs=[
            "Gain = best-temperature KD accuracy minus the same student's SFT accuracy, in percentage points "
            "(pp), for task-aware teachers. The test asks whether the mean gain over all KD units of a task "
            "is "
            "above zero (one-sided one-sample t-test, as the paper's H1, pooled over methods); p-values are "
            "Holm-adjusted across the tasks of each domain."
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
                "Is the mean gain above zero? (per task)",
                "n = KD units; mean gain with its 95 % CI (pp); one-sided t-test; Holm across tasks "
                "within each domain.",
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


def _task_key(column: pd.Series) -> pd.Series:
    if column.name != "task":
        return column
    order = task_order(column.unique())
    return column.map({t: i for i, t in enumerate(order)})


# --------------------------------------------------------------------------- size
def _size(ctx: ReportContext) -> Section:
    title = "Student size and gain"
    overall = ctx.overall().dropna(subset=["student_params_b"])
    if overall.empty or overall["student_params_b"].nunique() < 2:
        return Section.omitted(
            "size", title, "Needs KD results for students of at least two sizes listed in the models table."
        )
    rho = _quiet(
        corr, overall, "student_params_b", "gain", method="spearman", by="domain", n_boot=N_BOOT, seed=SEED
    )
    ctx.tables.update(size_rho=rho)
    what = "the 'average' task" if (ctx.kd["task"] == "average").any() else "the mean over tasks"
    return Section(
        id="size",
        title=title,
        paragraphs=[
            f"One point per KD unit (teacher, student, method); the gain is that of {what}. "
            "The line is a least-squares fit of gain on log(size) with its 95 % bootstrap band."
        ],
        figures=[
            FigureSpec(
                "gain_vs_size",
                "Gain vs student size",
                "Gain over SFT (pp) against student size (billions of parameters, log scale), "
                "per domain; points jittered horizontally.",
                plots.gain_scatter,
                (overall, "student_params_b"),
                {"xlabel": "Student size (billion parameters)", "logx": True, "jitter": 0.07},
            )
        ],
        tables=[
            TableSpec(
                "size_correlation",
                "Spearman correlation of gain and student size",
                f"Per domain, units treated as independent (see 'Beyond the paper' for models that "
                f"respect their dependence); 95 % percentile-bootstrap CI ({N_BOOT} resamples, seed "
                f"{SEED}).",
                rho,
                _rho_columns("domain"),
            ),
        ],
    )


def _rho_columns(key: str) -> dict[str, str]:
    """Display names of a correlation table keyed by ``key`` (domain or measure)."""
    return {key: key, "n": "n", "statistic": "ρ", "ci_low": "CI low", "ci_high": "CI high", "p_val": "p"}


# --------------------------------------------------------------------------- teacher
def _teacher(ctx: ReportContext) -> Section:
    title = "Teacher accuracy and gain"
    per_task = ctx.kd[ctx.kd["task"] != "average"].dropna(subset=["teacher_score"])
    if per_task.empty or per_task["teacher_score"].nunique() < 2:
        return Section.omitted(
            "teacher",
            title,
            "Needs the teachers' own SFT accuracy (rows with method 'sft' whose student is the teacher).",
        )
    rho = _quiet(
        corr, per_task, "teacher_score", "gain", method="spearman", by="domain", n_boot=N_BOOT, seed=SEED
    )
    ctx.tables.update(teacher_rho=rho)
    return Section(
        id="teacher",
        title=title,
        paragraphs=[
            "Teacher accuracy is the teacher's own SFT accuracy on the task; one point per KD unit "
            "and task (tasks differ in difficulty, which drives much of the spread)."
        ],
        figures=[
            FigureSpec(
                "gain_vs_teacher",
                "Gain vs teacher accuracy",
                "Gain over SFT (pp) against the teacher's accuracy (%) on the same task, with a "
                "linear fit and its 95 % band.",
                plots.gain_scatter,
                (per_task, "teacher_score"),
                {"xlabel": "Teacher accuracy on the task (%)"},
            )
        ],
        tables=[
            TableSpec(
                "teacher_correlation",
                "Spearman correlation of gain and teacher accuracy",
                f"Pooled over tasks, per domain; bootstrap CI ({N_BOOT} resamples).",
                rho,
                _rho_columns("domain"),
            )
        ],
    )


# --------------------------------------------------------------------------- expertise
def _expertise(ctx: ReportContext) -> Section:
    title = "Teacher expertise: task-aware vs base teacher"
    pairs = analysis.expertise_pairs(ctx.gains_each)
    if pairs.empty:
        return Section.omitted(
            "expertise",
            title,
            "No KD runs with an un-tuned (base) teacher matched to a "
            "task-aware run of the same pair, method and temperature.",
        )
    shown = pairs[pairs["task"] != "average"] if (pairs["task"] != "average").any() else pairs
    tables = []
    expertise = ctx.study("teacher_expertise")
    if expertise is not None:
        rows = expertise[expertise["question"] == "task_aware_vs_base"]
        if not rows.empty:
            ctx.tables.update(expertise=rows)
            tables.append(
                TableSpec(
                    "teacher_expertise_paired",
                    "Task-aware minus base teacher (kdanalysis.studies.teacher_expertise)",
                    "Gain difference in pp: paired t-tests per task (Holm across tasks) and, pooled over "
                    "tasks, OLS "
                    "with SE clustered by pair and a mixed model with crossed random intercepts for task and "
                    "student.",
                    rows,
                    _MODEL_COLUMNS,
                )
            )
    return Section(
        id="expertise",
        title=title,
        paragraphs=[
            "The same student, teacher model, method and temperature, distilled once from the "
            "task-aware (SFT) teacher and once from the un-tuned base checkpoint."
        ],
        figures=[
            FigureSpec(
                "teacher_expertise",
                "Task-aware vs base teacher (paired)",
                "Gain over SFT (pp) of each matched pair of runs per task (grey lines); black: "
                "mean with 95 % bootstrap CI.",
                plots.teacher_expertise,
                (shown,),
            )
        ],
        tables=tables,
    )


# --------------------------------------------------------------------------- temperature
def _temperature(ctx: ReportContext) -> Section:
    title = "Temperature ablation"
    table = analysis.temperature_table(ctx.kd_each)
    if table.empty:
        return Section.omitted("temperature", title, "No KD unit was run at more than one temperature.")
    if (table["task"] == "average").any():
        table = table[table["task"] == "average"]
    best = ctx.kd[ctx.kd["n_temperatures"] > 1]
    best = best[best["task"] == "average"] if (best["task"] == "average").any() else best
    wins = (
        best.groupby(["domain", "method", "temperature"], as_index=False)
        .size()
        .rename(columns={"size": "n_best"})
    )
    ctx.tables.update(temperature_best=wins)
    tables = [
        TableSpec(
            "temperature_best",
            "How often each temperature is the best",
            "Units whose best score (the paper's selection) is at this τ.",
            wins,
            {"domain": "domain", "method": "method", "temperature": "τ", "n_best": "units"},
        )
    ]
    ablation = ctx.study("temperature_ablation")
    if ablation is not None:
        ctx.tables.update(temperature=ablation)
        tables.insert(
            0,
            TableSpec(
                "temperature_ablation",
                "Mean gain per temperature (kdanalysis.studies.temperature_ablation)",
                "Per task-level unit: mean gain (pp) with bootstrap CI, and the paired difference to τ = 1 "
                "with a "
                "paired t-test (Holm across temperatures).",
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
            "Units evaluated at several temperatures; the paper keeps, per unit and task, the "
            "temperature with the best score."
        ],
        figures=[
            FigureSpec(
                "temperature",
                "Gain vs KD temperature",
                "Gain over SFT (pp) per unit (faint) and method mean with 95 % CI (bold).",
                plots.temperature_ablation,
                (table,),
            )
        ],
        tables=tables,
    )


# --------------------------------------------------------------------------- paradox
def _paradox(ctx: ReportContext) -> Section:
    title = "Agreement, fidelity and gain (the paradox)"
    long = analysis.behaviour_table(ctx.kd)
    if long.empty:
        return Section.omitted(
            "paradox", title, "No agreement or BLEU (fidelity) results of KD students with their teachers."
        )
    rho = _quiet(
        corr, long, "measure_value", "gain", method="spearman", by="measure", n_boot=N_BOOT, seed=SEED
    )
    partial = None
    if long["student_params_b"].nunique() > 1:
        partial = _quiet(
            partial_corr,
            long.dropna(subset=["student_params_b"]),
            "measure_value",
            "gain",
            covar="student_params_b",
            method="spearman",
            by="measure",
        )
        rho = rho.merge(
            partial[["measure", "statistic", "ci_low", "ci_high", "p_val"]],
            on="measure",
            suffixes=("", "_partial"),
        )
    ctx.tables.update(paradox=rho)
    columns = _rho_columns("measure")
    if partial is not None:
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
            "between student and teacher rationales. One point per KD unit and task. If KD worked by "
            "making students imitate their teachers, gains would rise with both."
        ],
        figures=[
            FigureSpec(
                "gain_vs_behaviour",
                "Gain vs agreement and fidelity",
                "Gain over SFT (pp) against agreement (%) or BLEU (0–100) with the teacher, "
                "per measure and domain, with a linear fit and 95 % band.",
                plots.gain_scatter,
                (long, "measure_value"),
                {"xlabel": "Agreement / BLEU with teacher (%)", "col": "measure"},
            )
        ],
        tables=[
            TableSpec(
                "paradox",
                "Spearman correlation of gain with agreement and fidelity",
                "Bootstrap 95 % CIs for ρ; partial ρ controls for student size (ranks; Fisher-z CI)."
                if partial is not None
                else "Bootstrap 95 % CIs.",
                rho,
                columns,
            )
        ],
    )


# --------------------------------------------------------------------------- correlations
def _correlations(ctx: ReportContext) -> Section:
    title = "Per-task correlations"
    table = analysis.task_correlations(ctx.kd, n_boot=N_BOOT, seed=SEED)
    table = table.dropna(subset=["statistic"])
    if table.empty:
        return Section.omitted("correlations", title, "No covariate varies across KD units within a task.")
    table = pd.DataFrame(adjust_pvalues(table, "holm", by=["predictor", "domain"]))
    table = table.rename(columns={"p_adj": "p_holm"})
    ctx.tables.update(task_correlations=table)
    return Section(
        id="correlations",
        title=title,
        paragraphs=[
            "Spearman ρ between the gain and each covariate, separately for every task, with 95 % "
            "bootstrap CIs; p-values Holm-adjusted across the tasks of a domain per covariate."
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
def _paper(ctx: ReportContext) -> Section:
    title = "The paper's hypotheses H1–H5"
    if ctx.studies_error:
        return Section.omitted(
            "paper", title, f"The paper's protocol does not apply to these results: {ctx.studies_error}"
        )
    table = ctx.studies.get("paper_hypotheses", pd.DataFrame(columns=["statistic"])).dropna(
        subset=["statistic"]
    )
    if table.empty:
        return Section.omitted(
            "paper",
            title,
            "The paper's protocol found no testable units (it needs fkl/rkl/gkd KD rows and SFT baselines).",
        )
    families = ["domain", "hypothesis", "methods", "test"]
    table = pd.DataFrame(adjust_pvalues(table, "holm", by=families)).rename(columns={"p_adj": "p_holm"})
    ctx.tables.update(paper=table)
    columns = {
        "domain": "domain",
        "task": "task",
        "test": "test",
        "statistic": "statistic",
        "p_val": "p",
        "p_holm": "p (Holm)",
        "n": "n",
    }
    tables = []
    labels = {
        "H1": "H1: KD gain > 0 (t-test) and differences between methods (ANOVA)",
        "H2": "H2: gain vs teacher accuracy (Spearman ρ)",
        "H3": "H3: gain vs student size (Spearman ρ)",
        "H3.2": "H3.2: gain vs student SFT accuracy (Spearman ρ)",
        "H4": "H4: gain vs agreement (Spearman ρ)",
        "H5": "H5: gain vs fidelity, BLEU (Spearman ρ)",
    }
    for hypothesis, part in table.groupby("hypothesis", sort=False):
        pooled = part[part["methods"] == "all"]
        tables.append(
            TableSpec(
                f"paper_{hypothesis.lower().replace('.', '_')}",
                labels.get(hypothesis, hypothesis),
                "Pooled over methods (the per-method rows are in the CSV). Holm across the tasks of a "
                "domain.",
                part,
                columns,
                display_rows=pooled,
            )
        )
    return Section(
        id="paper",
        title=title,
        paragraphs=[
            "Exactly the published protocol (kdanalysis.studies.paper_hypotheses): 33 units = "
            "teacher–student pair × method group, best score over temperatures, gain over SFT; in "
            "commonsense the base-teacher runs enter that maximum, as in the released notebooks. "
            "The Holm column is ours: the paper reports raw p-values."
        ],
        tables=tables,
    )


# --------------------------------------------------------------------------- beyond
_MODEL_COLUMNS = {
    "domain": "domain",
    "task": "task",
    "model": "model",
    "term": "term",
    "estimate": "estimate",
    "ci_low": "CI low",
    "ci_high": "CI high",
    "p_val": "p",
    "p_holm": "p (Holm)",
    "n": "n",
    "n_groups": "groups",
    "converged": "converged",
}
_BEYOND = (
    (
        "size_vs_gain",
        "Student size: gain per doubling of size",
        "Estimate in pp per doubling of student size (term log2_size), controlling for method.",
    ),
    (
        "teacher_expertise",
        "Teacher expertise: gain per point of teacher accuracy; task-aware vs base teacher",
        "teacher_score: pp of gain per point of the teacher's own accuracy; task_aware_minus_base: pp.",
    ),
    (
        "fidelity_vs_gain",
        "Agreement and fidelity: gain per point of agreement / BLEU",
        "Controlling for student size; partial_spearman rows are rank partial correlations per task.",
    ),
)


def _beyond(ctx: ReportContext) -> Section:
    title = "Beyond the paper: models that respect the dependence between units"
    if ctx.studies_error:
        return Section.omitted(
            "beyond", title, f"The studies do not apply to these results: {ctx.studies_error}"
        )
    tables = []
    for name, heading, caption in _BEYOND:
        table = ctx.study(name)
        if table is None:
            continue
        ctx.tables[f"beyond_{name}"] = table
        tables.append(
            TableSpec(
                name,
                heading,
                caption + " Holm across the tasks of a domain; full notes "
                "(e.g. convergence warnings) in the CSV.",
                table,
                _MODEL_COLUMNS,
            )
        )
    if not tables:
        return Section.omitted(
            "beyond", title, "No unit at temperature 1 with the covariates these models need."
        )
    return Section(
        id="beyond",
        title=title,
        paragraphs=[
            "kdanalysis.studies answers the product's questions per domain with KD results at τ = 1 (no "
            "selection over temperatures), task-aware teachers and per-task gains: OLS with standard errors "
            "clustered by teacher→student pair (per task: one joint model; 'all': task fixed effects), and a "
            "mixed model with crossed random intercepts for task and student (model mixedlm_task_student). "
            "These units share students and teachers, so these intervals are the honest ones; with about 11 "
            "pairs and 6 students they are wide."
        ],
        tables=tables,
    )


# --------------------------------------------------------------------------- dependence
def _dependence(ctx: ReportContext) -> pd.DataFrame:
    """Naive vs dependence-aware p-values of 'mean gain > 0' and of the size slope, per domain.

    Returns
    -------
    DataFrame
        Columns ``domain, question, analysis, n, n_groups, estimate, ci_low, ci_high, p_val``.
    """
    rows = []
    overall = ctx.overall()
    for domain, part in overall.groupby("domain", sort=False):
        naive = _quiet(ttest, part, "gain")
        rows.append(
            {
                "domain": domain,
                "question": "mean gain ≠ 0",
                "analysis": "t-test, units independent",
                "n": len(part),
                "n_groups": len(part),
                "estimate": naive["mean_diff"].iloc[0],
                "ci_low": naive["ci_low"].iloc[0],
                "ci_high": naive["ci_high"].iloc[0],
                "p_val": naive["p_val"].iloc[0],
            }
        )
        for group in ("pair", "student"):
            if part[group].nunique() < 3:
                continue
            fit = ols("gain ~ 1", part, cluster=group)
            coef = fit.coefs.iloc[0]
            rows.append(
                {
                    "domain": domain,
                    "question": "mean gain ≠ 0",
                    "analysis": f"OLS, SE clustered by {group}",
                    "n": len(part),
                    "n_groups": part[group].nunique(),
                    "estimate": coef["estimate"],
                    "ci_low": coef["ci_low"],
                    "ci_high": coef["ci_high"],
                    "p_val": coef["p_val"],
                }
            )
        if part["student"].nunique() >= 3:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mixed = mixedlm("gain ~ 1", part, groups="student")
            coef = mixed.coefs.iloc[0]
            rows.append(
                {
                    "domain": domain,
                    "question": "mean gain ≠ 0",
                    "analysis": "mixed model, random intercept per student",
                    "n": len(part),
                    "n_groups": part["student"].nunique(),
                    "estimate": coef["estimate"],
                    "ci_low": coef["ci_low"],
                    "ci_high": coef["ci_high"],
                    "p_val": coef["p_val"],
                }
            )
        sized = part.dropna(subset=["student_params_b"])
        if sized["student_params_b"].nunique() >= 2 and sized["student"].nunique() >= 3:
            clusters: tuple[tuple[str | None, str], ...] = (
                (None, "OLS, units independent"),
                ("student", "OLS, SE clustered by student"),
            )
            for cluster, label in clusters:
                fit = ols("gain ~ np.log2(student_params_b)", sized, cluster=cluster)
                coef = fit.coefs.iloc[1]
                rows.append(
                    {
                        "domain": domain,
                        "question": "gain per doubling of size",
                        "analysis": label,
                        "n": len(sized),
                        "n_groups": len(sized) if cluster is None else sized[cluster].nunique(),
                        "estimate": coef["estimate"],
                        "ci_low": coef["ci_low"],
                        "ci_high": coef["ci_high"],
                        "p_val": coef["p_val"],
                    }
                )
    return pd.DataFrame(
        rows,
        columns=["domain", "question", "analysis", "n", "n_groups", "estimate", "ci_low", "ci_high", "p_val"],
    )


def _selection(ctx: ReportContext) -> pd.DataFrame:
    """Mean gain with the best temperature vs with each fixed temperature (units run at several τ).

    Returns
    -------
    DataFrame
        Columns ``domain, choice, n, mean_gain``; ``choice`` is "best τ" or "τ = t".
    """
    each = analysis.temperature_table(ctx.kd_each)
    if each.empty:
        return pd.DataFrame(columns=["domain", "choice", "n", "mean_gain"])
    if (each["task"] == "average").any():
        each = each[each["task"] == "average"]
    best = each.loc[each.groupby("unit")["gain"].idxmax()].assign(choice="best τ (max)")
    fixed = each.assign(choice="τ = " + each["temperature"].map(lambda t: f"{t:g}"))
    both = pd.concat([best, fixed], ignore_index=True)
    return both.groupby(["domain", "choice"], as_index=False, sort=False).agg(
        n=("gain", "size"), mean_gain=("gain", "mean")
    )


def _methods(ctx: ReportContext) -> Section:
    dependence = _dependence(ctx)
    selection = _selection(ctx)
    ctx.tables.update(dependence=dependence, selection=selection)
    seeds = ctx.results.groupby(
        ["study", "domain", "student", "teacher", "method", "teacher_kind", "temperature", "task", "metric"],
        dropna=False,
    )["seed"].nunique()
    paragraphs = [
        "Gain: accuracy of a KD student minus the accuracy of the same student after plain SFT, in "
        "percentage "
        "points, per unit (teacher, student, method) and task. Where a unit was trained at several "
        "temperatures "
        "the best temperature is kept (the paper's protocol: a selection step made before testing). Figures "
        "and "
        "the beyond-paper analyses use task-aware teachers only; base-teacher runs appear only in the "
        "teacher "
        "expertise section (and, for commonsense, inside the paper's own tables, as published).",
        f"Confidence intervals of correlations are percentile bootstraps ({N_BOOT} resamples, seed {SEED}); "
        "means use t-intervals; regression CIs come from statsmodels. Numbers are rounded only for display: "
        "the CSV files under tables/ hold full precision.",
    ]
    if int(seeds.max()) == 1:
        paragraphs.append(
            "Every value comes from a single run (one seed) and, in the published study, a single sampled "
            "answer per question: run-to-run variance cannot be estimated from these results, so no interval "
            "here covers it."
        )
    return Section(
        id="methods",
        title="Methods and caveats",
        paragraphs=paragraphs,
        bullets=caveat_sentences(ctx.tables),
        tables=[
            TableSpec(
                "dependence",
                "Dependence between units: naive vs dependence-aware inference",
                "Overall gain per KD unit; the units share students, teachers and pairs. Two-sided p-values.",
                dependence,
                {
                    "domain": "domain",
                    "question": "question",
                    "analysis": "analysis",
                    "n": "n",
                    "n_groups": "independent groups",
                    "estimate": "estimate (pp)",
                    "ci_low": "CI low",
                    "ci_high": "CI high",
                    "p_val": "p",
                },
            ),
            *(
                [
                    TableSpec(
                        "selection",
                        "Selecting the best temperature",
                        "Mean gain (pp) of the units run at several temperatures.",
                        selection,
                        {
                            "domain": "domain",
                            "choice": "temperature",
                            "n": "n",
                            "mean_gain": "mean gain (pp)",
                        },
                    )
                ]
                if not selection.empty
                else []
            ),
        ],
    )


# --------------------------------------------------------------------------- assembly
_BUILDERS: tuple[tuple[str, Callable[[ReportContext], Section]], ...] = (
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
) -> list[Section]:
    """All report sections, in display order (the findings second).

    Parameters
    ----------
    results : DataFrame
        A validated results table.
    models : DataFrame
        Models table (family, params_b) for the models in ``results``.
    step : callable, optional
        Called with a short description before each section is computed (progress).
    on_section : callable, optional
        Called with each section as soon as it is computed (e.g. to start drawing its
        figures while the next sections are computed).

    Returns
    -------
    list of Section
    """
    ctx = ReportContext.from_results(results, models)
    sections = []
    for name, builder in _BUILDERS:
        if step is not None:
            step(name)
        section = builder(ctx)
        if on_section is not None:
            on_section(section)
        sections.append(section)
    findings = finding_sentences(ctx.tables)
    summary = (
        Section(id="findings", title="Key findings", bullets=findings)
        if findings
        else Section.omitted("findings", "Key findings", "No statistic could be computed from these results.")
    )
    return [sections[0], summary, *sections[1:]]
