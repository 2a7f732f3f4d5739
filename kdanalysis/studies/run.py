"""Every study on one results table, as a dict of tidy tables (the report's input)."""

from __future__ import annotations

import logging
import time

import pandas as pd

from kdanalysis.results import validate_results
from kdanalysis.stats.gains import gains
from kdanalysis.studies.beyond import fidelity_vs_gain, size_vs_gain, teacher_expertise
from kdanalysis.studies.paper import paper_hypotheses, paper_units
from kdanalysis.studies.temperature import temperature_ablation

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
    results = validate_results(results)
    steps = {
        "gains": lambda: gains(results),
        "paper_units": lambda: paper_units(results, models),
        "paper_hypotheses": lambda: paper_hypotheses(results, models),
        "size_vs_gain": lambda: size_vs_gain(results, models, temperature=temperature),
        "teacher_expertise": lambda: teacher_expertise(results, models, temperature=temperature),
        "fidelity_vs_gain": lambda: fidelity_vs_gain(results, models, temperature=temperature),
        "temperature_ablation": lambda: temperature_ablation(results, n_boot=n_boot, seed=seed),
    }
    tables = {}
    for name in STUDY_TABLES:
        start = time.perf_counter()
        tables[name] = steps[name]()
        logger.info("%s: %d rows in %.2f s", name, len(tables[name]), time.perf_counter() - start)
    return tables
