"""Worker jobs: one scheduler job computes several cells, one after another, in one process.

Starting a job per cell costs a scheduler round trip, a fresh Python with torch and
transformers imported, and unpickling the job, for every cell, even a trivial one. A
*worker* is one scheduler job (submitted by :class:`runners.grid.executors.SubmititExecutor`)
that runs :class:`Worker`: it computes the cells handed to it through its folder until it
has been idle for ``idle_s`` seconds, its executor closes it, or it has used half its time
limit (so that a cell it takes is not cut by the limit). Its cells use the job's CPUs
(``SLURM_CPUS_PER_TASK``) as torch threads unless the grid fixes the number.

Layout of a worker's folder ``RUNS_DIR/workers/<worker id>/``::

    inbox/<cell id>.json     cells assigned to the worker (the cell's JSON), not yet taken
    inbox.closed/            the inbox, renamed when the worker leaves or its executor closes it
    running/<cell id>.json   the cell the worker is computing (taken from the inbox)
    done/<cell id>.json      the cells it computed: the cell's final state, or why it could not run
    started.json             written when the job starts (job id, host, pid)
    left.json                written when it leaves (the next executor removes the folder)

Every hand-over is one ``rename``, so of two parties exactly one wins:

* the executor *assigns* a cell by writing it beside the inbox and renaming it into
  ``inbox/``; once the worker has renamed its inbox away the rename fails (no such folder),
  and the executor gives the cell to another worker;
* the worker *takes* a cell by renaming it from the inbox to ``running/``; the executor
  *takes back* a cell that no worker has taken by removing it from the inbox (a cell given
  to a job still queued moves to a worker that is already up);
* a worker that *leaves* first renames its inbox to ``inbox.closed`` and then computes what
  reached the inbox before that rename, so no assigned cell is lost.

Guarantees: a cell is computed by one worker at a time, and each attempt publishes with
:func:`runners.grid.state.execute_cell` (temporary folder, atomic rename, a done cell
never replaced), so results exist exactly once. A worker requeued by its scheduler
(preemption, ``scontrol requeue``, the time-limit checkpoint of submitit) starts again
with the cell left in ``running/``: a training cell resumes from its last checkpoint,
other cells are computed again (a node failure is such a requeue under SLURM's default
``JobRequeue=1``). A worker ended for good (``scancel``, a failure not requeued) leaves its
taken cell in ``running/``: its executor records that cell failed with the scheduler's
reason and gives the cells it had not taken to another worker.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from kdanalysis.io import atomic_write_json, read_json
from kdanalysis.runfolder import now_utc
from runners.env import THREADS_ENV
from runners.grid.plan import Cell
from runners.grid.state import StageFunction, execute_cell

__all__ = [
    "POLL_S",
    "WorkerFolder",
    "Worker",
    "workers_dir",
    "remove_left",
]

logger = logging.getLogger(__name__)

#: Seconds between two looks of a worker at its inbox (and of an executor at its workers).
POLL_S = 0.2
_INBOX, _CLOSED, _RUNNING, _DONE = "inbox", "inbox.closed", "running", "done"
_STARTED, _LEFT = "started.json", "left.json"


def workers_dir(runs_dir: str | os.PathLike[str]) -> Path:
    """``RUNS_DIR/workers``: one folder per worker job."""
    return Path(runs_dir) / "workers"


class WorkerFolder:
    """The folder through which an executor and one worker hand cells over (module docstring).

    Parameters
    ----------
    runs_dir : path
    wid : str
        The worker's id (its folder's name).
    """

    def __init__(self, runs_dir: str | os.PathLike[str], wid: str) -> None:
        self.wid = wid
        self.path = workers_dir(runs_dir) / wid

    @classmethod
    def create(cls, runs_dir: str | os.PathLike[str]) -> WorkerFolder:
        """A new worker's folder, with an empty open inbox."""
        folder = cls(runs_dir, uuid.uuid4().hex[:12])
        for sub in (_INBOX, _RUNNING, _DONE):
            (folder.path / sub).mkdir(parents=True)
        return folder

    def _file(self, sub: str, cid: str) -> Path:
        return self.path / sub / f"{cid}.json"

    # the executor's side

    def assign(self, cell: Cell) -> bool:
        """Put ``cell`` into the inbox; False when the worker has left (its inbox is closed)."""
        tmp = self.path / f".assign-{cell.id}-{uuid.uuid4().hex[:6]}"
        tmp.write_text(json.dumps(cell.to_json(), default=str), encoding="utf-8")
        try:
            os.rename(tmp, self._file(_INBOX, cell.id))
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            return False
        return True

    def take_back(self, cid: str) -> bool:
        """Remove cell ``cid`` from the open inbox; False when the worker has taken it (or has left)."""
        try:
            self._file(_INBOX, cid).unlink()
        except FileNotFoundError:
            return False
        return True

    def take_back_any(self, cid: str) -> bool:
        """Remove ``cid`` from the inbox, open or closed, of a worker known to be dead; False: it took it."""
        try:
            self._file(_CLOSED, cid).unlink()
        except FileNotFoundError:
            return self.take_back(cid)
        return True

    def started(self) -> bool:
        """Whether the worker's job has started (it stays so when the job is requeued)."""
        return (self.path / _STARTED).is_file()

    def taken(self, cid: str) -> bool:
        """Whether the worker took ``cid`` (it computes it, or was killed while computing it)."""
        return self._file(_RUNNING, cid).is_file()

    def outcome(self, cid: str) -> dict[str, Any] | None:
        """What the worker recorded when it finished ``cid`` (None: not finished)."""
        try:
            return dict(read_json(self._file(_DONE, cid)))
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        """Delete the folder (its worker has ended and its cells are accounted for)."""
        shutil.rmtree(self.path, ignore_errors=True)

    # both sides

    def close(self) -> bool:
        """Rename the inbox away: no cell can be assigned any more. True when this call closed it."""
        try:
            os.rename(self.path / _INBOX, self.path / _CLOSED)
        except FileNotFoundError:
            return False
        return True

    # the worker's side

    def mark_started(self, job_id: str | None) -> None:
        """Record that the worker runs (job id, host, pid, time)."""
        record = {
            "job_id": job_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_utc": now_utc(),
        }
        atomic_write_json(self.path / _STARTED, record)

    def take_next(self) -> Cell | None:
        """The next cell to compute: one left in ``running/`` by a killed run of this job, else the
        oldest of the inbox (open or closed) moved to ``running/``; None when there is none."""
        running = self.path / _RUNNING
        for left in sorted(running.glob("*.json")):
            return Cell.from_json(read_json(left))
        for sub in (_INBOX, _CLOSED):
            try:
                entries = sorted(os.scandir(self.path / sub), key=lambda e: e.stat().st_mtime_ns)
            except FileNotFoundError:
                continue
            for entry in entries:
                target = running / entry.name
                try:
                    os.rename(entry.path, target)
                except FileNotFoundError:
                    continue  # taken back by the executor
                return Cell.from_json(read_json(target))
        return None

    def finish(self, cid: str, outcome: dict[str, Any]) -> None:
        """Record ``outcome`` of cell ``cid`` in ``done/`` and drop it from ``running/``."""
        atomic_write_json(self._file(_DONE, cid), outcome)
        self._file(_RUNNING, cid).unlink(missing_ok=True)

    def mark_left(self, computed: int) -> None:
        """Record that the worker has left (its inbox closed and drained)."""
        atomic_write_json(self.path / _LEFT, {"computed": computed, "left_utc": now_utc()})

    def is_closed(self) -> bool:
        """Whether the inbox has been renamed away."""
        return not (self.path / _INBOX).is_dir()


