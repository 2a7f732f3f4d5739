"""How cells refer to trained models: LoRA adapter on its base model, or a fully fine-tuned folder."""

from __future__ import annotations

from pathlib import Path

from runners.grid.stages import model_and_adapter


def test_trained_models_resolve_to_adapter_or_full_model(tmp_path: Path) -> None:
    deps = {"base": tmp_path / "base", "lora": tmp_path / "lora", "full": tmp_path / "full"}
    (deps["lora"] / "run" / "model").mkdir(parents=True)
    (deps["lora"] / "run" / "model" / "adapter_config.json").write_text("{}")
    (deps["full"] / "run" / "model").mkdir(parents=True)
    base = str(deps["base"] / "model")
    assert model_and_adapter({"name": "m", "base_cell": "base"}, deps) == (base, None)
    assert model_and_adapter({"name": "m", "path": "org/m"}, deps) == ("org/m", None)
    assert model_and_adapter({"name": "m", "base_cell": "base", "train_cell": "lora"}, deps) == (
        base, str(deps["lora"] / "run" / "model"))
    assert model_and_adapter({"name": "m", "base_cell": "base", "train_cell": "full"}, deps) == (
        str(deps["full"] / "run" / "model"), None)
