"""run-grid's terminal output under a scheduler: job states per stage in the live progress, sbatch
resources per stage in ``--dry-run`` (no cluster needed: the jobs are given, the dry run submits nothing)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import yaml
from rich.console import Console

from runners.cli import main
from runners.grid.executors import JobInfo
from runners.grid.plan import Plan, build_plan
from runners.grid.progress import GridProgress
from runners.grid.spec import load_grid, parse_grid
from runners.grid.state import CellState, CellStatus

HERE = Path(__file__).parent
SLURM_GRID = HERE / "slurm_grid.yaml"


def _plan() -> Plan:
    grid = HERE / "small_grid.yaml"
    return build_plan(load_grid(grid), root=grid.parent)


def _render(plan: Plan, running: set[str], jobs: dict[str, JobInfo]) -> str:
    """What the progress display shows after one update (a recording console, not a terminal)."""
    console = Console(file=io.StringIO(), record=True, width=200)
    states = {cid: CellStatus(CellState.PENDING) for cid in plan.cells}
    with GridProgress(plan, console=console) as bar:
        bar(states, running, jobs)
    return console.export_text()


def test_progress_shows_per_stage_job_states_with_job_ids() -> None:
    plan = _plan()
    prepare = [c.id for c in plan if c.stage == "prepare"]
    kd = [c.id for c in plan if c.stage == "kd"]
    jobs = {
        prepare[0]: JobInfo("552", "RUNNING"),
        prepare[1]: JobInfo("551", "RUNNING"),
        prepare[2]: JobInfo("553", "PENDING"),
        kd[0]: JobInfo("560_0", "REQUEUED"),
        kd[1]: JobInfo("560_1", "PENDING"),
    }
    text = _render(plan, set(jobs), jobs)
    lines = [line.strip() for line in text.splitlines()]
    assert "prepare: 2 running (551, 552) · 1 pending (553)" in lines, text
    assert "kd: 1 pending (560_1) · 1 requeued (560_0)" in lines, text
    assert "running 5" in text
    # stages in plan order, only stages with jobs
    stage_lines = [line for line in lines if re.match(r"^\w+: \d", line)]
    assert [line.split(":")[0] for line in stage_lines] == ["prepare", "kd"], text


def test_cells_packed_into_one_job_count_once_each_and_long_id_lists_are_cut() -> None:
    spec = yaml.safe_load((HERE / "small_grid.yaml").read_text(encoding="utf-8"))
    spec["seeds"] = [1, 2, 3, 4, 5]
    plan = build_plan(parse_grid(yaml.safe_dump(spec)))
    kd = [c.id for c in plan if c.stage == "kd"]
    assert len(kd) == 10
    packed = {cid: JobInfo(str(700 + i // 4), "RUNNING") for i, cid in enumerate(kd)}  # 4 cells per job
    text = _render(plan, set(kd), packed)
    assert "kd: 10 running (700, 701, 702)" in text, text
    one_each = {cid: JobInfo(f"800_{i}", "PENDING") for i, cid in enumerate(kd)}
    one_each["not-a-cell"] = JobInfo("999", "RUNNING")  # a job of no cell of the plan: not shown
    text = _render(plan, set(), one_each)
    assert "kd: 10 pending (800_0, 800_1, 800_2, 800_3, 800_4, 800_5, +4)" in text, text
    assert "999" not in text


def test_no_scheduler_no_job_lines() -> None:
    plan = _plan()
    text = _render(plan, {next(iter(plan.cells))}, {})
    assert "running 1" in text
    assert not re.search(r"^\s*\w+: \d+ \w+ \(", text, re.M), text


def _table_rows(text: str) -> dict[str, list[str]]:
    """Rows of the rich table that follows 'sbatch resources' (first cell → cells), header included."""
    rows: dict[str, list[str]] = {}
    for line in text.split("sbatch resources per stage", 1)[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("┃│").split("┃" if "┃" in line else "│")]
        if len(cells) > 2 and cells[0]:
            rows.setdefault(cells[0], cells)
    return rows


def test_dry_run_of_a_slurm_grid_prints_each_stage_sbatch_resources(
    tmp_path: Path, run_cli: Callable[..., tuple[int, str]]
) -> None:
    spec = yaml.safe_load(SLURM_GRID.read_text(encoding="utf-8"))
    spec["executor"]["slurm"]["stage_overrides"] = {"teacher_sft": {"mem_gb": 6, "timeout_min": 45}}
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(spec), encoding="utf-8")
    code, out = run_cli(main, "run-grid", str(grid), "--runs-dir", str(tmp_path / "runs"), "--dry-run")
    assert code == 0, out
    assert "sbatch resources per stage (cluster slurm)" in out, out
    rows = _table_rows(out)
    header = rows.pop("stage")
    plan = build_plan(load_grid(grid), root=grid.parent)
    assert list(rows) == list(plan.stage_counts()), out
    column = {name: i for i, name in enumerate(header)}
    for stage, row in rows.items():
        assert row[column["cells"]] == str(plan.stage_counts()[stage])
        assert row[column["cpus_per_task"]] == "1" and row[column["gpus_per_node"]] == "0"
        expected = ("6", "45") if stage == "teacher_sft" else ("2", "10")
        assert (row[column["mem_gb"]], row[column["timeout_min"]]) == expected, (stage, row)
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_dry_run_of_a_local_grid_prints_no_sbatch_resources(
    tmp_path: Path, run_cli: Callable[..., tuple[int, str]]
) -> None:
    code, out = run_cli(
        main, "run-grid", str(HERE / "small_grid.yaml"), "--runs-dir", str(tmp_path / "runs"), "--dry-run"
    )
    assert code == 0, out
    assert "sbatch" not in out
