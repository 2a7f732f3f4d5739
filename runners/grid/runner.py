"""Drive a grid: plan → (resume) → execute cells as their dependencies finish → collect.

:func:`run_grid` takes the run lock, saves the plan, discards partial work of
interrupted cells, then repeatedly submits every pending cell whose dependencies are
done to the executor and waits for cells to end. A failed cell is recorded by
:func:`~runners.grid.state.execute_cell`; cells that depend on it are *blocked*, all
others go on. Done cells are never recomputed. Cells still computed, or queued, by the
jobs of an earlier driver that died (its job records, :func:`~runners.grid.state.scan_states`)
are waited for, not submitted again; a cell whose job left the queue without its result
is submitted again. At the end the run folders are collected
into ``results.parquet`` and ``items.parquet`` (:func:`kdanalysis.collect.collect_runs`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from kdanalysis.collect import write_collected
from kdanalysis.errors import ConfigError
from kdanalysis.io import atomic_write_json, atomic_write_text, parquet_intact, read_json
from kdanalysis.results import MODEL_COLUMNS, validate_models, write_models
from kdanalysis.runfolder import ITEMS_FILE, RESULTS_FILE, STATUS_FILE
from runners.grid.executors import Executor, JobInfo, make_executor
from runners.grid.inputs import input_failures, missing_inputs
from runners.grid.plan import Cell, Plan
from runners.grid.spec import GridSpec
from runners.grid.state import (
    GRID_FILE,
    PLAN_FILE,
    CellState,
    CellStatus,
    GridLock,
    cells_dir,
    clean_stale,
    record_failure,
    recorded_job,
    scan_states,
    settle_jobs,
)

__all__ = [
    "GridRunResult",
    "ProgressCallback",
    "bundled_grids",
    "resolve_grid",
    "models_table",
    "plan_states",
    "run_grid",
]

logger = logging.getLogger(__name__)

#: Called after every change: ``(states by cell id, ids running now, scheduler jobs by cell id)``.
ProgressCallback = Callable[[dict[str, CellStatus], set[str], Mapping[str, JobInfo]], None]


@dataclass(frozen=True)
class GridRunResult:
    """Outcome of :func:`run_grid`.

    Attributes
    ----------
    counts : dict of str to int
        Cells per final state (``done``, ``failed``, ``blocked``, ``pending``).
    failed : dict of str to str
        Failed cell id → one-line error.
    computed : list of str
        Ids of the cells computed by this call (empty when everything was done before).
    results_path, items_path : Path or None
        The collected tables (None when nothing was collected).
    """

    counts: dict[str, int]
    failed: dict[str, str]
    computed: list[str] = field(default_factory=list)
    results_path: Path | None = None
    items_path: Path | None = None


def bundled_grids() -> dict[str, Path]:
    """The grids shipped with the package (``data/grids/*.yaml``), by name (``demo``, ``paper``)."""
    grids = resources.files("kdanalysis._bundled").joinpath("grids")
    if not grids.is_dir():
        return {}
    return {Path(f.name).stem: Path(str(f)) for f in grids.iterdir() if f.name.endswith(".yaml")}


def resolve_grid(name: str | Path) -> Path:
    """A grid file path, or the name of a bundled grid (``demo``, ``paper``).

    Raises
    ------
    ConfigError
        If ``name`` is neither an existing file nor a bundled grid.
    """
    path = Path(name)
    if path.is_file():
        return path
    bundled = bundled_grids()
    if str(name) in bundled:
        return bundled[str(name)]
    raise ConfigError(f"grid file not found: {name} (bundled grids: {', '.join(sorted(bundled)) or 'none'})")


def plan_states(plan: Plan, runs_dir: Path, *, retry_failed: bool = False) -> dict[str, CellStatus]:
    """State of every cell of ``plan`` in ``runs_dir``, with ``blocked`` derived from failures.

    With ``retry_failed`` failed cells count as pending (and their dependents are not blocked).
    A pending cell whose input file is missing (:func:`runners.grid.inputs.missing_inputs`)
    counts as failed with the error it would fail with; it is checked again on every call,
    so once the file is there the cell runs.
    """
    states = scan_states(runs_dir, list(plan.cells))
    if retry_failed:
        states = {
            cid: CellStatus(CellState.PENDING) if s.state is CellState.FAILED else s
            for cid, s in states.items()
        }
    for cid, error in input_failures(missing_inputs(plan)).items():
        if states[cid].state is CellState.PENDING:
            states[cid] = CellStatus(CellState.FAILED, error=error)
    failed = {cid for cid, s in states.items() if s.state is CellState.FAILED}
    for cid in plan.dependents(failed):
        if states[cid].state is CellState.PENDING:
            states[cid] = CellStatus(CellState.BLOCKED)
    return states


def _ended_state(status: CellStatus, cell: Cell, runs_dir: Path, reason: str | None) -> CellStatus:
    """State of a cell its executor reported ended; no result on disk = failed, recorded on disk.

    ``reason`` is the executor's account of the end (e.g. the scheduler's job state).
    """
    if status.state in (CellState.DONE, CellState.FAILED):
        return status
    error = reason or (
        f"cell ended without a result (worker crashed?); see {runs_dir}/logs/{cell.id}.txt "
        "or the executor's logs"
    )
    return record_failure(cell, runs_dir, error)


def _note_failures(plan: Plan, states: dict[str, CellStatus], fresh: Mapping[str, CellStatus]) -> None:
    """Log the cells of ``fresh`` (already in ``states``) that failed and block their pending dependents."""
    newly_failed = {cid for cid, s in fresh.items() if s.state is CellState.FAILED}
    for cid in newly_failed:
        logger.warning("cell %s failed: %s", cid, fresh[cid].error)
    for cid in plan.dependents(newly_failed):
        if states[cid].state is CellState.PENDING:
            states[cid] = CellStatus(CellState.BLOCKED)


def _rescan_foreign(plan: Plan, runs_dir: Path, states: dict[str, CellStatus], foreign: list[str]) -> None:
    """Read again the cells computed by others (earlier drivers' jobs or workers) into ``states``.

    A cell whose job left the queue without its result stays running until its record is
    dropped (:func:`~runners.grid.state.settle_jobs`, here), then it is pending at the next
    look and submitted again; the records of ended cells are dropped too.
    """
    fresh = {
        cid: status
        for cid, status in scan_states(runs_dir, foreign).items()
        if not (status.state is CellState.PENDING and recorded_job(runs_dir, cid))
    }
    states.update(fresh)
    settle_jobs(runs_dir, foreign)
    _note_failures(plan, states, fresh)


def _adopted_jobs(states: Mapping[str, CellStatus]) -> dict[str, JobInfo]:
    """The scheduler jobs of the running cells adopted from an earlier driver, by cell id."""
    return {
        cid: JobInfo(s.job_id, s.job_state)
        for cid, s in states.items()
        if s.state is CellState.RUNNING and s.job_id
    }


def _collection_is_current(runs_dir: Path, measured: list[str], *collected: Path) -> bool:
    """Whether the collected tables are whole and newer than the plan and every finished measuring cell."""
    if not all(map(parquet_intact, collected)):
        return False
    oldest = min(p.stat().st_mtime for p in collected)
    root = cells_dir(runs_dir)
    inputs = [runs_dir / PLAN_FILE, *(root / cid / STATUS_FILE for cid in measured)]
    return all(p.stat().st_mtime <= oldest for p in inputs)


def models_table(grid: GridSpec) -> pd.DataFrame:
    """The grid's models as a models table (:data:`kdanalysis.results.MODEL_COLUMNS`).

    Returns
    -------
    pandas.DataFrame
        Columns model, family, params_b, vocab_size (NA: not known without loading), role
        (``teacher``, ``student`` or ``both``).
    """
    rows = []
    for name, spec in grid.models.items():
        teacher, student = name in grid.teachers, name in grid.students
        if teacher or student:
            role = "both" if teacher and student else "teacher" if teacher else "student"
            rows.append(
                {
                    "model": name,
                    "family": spec.family,
                    "params_b": spec.params_b,
                    "vocab_size": pd.NA,
                    "role": role,
                }
            )
    return validate_models(pd.DataFrame(rows, columns=list(MODEL_COLUMNS)))


def _save_plan(plan: Plan, runs_dir: Path, grid_text: str | None) -> None:
    """Write plan.json (only when it changed: its age tells whether the collection is current)."""
    saved = {"study": plan.grid.study, "cells": [c.to_json() for c in plan]}
    path = runs_dir / PLAN_FILE
    try:
        current = read_json(path) if path.is_file() else None
    except (OSError, ValueError):
        logger.warning("%s is damaged; it is written again from the grid", path)
        current = None
    if current != json.loads(json.dumps(saved, default=str)):
        atomic_write_json(path, saved)
        write_models(models_table(plan.grid), runs_dir / "models.parquet")
    grid_file = runs_dir / GRID_FILE
    if grid_text is not None and not (
        grid_file.is_file() and grid_file.read_text(encoding="utf-8") == grid_text
    ):
        atomic_write_text(grid_file, grid_text)


def run_grid(
    plan: Plan,
    runs_dir: str | Path,
    *,
    executor: Executor | None = None,
    retry_failed: bool = False,
    progress: ProgressCallback | None = None,
    grid_text: str | None = None,
    collect: bool = True,
    poll_s: float = 5.0,
) -> GridRunResult:
    """Run (or resume) all cells of ``plan`` in ``runs_dir``.

    Parameters
    ----------
    plan : Plan
    runs_dir : path
        Created if needed; locked for the duration of the call.
    executor : Executor, optional
        Default: the grid's executor settings (:func:`make_executor`).
    retry_failed : bool
        Recompute cells that failed in an earlier call (default: keep them failed and
        their dependents blocked).
    progress : callable, optional
        :data:`ProgressCallback`, called after every change.
    grid_text : str, optional
        The grid file's text, saved as ``grid.yaml`` beside the plan.
    collect : bool
        Collect results and items at the end (when any cell produced results).
    poll_s : float
        Longest wait for an executor between progress updates.

    Returns
    -------
    GridRunResult

    Raises
    ------
    RunFailedError
        If another run-grid holds ``runs_dir``.
    """
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    computed: list[str] = []
    with GridLock(runs_dir):
        _save_plan(plan, runs_dir, grid_text)
        clean_stale(runs_dir)
        states = plan_states(plan, runs_dir, retry_failed=retry_failed)
        executor = executor or make_executor(plan.grid.executor, runs_dir)
        running: set[str] = set()
        waiting: set[str] = set()
        try:
            while True:
                ready = [
                    c
                    for c in plan
                    if states[c.id].state is CellState.PENDING
                    and c.id not in running
                    and all(states[d].state is CellState.DONE for d in c.deps)
                ]
                if ready and executor.capacity():
                    batch = ready[: executor.capacity()]
                    executor.submit(batch)
                    running |= {c.id for c in batch}
                if progress:
                    progress(states, running, {**_adopted_jobs(states), **executor.jobs()})
                # cells still computed or queued by a worker or job of an earlier, killed driver:
                # wait for them
                foreign = [cid for cid, s in states.items() if s.state is CellState.RUNNING]
                for cid in set(foreign) - waiting:
                    logger.warning("cell %s is %s", cid, states[cid].note)
                waiting.update(foreign)
                if not running:
                    if not foreign:
                        break
                    time.sleep(poll_s)
                else:
                    ended = executor.wait(poll_s)
                    running -= set(ended)
                    computed.extend(ended)
                    fresh = {
                        cid: _ended_state(status, plan.cells[cid], runs_dir, executor.ended_reason(cid))
                        for cid, status in (scan_states(runs_dir, ended) if ended else {}).items()
                    }
                    states.update(fresh)
                    _note_failures(plan, states, fresh)
                if foreign:
                    _rescan_foreign(plan, runs_dir, states, foreign)
        finally:
            executor.close()
        results_path = items_path = None
        measured = [
            cid
            for cid, s in states.items()
            if s.state is CellState.DONE and plan.cells[cid].kind in ("eval", "fidelity")
        ]
        if collect and measured:
            results_path, items_path = runs_dir / RESULTS_FILE, runs_dir / ITEMS_FILE
            if not _collection_is_current(runs_dir, measured, results_path, items_path):
                # only this grid's cells: cells of an earlier version of the grid stay out
                cells = [f"cells/{cid}" for cid in measured]
                results_path, items_path = write_collected(runs_dir, within=cells)
    counts: dict[str, int] = {}
    for status in states.values():
        counts[status.state.value] = counts.get(status.state.value, 0) + 1
    failed = {cid: s.error for cid, s in states.items() if s.state is CellState.FAILED}
    return GridRunResult(
        counts=counts, failed=failed, computed=computed, results_path=results_path, items_path=items_path
    )
