"""Grid files: bundled grids parse; malformed files give one located error and write nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kdanalysis.errors import ConfigError
from runners.grid.plan import build_plan
from runners.grid.runner import bundled_grids, resolve_grid
from runners.grid.spec import load_grid, parse_grid

SMALL_GRID = (Path(__file__).parent / "small_grid.yaml").read_text(encoding="utf-8")


def test_bundled_grids_are_valid() -> None:
    grids = bundled_grids()
    assert {"demo", "paper"} <= set(grids)
    demo = load_grid(grids["demo"])
    assert len(demo.students) == 2 and len({demo.models[s].params_b for s in demo.students}) == 2
    assert len({m.method for m in demo.methods}) >= 3 and sorted(demo.temperatures) == [1, 2]
    assert resolve_grid("paper") == grids["paper"]


def test_paper_grid_matches_the_published_design() -> None:
    paper = load_grid(bundled_grids()["paper"])
    pairs = {(p.teacher, p.student) for p in paper.resolved_pairs()}
    assert len(pairs) == 11
    assert ("Qwen2.5-14B", "Qwen2.5-7B") in pairs and ("Llama-3.1-8B", "Llama-3.2-1B") in pairs
    assert ("Qwen2.5-3B", "Qwen2.5-3B") not in pairs
    lora = paper.training["lora"]
    assert (lora["r"], lora["alpha"], lora["dropout"]) == (8, 16, 0.05)
    assert paper.training["optim"]["lr"] == 3e-4 and paper.training["optim"]["batch_size"] == 16
    assert paper.seeds == [6]
    assert paper.domains["math"].epochs == 4 and paper.domains["commonsense"].epochs == 3
    assert len(paper.domains["math"].tasks) + len(paper.domains["commonsense"].tasks) == 14


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            SMALL_GRID.replace("temperatures: [1]", "temperatures: [1]\nbogus_key: 3"),
            "bogus_key (line 11): Extra inputs are not permitted",
        ),
        (
            SMALL_GRID.replace("{method: rkl}", "{method: rkl, temperatures: [hot]}"),
            "methods[1].temperatures[0] (line 9): Input should be a valid number",
        ),
        (
            SMALL_GRID.replace("{method: rkl}", "{method: xkl}"),
            "methods[1].method (line 9): unknown KD method 'xkl'",
        ),
        (SMALL_GRID.replace("students: [student]", "students: [nobody]"), "students: unknown model 'nobody'"),
        (SMALL_GRID.replace("{method: fkl}", "{method: fkl"), "grid.yaml:9:5: YAML syntax error"),
        (
            SMALL_GRID.replace("toy_test_items: 6}", "toy_test_items: 6, toy_max_number: 1}"),
            "domains.math.toy_max_number (line 13): Input should be greater than or equal to 2",
        ),
        (
            SMALL_GRID.replace("toy_test_items: 6}", "toy_test_items: 6, toy_difficulty: 0}"),
            "domains.math.toy_difficulty (line 13): Input should be greater than 0",
        ),
        (
            SMALL_GRID.replace("toy_test_items: 6}", "toy_test_items: 6, toy_operations: [add, div]}"),
            "domains.math.toy_operations[1] (line 13): Input should be 'add', 'sub' or 'mul'",
        ),
        (
            SMALL_GRID.replace("toy_test_items: 6}", "toy_test_items: 6, toy_operations: [sub]}"),
            "domains.math.toy_operations (line 13): operations must be distinct names from add, sub, mul "
            "including 'add'",
        ),
        (
            SMALL_GRID.replace("tasks: [arithmetic]", "tasks: [arithmetic, gsm8k]"),
            "domains.math (line 13): unknown task(s) gsm8k for a synthetic (toy:arithmetic) domain; "
            "known: arithmetic",
        ),
        (
            SMALL_GRID.replace('train: "toy:arithmetic"', 'train: "train.json"'),
            "domains.math (line 13): unknown task(s) arithmetic for a domain with test-set files; "
            "known: gsm8k, svamp",
        ),
        (
            SMALL_GRID + "teacher_training: [1]\n",
            "teacher_training (line 24): Input should be a valid dictionary",
        ),
    ],
)
def test_malformed_grid_gives_one_located_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_grid(path)
    message = str(info.value)
    assert "\n" not in message
    assert expected in message, message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("optim: {lr:", "optim: {lrr:", "training.optim.lrr: unknown OptimConfig field"),
        ("  max_length: 128", "  max_len: 128", "training.max_len: unknown DistillConfig field"),
        ("  max_length: 128", "  seed: 3", "training.seed: set by the grid for each cell"),
        ("  batch_size: 8", "  model: x", "evaluation.model: set by the grid for each cell"),
        (
            "evaluation:",
            "teacher_training: {optim: {lrr: 1}}\nevaluation:",
            "teacher_training.optim.lrr: unknown OptimConfig field",
        ),
        ("evaluation:", "teacher_training: {seed: 1}\nevaluation:", "teacher_training.seed: set by the grid"),
    ],
)
def test_runner_settings_are_checked_when_planning(old: str, new: str, expected: str) -> None:
    assert old in SMALL_GRID
    with pytest.raises(ConfigError, match=expected):
        build_plan(parse_grid(SMALL_GRID.replace(old, new)))


def test_explicit_pairs_must_share_a_family() -> None:
    text = SMALL_GRID.replace(
        'student: {path: "toy:qwen2:tiny", family: toy', 'student: {path: "toy:llama:tiny", family: other'
    )
    with pytest.raises(ConfigError, match="no teacher→student pairs"):
        parse_grid(text)
    explicit = text + "pairs: [{teacher: teacher, student: student}]\n"
    with pytest.raises(ConfigError, match="different families"):
        parse_grid(explicit)


def test_cli_malformed_grid_one_line_nonzero_nothing_written(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(SMALL_GRID.replace("seeds: [6]", "seeds: [six]"))
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "runners", "run-grid", str(path), "--runs-dir", str(runs)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "seeds[0]" in lines[0] and "line 11" in lines[0] and str(path) in lines[0]
    assert not runs.exists()
