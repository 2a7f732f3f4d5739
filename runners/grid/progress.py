"""Terminal output of ``kdanalysis run-grid``: the live progress bar and the dry-run tables.

Under a scheduler the bar is followed by one line per stage with the jobs of its cells by
scheduler state (:func:`scheduler_lines`); ``--dry-run`` of a SLURM grid prints the sbatch
resources of each stage (:func:`sbatch_table`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from runners.grid.estimate import StageEstimate
from runners.grid.executors import JobInfo, sbatch_parameters
from runners.grid.plan import Plan
from runners.grid.spec import SlurmSpec
from runners.grid.state import CellState, CellStatus

__all__ = ["GridProgress", "estimate_table", "format_seconds", "sbatch_table", "scheduler_lines"]

_FINISHED = (CellState.DONE, CellState.FAILED, CellState.BLOCKED)
#: Scheduler states shown first, in this order (others follow alphabetically).
_STATE_ORDER = ("RUNNING", "PENDING", "REQUEUED")
#: Job ids listed per state and stage before the rest is counted (``+3``).
_MAX_IDS = 6


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


def scheduler_lines(plan: Plan, jobs: Mapping[str, JobInfo]) -> list[str]:
    """One line per stage with scheduler jobs: its cells per job state, with the job ids.

    E.g. ``kd: 2 running (551, 552) · 1 pending (553)``: counts are cells (cells packed into
    one job count once each), ids the distinct jobs; stages in plan order, states running,
    pending, requeued first. Empty without jobs (no scheduler).
    """
    by_stage: dict[str, dict[str, list[str]]] = {}
    for cid, job in jobs.items():
        if cid in plan.cells:
            by_stage.setdefault(plan.cells[cid].stage, {}).setdefault(job.state.upper(), []).append(
                job.job_id
            )
    lines = []
    for stage in plan.stage_counts():
        states = by_stage.get(stage)
        if not states:
            continue
        order = sorted(
            states, key=lambda s: (_STATE_ORDER.index(s) if s in _STATE_ORDER else len(_STATE_ORDER), s)
        )
        parts = [f"{len(states[s])} {s.lower()} ({_id_list(states[s])})" for s in order]
        lines.append(f"{stage}: " + " · ".join(parts))
    return lines


def _id_list(ids: Iterable[str]) -> str:
    """Distinct job ids in numeric order, the first :data:`_MAX_IDS` and ``+N`` for the rest."""
    distinct = sorted(set(ids), key=lambda j: tuple(int(p) if p.isdigit() else 0 for p in j.split("_")))
    shown = ", ".join(distinct[:_MAX_IDS])
    return shown + (f", +{len(distinct) - _MAX_IDS}" if len(distinct) > _MAX_IDS else "")


class _JobsProgress(Progress):
    """A rich Progress that renders its scheduler lines under the bar."""

    def __init__(self, *columns: ProgressColumn | str, **kwargs: Any) -> None:
        self.lines: list[str] = []  # before the base class renders for the first time
        super().__init__(*columns, **kwargs)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for line in self.lines:
            yield Text(line)


class GridProgress:
    """Live bar over the cells (done / running / failed / blocked, elapsed, ETA).

    Under a scheduler, one line per stage follows the bar with its cells' jobs by state
    (:func:`scheduler_lines`). Use as a context manager and pass the instance as
    ``progress=`` to :func:`runners.grid.runner.run_grid`.
    """

    def __init__(self, plan: Plan, console: Console | None = None) -> None:
        self.plan = plan
        self._progress = _JobsProgress(
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
        # cells computed by jobs of an earlier driver (adopted) are running too
        running = running | {cid for cid, s in states.items() if s.state is CellState.RUNNING}
        now = ", ".join(self.plan.cells[c].stage for c in sorted(running)[:2]) if running else ""
        detail = (
            f"done {counts[CellState.DONE]} · running {len(running)}"
            f" · failed {counts[CellState.FAILED]}"
            f" · blocked {counts[CellState.BLOCKED]}" + (f" · {now}" if now else "")
        )
        self._progress.lines = scheduler_lines(self.plan, jobs or {})
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


def sbatch_table(plan: Plan, slurm: SlurmSpec) -> Table:
    """Rich table of the submitit/sbatch parameters each stage's jobs request.

    One row per stage of ``plan`` (with its cell count), one column per parameter of
    :func:`runners.grid.executors.sbatch_parameters` (``stage_overrides`` applied; ``-``: not set).
    """
    params = {stage: sbatch_parameters(slurm, stage) for stage in plan.stage_counts()}
    names = list(dict.fromkeys(name for values in params.values() for name in values))
    table = Table(title=f"sbatch resources per stage (cluster {slurm.cluster})")
    table.add_column("stage")
    table.add_column("cells", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for stage, count in plan.stage_counts().items():
        table.add_row(stage, str(count), *(str(params[stage].get(name, "-")) for name in names))
    return table
