"""Missing input files are found when the grid is planned; only the cells that read them fail."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from kdanalysis.results import results_frame, write_results
from runners.grid.command import run_grid_command
from runners.grid.executors import SequentialExecutor
from runners.grid.inputs import input_failures, missing_inputs
from runners.grid.plan import Cell, Plan, build_plan
from runners.grid.runner import plan_states, run_grid
from runners.grid.spec import load_grid
from runners.grid.state import CellState

HINT = "generative/dataset/hellaswag/test.json of the LCS2-IIITD/KD_generalization repository"


def _item(answer: str) -> dict[str, str]:
    return {"instruction": "q", "input": "", "output": "", "answer": answer}


def _grid(tmp_path: Path, *, hellaswag: bool = False, math_train: bool = True) -> Path:
    """A two-domain grid over real task ids; the commonsense folder lacks hellaswag.json."""
    data = tmp_path / "data"
    (data / "testsets").mkdir(parents=True, exist_ok=True)
    for name, answer in [("gsm8k.json", "3"), ("boolq.json", "true")]:
        (data / "testsets" / name).write_text(json.dumps([_item(answer)]))
    if hellaswag:
        (data / "testsets" / "hellaswag.json").write_text(json.dumps([_item("ending1")]))
    if math_train:
        (data / "math.json").write_text(json.dumps([_item("3")] * 8))
    (data / "cs.json").write_text(json.dumps([_item("true")] * 8))
    path = tmp_path / "grid.yaml"
    path.write_text(
        textwrap.dedent("""
        study: missing_test
        models:
          T: {path: org/teacher, family: fam, params_b: 2}
          S: {path: org/student, family: fam, params_b: 1}
        teachers: [T]
        students: [S]
        methods: [{method: fkl}]
        seeds: [1]
        teacher_cache: {enabled: false}
        training: {data: {val_size: 0}, optim: {batch_size: 4, micro_batch_size: 4}}
        domains:
          math: {train: data/math.json, data_dir: data/testsets, tasks: [gsm8k]}
          commonsense: {train: data/cs.json, data_dir: data/testsets, tasks: [boolq, hellaswag]}
    """)
    )
    return path


def _plan(path: Path) -> Plan:
    return build_plan(load_grid(path), root=path.parent)


def _cells(plan: Plan, *, kind: str, domain: str) -> set[str]:
    def domain_of(cell: Cell) -> str:
        return cell.config["domain"] if "domain" in cell.config else cell.config["labels"]["domain"]

    return {c.id for c in plan if c.kind == kind and domain_of(c) == domain}


def _fake_stage(cell: Cell, work: Path, deps: Mapping[str, Path], *, ran: list[str]) -> dict[str, str]:
    ran.append(cell.id)
    if cell.kind in ("eval", "fidelity"):
        labels = dict(cell.config["labels"])
        tau = labels.pop("temperature")
        row = {
            **labels,
            "temperature": float("nan") if tau is None else tau,
            "task": "t",
            "metric": "accuracy",
            "value": 1.0,
            "run_id": cell.id,
        }
        write_results(results_frame([row]), work / "results.parquet")
        return {"results": "results.parquet"}
    return {}


def test_missing_test_file_is_found_at_plan_time_with_where_to_get_it(tmp_path: Path) -> None:
    plan = _plan(_grid(tmp_path))
    missing = missing_inputs(plan)
    assert [m.what for m in missing] == ["test set of task 'hellaswag'"]
    assert set(missing[0].cells) == _cells(plan, kind="eval", domain="commonsense")
    assert "hellaswag.json" in missing[0].message and HINT in missing[0].message
    assert "not in the" not in missing[0].message
    assert set(input_failures(missing)) == set(missing[0].cells)


def test_dry_run_lists_the_missing_file_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _grid(tmp_path)
    runs = tmp_path / "runs"
    assert run_grid_command(path, runs, dry_run=True, progress=False) == 0
    out = " ".join(capsys.readouterr().out.split())  # undo the console's line wrapping
    assert "missing test set of task 'hellaswag' (4 cells fail until it is there)" in out
    assert HINT in out
    assert not runs.exists()


def test_only_the_cells_that_read_the_file_fail_and_the_others_go_on(tmp_path: Path) -> None:
    path = _grid(tmp_path)
    plan = _plan(path)
    runs = tmp_path / "runs"
    ran: list[str] = []

    def stage(cell: Cell, work: Path, deps: Mapping[str, Path]) -> dict[str, str]:
        return _fake_stage(cell, work, deps, ran=ran)

    result = run_grid(plan, runs, executor=SequentialExecutor(runs, stage), collect=False)
    needs_file = _cells(plan, kind="eval", domain="commonsense")
    assert set(result.failed) == needs_file
    assert all(HINT in error for error in result.failed.values())
    assert not needs_file & set(ran)  # failed at once, never started
    blocked = plan.dependents(needs_file)
    assert blocked == _cells(plan, kind="fidelity", domain="commonsense") and blocked
    assert result.counts == {
        "done": len(plan) - len(needs_file) - len(blocked),
        "failed": len(needs_file),
        "blocked": len(blocked),
    }
    assert _cells(plan, kind="train", domain="commonsense") <= set(ran)  # training does not read it

    # once the file is there the cells run, without --retry-failed
    _grid(tmp_path, hellaswag=True)
    states = plan_states(plan, runs)
    assert {states[c].state for c in needs_file} == {CellState.PENDING}
    again = run_grid(plan, runs, executor=SequentialExecutor(runs, stage), collect=False)
    assert again.failed == {} and again.counts == {"done": len(plan)}


def test_missing_training_file_fails_that_domains_training_only(tmp_path: Path) -> None:
    plan = _plan(_grid(tmp_path, hellaswag=True, math_train=False))
    missing = missing_inputs(plan)
    assert [m.what for m in missing] == ["training file of domain 'math'"]
    assert set(missing[0].cells) == _cells(plan, kind="train", domain="math")
    states = plan_states(plan, tmp_path / "runs")
    failed = {c for c, s in states.items() if s.state is CellState.FAILED}
    assert failed == _cells(plan, kind="train", domain="math")
    blocked = {c for c, s in states.items() if s.state is CellState.BLOCKED}
    assert blocked == plan.dependents(failed) - failed and blocked
    assert all(states[c].state is CellState.PENDING for c in _cells(plan, kind="train", domain="commonsense"))
