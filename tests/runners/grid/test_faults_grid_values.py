"""Grid values are checked when the grid is read (so ``run-grid --dry-run`` refuses them), not when a
cell runs: impossible training/evaluation values, non-positive temperatures, method parameters out of
range, duplicate keys, a study name that would put the runs folder outside ``runs/``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from kdanalysis.errors import ConfigError
from runners.cli import main
from runners.grid.plan import build_plan
from runners.grid.spec import parse_grid

SMALL = (Path(__file__).parent / "small_grid.yaml").read_text(encoding="utf-8")


def _grid(**changes: object) -> str:
    data = yaml.safe_load(SMALL)
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"training__optim__max_steps": -5}, "optim.max_steps"),
        ({"training__optim__max_steps": "many"}, "optim.max_steps"),
        ({"training__optim__batch_size": -1}, "optim.batch_size"),
        ({"teacher_training": {"optim": {"max_steps": 0}}}, "teacher_training"),
        ({"evaluation__batch_size": 0}, "evaluation"),
        ({"temperatures": [0]}, "temperatures"),
        ({"methods": [{"method": "jsd", "params": {"beta": 5}}]}, "beta"),
        ({"ablations": {"base_teacher": {"temperatures": [-1]}}}, "temperatures"),
    ],
)
def test_impossible_values_are_refused_when_the_grid_is_planned(change: dict[str, object], said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        build_plan(parse_grid(_grid(**change), source="g.yaml"))


@pytest.mark.parametrize("study", ["..", "../elsewhere", "/tmp/abs", "a/b", ".hidden"])
def test_a_study_name_cannot_leave_the_runs_folder(study: str) -> None:
    with pytest.raises(ConfigError, match="study"):
        parse_grid(_grid(study=study))


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    top = SMALL + "seeds: [1, 2]\n"
    n = len(SMALL.splitlines()) + 1
    first = next(i for i, line in enumerate(SMALL.splitlines(), 1) if line.startswith("seeds:"))
    with pytest.raises(ConfigError, match=rf"g.yaml:{n}: duplicate key 'seeds' \(first at line {first}\)"):
        parse_grid(top, source="g.yaml")
    nested = SMALL.replace(
        "  student: {", '  teacher: {path: "toy:qwen2:tiny", family: toy, params_b: 1}\n  student: {'
    )
    with pytest.raises(ConfigError, match=r"g.yaml:4: duplicate key 'teacher' \(first at line 3\)"):
        parse_grid(nested, source="g.yaml")


def test_dry_run_of_a_bad_value_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(_grid(training__optim__max_steps="many"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["kdanalysis", "run-grid", str(path), "--dry-run"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "optim.max_steps" in out.err and "Traceback" not in out.err + out.out
    assert not (tmp_path / "runs").exists()


def _with_teacher_path(path: str) -> str:
    data = yaml.safe_load(SMALL)
    data["models"]["teacher"]["path"] = path
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("../other/model", r"local model folder not found: .*/other/model"),
        ("./model", r"local model folder not found"),
        ("models/../../escaped/model", r"local model folder not found: .*/escaped/model"),
        ("/no/such/folder", r"local model folder not found: /no/such/folder"),
        ("${KD_NO_SUCH_VARIABLE}/model", r"neither a local model folder .* nor a hub id"),
        ("other/..", r"neither a local model folder .* nor a hub id"),
        ("model.json", r"local model folder not found: .*model.json"),  # a file next to the grid
    ],
)
def test_a_model_path_the_run_cannot_load_is_refused_at_plan_time(
    tmp_path: Path, path: str, said: str
) -> None:
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(ConfigError, match=rf"^models\.teacher\.path: '.*': {said}"):
        build_plan(parse_grid(_with_teacher_path(path), source="g.yaml"), root=tmp_path)


def test_local_model_folders_resolve_against_the_grid_file_and_hub_ids_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid_dir, models = tmp_path / "grids", tmp_path / "models"
    (models / "teacher").mkdir(parents=True)
    (grid_dir / "local").mkdir(parents=True)
    monkeypatch.setenv("KD_MODELS", str(models))
    monkeypatch.chdir(tmp_path / "models")  # the working directory plays no part
    for path, expected in [
        ("../models/teacher", models / "teacher"),
        ("${KD_MODELS}/teacher", models / "teacher"),
        (str(models / "teacher"), models / "teacher"),
        ("local", grid_dir / "local"),  # exists next to the grid file: local, not a hub id
        ("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B"),
        ("gpt2", "gpt2"),
    ]:
        plan = build_plan(parse_grid(_with_teacher_path(path)), root=grid_dir)
        (sft,) = [c for c in plan if c.stage == "teacher_sft"]
        assert sft.config["student"] == {"name": "teacher", "path": str(expected)}, path


def test_dry_run_of_a_missing_model_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(_with_teacher_path("../other/model"))
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setattr(sys, "argv", ["kdanalysis", "run-grid", str(path), "--dry-run"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    assert exit_info.value.code == 2 and out.out == ""
    (line,) = out.err.strip().splitlines()
    assert f"{path}: models.teacher.path: '../other/model': local model folder not found" in line
