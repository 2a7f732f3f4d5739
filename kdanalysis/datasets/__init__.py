"""Bundled data sets: the paper's published results and models table, and their conversion."""

from kdanalysis.datasets.bundled import load_paper_models, load_paper_results
from kdanalysis.datasets.kd_generalization import build_paper_tables, write_paper_tables

__all__ = ["load_paper_results", "load_paper_models", "build_paper_tables", "write_paper_tables"]
