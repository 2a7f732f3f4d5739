"""The run-folder contract: file names, run states and the ``status.json`` of a run folder.

A *run folder* is what one distillation run (:func:`runners.distill.run.run_distill`),
one evaluation run (:func:`runners.evaluate.run.run_eval`) or one grid cell
(:func:`runners.grid.state.execute_cell`) writes. All three write ``status.json``
through :func:`write_status` and read it through :func:`read_status`;
:mod:`kdanalysis.collect` reads it to find finished runs, and
:func:`runners.evaluate.rescore.rescore_run` to refuse a run that is not done.

Files at the root of a run folder (a writer writes the ones that apply to it):

=====================  ==================================================================
``status.json``        :data:`STATUS_FILE`: ``state`` (a :class:`RunState` value),
                       ``started_utc``, ``finished_utc`` (:func:`now_utc` strings or
                       null), ``error`` (one line or null), plus writer-specific fields
``config.yaml``        :data:`CONFIG_FILE`: the resolved config of the run
``environment.json``   :data:`ENV_FILE`: ``runners.env.environment_snapshot()``
``log.txt``            :data:`LOG_FILE`: the log of a grid cell
``cell.json``          :data:`CELL_FILE`: a grid cell's definition (``Cell.to_json``)
``results.parquet``    :data:`RESULTS_FILE`: rows of the results contract
``items.parquet``      :data:`ITEMS_FILE`: the per-item table
``run_meta.json``      :data:`RUN_META_FILE`: an evaluation run's identity (re-scoring)
=====================  ==================================================================

Reading ``status.json``
-----------------------
Every reader goes through :func:`read_status`, with one behaviour for all callers:

- no ``status.json``: ``None`` (no run has started in that folder);
- a readable one: a dict whose ``state`` is a :class:`RunState`; the dialects of
  earlier versions are translated (``{"status": "done"}`` of distillation runs,
  ``{"state": "completed"}`` of evaluation runs);
- anything else (not JSON, not an object, no or an unknown state):
  :class:`~kdanalysis.errors.RunFolderError` naming the file. Writes are atomic, so
  such a file was damaged or edited by hand; it is never silently taken for an
  unfinished run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from kdanalysis.errors import RunFolderError
from kdanalysis.io import atomic_write_json

__all__ = [
    "STATUS_FILE",
    "CONFIG_FILE",
    "ENV_FILE",
    "LOG_FILE",
    "CELL_FILE",
    "RESULTS_FILE",
    "ITEMS_FILE",
    "RUN_META_FILE",
    "RunState",
    "read_status",
    "write_status",
    "is_done",
    "now_utc",
]

STATUS_FILE = "status.json"
CONFIG_FILE = "config.yaml"
ENV_FILE = "environment.json"
LOG_FILE = "log.txt"
CELL_FILE = "cell.json"
RESULTS_FILE = "results.parquet"
ITEMS_FILE = "items.parquet"
RUN_META_FILE = "run_meta.json"


class RunState(StrEnum):
    """State of a run folder, as ``status.json`` records it."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


#: Values of earlier versions: evaluation runs wrote ``"completed"`` for done.
_OLD_STATES: dict[str, RunState] = {"completed": RunState.DONE}
_ALLOWED = ", ".join(s.value for s in RunState)


def now_utc() -> str:
    """The current UTC time as an ISO 8601 string to the second (``2026-05-01T12:00:00+00:00``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_status(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``status.json`` of a run folder, in the current dialect.

    Parameters
    ----------
    run_dir : path
        The run folder.

    Returns
    -------
    dict or None
        None when the folder has no ``status.json``. Otherwise the file's fields, with
        ``state`` a :class:`RunState` (a distillation run's old ``status`` key is renamed
        ``state``, an evaluation run's old ``"completed"`` becomes ``done``).

    Raises
    ------
    RunFolderError
        If ``status.json`` is not a JSON object with a known state (the message names
        the file and the allowed states).
    """
    path = Path(run_dir) / STATUS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path}: cannot be read ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if "state" not in data and "status" in data:
        data["state"] = data.pop("status")
    data["state"] = _state(data.get("state"), path)
    return data


def _as_state(value: Any) -> RunState | None:
    """``value`` as a RunState, or None if it is not one."""
    try:
        return RunState(value)
    except ValueError:
        return None


def _state(value: Any, path: Path) -> RunState:
    state = _OLD_STATES.get(value) if isinstance(value, str) else None
    state = state or _as_state(value)
    if state is None:
        raise RunFolderError(f"{path}: unknown run state {value!r}; allowed: {_ALLOWED}")
    return state


def write_status(run_dir: str | os.PathLike[str], status: Mapping[str, Any]) -> Path:
    """Write ``status`` as the run folder's ``status.json`` atomically; return the path.

    Parameters
    ----------
    run_dir : path
        The run folder (created if needed).
    status : mapping
        The fields to record; ``state`` must be a :class:`RunState` or its value.

    Raises
    ------
    ValueError
        If ``status`` has no valid ``state`` (a programming error: the message lists the
        allowed states).
    """
    state = _as_state(status.get("state"))
    if state is None:
        raise ValueError(f"status.state must be one of {_ALLOWED}; got {status.get('state')!r}")
    return atomic_write_json(Path(run_dir) / STATUS_FILE, {**status, "state": state.value})


def is_done(run_dir: str | os.PathLike[str]) -> bool:
    """Whether the run folder's ``status.json`` says ``done`` (False when there is none).

    Raises
    ------
    RunFolderError
        As :func:`read_status`.
    """
    status = read_status(run_dir)
    return status is not None and status["state"] is RunState.DONE
