"""Method mechanics: teacher noise, train_on_inputs, the on-policy coin, vocab refusal."""

from __future__ import annotations

import contextlib

import pytest
import torch

from runners.distill.data import encode_items, load_items
from runners.distill.methods import Method, TeacherSignal, add_teacher_noise
from runners.models import load_causal_lm

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def models(toy):  # type: ignore[no-untyped-def]
    student, tokenizer = load_causal_lm(str(toy["student"]), dtype="float32", device="cpu")
    teacher, _ = load_causal_lm(str(toy["teacher"]), dtype="float32", device="cpu")
    return student, teacher, tokenizer


def _examples(toy, tokenizer, train_on_inputs: bool = False):  # type: ignore[no-untyped-def]
    return encode_items(
        tokenizer,
        load_items(toy["data"])[:4],
        max_length=96,
        train_on_inputs=train_on_inputs,
        prompt_style="published_train",
    )


def _loss(method: Method, student, examples):  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return method.loss(student, examples, device=CPU, autocast=contextlib.nullcontext)


def test_noise_changes_the_teacher_signal_not_the_kl(make_config, models, toy) -> None:  # type: ignore[no-untyped-def]
    student, teacher, tok = models
    examples = _examples(toy, tok)
    signal = TeacherSignal(model=teacher, autocast=contextlib.nullcontext)
    clean = _loss(Method(make_config("fkl"), signal, tok.pad_token_id, tok.eos_token_id), student, examples)
    noisy_method = Method(make_config("fkl", teacher_noise=2.0), signal, tok.pad_token_id, tok.eos_token_id)
    noisy = _loss(noisy_method, student, examples)
    assert not torch.isclose(noisy.kd, clean.kd)
    assert torch.isclose(noisy.kl, clean.kl)  # KL is always to the clean teacher
    # validation switches the noise off
    with torch.no_grad():
        val = noisy_method.loss(student, examples, device=CPU, autocast=contextlib.nullcontext, noise=False)
    assert torch.isclose(val.kd, clean.kd)


def test_add_teacher_noise() -> None:
    logits = torch.zeros(64, 64, 64)
    assert add_teacher_noise(logits, 0.0) is logits
    noisy = add_teacher_noise(logits, 0.5)
    assert abs(float(noisy.std()) - 0.5) < 0.01


def test_train_on_inputs_adds_the_prompt_tokens_to_the_loss(make_config, models, toy) -> None:  # type: ignore[no-untyped-def]
    student, _, tok = models
    method = Method(make_config("sft"), None, tok.pad_token_id, tok.eos_token_id)
    masked = _loss(method, student, _examples(toy, tok, train_on_inputs=False))
    full = _loss(method, student, _examples(toy, tok, train_on_inputs=True))
    n_prompt = sum(ex.prompt_len for ex in _examples(toy, tok))
    assert full.n_tokens - masked.n_tokens == n_prompt - 4  # the first token of a sequence is never a target
    assert not torch.isclose(full.ce, masked.ce)


def test_on_policy_coin_is_seeded_and_follows_lambda(make_config, models) -> None:  # type: ignore[no-untyped-def]
    _, teacher, tok = models
    signal = TeacherSignal(model=teacher, autocast=contextlib.nullcontext)
    gkd = Method(
        make_config("gkd", gkd_lambda=0.3), signal, tok.pad_token_id, tok.eos_token_id, tokenizer=tok
    )
    coins = [gkd.on_policy_coin(step, 0, 0) for step in range(2000)]
    assert coins == [gkd.on_policy_coin(step, 0, 0) for step in range(2000)]
    assert abs(sum(coins) / len(coins) - 0.3) < 0.04
    never = Method(
        make_config("gkd", gkd_lambda=0.0), signal, tok.pad_token_id, tok.eos_token_id, tokenizer=tok
    )
    fkl = Method(make_config("fkl"), signal, tok.pad_token_id, tok.eos_token_id)
    assert not any(m.on_policy_coin(s, 0, 0) for m in (never, fkl) for s in range(50))


def test_on_policy_batch_is_the_students_own_continuation(make_config, models, toy) -> None:  # type: ignore[no-untyped-def]
    student, teacher, tok = models
    signal = TeacherSignal(model=teacher, autocast=contextlib.nullcontext)
    gkd = Method(make_config("gkd"), signal, tok.pad_token_id, tok.eos_token_id, tokenizer=tok)
    examples = _examples(toy, tok)
    with torch.no_grad():
        out = gkd.loss(
            student,
            examples,
            device=CPU,
            autocast=contextlib.nullcontext,
            on_policy=True,
            generator_model=student,
        )
    assert out.on_policy and out.kd is not None
    assert 0 < out.n_tokens <= 4 * 12  # at most max_new_tokens per prompt are targets


def test_different_tokenizers_are_refused_before_training(make_config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from kdanalysis.errors import ConfigError
    from runners.distill.run import run_distill
    from runners.toy import build_model

    vocab = {f"w{i}": i for i in range(1100)} | {"<pad>": 1100, "</s>": 1101, "<s>": 1102, "<unk>": 1103}
    raw = Tokenizer(tok_models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    other = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", bos_token="<s>", unk_token="<unk>"
    )
    folder = tmp_path / "other_teacher"
    build_model("qwen2", "tiny", vocab_size=1104).save_pretrained(folder)
    other.save_pretrained(folder)
    assert AutoModelForCausalLM.from_pretrained(folder).config.vocab_size == 1104
    with pytest.raises((ConfigError, RuntimeError), match="tokenizer"):
        run_distill(make_config("fkl", teacher=str(folder)), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_teacher_outputs_resume_after_a_cut_line(models, toy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from runners.distill.config import GenerationConfig
    from runners.distill.methods import generate_teacher_outputs

    _, teacher, tok = models
    examples = _examples(toy, tok)
    gen = GenerationConfig(max_new_tokens=6, batch_size=2)
    kwargs = {"stop": ("### Response:",), "seed": 6, "device": CPU, "autocast": contextlib.nullcontext}
    whole = generate_teacher_outputs(teacher, tok, examples, gen, tmp_path / "a.jsonl", **kwargs)
    assert len(whole) == 4 and all(isinstance(t, str) for t in whole)
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    (tmp_path / "b.jsonl").write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][:5])  # killed mid-line
    resumed = generate_teacher_outputs(teacher, tok, examples, gen, tmp_path / "b.jsonl", **kwargs)
    assert resumed == whole  # each batch is sampled with its own seed
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 4
