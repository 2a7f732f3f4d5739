"""The ``published`` training preset: each choice of the released code it reproduces.

One test per difference from the project's defaults (docs/published_preset.md), each
computed by hand or against the toy models: which fields the preset sets, prompt and
last positions in the KD loss, the per-sequence mean, eps = 1e-9, ``train_on_inputs``,
the re-tokenised ``gkd`` samples and the checks of the released fixed settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, rel_entr, softmax

from kdanalysis.errors import ConfigError
from runners.distill import methods as methods_module
from runners.distill.config import preset_values
from runners.distill.data import IGNORE_INDEX, Example, encode_item
from runners.distill.losses import kd_loss
from runners.distill.methods import Method, TeacherSignal, retokenize

PUBLISHED = {"preset": "published", "lora": {"dropout": 0.05}}


# --------------------------------------------------------------------------- the config


@pytest.mark.parametrize(
    ("method", "reduction", "eps"),
    [("fkl", "sequence_mean", 1e-9), ("rkl", "sequence_mean", 1e-9), ("gkd", "token_mean", 0.0)],
)
def test_published_preset_sets_the_released_choices(
    make_config: Callable[..., Any], method: str, reduction: str, eps: float
) -> None:
    config = make_config(method, **PUBLISHED)
    assert config.train_on_inputs is True
    assert config.kd_positions == "attention"
    assert config.kd_reduction == reduction
    assert config.kd_eps == eps
    assert config.grad_accum == "micro_batches"
    assert config.gkd_retokenize is (method == "gkd")
    assert config.select_best_on == "ce"


def test_project_defaults_stay(make_config: Callable[..., Any]) -> None:
    config = make_config("fkl")
    assert (config.preset, config.train_on_inputs, config.kd_positions, config.kd_reduction) == (
        "project",
        False,
        "targets",
        "token_mean",
    )
    assert (config.kd_eps, config.grad_accum, config.gkd_retokenize, config.select_best_on) == (
        0.0,
        "tokens",
        False,
        "loss",
    )
    # under the project preset every field can be chosen
    assert make_config("fkl", kd_reduction="sequence_mean", kd_eps=1e-9).kd_reduction == "sequence_mean"


@pytest.mark.parametrize(
    ("method", "overrides", "message"),
    [
        ("fkl", {"train_on_inputs": False}, "train_on_inputs"),
        ("fkl", {"grad_accum": "tokens"}, "grad_accum"),
        ("rkl", {"kd_reduction": "token_mean"}, "kd_reduction"),
        ("fkl", {"lora": {"dropout": 0.0}}, "dropout 0.05"),
        ("gkd", {"temperature": 2.0}, "temperature 1"),
        ("gkd", {"beta": 0.3}, "beta 0.5"),
        ("jsd", {}, "no method 'jsd'"),
        ("seqkd", {}, "no method 'seqkd'"),
    ],
)
def test_published_preset_refuses_what_the_released_code_does_not_do(
    make_config: Callable[..., Any], method: str, overrides: dict[str, Any], message: str
) -> None:
    settings = {**PUBLISHED, **overrides}
    if "lora" in overrides:
        settings["lora"] = overrides["lora"]
    with pytest.raises(ConfigError, match=message):
        make_config(method, **settings)


def test_preset_field_checks(make_config: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError, match="kd_eps applies to fkl and rkl"):
        make_config("jsd", kd_eps=1e-9)
    with pytest.raises(ConfigError, match="gkd_retokenize applies"):
        make_config("fkl", gkd_retokenize=True)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_values("paper", "fkl")


# --------------------------------------------------------------------------- the reductions


def _hand_kl(student: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """KL(p_T || p_S) per row, float64 (scipy)."""
    return rel_entr(softmax(teacher, -1), softmax(student, -1)).sum(-1)


@pytest.mark.parametrize("chunked", [True, False])
def test_sequence_mean_is_the_mean_of_each_sequences_mean(chunked: bool) -> None:
    rng = np.random.default_rng(0)
    student = rng.normal(size=(2, 4, 7))
    teacher = rng.normal(size=(2, 4, 7)) * 2
    mask = np.array([[1, 0, 0, 0], [1, 1, 1, 0]], dtype=bool)  # lengths 1 and 3
    per_token = _hand_kl(student, teacher)
    by_sequence = (per_token[0, :1].mean() + per_token[1, :3].mean()) / 2
    by_token = per_token[mask].mean()
    assert abs(by_sequence - by_token) > 1e-3  # the two reductions differ on these lengths
    args = (torch.tensor(student), torch.tensor(teacher), torch.tensor(mask))
    got_seq = kd_loss("fkl", *args, reduction="sequence_mean", chunked=chunked, chunk_size=2)
    got_tok = kd_loss("fkl", *args, chunked=chunked, chunk_size=2)
    assert float(got_seq) == pytest.approx(by_sequence, rel=1e-12)
    assert float(got_tok) == pytest.approx(by_token, rel=1e-12)


def test_sequence_mean_gradient_matches_dense_autograd() -> None:
    rng = np.random.default_rng(1)
    student = torch.tensor(rng.normal(size=(3, 5, 6)), requires_grad=True)
    teacher = torch.tensor(rng.normal(size=(3, 5, 6)))
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 1, 0, 0, 0]], dtype=torch.bool)
    kd_loss("rkl", student, teacher, mask, 2.0, reduction="sequence_mean", chunk_size=3).backward()
    chunked = student.grad.clone()
    student.grad = None
    kd_loss("rkl", student, teacher, mask, 2.0, reduction="sequence_mean", chunked=False).backward()
    torch.testing.assert_close(chunked, student.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["fkl", "rkl"])
def test_released_eps_is_added_to_the_right_distribution(name: str) -> None:
    rng = np.random.default_rng(2)
    student = rng.normal(size=(4, 9)) * 3
    teacher = rng.normal(size=(4, 9)) * 3
    eps = 1e-9
    log_s, log_t = log_softmax(student, -1), log_softmax(teacher, -1)
    if name == "fkl":  # (p_T + eps) * (log(p_T + eps) - log p_S)
        target = np.exp(log_t) + eps
        want = (target * (np.log(target) - log_s)).sum(-1).mean()
        exact = rel_entr(np.exp(log_t), np.exp(log_s)).sum(-1).mean()
    else:  # (p_S + eps) * (log p_S - log p_T)
        want = ((np.exp(log_s) + eps) * (log_s - log_t)).sum(-1).mean()
        exact = rel_entr(np.exp(log_s), np.exp(log_t)).sum(-1).mean()
    got = kd_loss(name, torch.tensor(student), torch.tensor(teacher), eps=eps)
    assert float(got) == pytest.approx(want, rel=1e-13)
    assert abs(float(got) - exact) > 1e-10  # eps moves the value


# --------------------------------------------------------------------------- the KD positions


class _FixedLogits(torch.nn.Module):
    """A stand-in model whose logits are a given tensor (trainable for the student)."""

    def __init__(self, logits: torch.Tensor, trainable: bool) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(logits.clone(), requires_grad=trainable)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        class _Out:
            logits = self.table[: input_ids.shape[0], : input_ids.shape[1]]

        return _Out()


def _kd_with_teacher_bumped(config: Any, position: int) -> tuple[float, float]:
    """KD of one micro-batch, and again with the teacher's logits changed at ``position`` only."""
    torch.manual_seed(0)
    width, vocab = 6, 11
    examples = [Example((5, 6, 7, 8, 9, 2), (IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 8, 9, 2), 3)]
    student = _FixedLogits(torch.randn(1, width, vocab), trainable=True)
    teacher_logits = torch.randn(1, width, vocab)
    values = []
    for bump in (0.0, 3.0):
        changed = teacher_logits.clone()
        changed[0, position] += bump * torch.linspace(-1, 1, vocab)
        method = Method(
            config,
            TeacherSignal(model=_FixedLogits(changed, trainable=False), autocast=contextlib.nullcontext),
            0,
            2,
        )
        out = method.loss(student, examples, device=torch.device("cpu"), autocast=contextlib.nullcontext)
        values.append(float(out.kd))
    return values[0], values[1]


