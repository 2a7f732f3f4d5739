"""Executors: where the cells of a grid run, behind one small interface.

The driver (:func:`runners.grid.runner.run_grid`) only ever submits cells whose
dependencies are done, then waits for some to finish, and reads each finished cell's
state from disk. An executor therefore needs four methods:

``capacity()``
    how many more cells it accepts now;
``submit(cells)``
    start them (each runs :func:`runners.grid.state.execute_cell`, which does the whole
    temp-folder → atomic publish protocol and never raises for a failing cell);
``wait(timeout)``
    block until at least one submitted cell ended (or ``timeout`` seconds) and return
    the ids that ended;
``close()``
    release resources.

Implementations: :class:`SequentialExecutor` (in-process, one cell at a time — the CPU
default), :class:`GpuPoolExecutor` (one worker subprocess per GPU with
``CUDA_VISIBLE_DEVICES``) and :class:`SubmititExecutor` (SLURM worker jobs via submitit, each
computing several cells, requeued on preemption; submitit's ``local``/``debug`` clusters for
testing).

A Ray executor is a small addition: ``submit`` calls
``ray.remote(num_gpus=...)(execute_cell).remote(cell, runs_dir)`` per cell and keeps the
object refs; ``wait`` calls ``ray.wait(refs, num_returns=1, timeout=timeout)`` and maps the
ready refs back to cell ids; ``capacity`` is the number of free GPUs; nothing else changes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdanalysis.errors import BackendUnavailableError
from runners.grid.plan import Cell
from runners.grid.slurm_pool import POLL_S, Worker, WorkerFolder, remove_left
from runners.grid.slurm_query import SLURM_ENDED, SLURM_WAITING, slurm_states
from runners.grid.spec import ExecutorSpec, SlurmSpec
from runners.grid.state import StageFunction, execute_cell, forget_job, record_job

__all__ = [
    "Executor",
    "JobInfo",
    "SequentialExecutor",
    "GpuPoolExecutor",
    "SubmititExecutor",
    "make_executor",
    "sbatch_parameters",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobInfo:
    """A scheduler job computing (or queued to compute) a cell.

    Attributes
    ----------
    job_id : str
        The scheduler's id (SLURM: ``12345`` or ``12345_0`` for an array task).
    state : str
        The scheduler's state as it reports it (SLURM: ``PENDING``, ``RUNNING``,
        ``REQUEUED``, ...; ``UNKNOWN`` until it has been asked).
    """

    job_id: str
    state: str


class Executor(ABC):
    """Runs cells; see the module docstring for the contract."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = Path(runs_dir)

    @abstractmethod
    def capacity(self) -> int:
        """Number of further cells :meth:`submit` accepts now."""

    @abstractmethod
    def submit(self, cells: Sequence[Cell]) -> None:
        """Start ``cells`` (all of whose dependencies are done)."""

    @abstractmethod
    def wait(self, timeout: float) -> list[str]:
        """Block until some submitted cells ended (or ``timeout`` s); return their ids."""

    @abstractmethod
    def close(self) -> None:
        """Release workers/handles; cells not ended are abandoned (their state stays on disk)."""

    def ended_reason(self, cid: str) -> str | None:
        """Why the worker of ended cell ``cid`` stopped, when it ended without a result (None: unknown)."""
        return None

    def jobs(self) -> dict[str, JobInfo]:
        """Scheduler jobs of the submitted cells not yet ended, by cell id (empty: no scheduler)."""
        return {}


class SequentialExecutor(Executor):
    """Run cells one at a time in this process (CPU default; no start-up cost per cell).

    Parameters
    ----------
    runs_dir : Path
    stage_fn : callable, optional
        Stage implementation passed to :func:`execute_cell` (tests inject failures here).
    """

    def __init__(self, runs_dir: Path, stage_fn: StageFunction | None = None) -> None:
        super().__init__(runs_dir)
        self.stage_fn = stage_fn
        self._queue: list[Cell] = []

    def capacity(self) -> int:
        return 0 if self._queue else 1

    def submit(self, cells: Sequence[Cell]) -> None:
        self._queue.extend(cells)

    def wait(self, timeout: float) -> list[str]:
        if not self._queue:
            return []
        cell = self._queue.pop(0)
        execute_cell(cell, self.runs_dir, self.stage_fn)
        return [cell.id]

    def close(self) -> None:
        self._queue.clear()


