"""Worker jobs without a cluster: the inbox protocol (assign / take / take back / leave) and the
executor's packing, moving and reassignment of cells, with stand-ins for submitit and squeue: jobs
run the worker in a thread and stay queued or die when the test says so."""

from __future__ import annotations

import functools
import os
import runpy
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from kdanalysis.io import read_json
from kdanalysis.results import read_results
from runners.grid import executors
from runners.grid.executors import SequentialExecutor, SubmititExecutor
from runners.grid.plan import Cell, Plan, build_plan
from runners.grid.runner import run_grid
from runners.grid.slurm_pool import Worker, WorkerFolder, workers_dir
from runners.grid.spec import SlurmSpec, parse_grid
from runners.grid.state import CellState, cell_state, cells_dir, recorded_job

submitit = pytest.importorskip("submitit")

HERE = Path(__file__).parent
fake_stage = runpy.run_path(str(HERE / "test_grid_run.py"))["fake_stage"]
PLAN = build_plan(parse_grid((HERE / "small_grid.yaml").read_text(encoding="utf-8")))
ROOTS = [c for c in PLAN if not c.deps]  # cells without dependencies


def _worker(runs: Path, folder: WorkerFolder, **kwargs: Any) -> Worker:
    options = {"idle_s": 0.0, "stop_after_s": 3600.0, "stage_fn": fake_stage, **kwargs}
    return Worker(str(runs), folder.wid, **options)


def _done(runs: Path, cell: Cell) -> bool:
    return cell_state(runs, cell.id).state is CellState.DONE


def test_an_assignment_to_a_worker_that_left_fails_and_what_reached_it_before_is_computed(
    tmp_path: Path,
) -> None:
    first, second = ROOTS[:2]
    folder = WorkerFolder.create(tmp_path)
    assert folder.assign(first)
    assert folder.close()  # the worker leaves: inbox renamed away
    assert not folder.assign(second)  # the executor learns it and gives the cell to another worker
    assert not list(folder.path.glob(".assign-*"))
    assert _worker(tmp_path, folder)() == 1
    assert folder.outcome(first.id) == {"state": "done"} and _done(tmp_path, first)
    assert folder.outcome(second.id) is None and not _done(tmp_path, second)


def test_a_cell_is_taken_by_the_worker_or_taken_back_by_the_executor_never_both(tmp_path: Path) -> None:
    first, second = ROOTS[:2]
    folder = WorkerFolder.create(tmp_path)
    assert folder.assign(first) and folder.assign(second)
    taken = folder.take_next()
    assert taken is not None and taken.id == first.id and folder.taken(first.id)
    assert not folder.take_back(first.id)  # the worker has it
    assert folder.take_back(second.id)  # not taken yet: back to the executor
    assert folder.take_next() is not None  # the one taken, left in running/ (a requeued job)
    assert folder.take_next().id == first.id


def test_a_requeued_worker_first_computes_the_cell_it_was_killed_in(tmp_path: Path) -> None:
    first, second = ROOTS[:2]
    folder = WorkerFolder.create(tmp_path)
    folder.assign(first)
    assert folder.take_next().id == first.id  # taken, then the job was killed before finishing it
    folder.assign(second)
    assert _worker(tmp_path, folder)() == 2
    assert _done(tmp_path, first) and _done(tmp_path, second)
    assert not folder.taken(first.id) and folder.outcome(first.id) == {"state": "done"}


