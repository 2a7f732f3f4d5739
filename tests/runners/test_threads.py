"""CPU threads: the choice from free cores, its overrides, and that a grid cell runs with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

from kdanalysis.errors import ConfigError
from kdanalysis.results import results_frame, write_results
from runners.env import THREADS_ENV, busy_cores, choose_threads, cpu_threads, torch_threads
from runners.grid import stages
from runners.grid.command import run_grid_command
from runners.grid.plan import Cell


@pytest.mark.parametrize(
    ("cores", "busy", "threads"),
    [
        (2, 0.0, 2),  # idle
        (2, 0.4, 2),  # a core counts as free while at most half of it is busy
        (2, 0.6, 1),
        (2, 2.0, 1),  # one busy process per core: one thread, not two competing ones
        (2, 7.5, 1),  # overloaded: still at least one
        (8, 3.2, 5),
        (1, 0.0, 1),
    ],
)
def test_threads_are_the_free_cores_at_least_one(cores: int, busy: float, threads: int) -> None:
    assert choose_threads(cores, busy) == threads


@pytest.mark.parametrize(("cores", "busy"), [(0, 0.0), (2, -0.1), (2, float("nan")), (2, float("inf"))])
def test_choose_threads_refuses_impossible_inputs(cores: int, busy: float) -> None:
    with pytest.raises(ConfigError):
        choose_threads(cores, busy)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_a_core_kept_busy_by_another_process_counts_as_busy() -> None:
    core = min(os.sched_getaffinity(0))
    spin = subprocess.Popen(
        [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"]
    )
    try:
        busy = busy_cores([core], sample_s=0.5)
    finally:
        spin.kill()
        spin.wait()
    assert 0.7 <= busy <= 1.05  # the spinning process alone fills the core (others only share it)


def test_explicit_count_then_environment_then_omp_then_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV, "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu_threads(5) == 5
    assert cpu_threads() == 3
    monkeypatch.delenv(THREADS_ENV)
    assert cpu_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= cpu_threads() <= len(os.sched_getaffinity(0))
    monkeypatch.setenv(THREADS_ENV, "zero")
    with pytest.raises(ConfigError, match="KDANALYSIS_THREADS must be a positive integer"):
        cpu_threads()
    with pytest.raises(ConfigError, match="threads must be a positive integer"):
        cpu_threads(0)


def test_torch_threads_applies_and_restores() -> None:
    before = torch.get_num_threads()
    with torch_threads(before + 2) as n:
        assert n == torch.get_num_threads() == before + 2
    assert torch.get_num_threads() == before


def _grid(tmp_path: Path, executor: str = "") -> Path:
    item = {"instruction": "q", "input": "", "output": "", "answer": "3"}
    (tmp_path / "testsets").mkdir(exist_ok=True)
    (tmp_path / "testsets" / "gsm8k.json").write_text(json.dumps([item]))
    (tmp_path / "train.json").write_text(json.dumps([item] * 8))
    path = tmp_path / "grid.yaml"
    path.write_text(
        textwrap.dedent(f"""
        study: threads_test
        models:
          T: {{path: org/teacher, family: fam, params_b: 2}}
          S: {{path: org/student, family: fam, params_b: 1}}
        teachers: [T]
        students: [S]
        methods: [{{method: fkl}}]
        teacher_cache: {{enabled: true}}
        training: {{data: {{val_size: 0}}, optim: {{batch_size: 4, micro_batch_size: 4}}}}
        domains:
          math: {{train: train.json, data_dir: testsets, tasks: [gsm8k]}}
        {executor}
    """)
    )
    return path


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Replace the stage functions by ones that record torch's thread count per cell kind."""
    record: dict[str, int] = {}

    def fake(cell: Cell, work: Path, deps: Mapping[str, Path]) -> dict[str, str]:
        record[cell.kind] = torch.get_num_threads()
        if cell.kind in ("eval", "fidelity"):
            labels = dict(cell.config["labels"])
            tau = labels.pop("temperature")
            row = {
                **labels,
                "temperature": float("nan") if tau is None else tau,
                "task": "gsm8k",
                "metric": "accuracy" if cell.kind == "eval" else "agreement",
                "value": 1.0,
                "run_id": cell.id,
            }
            write_results(results_frame([row]), work / "results.parquet")
            return {"results": "results.parquet"}
        return {}

    for kind in ("train", "cache", "eval", "fidelity"):
        monkeypatch.setitem(stages._STAGE_FUNCTIONS, kind, fake)
    return record


@pytest.mark.parametrize("via", ["cli", "grid"])
def test_the_thread_override_reaches_torch_in_every_cell(
    tmp_path: Path, seen: dict[str, int], via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    wanted = before + 2  # differs from whatever torch had
    path = _grid(tmp_path, f"executor: {{threads: {wanted}}}" if via == "grid" else "")
    code = run_grid_command(
        path, tmp_path / "runs", progress=False, report=False, threads=wanted if via == "cli" else None
    )
    assert code == 0
    assert seen == {
        "train": wanted,
        "cache": wanted,
        "eval": wanted,
        "fidelity": before,
    }  # no model: untouched
    assert torch.get_num_threads() == before and THREADS_ENV not in os.environ


def test_evaluate_entry_point_runs_with_the_requested_threads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runners.evaluate.__main__ import main
    from runners.toy import make_arithmetic_task, save_toy_model, write_task_json

    save_toy_model(tmp_path / "model", family="qwen2", size="tiny", seed=0)
    write_task_json(tmp_path / "arithmetic.json", make_arithmetic_task(1, seed=0))
    config = tmp_path / "eval.yaml"
    config.write_text(
        json.dumps(
            {
                "model": str(tmp_path / "model"),
                "tasks": ["arithmetic"],
                "device": "cpu",
                "custom_tasks": [
                    {
                        "id": "arithmetic",
                        "file": str(tmp_path / "arithmetic.json"),
                        "domain": "toy",
                        "answer_type": "number",
                    }
                ],
                "decoding": {"max_new_tokens": 2},
            }
        )
    )
    before = torch.get_num_threads()
    wanted = before + 2
    assert main([str(config), "--out", str(tmp_path / "run"), "--threads", str(wanted), "--no-progress"]) == 0
    assert json.loads((tmp_path / "run" / "environment.json").read_text())["torch_threads"] == wanted
    assert torch.get_num_threads() == before
    assert main([str(config), "--out", str(tmp_path / "run2"), "--threads", "0", "--no-progress"]) == 2
    assert "threads must be a positive integer" in capsys.readouterr().err
