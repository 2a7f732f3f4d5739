"""Named analyses built from :mod:`kdanalysis.stats`: the paper's H1-H5 exactly, and beyond."""

from kdanalysis.studies.paper import paper_hypotheses, paper_units

__all__ = ["paper_hypotheses", "paper_units"]
