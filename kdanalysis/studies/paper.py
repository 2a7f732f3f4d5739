"""The published statistical analysis (H1-H5) of arXiv 2505.15442, reproduced exactly.

The protocol follows the paper's notebooks (``analysis/statistical_tests_{math,cs}.ipynb``)
to the letter, quirks included:

- Unit: (teacher, student, method group); group ``seqkd`` for ``fkl`` rows (the paper's
  ``student_KD_*`` and ``student_KD_base_teacher_*``), ``revkd`` for ``rkl``, ``gkd`` for
  ``gkd``. Teacher names carry no ``_suffix`` (dropped at conversion).
- Score per unit and task: the maximum over temperatures. In math the base-teacher rows
  (``teacher_kind == "base"``) are dropped first; in commonsense they are not, so they
  enter the maximum.
- Gain = score - the same student's SFT score, per task and for ``average`` as given.
- H1: one-sided one-sample t-test of gain > 0, pooled (``methods="all"``) and per group;
  one-way ANOVA of gain across the three groups (``methods="all"``).
- H2: Spearman rho(gain, the teacher's own SFT score on the task); H3: rho(gain, student
  size in billions: the models table's ``params_b``, the number the paper parsed from the
  name); H3.2: rho(gain, the student's SFT score); H4: rho(gain, agreement from
  the KD rows of EM1), no average; H5 (math only): rho(gain, BLEU of the KD rows), no
  average. Each pooled and per group, two-sided.

Each test is scipy's (``ttest_1samp``, ``f_oneway``, Spearman via ranks), run on all cells
of equal size at once (:mod:`kdanalysis.studies._batched`); the tests check every cell
against :mod:`kdanalysis.stats` and the paper's printed outputs.

The 33 units share students, teachers and pairs, so these p-values overstate the evidence;
:mod:`kdanalysis.studies.beyond` answers the same questions with models that respect that.
"""

from __future__ import annotations

import pandas as pd

from kdanalysis.results import validate_results
from kdanalysis.studies._batched import anova_cells, spearman_cells, ttest_1samp_cells
from kdanalysis.studies._units import accuracy_gains_each, add_covariates, models_table, single_study
from kdanalysis.tasks import STUDY_TAG, task_table

__all__ = [
    "METHOD_GROUPS",
    "GROUP_ORDER",
    "HYPOTHESIS_COVARIATES",
    "PAPER_COLUMNS",
    "PAPER_UNIT_COLUMNS",
    "TASK_ORDER",
    "paper_units",
    "paper_hypotheses",
    "paper_tests",
    "prepare_paper_units",
]

#: KD method id -> the paper's method group.
METHOD_GROUPS: dict[str, str] = {"fkl": "seqkd", "rkl": "revkd", "gkd": "gkd"}
#: Order of the ``methods`` column (pooled first).
GROUP_ORDER: tuple[str, ...] = ("all", "seqkd", "revkd", "gkd")
#: Correlational hypotheses and the unit column gain is correlated with.
HYPOTHESIS_COVARIATES: dict[str, str] = {
    "H2": "teacher_score",
    "H3": "student_size",
    "H3.2": "student_sft",
    "H4": "agreement",
    "H5": "bleu",
}
#: Output columns of :func:`paper_hypotheses`.
PAPER_COLUMNS: tuple[str, ...] = (
    "domain",
    "hypothesis",
    "methods",
    "task",
    "test",
    "statistic",
    "p_val",
    "n",
)
#: Output columns of :func:`paper_units`.
PAPER_UNIT_COLUMNS: tuple[str, ...] = (
    "domain",
    "task",
    "teacher",
    "student",
    "group",
    "gain",
    "score",
    "student_sft",
    "teacher_score",
    "student_size",
    "agreement",
    "bleu",
)
#: Task order of the paper's tables (math, then commonsense, then the average): the task table's order.
TASK_ORDER: tuple[str, ...] = task_table().order(tag=STUDY_TAG)
_DOMAIN_ORDER = task_table().tasks.domains(tag=STUDY_TAG)
_HYPOTHESIS_ORDER = ("H1", "H2", "H3", "H3.2", "H4", "H5")
#: Domains whose base-teacher rows the paper dropped before the max over temperatures.
_DROPS_BASE_TEACHER = {"math": True, "commonsense": False}
#: Hypotheses tested without the ``average`` column, and those restricted to some domains.
_NO_AVERAGE = ("H4", "H5")
_ONLY_DOMAINS = {"H5": ("math",)}


