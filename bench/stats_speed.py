"""Speed of the analysis layer on the bundled paper results, against the naive way.

Measures, in one run on the same machine:

- ``paper_hypotheses_s``: :func:`kdanalysis.studies.paper_hypotheses` (H1-H5, 352 tests);
- ``full_study_s``: :func:`kdanalysis.studies.run_all` (gains, paper study, the beyond-paper
  questions: primary CR2 fits clustered by student with Satterthwaite df, their wild cluster
  bootstrap checks (9,999 Webb draws each), mixed models with Satterthwaite df, per-task and
  sensitivity fits; the family-wide Holm adjustment, the claims audit, the descriptive tables
  with 2,000-resample correlation intervals, and the temperature ablation with 10,000-resample
  bootstrap intervals);
- ``naive_paper_s``: the paper study as the paper's notebooks compute it: wide tables,
  then one scipy call per task, method group and hypothesis;
- ``naive_s``: the full study the naive way: the naive paper study, the same regression
  models fitted with statsmodels one task at a time (a per-cell loop instead of one joint
  model per domain), Holm per family with statsmodels, and the bootstrap intervals as a
  Python loop over resamples.

``adjust_pvalues_holm_call_s`` is the cost of one Holm adjustment of seven p-values
(statsmodels' ``multipletests(method="holm")`` runs ``gc.collect()`` on every call; the
full study makes 14 such calls).

Prints one JSON object on its last line (seconds are the median of ``--repeats`` runs
after one warm-up; ``max_abs_diff_paper`` compares the naive and the new paper tables).
Each ``*_s`` wall-clock figure has a ``*_cpu_s`` twin, the CPU seconds of this process
(all its threads): on a machine busy with other work, wall time grows with the load while
CPU time stays close to what the computation itself costs. ``load_average_1min`` is
recorded for that reason.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.stats
import statsmodels.formula.api as smf
from statsmodels.stats.multitest import multipletests

import kdanalysis as kd
from kdanalysis.studies import kd_units, paper_hypotheses, run_all

GROUPS = {"rkl": "RevKD", "gkd": "GKD", "fkl": "SeqKD"}
NAMES = {"RevKD": "revkd", "GKD": "gkd", "SeqKD": "seqkd"}


def _wide(results: pd.DataFrame, domain: str, metric: str) -> pd.DataFrame:
    rows = results[(results["domain"] == domain) & (results["metric"] == metric)]
    return rows.pivot_table(
        index=["teacher", "student", "method", "method_label"], columns="task", values="value"
    ).reset_index()


def naive_paper(results: pd.DataFrame) -> pd.DataFrame:
    """The notebooks' procedure: wide frames, merges, then a scipy call per cell."""
    sizes = kd.load_paper_models().set_index("model")["params_b"]
    out = []
    for domain in ("math", "commonsense"):
        data = _wide(results, domain, "accuracy")
        tasks = [c for c in data.columns if c not in ("teacher", "student", "method", "method_label")]
        if domain == "math":
            data = data[~data["method_label"].str.contains("base_teacher_")]
        sft = data[data["method"] == "sft"]
        kd_rows = data[data["method_label"].str.contains("student")].copy()
        kd_rows["group"] = kd_rows["method"].map(GROUPS)
        kd_rows = kd_rows.groupby(["teacher", "student", "group"])[tasks].max().reset_index()
        merged = kd_rows.merge(sft[["student", *tasks]].rename(columns={t: t + " SFT" for t in tasks}))
        merged = merged.merge(
            sft[["student", *tasks]].rename(
                columns={"student": "teacher", **{t: t + " Teacher" for t in tasks}}
            )
        )
        fidelity = {}
        for name, metric in (("H4", "agreement"), ("H5", "bleu")):
            wide = _wide(results, domain, metric)
            wide = wide[wide["method"] == "kd"].drop(columns=["method", "method_label"])
            if not wide.empty:
                fidelity[name] = merged[["teacher", "student"]].merge(wide, how="left")
        for task in tasks:
            merged[task + " Improvement"] = merged[task] - merged[task + " SFT"]
        for task in tasks:
            gain = merged[task + " Improvement"]
            res = scipy.stats.ttest_1samp(gain, 0, alternative="greater")
            out.append((domain, "H1", "all", task, "ttest_1samp_greater", res.statistic, res.pvalue))
            for group in merged["group"].unique():
                res = scipy.stats.ttest_1samp(gain[merged["group"] == group], 0, alternative="greater")
                out.append(
                    (domain, "H1", NAMES[group], task, "ttest_1samp_greater", res.statistic, res.pvalue)
                )
            res = scipy.stats.f_oneway(*(gain[merged["group"] == g] for g in ("SeqKD", "RevKD", "GKD")))
            out.append((domain, "H1", "all", task, "anova", res.statistic, res.pvalue))
            covariates = {
                "H2": merged[task + " Teacher"],
                "H3": merged["student"].map(sizes),
                "H3.2": merged[task + " SFT"],
            }
            if task != "average":
                covariates.update({name: frame[task] for name, frame in fidelity.items()})
            for hypothesis, values in covariates.items():
                res = scipy.stats.spearmanr(gain, values)
                out.append((domain, hypothesis, "all", task, "spearman", res.statistic, res.pvalue))
                for group in merged["group"].unique():
                    mask = merged["group"] == group
                    res = scipy.stats.spearmanr(gain[mask], values[mask])
                    out.append(
                        (domain, hypothesis, NAMES[group], task, "spearman", res.statistic, res.pvalue)
                    )
    return pd.DataFrame(
        out, columns=["domain", "hypothesis", "methods", "task", "test", "statistic", "p_val"]
    )


