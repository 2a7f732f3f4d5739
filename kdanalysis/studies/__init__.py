"""Named analyses built from :mod:`kdanalysis.stats`: the paper's H1-H5 exactly, and beyond."""

from kdanalysis.studies.beyond import fidelity_vs_gain, kd_units, size_vs_gain, teacher_expertise
from kdanalysis.studies.paper import paper_hypotheses, paper_units

__all__ = [
    "paper_hypotheses",
    "paper_units",
    "kd_units",
    "size_vs_gain",
    "teacher_expertise",
    "fidelity_vs_gain",
]
