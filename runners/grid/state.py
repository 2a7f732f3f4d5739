"""On-disk state of a grid run: cell folders, statuses, the run lock, and cell execution.

Layout of ``RUNS_DIR``::

    .lock                  flock'ed by the one run-grid driver (holds its pid)
    plan.json              the cells of the last planned grid (workers read their cell here)
    grid.yaml              the grid file the plan came from
    cells/<id>/            a finished cell: cell.json, status.json, log.txt, its outputs
                           (the run-folder contract of kdanalysis.runfolder)
    cells/.tmp-<id>-<pid>  a cell being computed (moved to cells/<id> atomically when it ends)
    cells/.job-<id>.json   the scheduler job a cell was submitted to (job id, submitter), written
                           at submission and removed when the driver has seen the cell end
    results.parquet, items.parquet   collected tables (kdanalysis.collect)

The disk is the only truth: a cell is *done* when ``cells/<id>/status.json``
(:func:`kdanalysis.runfolder.read_status`) says so and
every output it lists exists; *failed* when it says ``failed``; *running* while a
temporary folder's owner process is alive. The owner holds ``flock`` on the folder's
``.owner`` file while it computes (the kernel drops it when the process dies) and its
``status.json`` records host, boot id, pid and the pid's start time, so a reused pid or a
reboot never passes for the owner. A folder written on another host counts as alive
unless its SLURM job is known to have left the queue: a rerun never deletes work
running elsewhere. A pending cell whose job record names a job still queued or running
(``squeue``) is *running* too: a rerun after the driver died (``kill -9``) waits for the
jobs it left behind and picks up their results instead of submitting the cells again; a
record whose job left the queue without the cell's result is dropped and the cell is
submitted again (:func:`settle_jobs`). A temporary folder whose owner is gone (a killed
run) is removed and the cell is computed again, except a ``train`` cell, whose new attempt
takes the folder over and resumes from the trainer's last checkpoint. A late worker never
replaces a cell that is already done. Executors only have to call :func:`execute_cell` somewhere.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from kdanalysis.errors import KDAnalysisError, RunFailedError, RunFolderError
from kdanalysis.io import atomic_write_json, lock_held, parquet_intact, read_json
from kdanalysis.runfolder import CELL_FILE, LOG_FILE, RunState, now_utc, read_status, write_status
from runners.grid.plan import Cell
from runners.grid.slurm_query import SLURM_LIVE, slurm_earlier_runs, slurm_job_live, slurm_job_state

__all__ = [
    "CellState",
    "CellStatus",
    "GridLock",
    "PLAN_FILE",
    "GRID_FILE",
    "cells_dir",
    "cell_dir",
    "cell_state",
    "scan_states",
    "clean_stale",
    "execute_cell",
    "record_failure",
    "record_job",
    "recorded_job",
    "forget_job",
    "settle_jobs",
    "StageFunction",
]

logger = logging.getLogger(__name__)

#: A stage implementation: ``(cell, work_dir, dep_dirs) -> outputs`` (name → path relative to work_dir).
StageFunction = Callable[[Cell, Path, Mapping[str, Path]], Mapping[str, str]]

#: Files of ``RUNS_DIR`` (see the module docstring).
PLAN_FILE = "plan.json"
GRID_FILE = "grid.yaml"
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_JOB_PREFIX = ".job-"
#: File of a temporary folder that its owner keeps ``flock``'ed while it computes the cell.
_OWNER_FILE = ".owner"
#: Cell kinds whose stage resumes from what an interrupted attempt left (the trainer's checkpoints).
_RESUMABLE_KINDS = frozenset({"train"})


class CellState(StrEnum):
    """State of a cell as read from disk (``blocked`` is derived from failed dependencies)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class CellStatus:
    """What ``status.json`` of a finished cell says.

    Attributes
    ----------
    state : CellState
    duration_s : float or None
        Wall time of the cell's computation.
    error : str
        One-line error of a failed cell (``""`` otherwise).
    note : str
        For a cell computed by another process: who owns it and how to release it.
    job_id, job_state : str
        For a running cell adopted from an earlier driver: its scheduler job and that job's
        state (``squeue``; ``""`` otherwise).
    """

    state: CellState
    duration_s: float | None = None
    error: str = ""
    note: str = ""
    job_id: str = ""
    job_state: str = ""