def test_a_worker_takes_cells_while_busy_leaves_when_idle_and_stops_taking_after_its_time(
    tmp_path: Path,
) -> None:
    first, second, third = ROOTS[:3]
    folder = WorkerFolder.create(tmp_path)
    worker = _worker(tmp_path, folder, idle_s=0.5)
    thread = threading.Thread(target=worker)
    thread.start()
    assert folder.assign(first)
    _until(lambda: folder.outcome(first.id) is not None)
    assert folder.assign(second)  # idle less than idle_s: still there
    thread.join(timeout=10)
    assert not thread.is_alive() and folder.is_closed()
    assert _done(tmp_path, second) and not folder.assign(third)

    late = WorkerFolder.create(tmp_path)
    late.assign(third)  # given before the job started; the job starts past its half time limit
    start = time.monotonic()
    assert _worker(tmp_path, late, idle_s=60.0, stop_after_s=0.0)() == 1
    assert time.monotonic() - start < 30  # left at once, without waiting to be idle
    assert _done(tmp_path, third) and late.is_closed()


def test_a_failing_cell_is_recorded_and_a_cell_that_cannot_run_is_reported_the_worker_goes_on(
    tmp_path: Path,
) -> None:
    first, second = ROOTS[:2]
    early = next(c for c in PLAN if c.deps)  # its dependencies are not done

    def fail_first(cell: Cell, work: Path, deps: Any) -> dict[str, str]:
        if cell.id == first.id:
            raise ValueError("bad cell")
        return fake_stage(cell, work, deps)

    folder = WorkerFolder.create(tmp_path)
    for cell in (first, early, second):
        folder.assign(cell)
        time.sleep(0.01)  # taken in the order given
    assert _worker(tmp_path, folder, stage_fn=fail_first)() == 3
    assert folder.outcome(first.id) == {"state": "failed"} and _done(tmp_path, second)
    assert cell_state(tmp_path, first.id).error == "ValueError: bad cell"
    outcome = folder.outcome(early.id)
    assert outcome["state"] is None and "dependencies not done" in outcome["error"], outcome


# the executor, with a stand-in for submitit


class FakeJob:
    """A submitit job whose worker runs in a thread once started (queued until then)."""

    def __init__(self, fn: Callable[[], Any], job_id: str, start: bool) -> None:
        self.fn, self.job_id = fn, job_id
        self.paths = SimpleNamespace(stderr=f"/logs/{job_id}.err")
        self.thread: threading.Thread | None = None
        self.dead: str | None = None
        if start:
            self.start()

    def start(self) -> None:
        self.thread = threading.Thread(target=self.fn, daemon=True)
        self.thread.start()

    def done(self) -> bool:
        return self.dead is not None or (self.thread is not None and not self.thread.is_alive())

    @property
    def state(self) -> str:
        return self.dead or ("COMPLETED" if self.done() else "RUNNING" if self.thread else "PENDING")

    def cancel(self, check: bool = True) -> None:
        self.dead = self.dead or "CANCELLED"


class FakeSubmitit:
    """``submitit.AutoExecutor`` stand-in: jobs start at once unless ``queued`` says how many stay queued."""

    def __init__(self, folder: Path, cluster: str, **kwargs: Any) -> None:
        self.jobs: list[FakeJob] = []
        self.queued = 0
        self.states: dict[str, str] = {}  # job id → state the scheduler reports instead of the job's own

    def update_parameters(self, **params: Any) -> None:
        self.params = params

    def submit(self, fn: Callable[[], Any]) -> FakeJob:
        job = FakeJob(fn, str(100 + len(self.jobs)), start=self.queued <= 0)
        self.queued -= 1
        self.jobs.append(job)
        return job


@pytest.fixture()
def fake_submitit(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[SubmititExecutor, FakeSubmitit]]:
    def make(
        runs: Path,
        stage: Callable[..., Any] = fake_stage,
        hold_s: float = 3.0,
        state_poll_s: float = 0.0,
        **spec: Any,
    ) -> tuple[Any, FakeSubmitit]:
        monkeypatch.setattr(submitit, "AutoExecutor", FakeSubmitit)
        options = {"cluster": "slurm", "worker_idle_s": 2.0, "array_parallelism": 2, **spec}
        executor = SubmititExecutor(
            runs, SlurmSpec(**options), stage_fn=stage, hold_s=hold_s, state_poll_s=state_poll_s
        )
        fake = executor._executor  # the stand-in, to start and kill its jobs

        def squeue(job_ids: list[str]) -> dict[str, str]:  # what squeue/sacct would say of the fake's jobs
            return {j.job_id: j.dead or fake.states.get(j.job_id, j.state) for j in fake.jobs}

        monkeypatch.setattr(executors, "slurm_states", squeue)
        return executor, fake

    return make


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _wait_all(executor: SubmititExecutor, ids: set[str]) -> None:
    ended: set[str] = set()
    deadline = time.monotonic() + 20
    while ended != ids:
        assert time.monotonic() < deadline, ended
        ended.update(executor.wait(1.0))