class Worker:
    """The callable of a worker job (picklable; submitit runs it, requeues it on preemption/timeout).

    It computes the cells assigned to its :class:`WorkerFolder` one after another with
    :func:`~runners.grid.state.execute_cell`, and leaves (inbox closed first, then what reached
    it computed) once it has waited ``idle_s`` seconds without a cell, once its executor has
    closed its inbox, or once ``stop_after_s`` seconds have passed since its start.

    Parameters
    ----------
    runs_dir : str
    wid : str
        Its folder's name under ``RUNS_DIR/workers``.
    idle_s : float
        Idle time after which it leaves (0: after its first cell).
    stop_after_s : float
        Seconds after which it takes no new cell (about half the job's time limit).
    stage_fn : callable, optional
        Stage implementation passed to :func:`execute_cell` (default: the real stages).
    """

    def __init__(
        self,
        runs_dir: str,
        wid: str,
        *,
        idle_s: float,
        stop_after_s: float,
        stage_fn: StageFunction | None = None,
    ) -> None:
        self.runs_dir = runs_dir
        self.wid = wid
        self.idle_s = idle_s
        self.stop_after_s = stop_after_s
        self.stage_fn = stage_fn

    def __call__(self) -> int:
        """Compute cells until leaving; return how many were computed."""
        _threads_from_allocation()
        folder = WorkerFolder(self.runs_dir, self.wid)
        folder.mark_started(os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID"))
        start = last = time.monotonic()
        computed = 0
        while True:
            cell = folder.take_next()
            if cell is not None:
                folder.finish(cell.id, self._compute(cell))
                computed += 1
                last = time.monotonic()
                continue
            if folder.is_closed():
                break  # closed and drained
            now = time.monotonic()
            if now - last >= self.idle_s or now - start >= self.stop_after_s:
                folder.close()  # then what reached the inbox before is computed, and the loop ends
                continue
            time.sleep(POLL_S)
        folder.mark_left(computed)
        logger.info("worker %s leaves after %d cell(s)", self.wid, computed)
        return computed

    def _compute(self, cell: Cell) -> dict[str, Any]:
        try:
            state = execute_cell(cell, self.runs_dir, self.stage_fn).state.value
            outcome: dict[str, Any] = {"state": state}
        except Exception as exc:  # e.g. its dependencies are not done: the cell is not computed here
            logger.exception("cell %s could not run", cell.id)
            outcome = {"state": None, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        gc.collect()  # the cell's models go before the next cell's are loaded
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        return outcome

    def checkpoint(self) -> Any:
        """submitit's hook on preemption/time limit: requeue this worker (it resumes ``running/``)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def _threads_from_allocation() -> None:
    """Give the cells the job's CPUs (``SLURM_CPUS_PER_TASK``) as torch threads, unless fixed.

    :func:`runners.env.cpu_threads` counts the cores free when a cell starts; where the
    scheduler does not confine the job to its cores, two workers starting cells together
    would each count the other's cores as free and oversubscribe the node.
    """
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if allocated and not any(os.environ.get(name, "").strip() for name in (THREADS_ENV, "OMP_NUM_THREADS")):
        os.environ[THREADS_ENV] = allocated


def remove_left(runs_dir: str | os.PathLike[str]) -> int:
    """Delete the folders of workers that have left (earlier runs); return how many."""
    left = [p.parent for p in workers_dir(runs_dir).glob(f"*/{_LEFT}")]
    for folder in left:
        shutil.rmtree(folder, ignore_errors=True)
    return len(left)
