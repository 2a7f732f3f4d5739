"""Every study on one results table, as a dict of tidy tables (the report's input)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pandas as pd

from kdanalysis.results import validate_results
from kdanalysis.stats.gains import gains
from kdanalysis.studies._threads import single_threaded_blas
from kdanalysis.studies._units import all_accuracy_gains_each, models_table, single_study
from kdanalysis.studies.beyond import expertise_table, fidelity_table, prepare_units, size_table
from kdanalysis.studies.paper import paper_tests, prepare_paper_units
from kdanalysis.studies.temperature import temperature_table

__all__ = ["STUDY_TABLES", "run_all"]

logger = logging.getLogger(__name__)

#: Keys of :func:`run_all`'s result, in order.
STUDY_TABLES: tuple[str, ...] = (
    "gains",
    "paper_units",
    "paper_hypotheses",
    "size_vs_gain",
    "teacher_expertise",
    "fidelity_vs_gain",
    "temperature_ablation",
)


def run_all(
    results: pd.DataFrame,
    models: pd.DataFrame | None = None,
    *,
    temperature: float | None = 1.0,
    n_boot: int = 10_000,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Run the paper study and the beyond-paper studies on ``results``.

    Parameters
    ----------
    results : DataFrame
        Results of one study (e.g. ``kdanalysis.load_paper_results()``).
    models : DataFrame, optional
        Models table (default: the bundled paper models).
    temperature : float or None
        KD temperature of the beyond-paper models (None: max over temperatures).
    n_boot, seed : int
        Bootstrap resamples and seed of the temperature ablation's intervals.

    Returns
    -------
    dict of str to DataFrame
        Keys :data:`STUDY_TABLES`: ``gains`` (:func:`kdanalysis.stats.gains`, max over
        temperatures, accuracy vs SFT), ``paper_units`` and ``paper_hypotheses``
        (:mod:`kdanalysis.studies.paper`), ``size_vs_gain``, ``teacher_expertise``,
        ``fidelity_vs_gain`` (:mod:`kdanalysis.studies.beyond`) and
        ``temperature_ablation`` (:mod:`kdanalysis.studies.temperature`); each table's
        columns are documented with its function.
    """
    results = single_study(validate_results(results), "studies")
    models = models_table(models)
    each = all_accuracy_gains_each(results)
    units = prepare_units(results, models, temperature, each=each)
    steps: dict[str, Callable[[], pd.DataFrame]] = {
        "gains": lambda: gains(results, validate=False),
        "paper_units": lambda: prepare_paper_units(results, models, each=each),
        "paper_hypotheses": lambda: paper_tests(tables["paper_units"]),
        "size_vs_gain": lambda: size_table(units),
        "teacher_expertise": lambda: expertise_table(units),
        "fidelity_vs_gain": lambda: fidelity_table(units),
        "temperature_ablation": lambda: temperature_table(results, n_boot=n_boot, seed=seed, each=each),
    }
    tables: dict[str, pd.DataFrame] = {}
    with single_threaded_blas():
        for name in STUDY_TABLES:
            start = time.perf_counter()
            tables[name] = steps[name]()
            logger.info("%s: %d rows in %.2f s", name, len(tables[name]), time.perf_counter() - start)
    return tables
