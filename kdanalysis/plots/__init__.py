"""Seaborn figures of the study, drawn from tidy tables, with one colour per method everywhere.

Every function returns a :class:`matplotlib.figure.Figure` without touching pyplot or the
global ``rcParams``; :func:`save_figure` writes PNG and SVG.
"""

from kdanalysis.plots.figures import (
    accuracy_by_task,
    correlation_forest,
    gain_heatmap,
    gain_scatter,
    teacher_expertise,
    temperature_ablation,
)
from kdanalysis.plots.style import METHOD_COLORS, METHOD_LABELS, figure_style, method_palette, save_figure

__all__ = [
    "METHOD_COLORS",
    "METHOD_LABELS",
    "accuracy_by_task",
    "correlation_forest",
    "figure_style",
    "gain_heatmap",
    "gain_scatter",
    "method_palette",
    "save_figure",
    "teacher_expertise",
    "temperature_ablation",
]
