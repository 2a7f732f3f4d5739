"""Toy tokenizer and models: offline, deterministic, loadable with from_pretrained.

``runners.toy.tokenizer._tokenizer_json`` is imported on purpose: the test checks that the
tokenizer definition itself is deterministic across processes, below the public loader.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from kdanalysis.errors import ConfigError  # noqa: E402
from runners.evaluate.prompts import format_prompt  # noqa: E402
from runners.toy import build_model, build_tokenizer, make_arithmetic_task, save_toy_model  # noqa: E402
from runners.toy.tokenizer import _tokenizer_json  # noqa: E402


def test_tokenizer_special_tokens_and_padding_side() -> None:
    tok = build_tokenizer()
    assert (tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token) == ("<pad>", "<s>", "</s>", "<unk>")
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}) == 4
    assert tok.padding_side == "right"
    assert build_tokenizer(padding_side="left").padding_side == "left"
    assert tok("7 + 8")["input_ids"][0] != tok.bos_token_id  # no special tokens added
    with pytest.raises(ConfigError):
        build_tokenizer(padding_side="middle")


def test_tokenizer_round_trips_shipped_and_synthetic_text(shared_data) -> None:
    tok = build_tokenizer()
    texts = [format_prompt(it["instruction"], it["input"]) + it["output"] for it in make_arithmetic_task(5)]
    for name in ("gsm8k", "boolq", "piqa", "winogrande", "AQuA"):
        items = json.loads((shared_data / "testsets" / f"{name}.json").read_text())[:20]
        texts += [format_prompt(it["instruction"], it["input"]) + it["output"] for it in items]
    texts.append("unicode é 中 ✓ stays exact")
    for text in texts:
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
        assert tok.unk_token_id not in ids
    digits = tok.tokenize("12345")
    assert len(digits) == 5  # digits are split one by one
    prompt_ids = tok(format_prompt("x"))["input_ids"]
    assert len(prompt_ids) < len(format_prompt("x")) / 2  # merges learned on the prompt


def test_tokenizer_is_identical_across_processes() -> None:
    # the trained pipeline, without importing transformers in the child (fast)
    code = "from runners.toy.tokenizer import _tokenizer_json; print(_tokenizer_json())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert other.strip() == _tokenizer_json()


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_build_model_shapes_and_determinism(family: str) -> None:
    tok = build_tokenizer()
    model = build_model(family, "tiny", seed=3)
    assert type(model).__name__ == ("Qwen2ForCausalLM" if family == "qwen2" else "LlamaForCausalLM")
    ids = tok(["2 + 2 = 4", "7 * 3 = 21 and more"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape == (2, ids["input_ids"].shape[1], len(tok))
    assert torch.isfinite(logits).all()
    same = build_model(family, "tiny", seed=3)
    other = build_model(family, "tiny", seed=4)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), same.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters(), strict=True))


def test_model_building_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model("llama", "tiny", seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_sizes_grow_and_teacher_vocab_is_padded() -> None:
    sizes = ("tiny", "small", "teacher")
    counts = [sum(p.numel() for p in build_model("qwen2", s).parameters()) for s in sizes]
    assert counts == sorted(counts) and counts[0] > 10_000 and counts[-1] < 5_000_000
    teacher = build_model("qwen2", "teacher", pad_to_multiple_of=64)
    assert teacher.config.vocab_size % 64 == 0 and teacher.config.vocab_size > len(build_tokenizer())
    assert build_model("llama", "tiny", vocab_size=2000).config.vocab_size == 2000


@pytest.mark.parametrize(
    "kwargs", [{"family": "gpt2"}, {"size": "huge"}, {"vocab_size": 10}, {"pad_to_multiple_of": 0}]
)
def test_build_model_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        build_model(**kwargs)


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_saved_toy_model_loads_offline_with_auto_classes(tmp_path, family: str, monkeypatch) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = save_toy_model(tmp_path / family, family, "small", seed=2, pad_to_multiple_of=64)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    original = build_model(family, "small", seed=2, pad_to_multiple_of=64)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), original.parameters(), strict=True))
    # transformers rebuilds a qwen2 folder's tokenizer as Qwen2Tokenizer: it must come back identical
    assert tok.backend_tokenizer.to_str() == build_tokenizer().backend_tokenizer.to_str()
    assert tok.pad_token == "<pad>" and tok.eos_token == "</s>"