def _naive_slopes(data: pd.DataFrame, focal: str, controls: str, method: str) -> None:
    for _, domain_data in data.groupby("domain"):
        p_values = []
        for _, task_data in domain_data.groupby("task"):
            fit = smf.ols(f"gain ~ {focal}{controls}{method}", task_data).fit(
                cov_type="cluster", cov_kwds={"groups": pd.factorize(task_data["pair"])[0]}, use_t=True
            )
            p_values.append(fit.pvalues[focal])
        multipletests(p_values, method="holm")
        smf.ols(f"gain ~ {focal}{controls}{method} + C(task)", domain_data).fit(
            cov_type="cluster", cov_kwds={"groups": pd.factorize(domain_data["pair"])[0]}, use_t=True
        )
        smf.mixedlm(
            f"gain ~ {focal}{controls}{method}",
            domain_data.assign(one=1),
            groups="one",
            re_formula="0",
            vc_formula={"task": "0 + C(task)", "student": "0 + C(student)"},
        ).fit()


def naive_full(results: pd.DataFrame, n_boot: int) -> None:
    """The naive paper study, per-task statsmodels fits, and a resampling loop for the bootstrap."""
    naive_paper(results)
    kd.stats.gains(results)
    units = kd_units(results)
    _naive_slopes(units, "log2_size", "", " + C(method)")
    _naive_slopes(units, "teacher_score", " + log2_size", " + C(method)")
    base = kd_units(results, teacher_kinds=("task_aware", "base"))
    base = (
        base[base["method"] == "fkl"]
        .pivot_table(index=["domain", "task", "pair", "student"], columns="teacher_kind", values="kd_value")
        .dropna()
    )
    for _, domain_data in base.reset_index().groupby("domain"):
        p_values = [
            scipy.stats.ttest_rel(t["task_aware"], t["base"]).pvalue for _, t in domain_data.groupby("task")
        ]
        multipletests(p_values, method="holm")
        diff = domain_data.assign(gain=domain_data["task_aware"] - domain_data["base"], one=1)
        smf.ols("gain ~ 1", diff).fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(diff["pair"])[0]})
        smf.mixedlm(
            "gain ~ 1",
            diff,
            groups="one",
            re_formula="0",
            vc_formula={"task": "0 + C(task)", "student": "0 + C(student)"},
        ).fit()
    pairs = (
        units.groupby(["domain", "task", "teacher", "student", "pair"])
        .agg(
            gain=("gain", "mean"),
            agreement=("agreement", "first"),
            bleu=("bleu", "first"),
            log2_size=("log2_size", "first"),
        )
        .reset_index()
    )
    for measure in ("agreement", "bleu"):
        data = pairs.dropna(subset=[measure])
        for _, task_data in data.groupby(["domain", "task"]):
            ranks = task_data[["gain", measure, "log2_size"]].rank()
            resid = [smf.ols(f"{c} ~ log2_size", ranks).fit().resid for c in ("gain", measure)]
            scipy.stats.pearsonr(*resid)
        _naive_slopes(data.assign(method="kd"), measure, " + log2_size", "")
    ablation = kd.stats.gains(results, over_temperature="each")
    ablation = ablation[
        (ablation["teacher"].isin(["Qwen2.5-3B", "Qwen2.5-7B"]))
        & ablation["method"].isin(["fkl", "rkl"])
        & (ablation["teacher_kind"] == "task_aware")
        & (ablation["task"] != "average")
    ]
    rng = np.random.default_rng(0)
    for _, cell in ablation.groupby(["domain", "method", "temperature"]):
        values = cell["gain"].to_numpy()
        means = [rng.choice(values, size=len(values)).mean() for _ in range(n_boot)]
        np.percentile(means, [2.5, 97.5])


