"""Input files a grid's cells read, checked when the grid is planned.

An evaluation cell reads the test-set file of each of its tasks, a training or cache cell
its domain's training file. When one is missing, every cell that reads it would fail, but
only when it starts (after the training it depends on). :func:`missing_inputs` finds these
files from the plan alone; :func:`input_failures` gives each cell that needs one the error
it would fail with, so that ``run-grid`` records those cells as failed at once (their
dependents blocked) and goes on with the others, and ``run-grid --dry-run`` lists the
files with where to get them.

Test-set files are looked up exactly as the evaluation does
(:func:`runners.evaluate.tasks.task_file`), so the message, with the task table's note on
where the file comes from (``data/tasks.yaml``), is the one the cell would fail with.
Files that cells of the grid produce (the toy data of ``prepare`` cells) are not inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from kdanalysis.errors import ConfigError
from kdanalysis.tasks import bundled_tasks
from runners.grid.plan import Cell, Plan

__all__ = ["MissingInput", "missing_inputs", "input_failures"]


@dataclass(frozen=True)
class MissingInput:
    """One input file that is not there, and the cells that need it.

    Attributes
    ----------
    what : str
        ``"test set of task 'hellaswag'"`` or ``"training file of domain 'math'"``.
    message : str
        The error the cells fail with, saying where to get the file.
    cells : tuple of str
        Ids of the cells that read it, in plan order.
    """

    what: str
    message: str
    cells: tuple[str, ...]


@cache
def _test_set_problem(task: str, data_dir: str | None) -> str | None:
    from runners.evaluate.tasks import task_file

    try:
        task_file(bundled_tasks()[task], data_dir)
    except ConfigError as exc:
        return str(exc)
    return None


def _train_problem(data: Mapping[str, Any], domain: str) -> str | None:
    path = data.get("train_path")
    if path is None or Path(path).is_file():
        return None
    return f"training file of domain {domain!r} not found: {path} (the domain's 'train' in the grid file)"


def _cell_inputs(cell: Cell) -> list[tuple[str, str]]:
    """``(what, message)`` of every missing input of ``cell``."""
    cfg = cell.config
    data = cfg.get("data")
    if not isinstance(data, Mapping) or "data_cell" in data:  # toy data: made by a prepare cell
        return []
    if cell.kind == "eval":
        found = []
        for task in data["tasks"]:
            problem = _test_set_problem(task, data.get("data_dir"))
            if problem is not None:
                found.append((f"test set of task {task!r}", problem))
        return found
    if cell.kind in ("train", "cache"):
        problem = _train_problem(data, cfg["domain"])
        return [] if problem is None else [(f"training file of domain {cfg['domain']!r}", problem)]
    return []


def missing_inputs(plan: Plan) -> list[MissingInput]:
    """The input files of ``plan``'s cells that do not exist (read from the disk now).

    Returns
    -------
    list of MissingInput
        One entry per missing file, in the order the plan first needs them.
    """
    _test_set_problem.cache_clear()  # a file added since the last call counts
    needed: dict[tuple[str, str], list[str]] = {}
    for cell in plan:
        for key in _cell_inputs(cell):
            needed.setdefault(key, []).append(cell.id)
    return [MissingInput(what, message, tuple(ids)) for (what, message), ids in needed.items()]


def input_failures(missing: list[MissingInput]) -> dict[str, str]:
    """Cell id → the error it fails with (its first missing input).

    Parameters
    ----------
    missing : list of MissingInput
        What :func:`missing_inputs` found.

    Returns
    -------
    dict of str to str
        Every cell that needs a missing file, with that file's message.
    """
    failures: dict[str, str] = {}
    for entry in missing:
        for cid in entry.cells:
            failures.setdefault(cid, entry.message)
    return failures