@pytest.mark.parametrize(("position", "what"), [(0, "a prompt position"), (5, "the last position")])
def test_prompt_and_last_positions_are_in_the_kd_loss_under_published_only(
    make_config: Callable[..., Any], position: int, what: str
) -> None:
    before, after = _kd_with_teacher_bumped(make_config("fkl", **PUBLISHED), position)
    assert before != pytest.approx(after, rel=1e-4), f"{what} should count under published"
    before, after = _kd_with_teacher_bumped(make_config("fkl"), position)
    assert before == after, f"{what} should not count by default"


@pytest.mark.parametrize("name", ["fkl", "rkl"])
def test_published_kd_of_a_micro_batch_by_hand(make_config: Callable[..., Any], name: str) -> None:
    """Released: every attention position, logits at t against logits at t, eps 1e-9 on the
    teacher (fkl) or student (rkl) probabilities, per-sequence mean, then the batch mean."""
    rng = np.random.default_rng(3)
    lengths, width, vocab = (2, 5), 5, 7
    student = rng.normal(size=(2, width, vocab)) * 2
    teacher = rng.normal(size=(2, width, vocab)) * 2
    examples = [
        Example(tuple(range(1, 1 + n)), tuple(range(1, 1 + n)), 1) for n in lengths
    ]  # train_on_inputs: every token labelled
    method = Method(
        make_config(name, **PUBLISHED),
        TeacherSignal(
            model=_FixedLogits(torch.tensor(teacher), trainable=False), autocast=contextlib.nullcontext
        ),
        0,
        2,
    )
    out = method.loss(
        _FixedLogits(torch.tensor(student), trainable=True),
        examples,
        device=torch.device("cpu"),
        autocast=contextlib.nullcontext,
    )
    log_s, log_t = log_softmax(student, -1), log_softmax(teacher, -1)
    if name == "fkl":
        target = np.exp(log_t) + 1e-9
        per_token = (target * (np.log(target) - log_s)).sum(-1)
    else:
        per_token = ((np.exp(log_s) + 1e-9) * (log_s - log_t)).sum(-1)
    want = np.mean([per_token[b, :n].mean() for b, n in enumerate(lengths)])
    assert float(out.kd) == pytest.approx(want, rel=1e-12)