def paper_units(results: pd.DataFrame, models: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's analysis units with their gain and every covariate of H2-H5.

    Parameters
    ----------
    results : DataFrame
        Results of one study with the paper's layout (``kdanalysis.load_paper_results()``).
    models : DataFrame, optional
        Models table for student sizes (default: the bundled paper models).

    Returns
    -------
    DataFrame
        Columns :data:`PAPER_UNIT_COLUMNS`, one row per domain, task, teacher, student and group:
        ``gain`` (max over temperatures of KD minus the student's SFT accuracy),
        ``score`` (the KD accuracy reaching it), ``student_sft``, ``teacher_score`` (the
        teacher's own SFT accuracy), ``student_size`` (billions), ``agreement`` (EM1, KD
        row) and ``bleu`` (BLEU, KD row); NaN where the paper has no value.

    Raises
    ------
    SchemaError
        If the table fails the contract, mixes studies, or a student is missing from
        ``models``.
    """
    results = single_study(validate_results(results), "paper study")
    return prepare_paper_units(results, models_table(models))


def prepare_paper_units(
    results: pd.DataFrame, models: pd.DataFrame, *, each: pd.DataFrame | None = None
) -> pd.DataFrame:
    """:func:`paper_units` of a validated one-study table and a validated models table.

    ``each``: the accuracy gains of ``results`` at each temperature, if already computed
    (see :func:`kdanalysis.studies._units.accuracy_gains_each`).
    """
    each = accuracy_gains_each(results, METHOD_GROUPS, each)
    drops = each["domain"].map(_DROPS_BASE_TEACHER).fillna(False).astype(bool)
    each = each[~(drops & (each["teacher_kind"] == "base"))]
    each = each.assign(group=each["method"].map(METHOD_GROUPS))
    keys = ["domain", "task", "teacher", "student", "group"]
    best = each.loc[each.groupby(keys, sort=True)["gain"].idxmax()]
    units = best[[*keys, "gain", "kd_value", "baseline_value"]].rename(
        columns={"kd_value": "score", "baseline_value": "student_sft"}
    )
    units = add_covariates(units, results, models)
    return units[list(PAPER_UNIT_COLUMNS)].reset_index(drop=True)


def _pooled_and_grouped(units: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([units.assign(methods="all"), units.assign(methods=units["group"])], ignore_index=True)


def _correlations(long: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for hypothesis, covariate in HYPOTHESIS_COVARIATES.items():
        cells = long.assign(hypothesis=hypothesis, covariate=long[covariate])
        if hypothesis in _NO_AVERAGE:
            cells = cells[cells["task"] != "average"]
        if hypothesis in _ONLY_DOMAINS:
            cells = cells[cells["domain"].isin(_ONLY_DOMAINS[hypothesis])]
        frames.append(cells[["domain", "hypothesis", "methods", "task", "gain", "covariate"]])
    table = spearman_cells(
        pd.concat(frames, ignore_index=True), "gain", "covariate", ["domain", "hypothesis", "methods", "task"]
    )
    return table.assign(test="spearman")


def _order(table: pd.DataFrame) -> pd.DataFrame:
    sort_keys = {
        "domain": list(_DOMAIN_ORDER),
        "hypothesis": list(_HYPOTHESIS_ORDER),
        "test": ["ttest_1samp_greater", "anova", "spearman"],
        "methods": list(GROUP_ORDER),
        "task": list(TASK_ORDER),
    }

    def rank(column: pd.Series) -> pd.Series:
        order = sort_keys[column.name]
        return column.map({v: i for i, v in enumerate(order)}).fillna(len(order))

    ordered = table.sort_values(list(sort_keys), key=rank, kind="stable")
    return ordered[list(PAPER_COLUMNS)].reset_index(drop=True)


def paper_hypotheses(results: pd.DataFrame, models: pd.DataFrame | None = None) -> pd.DataFrame:
    """Run the paper's H1-H5 tests exactly as published (see the module docstring).

    Parameters
    ----------
    results : DataFrame
        The paper's results (``kdanalysis.load_paper_results()``) or a table of one study
        with the same layout (accuracy of base/SFT/KD rows; agreement and BLEU KD rows).
    models : DataFrame, optional
        Models table for student sizes (default: the bundled paper models).

    Returns
    -------
    DataFrame
        Exactly the columns ``domain, hypothesis, methods, task, test, statistic, p_val, n``:
        ``hypothesis`` in H1, H2, H3, H3.2, H4, H5; ``methods`` in all, seqkd, revkd, gkd;
        ``test`` ``ttest_1samp_greater`` (H1, statistic t), ``anova`` (H1, methods ``all``,
        statistic F) or ``spearman`` (H2-H5, statistic rho, two-sided p); ``n`` the number
        of units. Sorted by domain, hypothesis, test, methods, task.

    Examples
    --------
    >>> import kdanalysis as kd
    >>> table = kd.studies.paper_hypotheses(kd.load_paper_results())
    >>> row = table.query("domain == 'math' and hypothesis == 'H1' and methods == 'all' "
    ...                   "and task == 'average' and test == 'ttest_1samp_greater'")
    >>> round(float(row.statistic.iloc[0]), 4)
    8.4653
    """
    return paper_tests(paper_units(results, models))


def paper_tests(units: pd.DataFrame) -> pd.DataFrame:
    """The H1-H5 tests of :func:`paper_hypotheses` on a :func:`paper_units` table."""
    long = _pooled_and_grouped(units)
    h1 = ttest_1samp_cells(long, "gain", ["domain", "methods", "task"], alternative="greater")
    h1 = h1.assign(hypothesis="H1", test="ttest_1samp_greater")
    anova = anova_cells(units, "gain", "group", ["domain", "task"])
    anova = anova.assign(hypothesis="H1", methods="all", test="anova")
    return _order(pd.concat([h1, anova, _correlations(long)], ignore_index=True))
