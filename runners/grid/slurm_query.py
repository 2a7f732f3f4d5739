"""What the SLURM scheduler says about jobs: its state words and the ``squeue``/``sacct`` queries.

One place for the scheduler's vocabulary, used by the grid's on-disk state (whether a cell's
job may still compute it, how a restarted job's earlier runs ended) and the SLURM executor
(its worker jobs' states). Every query is a short subprocess with a timeout; a scheduler
that does not answer is reported as such, never taken for a job that has ended.
"""

from __future__ import annotations

import os
import subprocess

__all__ = [
    "SLURM_LIVE",
    "SLURM_ENDED",
    "SLURM_WAITING",
    "slurm_states",
    "slurm_job_state",
    "slurm_job_live",
    "slurm_earlier_runs",
]

#: SLURM job states (``squeue -o %T``) of a job that is queued or running (it may still compute a cell).
SLURM_LIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SUSPENDED",
        "STOPPED",
        "SIGNALING",
        "STAGE_OUT",
    }
)
#: SLURM job states of a job that has ended for good (a requeued job is ``PENDING`` or ``REQUEUED``).
SLURM_ENDED = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "TIMEOUT",
    }
)
#: Scheduler states of a job waiting to (re)start; ``PENDING`` is also what the local clusters report.
SLURM_WAITING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED"})


def _run(command: list[str]) -> subprocess.CompletedProcess[str] | None:
    """Run a scheduler command (30 s at most); None when it cannot be run or does not return."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None


def slurm_states(job_ids: list[str]) -> dict[str, str] | None:
    """SLURM state of each job in ``job_ids`` (``squeue``, then ``sacct`` for jobs it no longer lists).

    Returns
    -------
    dict of str to str, or None
        Job id → state word (``PENDING``, ``RUNNING``, ``CANCELLED``, ...); a job neither
        command knows is left out (it has left the queue). None when ``squeue`` does not answer.
    """
    if not job_ids:
        return {}
    proc = _run(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T"])
    if proc is None or proc.returncode != 0:
        return None
    states = _parse_states(proc.stdout)
    missing = [j for j in job_ids if j not in states]
    if missing:
        proc = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(missing)])
        if proc is not None and proc.returncode == 0:
            states.update(_parse_states(proc.stdout))
    return {j: s for j, s in states.items() if j in job_ids}


def _parse_states(text: str) -> dict[str, str]:
    """``JOBID|STATE`` lines → job id → first word of the state (``CANCELLED by 0`` → ``CANCELLED``)."""
    out = {}
    for line in text.splitlines():
        job, _, state = line.strip().partition("|")
        if job and state:
            out[job] = state.split()[0].rstrip("+")
    return out


def slurm_job_state(job_id: str) -> str | None:
    """SLURM state of job ``job_id`` (``squeue``): a live state when any of its tasks has one, else
    the state it ended in while the controller still lists it, ``""`` once it left the controller;
    None when ``squeue`` cannot tell."""
    proc = _run(["squeue", "-h", "-j", str(job_id), "-o", "%T"])
    if proc is None:
        return None
    if proc.returncode != 0:
        # squeue fails with "Invalid job id specified" once the job has left the controller
        return "" if "invalid job id" in proc.stderr.lower() else None
    states = [line.strip().split()[0] for line in proc.stdout.splitlines() if line.strip()]
    return next((st for st in states if st in SLURM_LIVE), states[0] if states else "")


def slurm_job_live(job_id: str) -> bool | None:
    """Whether SLURM job ``job_id`` is still queued or running (None: ``squeue`` cannot tell)."""
    state = slurm_job_state(job_id)
    return None if state is None else state in SLURM_LIVE


def slurm_earlier_runs() -> list[str]:
    """How the earlier runs of this process's SLURM job ended, when the scheduler restarted it.

    ``sacct -D`` lists one line per run of a requeued job (e.g. ``NODE_FAIL`` after its node
    went down, ``REQUEUED`` after ``scontrol requeue``), the last being this run. Empty for a
    job's first run, outside SLURM, or when ``sacct`` cannot tell.
    """
    job = os.environ.get("SLURM_JOB_ID")
    if not job or os.environ.get("SLURM_RESTART_COUNT", "0") in ("", "0"):
        return []
    proc = _run(["sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", job])
    if proc is None:
        return []
    states = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    return states[:-1] if proc.returncode == 0 else []
