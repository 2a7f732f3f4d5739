"""Every study on one results table, as a :class:`~kdanalysis.studies.tables.StudyTables`.

:func:`run_all`'s result is the report's only input: the report presents its tables.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

import pandas as pd

from kdanalysis.errors import SchemaError
from kdanalysis.results import validate_results
from kdanalysis.stats import DegenerateDataWarning
from kdanalysis.stats.gains import gains
from kdanalysis.studies import descriptive as desc
from kdanalysis.studies._threads import single_threaded_blas
from kdanalysis.studies._units import models_table, single_study, task_aware
from kdanalysis.studies.beyond import (
    expertise_table,
    fidelity_table,
    gain_table,
    prepare_unit_sets,
    size_table,
)
from kdanalysis.studies.claims import claims_audit
from kdanalysis.studies.paper import PAPER_UNIT_COLUMNS, paper_tests, prepare_paper_units
from kdanalysis.studies.primary import primary_tests
from kdanalysis.studies.tables import STUDY_TABLES, StudyTables
from kdanalysis.studies.temperature import temperature_table

__all__ = ["STUDY_TABLES", "StudyTables", "run_all"]

logger = logging.getLogger(__name__)


def _paper_units(results: pd.DataFrame, models: pd.DataFrame, each: pd.DataFrame) -> pd.DataFrame:
    """The paper's units, or none (with a warning) when its protocol cannot run on these results.

    The published protocol needs every student's size; a student missing from the models
    table skips the paper study (its tables are empty) instead of the whole run.
    """
    try:
        return prepare_paper_units(results, models, each=each)
    except SchemaError as error:
        warnings.warn(f"paper study skipped: {error}", DegenerateDataWarning, stacklevel=3)
        return pd.DataFrame(columns=list(PAPER_UNIT_COLUMNS))


def run_all(
    results: pd.DataFrame,
    models: pd.DataFrame | None = None,
    *,
    temperature: float | None = 1.0,
    n_boot: int = 10_000,
    corr_boot: int = 2000,
    seed: int = 0,
) -> StudyTables:
    """Run the paper study, the beyond-paper studies and the claims audit on ``results``.

    Parameters
    ----------
    results : DataFrame
        Results of one study (e.g. ``kdanalysis.load_paper_results()``).
    models : DataFrame, optional
        Models table (default: the bundled paper models).
    temperature : float or None
        KD temperature of the beyond-paper models (None: max over temperatures).
    n_boot : int
        Bootstrap resamples of the temperature ablation's intervals.
    corr_boot : int
        Bootstrap resamples of the naive correlations' intervals (descriptive tables).
    seed : int
        Seed of every bootstrap.

    Returns
    -------
    StudyTables
        One attribute per table (:data:`STUDY_TABLES`); each table's columns are documented
        with the function named in :class:`~kdanalysis.studies.tables.StudyTables`.
    """
    results = single_study(validate_results(results), "studies")
    models = models_table(models)
    sets = prepare_unit_sets(results, models, temperature)
    t: dict[str, Any] = {}
    steps: dict[str, Callable[[], pd.DataFrame]] = {
        "gains": lambda: gains(results, validate=False),
        "paper_units": lambda: _paper_units(results, models, sets.each),
        "paper_hypotheses": lambda: paper_tests(t["paper_units"]),
        "paper_holm": lambda: desc.paper_holm(t["paper_hypotheses"]),
        "kd_gain": lambda: gain_table(sets),
        "size_vs_gain": lambda: size_table(sets),
        "teacher_expertise": lambda: expertise_table(sets),
        "fidelity_vs_gain": lambda: fidelity_table(sets),
        "primary_tests": lambda: primary_tests(
            t["kd_gain"], t["size_vs_gain"], t["teacher_expertise"], t["fidelity_vs_gain"]
        ),
        "claims_audit": lambda: claims_audit(t["gains"], t["primary_tests"]),
        "collapsed_runs": lambda: sets.collapsed,
        "temperature_ablation": lambda: temperature_table(results, n_boot=n_boot, seed=seed, each=sets.each),
        "kd": lambda: desc.best_units(t["gains"], results, models),
        "unit_gains": lambda: desc.unit_gains(t["kd"]),
        "accuracy": lambda: desc.accuracy_table(results, t["kd"]),
        "heatmap": lambda: desc.heatmap_table(t["kd"]),
        "expertise_pairs": lambda: desc.expertise_pairs(sets.each),
        "temperature_units": lambda: desc.temperature_units(desc.best_units(sets.each, results, models)),
        "temperature_best": lambda: desc.temperature_best(t["kd"]),
        "selection": lambda: desc.selection_table(t["temperature_units"]),
        "fidelity": lambda: desc.fidelity_long(task_aware(sets.units), sets.behaviour),
        "gain_tests": lambda: desc.gain_tests(t["kd"]),
        "size_correlation": lambda: desc.unit_correlation(
            t["unit_gains"], "student_size", n_boot=corr_boot, seed=seed
        ),
        "teacher_correlation": lambda: desc.unit_correlation(
            t["kd"][t["kd"]["task"] != "average"], "teacher_score", n_boot=corr_boot, seed=seed
        ),
        "fidelity_correlation": lambda: desc.fidelity_correlations(
            t["fidelity"], n_boot=corr_boot, seed=seed
        ),
        "task_correlations": lambda: desc.task_correlations(
            t["kd"], t["fidelity"], n_boot=corr_boot, seed=seed
        ),
        "dependence": lambda: desc.dependence_table(t["unit_gains"]),
    }
    with single_threaded_blas():
        for name in STUDY_TABLES:
            start = time.perf_counter()
            t[name] = steps[name]()
            logger.info("%s: %d rows in %.2f s", name, len(t[name]), time.perf_counter() - start)
    return StudyTables(**t)
