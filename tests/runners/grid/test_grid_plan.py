"""Plan: stages as a dependency graph, hashed cell ids, shared caches, dry-run output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runners.distill.config import TOKEN_KD_METHODS
from runners.grid.plan import STAGES, build_plan, cell_id
from runners.grid.runner import bundled_grids
from runners.grid.spec import load_grid, parse_grid

SMALL_GRID = (Path(__file__).parent / "small_grid.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def paper_plan(monkeypatch_module: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch_module.setenv("KD_DATA", "/nonexistent/kd_data")
    return build_plan(load_grid(bundled_grids()["paper"]))


@pytest.fixture(scope="module")
def monkeypatch_module():  # noqa: ANN201
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_cell_id_is_a_stable_hash_of_the_resolved_config() -> None:
    a = cell_id("train", {"x": 1, "y": [1, 2]})
    assert a == cell_id("train", {"y": [1, 2], "x": 1}) and len(a) == 12
    assert a != cell_id("eval", {"x": 1, "y": [1, 2]}) != cell_id("train", {"x": 2, "y": [1, 2]})
    first = build_plan(parse_grid(SMALL_GRID))
    assert list(first.cells) == list(build_plan(parse_grid(SMALL_GRID)).cells)


def test_dependencies_come_first_and_exist() -> None:
    plan = build_plan(parse_grid(SMALL_GRID))
    seen: set[str] = set()
    for cell in plan:
        assert set(cell.deps) <= seen, cell.label
        seen.add(cell.id)
    assert plan.stage_counts() == {
        "prepare": 3,
        "teacher_sft": 1,
        "teacher_eval": 1,
        "teacher_cache": 1,
        "student_base_eval": 1,
        "student_sft": 1,
        "student_sft_eval": 1,
        "kd": 2,
        "kd_eval": 2,
        "kd_fidelity": 2,
        "sft_fidelity": 1,
    }
    assert list(plan.stage_counts()) == [s for s in STAGES if s in plan.stage_counts()]


def test_editing_the_grid_keeps_ids_of_unchanged_cells() -> None:
    before = build_plan(parse_grid(SMALL_GRID))
    after = build_plan(parse_grid(SMALL_GRID.replace("temperatures: [1]", "temperatures: [1, 2]")))
    assert set(before.cells) < set(after.cells)
    assert after.stage_counts()["kd"] == 4


def test_toy_task_settings_are_part_of_the_data_cell_ids() -> None:
    base = build_plan(parse_grid(SMALL_GRID))
    data_id = next(c.id for c in base if c.config.get("what") == "toy_data")
    models = {c.id for c in base if c.config.get("what") == "toy_model"}
    for option in ("toy_difficulty: 1", "toy_max_number: 9", "toy_operations: [add]"):
        text = SMALL_GRID.replace("toy_test_items: 6}", f"toy_test_items: 6, {option}}}")
        edited = build_plan(parse_grid(text))
        data = [c for c in edited if c.config.get("what") == "toy_data"]
        assert len(data) == 1 and data[0].id != data_id, option
        # every cell that reads the data is new; the untrained toy models are reused
        assert set(base.cells) & set(edited.cells) == models, option
    # the defaults written out are the same cells
    explicit = SMALL_GRID.replace(
        "toy_test_items: 6}",
        "toy_test_items: 6, toy_difficulty: 2, toy_max_number: null, toy_operations: [add, sub, mul]}",
    )
    assert list(build_plan(parse_grid(explicit)).cells) == list(base.cells)


def test_teacher_training_overrides_only_the_teacher_sft() -> None:
    base = build_plan(parse_grid(SMALL_GRID))
    text = SMALL_GRID.replace(
        "evaluation:", "teacher_training:\n  optim: {max_steps: 7}\n  log_every: 2\nevaluation:"
    )
    edited = build_plan(parse_grid(text))
    teacher = next(c for c in edited if c.stage == "teacher_sft")
    optim = {"lr": 0.003, "warmup_steps": 1, "batch_size": 4, "max_steps": 7}
    assert teacher.config["training"]["optim"] == optim
    assert teacher.config["training"]["log_every"] == 2
    assert teacher.config["training"]["max_length"] == 128
    changed = {c.stage for c in edited if c.id not in base.cells}
    # the teacher and everything downstream of it; student SFT, base evals and the data are unchanged
    assert changed == {
        "teacher_sft",
        "teacher_eval",
        "teacher_cache",
        "kd",
        "kd_eval",
        "kd_fidelity",
        "sft_fidelity",
    }
    assert next(c for c in edited if c.stage == "teacher_cache").config["training"]["optim"]["max_steps"] == 3


def test_paper_plan_stages_and_shared_caches(paper_plan) -> None:  # noqa: ANN001
    counts = paper_plan.stage_counts()
    # per domain: 3B pairs 2x8, 7B pairs 3x(8+2 noise), 14B 4x3, Llama 2x3 KD cells
    assert counts["kd"] == 2 * (2 * 8 + 3 * 10 + 4 * 3 + 2 * 3)
    assert counts["kd_eval"] == counts["kd_fidelity"] == counts["kd"]
    assert counts["teacher_sft"] == 8 and counts["sft_fidelity"] == 22
    # Qwen2.5-3B/7B are teachers and students: fine-tuned once per domain
    assert counts["student_sft"] == 2 * 4
    # one cache per (teacher, teacher kind, domain), used by its fkl cells at τ = 1 (the cells the
    # cache serves within its error bound); other token-level KD cells use the live teacher
    assert counts["teacher_cache"] == 2 * (4 + 2)
    caches = {c.id for c in paper_plan if c.stage == "teacher_cache"}
    for cell in paper_plan:
        if cell.stage == "kd":
            uses_cache = bool(caches & set(cell.deps))
            served = cell.config["method"] == "fkl" and cell.config["temperature"] == 1.0
            assert uses_cache == served, cell.label
            assert cell.config["method"] in TOKEN_KD_METHODS or not uses_cache
    base = [c for c in paper_plan if c.stage == "kd" and c.config["teacher_kind"] == "base"]
    assert len(base) == 2 * 5 and all("train_cell" not in c.config["teacher"] for c in base)


def test_dry_run_prints_stages_states_and_estimate(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(SMALL_GRID)
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runners",
            "run-grid",
            str(path),
            "--runs-dir",
            str(runs),
            "--dry-run",
            "--list",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "16 cells" in out
    for stage in ("teacher_sft", "teacher_cache", "kd_fidelity", "total"):
        assert stage in out
    kd_row = next(line for line in out.splitlines() if line.strip("│ ").startswith("kd "))
    assert "6" in kd_row.split("│")[7]  # 2 KD cells x 3 steps
    assert out.count("pending") >= 16
    assert not runs.exists()


def test_paper_dry_run(shared_data: Path) -> None:
    env = {"KD_DATA": str(shared_data), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "runners", "run-grid", "paper", "--runs-dir", "unused", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "462 cells" in proc.stdout and "kd_fidelity" in proc.stdout
    teacher_eval = next(line for line in proc.stdout.splitlines() if "teacher_eval" in line)
    assert "?" not in teacher_eval.split("│")[9]  # eval items known from the shipped test sets
