"""Named analyses built from :mod:`kdanalysis.stats`: the paper's H1-H5 exactly, and beyond.

``run_all(results)`` runs every study and returns a :class:`StudyTables` (one attribute
per tidy table); the report only presents it.
"""

from kdanalysis.studies.beyond import fidelity_vs_gain, kd_gain, kd_units, size_vs_gain, teacher_expertise
from kdanalysis.studies.claims import claims_audit
from kdanalysis.studies.collapsed import collapsed_runs
from kdanalysis.studies.paper import paper_hypotheses, paper_units
from kdanalysis.studies.primary import primary_tests
from kdanalysis.studies.run import STUDY_TABLES, StudyTables, run_all
from kdanalysis.studies.temperature import temperature_ablation

__all__ = [
    "STUDY_TABLES",
    "StudyTables",
    "claims_audit",
    "collapsed_runs",
    "fidelity_vs_gain",
    "kd_gain",
    "kd_units",
    "paper_hypotheses",
    "paper_units",
    "primary_tests",
    "run_all",
    "size_vs_gain",
    "teacher_expertise",
    "temperature_ablation",
]
