"""Wiring between the config, the methods and the losses, checked against independent computations.

Each test here kills at least one deliberate breakage listed in ``scripts/mutants.py``
(which applies every breakage to a copy of the code and runs these tests on it):
the chunked backward ignoring or squaring the incoming gradient, the KD mask off by one,
the KD/CE mix inverted, ``beta``/``skew_alpha`` not passed from the config, and on-policy
continuations losing their end-of-sequence token. References are written from the
definitions in float64 (scipy), not with :mod:`runners.distill.losses`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, rel_entr

from runners.distill.config import GenerationConfig
from runners.distill.data import IGNORE_INDEX, Example, collate, encode_items, load_items
from runners.distill.losses import kd_loss
from runners.distill.methods import Method, TeacherSignal, sample_continuations
from runners.models import load_causal_lm

CPU = torch.device("cpu")


class _Sharpened(torch.nn.Module):
    """A toy model with its logits multiplied by ``factor``: a random tiny model's next-token
    distributions are nearly the same at every position, so a loss over the wrong positions
    would hardly change."""

    def __init__(self, model: torch.nn.Module, factor: float) -> None:
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, **inputs: Any) -> Any:
        out = self.model(**inputs)
        out.logits = self.factor * out.logits
        return out


@pytest.fixture(scope="module")
def models(toy):  # type: ignore[no-untyped-def]
    student, tokenizer = load_causal_lm(str(toy["student"]), dtype="float32", device="cpu")
    teacher, _ = load_causal_lm(str(toy["teacher"]), dtype="float32", device="cpu")
    return _Sharpened(student, 8.0), _Sharpened(teacher, 20.0), tokenizer


@pytest.fixture(scope="module")
def examples(models, toy) -> list[Example]:  # type: ignore[no-untyped-def]
    tokenizer = models[2]
    items = load_items(toy["data"])[:3]
    return encode_items(
        tokenizer, items, max_length=96, train_on_inputs=False, prompt_style="published_train"
    )


# --- the chunked backward ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fkl", "rkl", "jsd"])
@pytest.mark.parametrize("scale", [0.3, -2.0])
def test_chunked_backward_multiplies_by_the_incoming_gradient(name: str, scale: float) -> None:
    """d(c·L)/dz = c·dL/dz: a backward ignoring c (×1) or squaring it (×c²) fails for c = 0.3 and −2."""
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(2, 5, 17, generator=gen).requires_grad_()
    teacher = torch.randn(2, 5, 17, generator=gen)
    (scale * kd_loss(name, student, teacher, chunk_size=3)).backward()
    chunked = student.grad.clone()
    student.grad = None
    (scale * kd_loss(name, student, teacher, chunked=False)).backward()
    assert torch.allclose(chunked, student.grad, rtol=1e-5, atol=1e-8)
    assert chunked.abs().max() > 1e-4


# --- Method.loss against the definitions -------------------------------------------------------


def _divergence(name: str, params: dict[str, float], s: np.ndarray, t: np.ndarray, tau: float) -> np.ndarray:
    """Per-token divergence between softmax(t/τ) and softmax(s/τ), float64, from the definitions."""
    p_s, p_t = np.exp(log_softmax(s / tau, axis=-1)), np.exp(log_softmax(t / tau, axis=-1))
    if name == "fkl":
        return rel_entr(p_t, p_s).sum(-1)
    if name in ("jsd", "gkd"):
        beta = params["beta"]
        mix = beta * p_t + (1 - beta) * p_s
        return beta * rel_entr(p_t, mix).sum(-1) + (1 - beta) * rel_entr(p_s, mix).sum(-1)
    alpha = params["alpha"]
    if name == "skl":
        return rel_entr(p_t, alpha * p_t + (1 - alpha) * p_s).sum(-1)
    return rel_entr(p_s, alpha * p_s + (1 - alpha) * p_t).sum(-1)  # srkl


def _reference(
    student: Any, teacher: Any, examples: list[Example], pad_id: int, name: str, params: dict, tau: float
):  # type: ignore[no-untyped-def]
    """(KD, CE) of a micro-batch by hand: logits at position t predict the label at t + 1."""
    batch = collate(examples, pad_id)
    with torch.no_grad():
        s_logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    s_logits, t_logits = s_logits.double().numpy(), t_logits.double().numpy()
    labels = batch["labels"].numpy()
    kd, ce = [], []
    for row in range(labels.shape[0]):
        for pos in range(labels.shape[1] - 1):
            target = labels[row, pos + 1]
            if target == IGNORE_INDEX:
                continue
            s, t = s_logits[row, pos], t_logits[row, pos]
            kd.append(tau**2 * _divergence(name, params, s, t, tau))
            ce.append(-log_softmax(s)[target])
    return float(np.mean(kd)), float(np.mean(ce)), len(kd)


@pytest.mark.parametrize(
    ("method", "overrides", "params"),
    [
        ("fkl", {"alpha": 0.25, "temperature": 2.0}, {}),
        ("jsd", {"beta": 0.2}, {"beta": 0.2}),
        ("gkd", {"beta": 0.8, "gkd_lambda": 0.0}, {"beta": 0.8}),
        ("skl", {"skew_alpha": 0.35, "alpha": 0.6}, {"alpha": 0.35}),
        ("srkl", {"skew_alpha": 0.35}, {"alpha": 0.35}),
    ],
    ids=["fkl-mix", "jsd-beta", "gkd-beta", "skl-alpha", "srkl-alpha"],
)
def test_method_loss_equals_the_hand_computed_mix(  # type: ignore[no-untyped-def]
    make_config, models, examples, method: str, overrides: dict, params: dict
) -> None:
    """KD over exactly the target positions, the config's beta/skew_alpha, loss = α·KD + (1−α)·CE."""
    student, teacher, tok = models
    config = make_config(method, **overrides)
    signal = TeacherSignal(model=teacher, autocast=contextlib.nullcontext)
    out = Method(config, signal, tok.pad_token_id, tok.eos_token_id, tokenizer=tok).loss(
        student, examples, device=CPU, autocast=contextlib.nullcontext
    )
    kd, ce, n_tokens = _reference(
        student, teacher, examples, tok.pad_token_id, method, params, config.temperature
    )
    alpha = config.alpha
    assert out.n_tokens == n_tokens
    assert out.kd.item() == pytest.approx(kd, rel=1e-4)
    assert out.ce.item() == pytest.approx(ce, rel=1e-4)
    assert out.loss.item() == pytest.approx(alpha * kd + (1 - alpha) * ce, rel=1e-4)


