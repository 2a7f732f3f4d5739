"""The typed result of :func:`kdanalysis.studies.run_all`: one attribute per table."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pandas as pd

__all__ = ["STUDY_TABLES", "StudyTables"]


@dataclass(frozen=True)
class StudyTables:
    """Every table of a study run (a misspelt attribute is an error, not a missing table).

    Attributes
    ----------
    gains : DataFrame
        :func:`kdanalysis.stats.gains`: accuracy vs SFT, best temperature, every unit.
    paper_units, paper_hypotheses : DataFrame
        The published protocol (:mod:`kdanalysis.studies.paper`).
    paper_holm : DataFrame
        ``paper_hypotheses`` with ``p_holm`` across the tasks of a domain per test family.
    kd_gain, size_vs_gain, teacher_expertise, fidelity_vs_gain : DataFrame
        The beyond-paper questions (:mod:`kdanalysis.studies.beyond`): primary analysis,
        its checks, per-task and sensitivity rows.
    primary_tests : DataFrame
        The declared primary tests, Holm-adjusted together (:func:`~kdanalysis.studies.primary_tests`).
    claims_audit : DataFrame
        The paper's headline claims with evidence and verdicts (:func:`~kdanalysis.studies.claims_audit`).
    collapsed_runs : DataFrame
        Every KD run with its domain-average gain and the collapse flag
        (:func:`~kdanalysis.studies.collapsed_runs`).
    temperature_ablation : DataFrame
        :func:`~kdanalysis.studies.temperature_ablation`.
    kd : DataFrame
        Task-aware KD units at their best temperature with covariates
        (:func:`kdanalysis.studies.descriptive.best_units`), ``average`` included.
    unit_gains : DataFrame
        One gain per KD unit (:func:`~kdanalysis.studies.descriptive.unit_gains`).
    accuracy, heatmap, expertise_pairs, temperature_units, temperature_best, selection : DataFrame
        Data behind the report's figures (:mod:`kdanalysis.studies.descriptive`).
    fidelity : DataFrame
        Agreement / BLEU values beside their gains at tau = 1, each value once
        (:func:`~kdanalysis.studies.descriptive.fidelity_long`).
    gain_tests, size_correlation, teacher_correlation, fidelity_correlation, task_correlations : DataFrame
        Naive tests (units treated as independent), labelled so wherever shown.
    dependence : DataFrame
        Naive vs dependence-aware inference on the same data
        (:func:`~kdanalysis.studies.descriptive.dependence_table`).
    """

    gains: pd.DataFrame
    paper_units: pd.DataFrame
    paper_hypotheses: pd.DataFrame
    paper_holm: pd.DataFrame
    kd_gain: pd.DataFrame
    size_vs_gain: pd.DataFrame
    teacher_expertise: pd.DataFrame
    fidelity_vs_gain: pd.DataFrame
    primary_tests: pd.DataFrame
    claims_audit: pd.DataFrame
    collapsed_runs: pd.DataFrame
    temperature_ablation: pd.DataFrame
    kd: pd.DataFrame
    unit_gains: pd.DataFrame
    accuracy: pd.DataFrame
    heatmap: pd.DataFrame
    expertise_pairs: pd.DataFrame
    temperature_units: pd.DataFrame
    temperature_best: pd.DataFrame
    selection: pd.DataFrame
    fidelity: pd.DataFrame
    gain_tests: pd.DataFrame
    size_correlation: pd.DataFrame
    teacher_correlation: pd.DataFrame
    fidelity_correlation: pd.DataFrame
    task_correlations: pd.DataFrame
    dependence: pd.DataFrame

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        """(name, table) pairs in declaration order (e.g. to write every table)."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


#: Attribute names of :class:`StudyTables`, in order.
STUDY_TABLES: tuple[str, ...] = tuple(f.name for f in fields(StudyTables))
