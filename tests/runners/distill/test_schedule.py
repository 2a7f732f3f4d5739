"""The grid planner counts a cell's optimiser steps exactly as the trainer runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kdanalysis.errors import ConfigError
from runners.distill.config import DistillConfig
from runners.distill.schedule import n_train_items, total_steps
from runners.distill.trainer import train
from runners.grid.plan import training_steps

#: name → (items in the training file, data settings, optim settings, steps expected).
#: Settings not given take DistillConfig's defaults (val_size 500, batch_size 16, epochs 1)
#: in the trainer and in the planner alike.
CASES: dict[str, tuple[int, dict[str, Any], dict[str, Any], int]] = {
    "two_epochs_drop_the_partial_batch": (40, {"val_size": 5}, {"batch_size": 8, "epochs": 2}, 8),
    "accumulation": (40, {"val_size": 8}, {"batch_size": 8, "micro_batch_size": 4}, 4),
    "val_file_and_cap": (
        40,
        {"val_file": True, "max_train_items": 13},
        {"batch_size": 4, "micro_batch_size": 2},
        3,
    ),
    "default_batch_size": (30, {"val_size": 4}, {}, 1),
    "max_steps": (20, {"val_size": 0}, {"max_steps": 3, "batch_size": 4}, 3),
}


def _write_items(toy: dict[str, Path], folder: Path, n: int, name: str) -> Path:
    items = json.loads(toy["data"].read_text())[:n]
    path = folder / name
    path.write_text(json.dumps(items))
    return path


def _training(data: dict[str, Any], optim: dict[str, Any]) -> dict[str, Any]:
    """A grid's ``training`` section: the settings it passes to every training cell."""
    return {
        "max_length": 96,
        "lora": {"dropout": 0.0},
        "log_every": 100,
        "eval_every": 0,
        "checkpoint_every": 0,
        "data": data,
        "optim": {"warmup_steps": 0, **optim},
    }


@pytest.mark.parametrize("name", list(CASES))
def test_planned_steps_equal_the_trainers(name: str, toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    n_items, data, optim, expected = CASES[name]
    if data.get("val_file"):
        data = {**data, "val_file": str(_write_items(toy, tmp_path, 5, "val.json"))}
    training = _training(data, optim)
    planned = training_steps(n_items, training)
    config = DistillConfig(
        student=str(toy["student"]),
        method="sft",
        **{**training, "data": {**data, "train": str(_write_items(toy, tmp_path, n_items, "train.json"))}},
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = train(config, run_dir)
    assert planned == result.steps == expected


def test_both_refuse_a_file_smaller_than_the_default_split(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    training = _training({}, {})  # val_size 500 (the default) of 40 items leaves none to train on
    with pytest.raises(ConfigError, match="fewer than optim.batch_size=16"):
        training_steps(40, training)
    config = DistillConfig(
        student=str(toy["student"]), method="sft", **{**training, "data": {"train": str(toy["data"])}}
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(ConfigError, match="val_size=500 leaves no training items"):
        train(config, run_dir)


def test_unknown_item_count() -> None:
    assert training_steps(None, {"optim": {"max_steps": 7}}) == 7
    assert training_steps(None, {"optim": {"epochs": 3}}) is None


def test_counts_from_config_models_and_mappings_agree(toy) -> None:  # type: ignore[no-untyped-def]
    config = DistillConfig(
        student=str(toy["student"]),
        method="sft",
        data={"train": str(toy["data"]), "val_size": 3, "max_train_items": 30},
        optim={"batch_size": 4, "epochs": 2},
    )
    assert n_train_items(40, config.data) == n_train_items(40, {"val_size": 3, "max_train_items": 30}) == 30
    assert total_steps(30, config.optim) == total_steps(30, {"batch_size": 4, "epochs": 2}) == 14
    with pytest.raises(ConfigError, match="invalid optim settings: batch_size"):
        total_steps(30, {"batch_size": 0})