def test_the_executor_packs_a_grid_into_few_worker_jobs_with_the_same_results(
    tmp_path: Path, fake_submitit: Callable[..., Any]
) -> None:
    executor, fake = fake_submitit(tmp_path / "runs", worker_idle_s=60)
    result = run_grid(PLAN, tmp_path / "runs", executor=executor, poll_s=0.2)
    assert result.counts == {"done": len(PLAN)}
    assert len(fake.jobs) <= 2 < len(PLAN)  # every cell went to one of two long-lived workers
    reference = run_grid(PLAN, tmp_path / "seq", executor=SequentialExecutor(tmp_path / "seq", fake_stage))
    pd.testing.assert_frame_equal(read_results(result.results_path), read_results(reference.results_path))
    assert not list(cells_dir(tmp_path / "runs").glob(".job-*"))  # job records forgotten once ended
    assert all(j.done() for j in fake.jobs)  # closed by the driver, which waited for them to leave
    assert list(workers_dir(tmp_path / "runs").iterdir())
    fake_submitit(tmp_path / "runs")  # the next executor removes the folders of workers that left
    assert not list(workers_dir(tmp_path / "runs").iterdir())


def test_one_cell_per_job_when_workers_do_not_wait(tmp_path: Path, fake_submitit: Callable[..., Any]) -> None:
    executor, fake = fake_submitit(tmp_path, worker_idle_s=0)
    assert run_grid(PLAN, tmp_path, executor=executor, poll_s=0.2).counts == {"done": len(PLAN)}
    assert len(fake.jobs) == len(PLAN)


def test_a_cell_given_to_a_queued_job_moves_to_an_idle_worker_and_the_queued_job_is_cancelled(
    tmp_path: Path, fake_submitit: Callable[..., Any]
) -> None:
    first, second, third = ROOTS[:3]
    release = threading.Event()

    def held(cell: Cell, work: Path, deps: Any) -> dict[str, str]:
        if cell.id == second.id:
            release.wait(10)
        return fake_stage(cell, work, deps)

    executor, fake = fake_submitit(tmp_path, stage=held, hold_s=0)
    executor.submit([first])
    _wait_all(executor, {first.id})  # one worker, up and idle
    executor.submit([second])  # to the idle worker, which is then busy
    assert executor.jobs()[second.id].job_id == "100" and len(fake.jobs) == 1
    fake.queued = 1
    executor.submit([third])  # to a new job, still queued
    assert executor.jobs()[third.id].job_id == "101" and recorded_job(tmp_path, third.id)["job_id"] == "101"
    release.set()  # the first worker becomes idle and takes the third cell over
    _wait_all(executor, {second.id, third.id})
    assert fake.jobs[1].dead == "CANCELLED" and fake.jobs[1].thread is None  # never ran
    assert _done(tmp_path, third) and len(fake.jobs) == 2
    executor.close()


