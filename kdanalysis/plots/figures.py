"""The study's figures, drawn with seaborn from tidy tables.

Each function takes a tidy DataFrame with the columns listed in its docstring and returns
a :class:`matplotlib.figure.Figure` (no pyplot, no global state); save it with
:func:`kdanalysis.plots.style.save_figure`. Methods keep their colour across figures
(:data:`kdanalysis.plots.style.METHOD_COLORS`). Gains are KD minus SFT, in percentage
points (pp); accuracies, agreement and BLEU are in percent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from kdanalysis.errors import SchemaError
from kdanalysis.plots.style import (
    DOMAIN_STYLES,
    TEACHER_KIND_COLORS,
    TEACHER_KIND_LABELS,
    figure_style,
    method_label,
    method_order,
    method_palette,
    new_figure,
    task_label,
    task_order,
)

__all__ = [
    "accuracy_by_task",
    "gain_scatter",
    "teacher_expertise",
    "temperature_ablation",
    "gain_heatmap",
    "correlation_forest",
]

_GAIN_LABEL = "Gain over SFT (pp)"
_N_BOOT = 1000  # bootstrap resamples for the regression bands (seeded)


def _require(data: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise SchemaError(
            f"{what}: missing column(s) {', '.join(missing)}; got {', '.join(map(str, data.columns))}"
        )
    if data.empty:
        raise SchemaError(f"{what}: no rows to plot")


def _method_legend(fig: Figure, methods: Sequence[str], **kwargs: object) -> None:
    palette = method_palette(methods)
    handles = [Patch(color=palette[m], label=method_label(m)) for m in method_order(methods)]
    fig.legend(
        handles=handles, loc="outside upper center", ncols=min(len(handles), 6), title="Method", **kwargs
    )


def _grid(n_panels: int, ncols: int, width: float, panel_height: float) -> tuple[Figure, list[Axes]]:
    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig = new_figure(width, panel_height * nrows + 0.9)
    axes = list(np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def accuracy_by_task(data: pd.DataFrame, *, ncols: int = 2, title: str | None = None) -> Figure:
    """Per-task accuracy of each method, one panel per student.

    Parameters
    ----------
    data : DataFrame
        Columns ``student``, ``task``, ``method``, ``value`` (accuracy, %); several rows
        per (student, task, method), e.g. one per teacher, are summarised as a bar at
        their mean with a line spanning their minimum to maximum (drawn with plain
        matplotlib bars: a seaborn barplot of this size costs seconds more).
    ncols : int
        Panels per row.
    title : str, optional
        Figure title.
    """
    _require(data, ["student", "task", "method", "value"], "accuracy_by_task")
    with figure_style():
        students = list(dict.fromkeys(data["student"]))
        fig, axes = _grid(len(students), ncols, 11.0, 2.7)
        methods = method_order(data["method"].unique())
        tasks = task_order(data["task"].unique())
        palette = method_palette(methods)
        width = 0.8 / len(methods)
        x = np.arange(len(tasks))
        summary = data.groupby(["student", "task", "method"], sort=False)["value"].agg(["mean", "min", "max"])
        for ax, student in zip(axes, students, strict=True):
            for j, method in enumerate(methods):
                stats = summary.reindex(pd.MultiIndex.from_product([[student], tasks, [method]]))
                offset = x - 0.4 + width * (j + 0.5)
                ax.bar(offset, stats["mean"].to_numpy(), width, color=palette[method], linewidth=0)
                spread = stats["max"].to_numpy() > stats["min"].to_numpy()
                ax.vlines(
                    offset[spread],
                    stats["min"].to_numpy()[spread],
                    stats["max"].to_numpy()[spread],
                    colors=".26",
                    linewidth=1.0,
                )
            ax.set_xlim(-0.5, len(tasks) - 0.5)
            ax.grid(False, axis="x")
            ax.set_title(student)
            ax.set_xlabel("")
            ax.set_ylabel("Accuracy (%)")
            ax.set_ylim(0, 100)
            ax.set_xticks(range(len(tasks)), [task_label(t) for t in tasks], rotation=30, ha="right")
        _method_legend(fig, methods)
        if title:
            fig.suptitle(title)
    return fig


def gain_scatter(
    data: pd.DataFrame,
    x: str,
    *,
    xlabel: str,
    y: str = "gain",
    ylabel: str = _GAIN_LABEL,
    col: str = "domain",
    logx: bool = False,
    jitter: float = 0.0,
    seed: int = 0,
) -> Figure:
    """Gain against one covariate, one panel per ``col`` value, with a linear fit and its 95 % CI.

    Parameters
    ----------
    data : DataFrame
        Columns ``x``, ``y``, ``col`` and ``method`` (points are coloured by method).
    x, xlabel : str
        Covariate column and its axis label (with its unit).
    y, ylabel : str
        Response column (default the gain in pp) and its label.
    col : str
        Column whose values get one panel each (default ``domain``).
    logx : bool
        Fit ``y ~ log(x)`` and draw x on a log axis (for model sizes).
    jitter : float
        Horizontal jitter of the points only (fraction of x on a log axis, else x units);
        the fit uses the exact values.
    seed : int
        Seed of the jitter and of the bootstrap band.
    """
    _require(data, [x, y, col, "method"], "gain_scatter")
    data = data.dropna(subset=[x, y])
    rng = np.random.default_rng(seed)
    with figure_style():
        panels = list(dict.fromkeys(data[col]))
        fig, axes = _grid(len(panels), 3, 11.0 if len(panels) > 1 else 6.0, 3.4)
        methods = method_order(data["method"].unique())
        palette = method_palette(methods)
        for ax, panel in zip(axes, panels, strict=True):
            sub = data[data[col] == panel]
            shake = rng.uniform(-jitter, jitter, len(sub))
            shown = sub.assign(_x=sub[x] * np.exp(shake) if logx else sub[x] + shake)
            sns.scatterplot(
                shown,
                x="_x",
                y=y,
                hue="method",
                hue_order=methods,
                palette=palette,
                ax=ax,
                legend=False,
                alpha=0.8,
                edgecolor="white",
                linewidth=0.4,
            )
            if sub[x].nunique() > 1 and len(sub) > 2:
                sns.regplot(
                    sub,
                    x=x,
                    y=y,
                    scatter=False,
                    logx=logx,
                    ci=95,
                    n_boot=_N_BOOT,
                    seed=seed,
                    color="#444444",
                    line_kws={"linewidth": 1.2},
                    ax=ax,
                    truncate=False,
                )
            if y == "gain":
                ax.axhline(0, color="#666666", linewidth=0.8, linestyle=":")
            if logx:
                ax.set_xscale("log")
                ticks = sorted(sub[x].unique())
                ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
                ax.minorticks_off()
            ax.set_title(f"{panel} (n = {len(sub)})")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
        handles: list[Artist] = [Patch(color=palette[m], label=method_label(m)) for m in methods]
        handles.append(Line2D([], [], color="#444444", label="linear fit, 95 % CI"))
        fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 6))
    return fig


def teacher_expertise(data: pd.DataFrame, *, y: str = "gain", ylabel: str = _GAIN_LABEL) -> Figure:
    """Paired comparison of the task-aware and the base (un-tuned) teacher.

    Parameters
    ----------
    data : DataFrame
        Columns ``domain``, ``teacher_kind`` (``task_aware``/``base``), ``pair_id``
        (identifies the matched pair of rows, e.g. teacher, student, method, temperature
        and task) and ``y``. A line joins the two rows of each pair; the black marker is
        the mean with its 95 % bootstrap CI.
    y, ylabel : str
        Compared column and its axis label.
    """
    _require(data, ["domain", "teacher_kind", "pair_id", y], "teacher_expertise")
    kinds = [k for k in ("task_aware", "base") if k in set(data["teacher_kind"])]
    with figure_style():
        panels = list(dict.fromkeys(data["domain"]))
        fig, axes = _grid(len(panels), 3, 4.0 * len(panels) + 1.0, 3.6)
        for ax, domain in zip(axes, panels, strict=True):
            sub = data[data["domain"] == domain]
            wide = sub.pivot_table(index="pair_id", columns="teacher_kind", values=y, aggfunc="first")
            wide = wide.reindex(columns=kinds).dropna()
            for values in wide.to_numpy():
                ax.plot(range(len(kinds)), values, color="#BBBBBB", linewidth=0.7, zorder=1)
            for i, kind in enumerate(kinds):
                ax.scatter(np.full(len(wide), i), wide[kind], color=TEACHER_KIND_COLORS[kind], s=14, zorder=2)
            sns.pointplot(
                wide.melt(var_name="teacher_kind", value_name=y),
                x="teacher_kind",
                y=y,
                order=kinds,
                color="black",
                errorbar=("ci", 95),
                n_boot=_N_BOOT,
                seed=0,
                linestyles="none",
                markers="D",
                ax=ax,
            )
            if y == "gain":
                ax.axhline(0, color="#666666", linewidth=0.8, linestyle=":")
            ax.set_xticks(range(len(kinds)), [TEACHER_KIND_LABELS[k] for k in kinds])
            ax.set_xlabel("")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{domain} ({len(wide)} matched pairs)")
    return fig


def temperature_ablation(data: pd.DataFrame, *, y: str = "gain", ylabel: str = _GAIN_LABEL) -> Figure:
    """Gain against KD temperature: each unit faint, the method mean with its 95 % CI bold.

    Parameters
    ----------
    data : DataFrame
        Columns ``domain``, ``method``, ``unit`` (one line per unit, e.g. "teacher →
        student, method"), ``temperature`` and ``y``.
    """
    _require(data, ["domain", "method", "unit", "temperature", y], "temperature_ablation")
    with figure_style():
        panels = list(dict.fromkeys(data["domain"]))
        fig, axes = _grid(len(panels), 3, 4.5 * len(panels) + 1.0, 3.4)
        methods = method_order(data["method"].unique())
        palette = method_palette(methods)
        for ax, domain in zip(axes, panels, strict=True):
            lines = {"x": "temperature", "y": y, "hue": "method", "hue_order": methods, "palette": palette}
            sub = data[data["domain"] == domain]
            sns.lineplot(
                sub, **lines, units="unit", estimator=None, alpha=0.25, linewidth=0.8, ax=ax, legend=False
            )
            sns.lineplot(
                sub,
                **lines,
                errorbar=("ci", 95),
                n_boot=_N_BOOT,
                seed=0,
                marker="o",
                linewidth=2.2,
                ax=ax,
                legend=False,
            )
            if y == "gain":
                ax.axhline(0, color="#666666", linewidth=0.8, linestyle=":")
            temps = sorted(sub["temperature"].unique())
            ax.set_xticks(temps, [f"{t:g}" for t in temps])
            ax.set_xlabel("KD temperature τ")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{domain} ({sub['unit'].nunique()} units)")
        _method_legend(fig, methods)
    return fig


def gain_heatmap(data: pd.DataFrame, *, value: str = "gain", label: str = _GAIN_LABEL) -> Figure:
    """Heatmap of ``value`` by teacher→student pair (rows) and task (columns), one panel per domain.

    Parameters
    ----------
    data : DataFrame
        Columns ``domain``, ``pair`` (row label), ``task`` and ``value``, one row per cell
        (aggregate first, e.g. the mean over KD methods). Colours are symmetric around 0.
    """
    _require(data, ["domain", "pair", "task", value], "gain_heatmap")
    panels = list(dict.fromkeys(data["domain"]))
    widths = [len(data.loc[data["domain"] == d, "task"].unique()) for d in panels]
    limit = float(np.nanmax(np.abs(data[value].to_numpy(dtype=float)))) or 1.0
    n_rows = data["pair"].nunique()
    with figure_style():
        fig = new_figure(max(6.0, 0.75 * sum(widths) + 3.0), 0.34 * n_rows + 2.0)
        axes = fig.subplots(1, len(panels), width_ratios=widths, squeeze=False)[0]
        grids = []
        for domain in panels:
            grid = data[data["domain"] == domain].pivot_table(
                index="pair", columns="task", values=value, aggfunc="first", sort=False
            )
            grids.append(grid.reindex(columns=task_order(grid.columns)))
        for i, (ax, domain, grid) in enumerate(zip(axes, panels, grids, strict=True)):
            last = i == len(panels) - 1
            sns.heatmap(
                grid,
                cmap="RdBu",
                center=0,
                vmin=-limit,
                vmax=limit,
                annot=True,
                fmt=".1f",
                annot_kws={"fontsize": 7},
                linewidths=0.4,
                linecolor="white",
                ax=ax,
                cbar=last,
                cbar_kws={"label": label} if last else None,
            )
            ax.set_xticks(
                np.arange(grid.shape[1]) + 0.5, [task_label(t) for t in grid.columns], rotation=35, ha="right"
            )
            ax.set_xlabel("")
            ax.set_ylabel("teacher → student" if i == 0 else "")
            if i > 0 and grid.index.equals(grids[0].index):
                ax.set_yticks([])
            ax.set_title(domain)
    return fig


def correlation_forest(data: pd.DataFrame, *, xlabel: str = "Spearman ρ (95 % CI)") -> Figure:
    """Forest plot of per-task correlations with their confidence intervals.

    Parameters
    ----------
    data : DataFrame
        Columns ``predictor`` (panel title), ``domain``, ``task``, ``statistic``,
        ``ci_low``, ``ci_high``; rows with a NaN statistic are left out.
    """
    _require(data, ["predictor", "domain", "task", "statistic", "ci_low", "ci_high"], "correlation_forest")
    data = data.dropna(subset=["statistic"])
    predictors = list(dict.fromkeys(data["predictor"]))
    domains = list(dict.fromkeys(data["domain"]))
    rows = [(d, t) for d in domains for t in task_order(data.loc[data["domain"] == d, "task"].unique())]
    ypos = {row: i for i, row in enumerate(rows)}
    with figure_style():
        fig, axes = _grid(
            len(predictors), len(predictors), min(2.6 * len(predictors) + 1.6, 11.0), 0.26 * len(rows) + 1.2
        )
        for k, (ax, predictor) in enumerate(zip(axes, predictors, strict=True)):
            sub = data[data["predictor"] == predictor]
            for domain in domains:
                part = sub[sub["domain"] == domain]
                if part.empty:
                    continue
                colour, marker = DOMAIN_STYLES.get(domain, ("#000000", "o"))
                pos = [ypos[(domain, t)] for t in part["task"]]
                err = np.vstack([part["statistic"] - part["ci_low"], part["ci_high"] - part["statistic"]])
                ax.errorbar(
                    part["statistic"],
                    pos,
                    xerr=np.clip(err.astype(float), 0, None),
                    fmt=marker,
                    color=colour,
                    markersize=4,
                    elinewidth=1,
                    capsize=2,
                    label=domain,
                )
            ax.axvline(0, color="#666666", linewidth=0.8, linestyle=":")
            ax.set_xlim(-1.05, 1.05)
            ax.set_ylim(len(rows) - 0.5, -0.5)
            ax.set_yticks(range(len(rows)), [task_label(t) for _, t in rows] if k == 0 else [])
            ax.set_title(predictor, fontsize=9)
            ax.set_xlabel(xlabel)
        handles = [
            Line2D(
                [],
                [],
                color=DOMAIN_STYLES.get(d, ("#000000", "o"))[0],
                marker=DOMAIN_STYLES.get(d, ("#000000", "o"))[1],
                linestyle="none",
                label=d,
            )
            for d in domains
        ]
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), title="Domain")
    return fig