# --- on-policy continuations --------------------------------------------------------------------


class _ScriptedGenerator:
    """Stands in for a model's ``generate``: appends fixed continuations to the prompts.

    Row 0 emits EOS and then padding (as ``generate`` pads finished rows); row 1 never emits EOS.
    """

    def __init__(self, continuations: list[list[int]]) -> None:
        self.training = True
        self.continuations = continuations
        self.calls: list[dict[str, Any]] = []
        self.generation_config = None  # replaced by the explicit config during a call

    def eval(self) -> None:
        self.training = False

    def train(self, mode: bool = True) -> None:
        self.training = mode

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.calls.append(kwargs)
        return torch.cat([input_ids, torch.tensor(self.continuations)], dim=1)


def test_on_policy_continuations_keep_their_eos_and_stop_there(examples, models) -> None:  # type: ignore[no-untyped-def]
    tok = models[2]
    eos, pad = tok.eos_token_id, tok.pad_token_id
    a, b, c = 11, 12, 13  # ordinary token ids
    generator = _ScriptedGenerator(
        [[a, b, eos, pad, pad, pad], [c, a, b, c, a, b], [eos, pad, pad, pad, pad, pad]]
    )
    new = sample_continuations(
        generator,
        examples,
        GenerationConfig(max_new_tokens=6, batch_size=4),
        tokenizer=tok,
        stop=("### Response:",),
        pad_id=pad,
        eos_id=eos,
        max_length=200,
        train_on_inputs=False,
        device=CPU,
        autocast=contextlib.nullcontext,
    )
    assert generator.calls[0]["generation_config"].eos_token_id == eos and generator.training
    expected = [(a, b, eos), (c, a, b, c, a, b), (eos,)]
    for ex, old, cont in zip(new, examples, expected, strict=True):
        assert ex.input_ids == old.prompt_ids + cont
        assert ex.labels == (IGNORE_INDEX,) * old.prompt_len + cont
        assert ex.prompt_len == old.prompt_len


@pytest.mark.slow
def test_every_listed_mutant_is_killed() -> None:
    """``scripts/mutants.py``: each breakage, applied to a copy of the code, fails a test here."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [sys.executable, str(root / "scripts" / "mutants.py")], cwd=root, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