def test_a_cell_waits_briefly_for_a_busy_worker_before_a_new_job_is_submitted(
    tmp_path: Path, fake_submitit: Callable[..., Any]
) -> None:
    first, second, third = ROOTS[:3]
    release = threading.Event()

    def held(cell: Cell, work: Path, deps: Any) -> dict[str, str]:
        if cell.id != third.id:
            release.wait(10)
        return fake_stage(cell, work, deps)

    executor, fake = fake_submitit(tmp_path, stage=held, hold_s=60)
    executor.submit([first])  # nobody busy: a job at once
    _until(lambda: WorkerFolder(tmp_path, fake.jobs[0].fn.wid).started())
    assert executor.wait(0.5) == []
    assert executor.capacity() == 1
    executor.submit([second])  # the only worker is busy: the cell waits for it
    assert len(fake.jobs) == 1 and second.id not in executor.jobs() and executor.capacity() == 0
    release.set()
    _wait_all(executor, {first.id, second.id})
    assert len(fake.jobs) == 1  # both computed by the one worker
    executor.close()
    assert fake.jobs[0].done()  # close() returns once the idle workers have left

    runs = tmp_path / "short"
    executor, fake = fake_submitit(runs, stage=held, hold_s=0.5)
    release.clear()
    executor.submit([first])
    _until(lambda: WorkerFolder(runs, fake.jobs[0].fn.wid).started())
    assert executor.wait(0.3) == []
    executor.submit([third])  # the worker stays busy longer than the cell waits: a second job
    _wait_all(executor, {third.id})
    assert len(fake.jobs) == 2 and executor.jobs() == {first.id: executor.jobs()[first.id]}
    release.set()
    _wait_all(executor, {first.id})
    executor.close()


def test_a_job_that_ended_before_taking_its_cell_hands_it_to_another_worker(
    tmp_path: Path, fake_submitit: Callable[..., Any]
) -> None:
    (cell,) = ROOTS[:1]
    executor, fake = fake_submitit(tmp_path)
    fake.queued = 1
    executor.submit([cell])
    fake.jobs[0].dead = "CANCELLED"  # scancel of the queued job
    _wait_all(executor, {cell.id})
    assert executor.ended_reason(cell.id) is None and _done(tmp_path, cell)
    assert [j.job_id for j in fake.jobs] == ["100", "101"]
    assert not (workers_dir(tmp_path) / fake.jobs[0].fn.wid).exists()  # the dead worker's folder is gone
    executor.close()


def test_a_job_killed_while_computing_ends_its_cell_with_the_schedulers_reason(
    tmp_path: Path, fake_submitit: Callable[..., Any]
) -> None:
    (cell,) = ROOTS[:1]
    executor, fake = fake_submitit(tmp_path)
    fake.queued = 1
    executor.submit([cell])
    folder = WorkerFolder(tmp_path, fake.jobs[0].fn.wid)
    assert folder.take_next().id == cell.id  # the worker took it ...
    fake.jobs[0].dead = "CANCELLED"  # ... and was cancelled
    _wait_all(executor, {cell.id})
    reason = executor.ended_reason(cell.id)
    assert reason is not None and "CANCELLED" in reason and "100" in reason, reason
    assert len(fake.jobs) == 1  # not given to another worker
    executor.close()


def test_the_debug_cluster_runs_each_worker_here(tmp_path: Path) -> None:
    executor = SubmititExecutor(tmp_path, SlurmSpec(cluster="debug"), stage_fn=functools.partial(fake_stage))
    plan = Plan(grid=PLAN.grid, root=PLAN.root, cells={c.id: c for c in ROOTS})
    assert run_grid(plan, tmp_path, executor=executor, poll_s=0.1).counts == {"done": len(ROOTS)}


def test_a_cell_its_worker_cannot_run_ends_with_the_workers_reason(
    tmp_path: Path, fake_submitit: Callable[..., Any]
) -> None:
    early = next(c for c in PLAN if c.deps)  # submitted before its dependencies are done
    executor, _ = fake_submitit(tmp_path)
    executor.submit([early])
    _wait_all(executor, {early.id})
    reason = executor.ended_reason(early.id)
    assert reason is not None and "dependencies not done" in reason and "job 100" in reason, reason
    executor.close()


