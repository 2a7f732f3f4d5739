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
``CUDA_VISIBLE_DEVICES``) and :class:`SubmititExecutor` (SLURM job arrays via submitit,
requeued on preemption; submitit's ``local``/``debug`` clusters for testing).

A Ray executor is a small addition: ``submit`` calls
``ray.remote(num_gpus=...)(execute_cell).remote(cell, runs_dir)`` per cell and keeps the
object refs; ``wait`` calls ``ray.wait(refs, num_returns=1, timeout=timeout)`` and maps the
ready refs back to cell ids; ``capacity`` is the number of free GPUs; nothing else changes.
"""

from __future__ import annotations

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
from runners.grid.spec import ExecutorSpec, SlurmSpec
from runners.grid.state import StageFunction, execute_cell

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


class _CellJob:
    """Picklable submitit callable; a requeued job runs the cell again.

    ``checkpoint`` makes submitit requeue the job on preemption/timeout (up to
    ``max_num_timeout`` times). The next run of a training cell takes over the interrupted
    run's temporary folder (same SLURM job id, :func:`~runners.grid.state.execute_cell`) and
    resumes from its last checkpoint; other cells start again in a fresh folder.
    """

    def __init__(self, stage_fn: StageFunction | None = None) -> None:
        self.stage_fn = stage_fn

    def __call__(self, cell: Cell, runs_dir: str) -> str:
        return execute_cell(cell, runs_dir, self.stage_fn).state.value

    def checkpoint(self, cell: Cell, runs_dir: str) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(_CellJob(self.stage_fn), cell, runs_dir)


class SubmititExecutor(Executor):
    """SLURM via submitit: cells of one stage submitted together as a job array.

    Resources come from :class:`~runners.grid.spec.SlurmSpec`, with
    ``stage_overrides[stage]`` applied on top (e.g. more GPUs for ``teacher_sft``).
    ``cluster="debug"`` runs jobs in this process and ``"local"`` in local subprocesses
    (submitit's own test executors).

    Parameters
    ----------
    runs_dir : Path
    spec : SlurmSpec
    stage_fn : callable, optional
        Stage implementation (must be picklable for real clusters); default the real stages.
    """

    def __init__(self, runs_dir: Path, spec: SlurmSpec, stage_fn: StageFunction | None = None) -> None:
        super().__init__(runs_dir)
        try:
            import submitit
        except ImportError as exc:  # pragma: no cover - submitit is in the slurm extra
            raise BackendUnavailableError(
                "the SLURM executor needs submitit: pip install 'kdanalysis[slurm]'"
            ) from exc
        self.spec = spec
        self.stage_fn = stage_fn
        extra = {"slurm_max_num_timeout": spec.max_num_timeout} if spec.cluster == "slurm" else {}
        self._executor = submitit.AutoExecutor(
            folder=self.runs_dir / "submitit", cluster=spec.cluster, **extra
        )
        self._jobs: dict[str, Any] = {}
        self._reasons: dict[str, str] = {}

    def capacity(self) -> int:
        return max(self.spec.array_parallelism - len(self._jobs), 0)

    def ended_reason(self, cid: str) -> str | None:
        return self._reasons.get(cid)

    def submit(self, cells: Sequence[Cell]) -> None:
        by_stage: dict[str, list[Cell]] = {}
        for cell in cells:
            by_stage.setdefault(cell.stage, []).append(cell)
        for stage, group in by_stage.items():
            self._executor.update_parameters(name=f"kd-{stage}", **sbatch_parameters(self.spec, stage))
            job_fn = _CellJob(self.stage_fn)
            jobs = self._executor.map_array(job_fn, group, [str(self.runs_dir)] * len(group))
            for cell, job in zip(group, jobs, strict=True):
                self._jobs[cell.id] = job
                logger.info("cell %s submitted as job %s", cell.id, job.job_id)

    def wait(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            ended = []
            for cid, job in self._jobs.items():
                if self.spec.cluster == "debug" or job.done():
                    try:
                        job.result()  # the debug executor runs the job here
                    except Exception as exc:  # a job killed outside execute_cell (scancel, time limit, node)
                        logger.warning("job of cell %s ended abnormally: %s", cid, exc)
                        self._reasons[cid] = (
                            f"{self.spec.cluster} job {job.job_id} ended {job.state} without a result; "
                            f"see {job.paths.stderr}"
                        )
                    ended.append(cid)
                    if self.spec.cluster == "debug":
                        break
            if ended or not self._jobs or time.monotonic() >= deadline:
                break
            time.sleep(min(5.0, max(deadline - time.monotonic(), 0.0)))
        for cid in ended:
            del self._jobs[cid]
        return ended

    def close(self) -> None:
        self._jobs.clear()


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
