"""How cells refer to trained models (LoRA adapter on its base model, or a fully fine-tuned folder), and the
toy data a prepare cell writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from runners.grid.plan import build_plan
from runners.grid.spec import parse_grid
from runners.grid.stages import model_and_adapter, run_stage

SMALL_GRID = (Path(__file__).parent / "small_grid.yaml").read_text(encoding="utf-8")


def test_trained_models_resolve_to_adapter_or_full_model(tmp_path: Path) -> None:
    deps = {"base": tmp_path / "base", "lora": tmp_path / "lora", "full": tmp_path / "full"}
    (deps["lora"] / "run" / "model").mkdir(parents=True)
    (deps["lora"] / "run" / "model" / "adapter_config.json").write_text("{}")
    (deps["full"] / "run" / "model").mkdir(parents=True)
    base = str(deps["base"] / "model")
    assert model_and_adapter({"name": "m", "base_cell": "base"}, deps) == (base, None)
    assert model_and_adapter({"name": "m", "path": "org/m"}, deps) == ("org/m", None)
    assert model_and_adapter({"name": "m", "base_cell": "base", "train_cell": "lora"}, deps) == (
        base,
        str(deps["lora"] / "run" / "model"),
    )
    assert model_and_adapter({"name": "m", "base_cell": "base", "train_cell": "full"}, deps) == (
        str(deps["full"] / "run" / "model"),
        None,
    )


def test_toy_data_cell_follows_the_domain_task_settings(tmp_path: Path) -> None:
    options = "toy_difficulty: 1, toy_max_number: 4, toy_operations: [add]"
    text = SMALL_GRID.replace("toy_test_items: 6}", f"toy_test_items: 6, {options}}}")
    cell = next(c for c in build_plan(parse_grid(text)) if c.config.get("what") == "toy_data")
    outputs = run_stage(cell, tmp_path, {})
    assert outputs == {"train": "data/train.json", "arithmetic": "data/arithmetic.json"}
    train = json.loads((tmp_path / "data" / "train.json").read_text())
    test = json.loads((tmp_path / "data" / "arithmetic.json").read_text())
    assert (len(train), len(test)) == (24, 6) and train[:6] != test
    for item in train + test:
        ((left, right),) = re.findall(r"(\d+) \+ (\d+) =", item["output"])
        assert int(left) <= 4 and int(right) <= 4 and "-" not in item["output"]