def test_with_slurm_a_worker_requeued_without_a_cell_is_cancelled_and_a_cancelled_one_fails_its_cell(
    tmp_path: Path, fake_submitit: Callable[..., Any]
) -> None:
    first, second, third = ROOTS[:3]
    release = threading.Event()

    def held(cell: Cell, work: Path, deps: Any) -> dict[str, str]:
        if cell.id == third.id:
            release.wait(10)
        return fake_stage(cell, work, deps)

    executor, fake = fake_submitit(tmp_path, stage=held)
    executor.submit([first])
    _wait_all(executor, {first.id})
    fake.states["100"] = "PENDING"  # its node failed: requeued, waiting to start again
    executor.wait(0.3)
    assert fake.jobs[0].dead == "CANCELLED"  # nothing to come back for
    executor.submit([second])  # not given to the requeued worker: a new job
    assert executor.jobs()[second.id].job_id == "101"
    _wait_all(executor, {second.id})

    fake.queued = 1
    executor.submit([third])  # to worker 101, which is up and idle
    folder = WorkerFolder(tmp_path, fake.jobs[1].fn.wid)
    _until(lambda: folder.taken(third.id))
    fake.states["101"] = "CANCELLED"  # scancel while it computes ...
    fake.jobs[1].dead = "CANCELLED"
    _wait_all(executor, {third.id})
    reason = executor.ended_reason(third.id)
    assert reason is not None and reason.startswith("slurm job 101 ended CANCELLED"), reason
    release.set()
    executor.close()


def test_with_slurm_a_worker_seen_pending_before_it_started_is_not_taken_for_a_requeued_one(
    tmp_path: Path, fake_submitit: Callable[..., Any]
) -> None:
    first, second = ROOTS[:2]
    executor, fake = fake_submitit(tmp_path, state_poll_s=60)
    fake.queued = 1
    executor.submit([first])
    executor.wait(0.3)  # squeue says PENDING; it is not asked again for a minute
    assert executor.jobs()[first.id].state == "PENDING"
    fake.jobs[0].start()
    _wait_all(executor, {first.id})
    executor.submit([second])  # the worker is up and idle: it gets the cell and is not cancelled
    _wait_all(executor, {second.id})
    assert len(fake.jobs) == 1 and fake.jobs[0].dead is None
    executor.close()


def test_the_local_cluster_runs_a_plan_in_a_few_worker_processes(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = SlurmSpec(cluster="local", worker_idle_s=5, array_parallelism=2)
    executor = SubmititExecutor(tmp_path / "runs", spec, stage_fn=fake_stage)
    result = run_grid(PLAN, tmp_path / "runs", executor=executor, poll_s=0.2)
    assert result.counts == {"done": len(PLAN)}
    pids = {read_json(cells_dir(tmp_path / "runs") / cid / "status.json")["pid"] for cid in PLAN.cells}
    assert len(pids) <= 2 and os.getpid() not in pids
    reference = run_grid(PLAN, tmp_path / "seq", executor=SequentialExecutor(tmp_path / "seq", fake_stage))
    pd.testing.assert_frame_equal(read_results(result.results_path), read_results(reference.results_path))
    time.sleep(0.5)  # a worker interrupted by submitit would print its traceback by now
    assert "Traceback" not in capfd.readouterr().err  # the idle workers left before their handles went


@pytest.mark.parametrize(("env", "threads"), [({}, 1), ({"KDANALYSIS_THREADS": "3"}, 3)])
def test_a_worker_gives_its_cells_the_jobs_cpus_as_threads_unless_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], threads: int
) -> None:
    from runners.env import cpu_threads

    monkeypatch.delenv("KDANALYSIS_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen = []

    def record(cell: Cell, work: Path, deps: Any) -> dict[str, str]:
        seen.append(cpu_threads())
        return fake_stage(cell, work, deps)

    folder = WorkerFolder.create(tmp_path)
    folder.assign(ROOTS[0])
    _worker(tmp_path, folder, stage_fn=record)()
    assert seen == [threads]
