"""Named analyses built from :mod:`kdanalysis.stats`: the paper's H1-H5 exactly, and beyond.

``run_all(results)`` runs every study and returns a dict of tidy tables.
"""

from kdanalysis.studies.beyond import fidelity_vs_gain, kd_units, size_vs_gain, teacher_expertise
from kdanalysis.studies.paper import paper_hypotheses, paper_units
from kdanalysis.studies.run import STUDY_TABLES, run_all
from kdanalysis.studies.temperature import temperature_ablation

__all__ = [
    "STUDY_TABLES",
    "fidelity_vs_gain",
    "kd_units",
    "paper_hypotheses",
    "paper_units",
    "run_all",
    "size_vs_gain",
    "teacher_expertise",
    "temperature_ablation",
]