def cells_dir(runs_dir: Path) -> Path:
    """``RUNS_DIR/cells``."""
    return Path(runs_dir) / "cells"


def cell_dir(runs_dir: Path, cid: str) -> Path:
    """Final folder of cell ``cid``."""
    return cells_dir(runs_dir) / cid


def _parquet_files(outputs: list[Path]) -> list[Path]:
    """The parquet files among ``outputs`` and directly inside the output folders."""
    files = [p for p in outputs if p.suffix == ".parquet"]
    return files + [f for p in outputs if p.is_dir() for f in p.glob("*.parquet")]


def cell_state(runs_dir: Path, cid: str) -> CellStatus:
    """State of one finished-or-not cell (``pending`` unless its final folder says otherwise).

    A cell marked done whose outputs are missing, or whose parquet tables are truncated,
    is ``pending``: it is computed again.

    Raises
    ------
    RunFolderError
        If the cell's ``status.json`` is damaged (the message names it).
    """
    folder = cell_dir(runs_dir, cid)
    status = read_status(folder)
    if status is None:
        return CellStatus(CellState.PENDING)
    state = status["state"]
    if state is RunState.DONE:
        outputs = [folder / rel for rel in status.get("outputs", {}).values()]
        if all(p.exists() for p in outputs) and all(map(parquet_intact, _parquet_files(outputs))):
            return CellStatus(CellState.DONE, status.get("duration_s"))
        logger.warning(
            "cell %s is marked done but outputs are missing or truncated; it will be recomputed", cid
        )
        return CellStatus(CellState.PENDING)
    if state is RunState.FAILED:
        return CellStatus(CellState.FAILED, status.get("duration_s"), status.get("error", ""))
    return CellStatus(CellState.PENDING)


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return None


