"""runners.models.load_causal_lm on toy models saved offline (plus a peft adapter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kdanalysis.errors import BackendUnavailableError, ConfigError
from runners.models import load_causal_lm, looks_like_local_path

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> Path:
    from runners.toy import save_toy_model

    return save_toy_model(tmp_path_factory.mktemp("models") / "qwen", "qwen2", "tiny", seed=1)


def _logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits


def test_loads_local_toy_model_in_float32_on_cpu(toy_dir: Path) -> None:
    from runners.toy import build_model

    model, tok = load_causal_lm(toy_dir, device="cpu")
    assert next(model.parameters()).dtype == torch.float32
    assert not model.training
    assert tok.pad_token == "<pad>" and model.config.pad_token_id == tok.pad_token_id
    ids = tok("Tom has 3 apples.")["input_ids"]
    assert torch.equal(_logits(model, ids), _logits(build_model("qwen2", "tiny", seed=1), ids))


def test_explicit_dtype(toy_dir: Path) -> None:
    model, _ = load_causal_lm(str(toy_dir), dtype="bfloat16", device="cpu")
    assert next(model.parameters()).dtype == torch.bfloat16


def test_pad_token_falls_back_to_eos(tmp_path: Path) -> None:
    from runners.toy import build_model, build_tokenizer

    path = tmp_path / "nopad"
    build_model("llama", "tiny").save_pretrained(path)
    tok = build_tokenizer()
    tok.pad_token = None
    tok.save_pretrained(path)
    model, loaded = load_causal_lm(path, device="cpu")
    assert loaded.pad_token == "</s>"
    assert model.config.pad_token_id == loaded.eos_token_id == model.generation_config.pad_token_id


def test_adapter_is_loaded_on_top(toy_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    base, tok = load_causal_lm(toy_dir, device="cpu")
    ids = tok("7 + 8 = 15")["input_ids"]
    base_logits = _logits(base, ids)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    peft_model.save_pretrained(tmp_path / "adapter")
    expected = _logits(peft_model, ids)

    model, _ = load_causal_lm(toy_dir, device="cpu", adapter=tmp_path / "adapter")
    got = _logits(model, ids)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, base_logits, atol=1e-3)


def test_missing_paths_and_bad_arguments_fail_clearly(toy_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model folder not found: .*nowhere"):
        load_causal_lm(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="adapter folder not found"):
        load_causal_lm(toy_dir, adapter=tmp_path / "no_adapter")
    with pytest.raises(ConfigError, match="unknown dtype"):
        load_causal_lm(toy_dir, dtype="int8")  # type: ignore[arg-type]


def test_missing_gguf_package_is_reported(toy_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    # where gguf is installed (the train extra), make it look absent
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else find_spec(name, *a)
    )
    with pytest.raises(BackendUnavailableError, match="gguf"):
        load_causal_lm(toy_dir, gguf_file="model.Q8_0.gguf")


def test_missing_path_fails_before_transformers_is_imported() -> None:
    code = (
        "import sys\n"
        "from kdanalysis.errors import ConfigError\n"
        "from runners.models import load_causal_lm\n"
        "try:\n    load_causal_lm('./no/such/model')\nexcept ConfigError:\n    pass\n"
        "print('transformers' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("name", "local"),
    [
        ("Qwen/Qwen2.5-0.5B", False),
        ("gpt2", False),
        ("./runs/model", True),
        ("/abs/model", True),
        ("runs/cell/adapter", True),
        ("~/models/x", True),
    ],
)
def test_hub_ids_and_local_paths_are_told_apart(name: str, local: bool) -> None:
    assert looks_like_local_path(name) is local
