"""Terminal output of ``kdanalysis run-grid``: the live progress bar and the dry-run table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from runners.grid.estimate import StageEstimate
from runners.grid.executors import JobInfo
from runners.grid.plan import Plan
from runners.grid.state import CellState, CellStatus

__all__ = ["GridProgress", "estimate_table", "format_seconds"]

_FINISHED = (CellState.DONE, CellState.FAILED, CellState.BLOCKED)


def format_seconds(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class GridProgress:
    """Live bar over the cells (done / running / failed / blocked, elapsed, ETA).

    Use as a context manager and pass the instance as ``progress=`` to
    :func:`runners.grid.runner.run_grid`.
    """

    def __init__(self, plan: Plan, console: Console | None = None) -> None:
        self.plan = plan
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task("cells", total=len(plan), detail="")
        self._start_done: int | None = None

    def __enter__(self) -> GridProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def __call__(
        self, states: dict[str, CellStatus], running: set[str], jobs: Mapping[str, JobInfo] | None = None
    ) -> None:
        counts = Counter(s.state for s in states.values())
        finished = sum(counts[s] for s in _FINISHED)
        if self._start_done is None:  # cells done before this call do not inform the ETA
            self._start_done = finished
            self._progress.reset(self._task, total=len(self.plan) - finished, completed=0)
        now = ", ".join(self.plan.cells[c].stage for c in sorted(running)[:2]) if running else ""
        detail = (
            f"done {counts[CellState.DONE]} · running {len(running)}"
            f" · failed {counts[CellState.FAILED]}"
            f" · blocked {counts[CellState.BLOCKED]}" + (f" · {now}" if now else "")
        )
        self._progress.update(self._task, completed=finished - self._start_done, detail=detail)


def estimate_table(estimates: Sequence[StageEstimate]) -> Table:
    """Rich table of :func:`runners.grid.estimate.estimate_plan` with a total row."""
    table = Table()
    for name in (
        "stage",
        "cells",
        "done",
        "failed",
        "blocked",
        "pending",
        "train steps",
        "train tokens",
        "eval items",
        "s/cell",
        "remaining",
    ):
        table.add_column(name, justify="left" if name == "stage" else "right")

    def num(value: int | None) -> str:
        return "?" if value is None else f"{value:,}"

    for e in estimates:
        table.add_row(
            e.stage,
            str(e.cells),
            str(e.done),
            str(e.failed),
            str(e.blocked),
            str(e.pending),
            num(e.train_steps),
            num(e.train_tokens),
            num(e.eval_items),
            "-" if e.seconds_per_cell is None else f"{e.seconds_per_cell:.1f}",
            "-" if e.pending == 0 else format_seconds(e.remaining_s),
        )

    def total(values: list[int | None]) -> int | None:
        return None if any(v is None for v in values) else sum(v for v in values if v is not None)

    unknown_time = any(e.pending and e.remaining_s is None for e in estimates)
    remaining = sum(e.remaining_s or 0.0 for e in estimates)
    table.add_row(
        "total",
        *(
            str(sum(getattr(e, f) for e in estimates))
            for f in ("cells", "done", "failed", "blocked", "pending")
        ),
        num(total([e.train_steps for e in estimates])),
        num(total([e.train_tokens for e in estimates])),
        num(total([e.eval_items for e in estimates])),
        "",
        format_seconds(remaining) + (" + ?" if unknown_time and remaining else "")
        if not (unknown_time and not remaining)
        else "?",
        style="bold",
    )
    return table