def _pid_start(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks since boot (field 22 of ``/proc/<pid>/stat``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def _lock_held(folder: Path) -> bool | None:
    """Whether some process holds ``flock`` on ``folder/.owner`` (None: the folder has no such file)."""
    try:
        return lock_held(folder / _OWNER_FILE)
    except OSError:
        return None


def _read_tmp_status(tmp: Path) -> Mapping[str, Any] | None:
    try:
        return read_status(tmp)
    except RunFolderError:
        return None  # written half by a killed owner


def _owner_alive(tmp: Path, status: Mapping[str, Any] | None) -> bool:
    """Whether the process computing temporary folder ``tmp`` may still run.

    On this host the owner's ``flock`` decides, else its recorded boot id, pid and pid start
    time (a reused pid has another start time). A folder of another host is alive unless its
    SLURM job is known to have left the queue (an unknown owner is never presumed dead). The
    driver scans only between cells, so a folder owned by this very process is left over
    from an interrupted call (Ctrl-C in a notebook) and counts as dead.
    """
    if not status:
        # a folder whose status is missing or torn: its owner died while creating it, unless it holds the lock
        return bool(_lock_held(tmp))
    if status.get("host") != socket.gethostname():
        if _lock_held(tmp):
            return True
        job = status.get("slurm_job_id")
        return slurm_job_live(job) is not False if job else True
    try:
        pid = int(status["pid"])
    except (KeyError, ValueError, TypeError):
        return False
    if pid == os.getpid():
        return False
    held = _lock_held(tmp)
    if held is not None:
        return held
    recorded_boot = status.get("boot_id")
    if recorded_boot and recorded_boot != _boot_id():
        return False
    start = _pid_start(pid)
    if start is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return status.get("pid_start") in (None, start)


def _owner_note(tmp: Path, status: Mapping[str, Any] | None) -> str:
    status = status or {}
    job = f", SLURM job {status['slurm_job_id']}" if status.get("slurm_job_id") else ""
    return (
        f"computed by pid {status.get('pid', '?')} on {status.get('host', '?')}{job}; waiting for it "
        f"(if that process is gone, remove {tmp} and run again)"
    )


def _running_ids(runs_dir: Path) -> dict[str, str]:
    """Cells with a temporary folder whose owner may still run → a note naming the owner."""
    running: dict[str, str] = {}
    root = cells_dir(runs_dir)
    if root.is_dir():
        for tmp in root.glob(f"{_TMP_PREFIX}*"):
            status = _read_tmp_status(tmp)
            if _owner_alive(tmp, status):
                running[_tmp_cell(tmp)] = _owner_note(tmp, status)
    return running


def _tmp_cell(tmp: Path) -> str:
    return tmp.name[len(_TMP_PREFIX) :].split("-")[0]


def _is_resumable(tmp: Path) -> bool:
    """Whether ``tmp`` is an interrupted attempt of a cell kind whose stage resumes from it."""
    try:
        return read_json(tmp / CELL_FILE).get("kind") in _RESUMABLE_KINDS
    except (OSError, ValueError, AttributeError):
        return False


def _claim_partial(cell: Cell, runs_dir: Path, tmp: Path) -> str | None:
    """Take over an interrupted attempt of ``cell`` as ``tmp`` (resumable kinds); the name of the one taken.

    An attempt is interrupted when its owner is gone, or when it belongs to this very SLURM
    job (a requeued job's earlier run). Renaming claims it atomically: of two claimers one wins.
    """
    if cell.kind not in _RESUMABLE_KINDS:
        return None
    job = os.environ.get("SLURM_JOB_ID")
    candidates = []
    for old in cells_dir(runs_dir).glob(f"{_TMP_PREFIX}{cell.id}-*"):
        status = _read_tmp_status(old)
        same_job = bool(job) and status is not None and str(status.get("slurm_job_id")) == job
        if (same_job and not _lock_held(old)) or not _owner_alive(old, status):
            candidates.append(old)
    for old in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            os.rename(old, tmp)
        except OSError:
            continue  # another attempt claimed it first
        return old.name
    return None


def scan_states(runs_dir: Path, ids: list[str]) -> dict[str, CellStatus]:
    """States of ``ids`` read from disk.

    A pending cell is *running* when a temporary folder of it has a live owner, or when its
    job record (:func:`record_job`) names a job that ``squeue`` lists as queued or running
    (or cannot tell about: a job is never presumed gone); ``note`` names the owner or job,
    ``job_id``/``job_state`` the adopted job.
    """
    running = _running_ids(runs_dir)
    out = {cid: cell_state(runs_dir, cid) for cid in ids}
    pending = {cid for cid, status in out.items() if status.state is CellState.PENDING}
    records = {cid: record for cid, record in _job_records(runs_dir).items() if cid in pending}
    job_states = _job_states(records)
    for cid in pending:
        record = records.get(cid)
        state = job_states[str(record["job_id"])] if record else ""
        if record and (state is None or state in SLURM_LIVE):
            out[cid] = CellStatus(
                CellState.RUNNING,
                note=_adopted_note(runs_dir, cid, record, state),
                job_id=str(record["job_id"]),
                job_state=state or "UNKNOWN",
            )
        elif cid in running:
            out[cid] = CellStatus(CellState.RUNNING, note=running[cid])
    return out


def clean_stale(runs_dir: Path) -> list[str]:
    """Remove temporary folders whose owner is gone (a killed run), leftover trash and the job
    records that have served (:func:`settle_jobs`).

    A ``train`` cell's folder is kept for its next attempt to resume from.

    Returns
    -------
    list of str
        Ids of the cells whose partial work was discarded (they will be recomputed).
    """
    root = cells_dir(runs_dir)
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for tmp in sorted(root.glob(f"{_TMP_PREFIX}*")):
        status = _read_tmp_status(tmp)
        if not _owner_alive(tmp, status):
            if _is_resumable(tmp):
                continue  # the cell's next attempt resumes from it (execute_cell)
            removed.append(_tmp_cell(tmp))
            shutil.rmtree(tmp, ignore_errors=True)
    for trash in root.glob(f"{_TRASH_PREFIX}*"):
        shutil.rmtree(trash, ignore_errors=True)
    if removed:
        logger.info("discarded partial work of %d interrupted cell(s): %s", len(removed), ", ".join(removed))
    settle_jobs(runs_dir)
    return removed


def _job_file(runs_dir: Path, cid: str) -> Path:
    return cells_dir(runs_dir) / f"{_JOB_PREFIX}{cid}.json"


def record_job(runs_dir: str | os.PathLike[str], cid: str, job_id: str, *, cluster: str = "slurm") -> Path:
    """Record that cell ``cid`` was submitted as scheduler job ``job_id`` (``cells/.job-<cid>.json``).

    A later run-grid (after this driver died) reads it back with :func:`recorded_job` to wait
    for the job instead of submitting the cell again.

    Returns
    -------
    Path
        The record written.
    """
    record = {
        "cell": cid,
        "job_id": str(job_id),
        "cluster": cluster,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "submitted_utc": now_utc(),
    }
    path = _job_file(Path(runs_dir), cid)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(path, record)


def recorded_job(runs_dir: str | os.PathLike[str], cid: str) -> dict[str, Any] | None:
    """The job record of cell ``cid`` (:func:`record_job`), or None when there is none or it is unreadable."""
    try:
        record = read_json(_job_file(Path(runs_dir), cid))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("job_id") else None


def forget_job(runs_dir: str | os.PathLike[str], cid: str) -> None:
    """Remove the job record of cell ``cid`` (the driver has seen the cell end)."""
    _job_file(Path(runs_dir), cid).unlink(missing_ok=True)


def _job_records(runs_dir: Path) -> dict[str, dict[str, Any]]:
    """Every readable job record of ``runs_dir``, by cell id."""
    root = cells_dir(runs_dir)
    if not root.is_dir():
        return {}
    records = {}
    for path in root.glob(f"{_JOB_PREFIX}*.json"):
        cid = path.name[len(_JOB_PREFIX) : -len(".json")]
        record = recorded_job(runs_dir, cid)
        if record is not None:
            records[cid] = record
    return records


def _job_states(records: Mapping[str, Mapping[str, Any]]) -> dict[str, str | None]:
    """``squeue`` state (:func:`~runners.grid.slurm_query.slurm_job_state`) of each distinct job of
    ``records``, by job id."""
    return {job: slurm_job_state(job) for job in {str(r["job_id"]) for r in records.values()}}


def _adopted_note(runs_dir: Path, cid: str, record: Mapping[str, Any], state: str | None) -> str:
    job = record["job_id"]
    said = "squeue cannot tell its state" if state is None else state.lower()
    return (
        f"queued/running as SLURM job {job} ({said}), submitted by an earlier run-grid "
        f"(pid {record.get('pid', '?')} on {record.get('host', '?')}); waiting for it "
        f"(scancel {job} to stop it; if that job is gone, remove {_job_file(runs_dir, cid)})"
    )


def settle_jobs(runs_dir: str | os.PathLike[str], ids: list[str] | None = None) -> list[str]:
    """Drop the job records (of ``ids``; default all) that have served: the cell has ended, or
    its job has left the queue.

    A record of a pending cell whose job ``squeue`` lists as queued or running, or cannot tell
    about, is kept: the cell counts as running (:func:`scan_states`). A pending cell whose job
    left without its result (cancelled, failed, or ended before computing it while no driver
    watched) is submitted again; its job's end is logged.

    Returns
    -------
    list of str
        Ids of the cells whose job left the queue without their result.
    """
    runs_dir = Path(runs_dir)
    records = _job_records(runs_dir)
    if ids is not None:
        wanted = set(ids)
        records = {cid: r for cid, r in records.items() if cid in wanted}
    waiting = {}
    for cid, record in records.items():
        try:
            ended = cell_state(runs_dir, cid).state is not CellState.PENDING
        except RunFolderError:
            ended = True  # a damaged status.json is reported by whoever reads the cell
        if ended:
            forget_job(runs_dir, cid)
        else:
            waiting[cid] = record
    job_states = _job_states(waiting)
    lost = []
    for cid, record in sorted(waiting.items()):
        job = str(record["job_id"])
        state = job_states[job]
        if state is None or state in SLURM_LIVE:
            continue
        lost.append(cid)
        logger.warning(
            "cell %s: SLURM job %s (submitted by pid %s on %s) left the queue without its result "
            "(%s); it is submitted again",
            cid,
            job,
            record.get("pid", "?"),
            record.get("host", "?"),
            f"it ended {state}" if state else f"sacct -j {job} says why",
        )
        forget_job(runs_dir, cid)
    return lost


class GridLock:
    """Exclusive lock of a runs folder: ``fcntl.flock`` on ``RUNS_DIR/.lock`` holding the pid.

    The lock is released by the kernel when the process dies, so a killed driver never
    leaves a stale lock behind.

    Raises
    ------
    RunFailedError
        On enter, when another process holds the lock (the message names its pid).
    """

    def __init__(self, runs_dir: Path) -> None:
        self.path = Path(runs_dir) / ".lock"
        self._fh: IO[str] | None = None

    def __enter__(self) -> GridLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the lock's lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "unknown"
            fh.close()
            raise RunFailedError(
                f"{self.path.parent} is in use by another run-grid (pid {owner}); "
                "wait for it to finish or stop it first"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def _status(cell: Cell, state: RunState, started_utc: str, **extra: Any) -> dict[str, Any]:
    return {
        "cell": cell.id,
        "stage": cell.stage,
        "label": cell.label,
        "state": state,
        "pid": os.getpid(),
        "pid_start": _pid_start(os.getpid()),
        "boot_id": _boot_id(),
        "host": socket.gethostname(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "started_utc": started_utc,
        "finished_utc": None,
        "error": None,
        **extra,
    }


def _publish(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final`` atomically, replacing a previous (failed) result.

    A cell already done (published by another attempt meanwhile) is kept and ``tmp`` dropped;
    so is a ``tmp`` that lost its ``cell.json`` (removed under this attempt while it ran).
    """
    if not (tmp / CELL_FILE).is_file():
        logger.warning(
            "cell %s: its folder %s was removed while it ran; its work is dropped", final.name, tmp
        )
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if cell_state(final.parent.parent, final.name).state is CellState.DONE:
        logger.warning(
            "cell %s was finished by another attempt meanwhile; this attempt's work is dropped", final.name
        )
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if final.exists():
        trash = final.parent / f"{_TRASH_PREFIX}{final.name}-{uuid.uuid4().hex[:6]}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def record_failure(cell: Cell, runs_dir: str | os.PathLike[str], error: str) -> CellStatus:
    """Publish ``cells/<id>`` as failed with ``error``, for a cell whose worker ended without a result.

    A job killed by its scheduler (``scancel``, a time limit with no requeue left, a node
    failure) never reaches :func:`execute_cell`'s own failure record; this one makes the
    failure last, so a later call keeps the cell failed and its dependents blocked until
    ``--retry-failed``. Its partial temporary folder is left as it is.

    Returns
    -------
    CellStatus
        ``failed`` with ``error``.
    """
    runs_dir = Path(runs_dir)
    tmp = cells_dir(runs_dir) / f"{_TMP_PREFIX}{cell.id}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir(parents=True)
    now = now_utc()
    atomic_write_json(tmp / CELL_FILE, cell.to_json())
    write_status(tmp, _status(cell, RunState.FAILED, now, finished_utc=now, error=error))
    _publish(tmp, cell_dir(runs_dir, cell.id))
    return CellStatus(CellState.FAILED, error=error)


def execute_cell(
    cell: Cell, runs_dir: str | os.PathLike[str], stage_fn: StageFunction | None = None
) -> CellStatus:
    """Compute one cell in a fresh temporary folder and publish it as ``cells/<id>``.

    The cell's logging output goes to ``log.txt``; on success ``status.json`` lists the
    outputs, on failure it holds the error and traceback (the exception is not
    re-raised, so independent cells go on). Already-done cells return at once. In a SLURM
    job the scheduler restarted (its node failed, it was requeued) ``status.json`` lists how
    the job's earlier runs ended (``slurm_earlier_runs``, e.g. ``["NODE_FAIL"]``), and so does
    the log.

    Parameters
    ----------
    cell : Cell
    runs_dir : path
    stage_fn : callable, optional
        The implementation to run; default :func:`runners.grid.stages.run_stage`.

    Returns
    -------
    CellStatus
        ``done`` or ``failed``.
    """
    runs_dir = Path(runs_dir)
    current = cell_state(runs_dir, cell.id)
    if current.state is CellState.DONE:
        return current
    if stage_fn is None:
        from runners.grid.stages import run_stage

        stage_fn = run_stage
    missing = [d for d in cell.deps if cell_state(runs_dir, d).state is not CellState.DONE]
    if missing:
        raise RunFailedError(f"cell {cell.id} ({cell.label}): dependencies not done: {', '.join(missing)}")
    tmp = cells_dir(runs_dir) / f"{_TMP_PREFIX}{cell.id}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    resumed = _claim_partial(cell, runs_dir, tmp)
    if resumed is None:
        tmp.mkdir(parents=True)
    owner = os.open(tmp / _OWNER_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX)
        return _execute_in(cell, runs_dir, tmp, stage_fn, resumed)
    finally:
        os.close(owner)


def _execute_in(
    cell: Cell, runs_dir: Path, tmp: Path, stage_fn: StageFunction, resumed: str | None
) -> CellStatus:
    """Compute ``cell`` in ``tmp`` (owner lock held; ``resumed``: the attempt taken over) and publish it."""
    started, started_utc = time.time(), now_utc()
    earlier = slurm_earlier_runs()
    restarts = {"slurm_earlier_runs": earlier} if earlier else {}
    atomic_write_json(tmp / CELL_FILE, cell.to_json())
    write_status(tmp, _status(cell, RunState.RUNNING, started_utc, **restarts))
    handler = logging.FileHandler(tmp / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root_logger = logging.getLogger()
    old_level = root_logger.level
    # the cell's log.txt gets INFO and Python warnings; the console (the handlers already there)
    # only errors, so that the progress display stays readable
    console_levels = {h: h.level for h in root_logger.handlers}
    for h in root_logger.handlers:
        h.setLevel(max(h.level, old_level, logging.ERROR))
    logging.captureWarnings(True)
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO if old_level in (logging.NOTSET, 0) else min(old_level, logging.INFO))
    logger.info("cell %s: %s", cell.id, cell.label)
    if resumed is not None:
        logger.info("cell %s: resuming the interrupted attempt %s", cell.id, resumed)
    if earlier:
        logger.warning(
            "cell %s: SLURM job %s was restarted by the scheduler; its earlier runs ended %s",
            cell.id,
            os.environ.get("SLURM_JOB_ID"),
            ", ".join(earlier),
        )
    try:
        deps = {d: cell_dir(runs_dir, d) for d in cell.deps}
        outputs = dict(stage_fn(cell, tmp, deps))
        duration = time.time() - started
        status = _status(
            cell,
            RunState.DONE,
            started_utc,
            finished_utc=now_utc(),
            duration_s=round(duration, 3),
            outputs=outputs,
            **restarts,
        )
        logger.info("cell %s done in %.1f s", cell.id, duration)
        result = CellStatus(CellState.DONE, duration)
    except Exception as exc:  # a failing cell is recorded; the grid goes on
        duration = time.time() - started
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, KDAnalysisError) else str(exc)
        error = error.splitlines()[0] if error else type(exc).__name__
        # the traceback goes to the cell's log.txt (INFO); the driver reports the one-line error
        logger.info("cell %s failed: %s\n%s", cell.id, error, traceback.format_exc())
        status = _status(
            cell,
            RunState.FAILED,
            started_utc,
            finished_utc=now_utc(),
            duration_s=round(duration, 3),
            error=error,
            **restarts,
            traceback=traceback.format_exc(),
        )
        result = CellStatus(CellState.FAILED, duration, error)
    finally:
        root_logger.removeHandler(handler)
        logging.captureWarnings(False)
        root_logger.setLevel(old_level)
        for h, level in console_levels.items():
            h.setLevel(level)
        handler.close()
    write_status(tmp, status)
    (tmp / _OWNER_FILE).unlink(missing_ok=True)
    _publish(tmp, cell_dir(runs_dir, cell.id))
    return result