def test_published_ce_includes_the_prompt(make_config: Callable[..., Any], toy: dict[str, Any]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(toy["student"]))
    item = {"instruction": "What is 2 + 3?", "output": "The answer is 5."}
    counts = {}
    for name, overrides in (("published", PUBLISHED), ("project", {})):
        config = make_config("fkl", **overrides)
        ex = encode_item(
            tokenizer,
            item,
            max_length=config.max_length,
            train_on_inputs=config.train_on_inputs,
            prompt_style=config.prompt_style,
        )
        counts[name] = sum(label != IGNORE_INDEX for label in ex.labels)
        prompt_len = ex.prompt_len
    assert counts["published"] == counts["project"] + prompt_len


# --------------------------------------------------------------------------- gkd re-tokenisation


def test_retokenize_round_trips_through_the_text(toy: dict[str, Any]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(toy["student"]))
    prompt = tuple(tokenizer("Q: 12 + 30 =")["input_ids"])
    sample = tuple(tokenizer(" 42")["input_ids"]) + (tokenizer.eos_token_id,)
    example = Example(prompt + sample, (IGNORE_INDEX,) * len(prompt) + sample, len(prompt))
    (new,) = retokenize(tokenizer, [example])
    text = tokenizer.decode(list(example.input_ids), skip_special_tokens=True)
    assert new.input_ids == tuple(tokenizer(text)["input_ids"])
    assert tokenizer.eos_token_id not in new.input_ids  # the released decode drops it
    assert new.labels == new.input_ids  # prompt included, as the released labels
    assert tokenizer.decode(list(new.input_ids)) == text
    assert new.input_ids[: new.prompt_len] == prompt[: new.prompt_len]


@pytest.mark.parametrize("preset", ["published", "project"])
def test_gkd_on_policy_samples_are_retokenised_under_published_only(
    make_config: Callable[..., Any], toy: dict[str, Any], monkeypatch: pytest.MonkeyPatch, preset: str
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = make_config("gkd", **(PUBLISHED if preset == "published" else {}))
    tokenizer = AutoTokenizer.from_pretrained(str(toy["student"]))
    model = AutoModelForCausalLM.from_pretrained(str(toy["student"]))
    teacher = TeacherSignal(
        model=AutoModelForCausalLM.from_pretrained(str(toy["teacher"])), autocast=contextlib.nullcontext
    )
    calls: list[int] = []

    def spy(tok: Any, examples: Any) -> list[Example]:
        calls.append(len(examples))
        return retokenize(tok, examples)

    monkeypatch.setattr(methods_module, "retokenize", spy)
    method = methods_module.build_method(config, teacher, tokenizer)
    item = {"instruction": "What is 1 + 1?", "output": "2"}
    ex = encode_item(
        tokenizer,
        item,
        max_length=64,
        train_on_inputs=config.train_on_inputs,
        prompt_style=config.prompt_style,
    )
    torch.manual_seed(0)
    out = method.loss(
        model,
        [ex, ex],
        device=torch.device("cpu"),
        autocast=contextlib.nullcontext,
        on_policy=True,
        generator_model=model,
    )
    assert out.on_policy
    assert calls == ([2] if preset == "published" else [])


# --------------------------------------------------------------------------- the best weights


def test_published_picks_the_best_weights_by_validation_cross_entropy(
    make_config: Callable[..., Any], tmp_path: Any
) -> None:
    import json

    from runners.distill.trainer import train

    config = make_config(
        "fkl", **PUBLISHED, optim={"max_steps": 4, "warmup_steps": 1}, eval_every=1, checkpoint_every=0
    )
    result = train(config, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_loss" in r]

    def flags(key: str) -> list[bool]:
        best, out = float("inf"), []
        for r in val:
            out.append(r[key] < best)
            best = min(best, r[key])
        return out

    assert flags("val_ce") != flags("val_loss")  # the two choices differ on this run
    assert [r["best"] for r in val] == flags("val_ce")
    best = min(val, key=lambda r: r["val_ce"])
    assert (result.best_step, result.best_val_loss) == (best["step"], best["val_ce"])