def _median_times(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock and median CPU seconds (this process, all threads) of ``function``."""
    function()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-boot", type=int, default=10_000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    results = kd.load_paper_results()
    new_paper = paper_hypotheses(results)
    old_paper = naive_paper(results)
    keys = ["domain", "hypothesis", "methods", "task", "test"]
    both = new_paper.merge(old_paper, on=keys, suffixes=("", "_naive"))
    p_values = np.linspace(0.001, 0.5, 7)
    measured: dict[str, Callable[[], object]] = {
        "paper_hypotheses": lambda: paper_hypotheses(results),
        "naive_paper": lambda: naive_paper(results),
        "full_study": lambda: run_all(results, n_boot=args.n_boot),
        "naive": lambda: naive_full(results, args.n_boot),
        "adjust_pvalues_holm_call": lambda: kd.stats.adjust_pvalues(p_values),
    }
    figures: dict[str, float] = {}
    for name, function in measured.items():
        figures[f"{name}_s"], figures[f"{name}_cpu_s"] = _median_times(function, args.repeats)
    figures["paper_speedup"] = figures["naive_paper_s"] / figures["paper_hypotheses_s"]
    figures["full_speedup"] = figures["naive_s"] / figures["full_study_s"]
    figures["paper_speedup_cpu"] = figures["naive_paper_cpu_s"] / figures["paper_hypotheses_cpu_s"]
    figures["full_speedup_cpu"] = figures["naive_cpu_s"] / figures["full_study_cpu_s"]
    details: dict[str, object] = {
        **{k: round(v, 4) for k, v in figures.items()},
        **{
            "n_paper_tests": len(new_paper),
            "n_paper_tests_matched_naive": len(both),
            "max_abs_diff_paper": float(
                np.nanmax(
                    np.abs(
                        np.r_[
                            both["statistic"] - both["statistic_naive"], both["p_val"] - both["p_val_naive"]
                        ]
                    )
                )
            ),
            "n_boot": args.n_boot,
            "repeats": args.repeats,
            "goal_paper_hypotheses_s": 1.0,
            "goal_full_study_s": 5.0,
            "load_average_1min": round(os.getloadavg()[0], 2),
            "cpu_count": os.cpu_count(),
        },
    }
    print(json.dumps(details))


if __name__ == "__main__":
    main()