class GpuPoolExecutor(Executor):
    """One worker subprocess per GPU (``CUDA_VISIBLE_DEVICES=<gpu>``), one cell per process.

    A fresh process per cell returns all GPU memory when the cell ends. The worker is
    ``python -m runners.grid.worker RUNS_DIR CELL_ID`` (it reads the cell from
    ``RUNS_DIR/plan.json``); its stdout/stderr go to ``RUNS_DIR/logs/<cell_id>.txt``.

    Parameters
    ----------
    runs_dir : Path
    gpus : sequence of int
        GPU indices; one cell runs on each at a time.
    """

    def __init__(self, runs_dir: Path, gpus: Sequence[int]) -> None:
        super().__init__(runs_dir)
        self.free = list(gpus)
        self._procs: dict[str, tuple[subprocess.Popen[bytes], int, Any]] = {}

    def capacity(self) -> int:
        return len(self.free)

    def submit(self, cells: Sequence[Cell]) -> None:
        logs = self.runs_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for cell in cells:
            gpu = self.free.pop(0)
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)}
            out = open(logs / f"{cell.id}.txt", "ab")  # noqa: SIM115 - closed when the process ends
            command = [sys.executable, "-m", "runners.grid.worker", str(self.runs_dir), cell.id]
            proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
            self._procs[cell.id] = (proc, gpu, out)
            logger.info("cell %s started on GPU %d (pid %d)", cell.id, gpu, proc.pid)

    def wait(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            ended = [cid for cid, (proc, _, _) in self._procs.items() if proc.poll() is not None]
            if ended or not self._procs or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        for cid in ended:
            proc, gpu, out = self._procs.pop(cid)
            out.close()
            self.free.append(gpu)
            if proc.returncode:
                logger.warning(
                    "worker of cell %s exited with code %d (see logs/%s.txt)", cid, proc.returncode, cid
                )
        return ended

    def close(self) -> None:
        for proc, _, out in self._procs.values():
            proc.terminate()
            proc.wait()
            out.close()
        self._procs.clear()


@dataclass
class _WorkerJob:
    """The executor's view of one worker job: its folder, submitit job, resources and cell."""

    folder: WorkerFolder
    job: Any
    resources: str
    cell: str | None = None
    retiring: bool = False
    state: str = "UNKNOWN"
    requeued: bool = False
    ended_polls: int = 0

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    @property
    def up(self) -> bool:
        """Whether the worker runs now (started, and not requeued since)."""
        return self.folder.started() and not self.requeued

    @property
    def waiting(self) -> bool:
        """Whether the scheduler has not started the job (yet, or again after a requeue)."""
        return self.requeued or (self.state != "RUNNING" and not self.folder.started())


class SubmititExecutor(Executor):
    """SLURM via submitit: cells packed into long-lived worker jobs (:mod:`runners.grid.slurm_pool`).

    A ready cell goes to a live idle worker whose resources (:func:`sbatch_parameters` of
    its stage) equal the cell's, else to a new worker job; at most ``array_parallelism``
    workers at a time, one cell each. A cell given to a job still queued moves to a worker of
    equal resources that is up and idle (the queued job, left without a cell, is cancelled).
    While a worker of equal resources is busy, a cell waits up to ``hold_s`` seconds for it
    before a new job is submitted (a job takes longer than that to start; short cells in a row
    then share one worker instead of each submitting a job that is cancelled again).
    Completion is read from the workers' folders every :data:`~runners.grid.slurm_pool.POLL_S`
    seconds and the scheduler asked about the jobs every ``state_poll_s`` seconds. Each cell's
    job id is recorded at assignment (:func:`~runners.grid.state.record_job`) and forgotten
    once the cell has ended. When a worker's job ends for good, its taken cell (if not
    published) ends with the scheduler's reason and the cells it never took go to another
    worker (at most :attr:`max_reassign` times each).

    ``worker_idle_s=0`` gives one cell per job. ``cluster="debug"`` runs each worker in this
    process (one cell each) when waited for, ``"local"`` in local subprocesses (submitit's own
    test executors).

    Parameters
    ----------
    runs_dir : Path
    spec : SlurmSpec
    stage_fn : callable, optional
        Stage implementation (must be picklable for real clusters); default the real stages.
    state_poll_s : float
        Shortest interval between two scheduler queries (``squeue``).
    hold_s : float
        Longest wait of a cell for a busy worker before a new job is submitted for it.
    """

    #: How many times a cell whose worker ended before taking it is given to another worker.
    max_reassign = 3

    def __init__(
        self,
        runs_dir: Path,
        spec: SlurmSpec,
        stage_fn: StageFunction | None = None,
        *,
        state_poll_s: float = 2.0,
        hold_s: float = 3.0,
    ) -> None:
        super().__init__(runs_dir)
        try:
            import submitit
        except ImportError as exc:  # pragma: no cover - submitit is in the slurm extra
            raise BackendUnavailableError(
                "the SLURM executor needs submitit: pip install 'kdanalysis[slurm]'"
            ) from exc
        self.spec = spec
        self.stage_fn = stage_fn
        self.state_poll_s = state_poll_s
        extra = {"slurm_max_num_timeout": spec.max_num_timeout} if spec.cluster == "slurm" else {}
        self._executor = submitit.AutoExecutor(
            folder=self.runs_dir / "submitit", cluster=spec.cluster, **extra
        )
        remove_left(self.runs_dir)
        self._idle_s = 0.0 if spec.cluster == "debug" else spec.worker_idle_s
        self.hold_s = hold_s if self._idle_s > 0 else 0.0
        self._held: dict[str, tuple[Cell, float]] = {}
        self._workers: list[_WorkerJob] = []
        self._cells: dict[str, tuple[Cell, _WorkerJob]] = {}
        self._given: dict[str, int] = {}
        self._ended: list[str] = []
        self._reasons: dict[str, str] = {}
        self._asked = 0.0

    # the contract

    def capacity(self) -> int:
        active = [w for w in self._workers if not w.retiring]
        idle = sum(w.cell is None for w in active)
        return max(idle + max(self.spec.array_parallelism - len(active), 0) - len(self._held), 0)

    def ended_reason(self, cid: str) -> str | None:
        return self._reasons.get(cid)

    def submit(self, cells: Sequence[Cell]) -> None:
        for cell in cells:
            self._place(cell)

    def wait(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            if self.spec.cluster == "debug":
                self._run_debug_worker()
            self._poll()
            if self._ended or not (self._cells or self._held) or time.monotonic() >= deadline:
                break
            time.sleep(min(POLL_S, max(deadline - time.monotonic(), 0.0)))
        ended, self._ended = self._ended, []
        for cid in ended:
            forget_job(self.runs_dir, cid)
        return ended

    def close(self) -> None:
        """Close every worker's inbox: idle workers leave now, busy ones after their cell.

        A queued job without a cell is cancelled, and the workers without a cell are given a
        moment to leave (on return none of them is left in the queue, as a rule). Cells not
        ended are abandoned: their workers still compute them and their job records stay, for
        a later run to find.
        """
        for worker in self._workers:
            worker.folder.close()
            if worker.cell is None and worker.waiting:
                self._cancel(worker)
        leaving = [w for w in self._workers if w.cell is None]
        deadline = time.monotonic() + 10.0
        while leaving and time.monotonic() < deadline:
            if self.spec.cluster == "slurm":
                states = slurm_states([w.job_id for w in leaving])
                if states is None:
                    break
                leaving = [w for w in leaving if states.get(w.job_id, "COMPLETED") not in SLURM_ENDED]
            else:  # submitit interrupts a 'local' job whose handle goes
                leaving = [w for w in leaving if not w.job.done()]
            if leaving:
                time.sleep(POLL_S)
        self._workers.clear()
        self._cells.clear()
        self._held.clear()

    def jobs(self) -> dict[str, JobInfo]:
        return {cid: JobInfo(w.job_id, w.state) for cid, (_, w) in self._cells.items()}

    # assignment

    def _resources(self, stage: str) -> str:
        return json.dumps(sbatch_parameters(self.spec, stage), sort_keys=True, default=str)

    def _place(self, cell: Cell, held_since: float | None = None) -> None:
        """Give ``cell`` to an idle worker of equal resources, else hold it for a busy one (up to
        ``hold_s`` since ``held_since``), else to a new worker job."""
        resources = self._resources(cell.stage)
        idle = [w for w in self._workers if not w.retiring and w.cell is None]
        for worker in idle:
            if worker.resources == resources and self._give(cell, worker):
                return
        since = time.monotonic() if held_since is None else held_since
        busy = [w for w in self._workers if not w.retiring and w.cell is not None and w.up]
        if time.monotonic() - since < self.hold_s and any(w.resources == resources for w in busy):
            self._held[cell.id] = (cell, since)
            return
        active = [w for w in self._workers if not w.retiring]
        other = next((w for w in active if w.cell is None), None)
        if len(active) >= self.spec.array_parallelism and other is not None:
            self._retire(other)  # room for the new worker: an idle one of other resources leaves
        self._new_worker(cell, resources)

    def _give(self, cell: Cell, worker: _WorkerJob) -> bool:
        """Assign ``cell`` to ``worker``; False (and the worker retired) when it has left."""
        if not worker.folder.assign(cell):
            worker.retiring = True
            return False
        self._bind(cell, worker)
        return True

    def _bind(self, cell: Cell, worker: _WorkerJob) -> None:
        """Note (and record on disk) that ``worker`` holds ``cell``."""
        worker.cell = cell.id
        self._cells[cell.id] = (cell, worker)
        self._given[cell.id] = self._given.get(cell.id, 0) + 1
        record_job(self.runs_dir, cell.id, worker.job_id, cluster=self.spec.cluster)
        logger.info("cell %s given to worker %s (job %s)", cell.id, worker.folder.wid, worker.job_id)

    def _new_worker(self, cell: Cell, resources: str) -> None:
        """Submit a worker job with ``cell`` in its inbox from the start."""
        folder = WorkerFolder.create(self.runs_dir)
        folder.assign(cell)
        params = sbatch_parameters(self.spec, cell.stage)
        self._executor.update_parameters(name="kd-worker", **params)
        worker = Worker(
            str(self.runs_dir),
            folder.wid,
            idle_s=self._idle_s,
            stop_after_s=params["timeout_min"] * 60 / 2,
            stage_fn=self.stage_fn,
        )
        job = self._executor.submit(worker)
        handle = _WorkerJob(folder, job, resources)
        self._workers.append(handle)
        logger.info("worker %s submitted as job %s", folder.wid, handle.job_id)
        self._bind(cell, handle)

    def _retire(self, worker: _WorkerJob) -> None:
        """Close ``worker``'s inbox (it leaves); a job that has not started is cancelled."""
        worker.retiring = True
        worker.folder.close()
        if worker.waiting:
            self._cancel(worker)

    def _cancel(self, worker: _WorkerJob) -> None:
        """``scancel`` a worker's job (on the test clusters its closed inbox makes it leave at start)."""
        if self.spec.cluster != "slurm":
            return
        try:
            worker.job.cancel(check=False)
        except Exception as exc:  # noqa: BLE001 - the job then leaves when idle
            logger.warning("could not cancel job %s: %s", worker.job_id, exc)

    # polling

    def _poll(self) -> None:
        """Collect finished cells, notice ended jobs, move cells from queued jobs to idle workers."""
        for cid, (_, worker) in list(self._cells.items()):
            outcome = worker.folder.outcome(cid)
            if outcome is not None:
                if outcome.get("error"):
                    self._reasons[cid] = f"worker job {worker.job_id}: {outcome['error']}"
                self._end(cid)
        for worker, state in self._ended_jobs():
            self._worker_gone(worker, state)
        for worker in self._workers:
            if not worker.retiring and worker.cell is None and worker.requeued:
                self._retire(worker)  # requeued without a cell: nothing to come back for
        held, self._held = self._held, {}
        for cell, since in held.values():
            self._place(cell, since)
        self._steal()

    def _end(self, cid: str) -> None:
        _, worker = self._cells.pop(cid)
        worker.cell = None
        self._ended.append(cid)

    def _ended_jobs(self) -> list[tuple[_WorkerJob, str]]:
        """Workers whose job has ended for good, with the state it ended in."""
        if self.spec.cluster != "slurm":
            ended = []
            for worker in self._workers:
                try:
                    done = worker.job.done()
                except Exception:  # noqa: BLE001 - a cancelled debug job
                    done = True
                if done:
                    ended.append((worker, str(worker.job.state)))
                else:
                    worker.state = "RUNNING" if worker.folder.started() else "PENDING"
            return ended
        if time.monotonic() - self._asked < self.state_poll_s:
            return []
        self._asked = time.monotonic()
        # asked before squeue: a worker that starts meanwhile is not taken for a requeued one
        started = {id(w): w.folder.started() for w in self._workers}
        states = slurm_states([w.job_id for w in self._workers])
        if states is None:
            logger.warning("squeue does not answer; the workers' jobs are asked again later")
            return []
        ended = []
        for worker in self._workers:
            state = states.get(worker.job_id)
            if state is None:
                # no longer listed by squeue (it ended long ago) nor known to sacct
                ended.append((worker, "(left the queue; no accounting record)"))
                continue
            worker.state = state
            worker.requeued = started[id(worker)] and state in SLURM_WAITING
            # an ended state counts when two queries in a row say so (a requeue passes through some)
            worker.ended_polls = worker.ended_polls + 1 if state in SLURM_ENDED else 0
            if worker.ended_polls >= 2:
                ended.append((worker, state))
        return ended

    def _worker_gone(self, worker: _WorkerJob, state: str) -> None:
        """Account for the cell of a worker whose job ended, and forget the worker."""
        self._workers.remove(worker)
        cid = worker.cell
        if cid is not None:
            cell, _ = self._cells[cid]
            if worker.folder.outcome(cid) is not None:
                self._end(cid)
            elif worker.folder.take_back_any(cid) and self._given[cid] <= self.max_reassign:
                logger.warning(
                    "job %s ended %s before taking cell %s; the cell goes to another worker",
                    worker.job_id,
                    state,
                    cid,
                )
                del self._cells[cid]
                self._place(cell)
            else:
                self._reasons[cid] = (
                    f"{self.spec.cluster} job {worker.job_id} ended {state} without a result; "
                    f"see {worker.job.paths.stderr}"
                )
                self._end(cid)
        worker.folder.remove()

    def _steal(self) -> None:
        """Move cells given to queued jobs to idle started workers of equal resources."""
        for idle in [w for w in self._workers if not w.retiring and w.cell is None and w.up]:
            queued = [
                w for w in self._workers if w.cell is not None and w.resources == idle.resources and w.waiting
            ]
            for worker in queued:
                cid = worker.cell
                if cid is None or not worker.folder.take_back(cid):
                    continue
                cell, _ = self._cells.pop(cid)
                worker.cell = None
                self._retire(worker)
                if not self._give(cell, idle):
                    self._place(cell)
                break

    def _run_debug_worker(self) -> None:
        """``cluster="debug"``: run one worker that holds a cell, here and now."""
        for worker in self._workers:
            if worker.cell is not None:
                try:
                    worker.job.result()
                except Exception as exc:  # noqa: BLE001 - its cell then ends without a result
                    logger.warning("debug worker %s failed: %s", worker.folder.wid, exc)
                return


def sbatch_parameters(spec: SlurmSpec, stage: str) -> dict[str, Any]:
    """submitit parameters of the jobs of ``stage``: the spec's resources, then its ``stage_overrides``."""
    params: dict[str, Any] = {"timeout_min": spec.timeout_min}
    if spec.cluster == "slurm":
        params.update(
            slurm_partition=spec.partition,
            slurm_account=spec.account,
            gpus_per_node=spec.gpus_per_node,
            cpus_per_task=spec.cpus_per_task,
            mem_gb=spec.mem_gb,
            slurm_array_parallelism=spec.array_parallelism,
        )
        params = {k: v for k, v in params.items() if v is not None}
    params.update(spec.stage_overrides.get(stage, {}))
    return params


def make_executor(spec: ExecutorSpec, runs_dir: Path, stage_fn: StageFunction | None = None) -> Executor:
    """The executor a grid asks for (``stage_fn`` is not used by the GPU pool's worker processes)."""
    if spec.kind == "slurm":
        return SubmititExecutor(runs_dir, spec.slurm, stage_fn)
    if spec.gpus:
        return GpuPoolExecutor(runs_dir, spec.gpus)
    return SequentialExecutor(runs_dir, stage_fn)
