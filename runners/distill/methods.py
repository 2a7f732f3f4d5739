"""Training methods selectable by name: the loss of one micro-batch.

=========  ==============================================================================
``sft``    cross-entropy on the ground-truth response
``fkl`` …  token-level KD on ground-truth sequences (``fkl``, ``rkl``, ``jsd``, ``tvd``,
           ``skl``, ``srkl``): ``alpha * kd_loss + (1 - alpha) * CE``, teacher logits from
           the live teacher or the offline cache, optional Gaussian noise sigma on them
``gkd``    on-policy: with probability lambda the micro-batch is replaced by the student's
           own sampled continuations of its prompts; loss = generalized JSD(beta)
``seqkd``  sequence-level KD: the teacher first writes an output for every training prompt
           (:func:`generate_teacher_outputs`, cached in the run folder), then plain CE on them
=========  ==============================================================================

Generation (``gkd`` samples, ``seqkd`` outputs) goes through the evaluation's
:func:`runners.evaluate.hf_backend.hf_generate`: every setting comes from ``generation``
(the checkpoint's own ``generation_config`` is not read), and it stops as evaluation does
for the run's ``prompt_style``: at its :data:`runners.evaluate.prompts.STOP_STRINGS` (a
second ``### Response:``, where the published scoring cuts a response). A continuation
that reaches a stop string is cut before it
(:func:`runners.evaluate.decoding.truncate_ids_at_stop`) and ends with EOS, like one the
model ended itself. ``gkd`` samples draw from the torch global generator, seeded with the
run's ``seed`` and saved in each checkpoint, so a resumed run draws what an uninterrupted one
draws; ``seqkd`` seeds it per batch (:func:`generate_teacher_outputs`).

Shapes: logits at position t predict token t+1, so every loss compares
``logits[:, :-1]`` with ``labels[:, 1:]``; the token mask is ``labels[:, 1:] != -100``.
With ``kd_positions: attention`` (the released code) the KD loss instead compares the
student's and the teacher's logits at every non-padding position, the last one included;
the cross-entropy and the logged ``kl`` keep the target mask.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kdanalysis.io import atomic_write_text
from runners.distill.cache import TeacherCache
from runners.distill.config import TOKEN_KD_METHODS, DistillConfig, GenerationConfig
from runners.distill.data import IGNORE_INDEX, Example, collate, collate_prompts, example_key
from runners.distill.losses import TopKTeacher, kd_loss
from runners.distill.vocab import align_logits
from runners.evaluate.decoding import DecodingConfig, truncate_ids_at_stop
from runners.evaluate.hf_backend import hf_generate
from runners.evaluate.prompts import STOP_STRINGS

__all__ = [
    "LossOutput",
    "TeacherSignal",
    "Method",
    "build_method",
    "cross_entropy",
    "add_teacher_noise",
    "sample_continuations",
    "retokenize",
    "generate_teacher_outputs",
]

log = logging.getLogger(__name__)


@dataclass
class LossOutput:
    """Loss of one micro-batch and its parts (the parts are detached, for logging).

    Attributes
    ----------
    loss : Tensor
        Scalar to back-propagate.
    ce : Tensor
        Cross-entropy of the student on the batch's targets.
    kd : Tensor or None
        The KD divergence (None without a teacher signal).
    kl : Tensor or None
        Forward KL(teacher || student) at temperature 1 on the noise-free teacher.
    n_tokens : int
        Target tokens in the micro-batch.
    on_policy : bool
        Whether the batch was student-generated (``gkd``).
    """

    loss: torch.Tensor
    ce: torch.Tensor
    kd: torch.Tensor | None
    kl: torch.Tensor | None
    n_tokens: int
    on_policy: bool = False


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-mean cross-entropy of ``logits[:, :-1]`` against ``labels[:, 1:]`` (fp32 softmax)."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX
    )


def add_teacher_noise(teacher: torch.Tensor | TopKTeacher, sigma: float) -> torch.Tensor | TopKTeacher:
    """Add N(0, sigma^2) noise to teacher logits; sigma 0: unchanged.

    A dense teacher gets noise on every logit; a top-k teacher on its kept logits only
    (the rest bucket keeps its mass).
    """
    if not sigma:
        return teacher
    if isinstance(teacher, TopKTeacher):
        return dataclasses.replace(teacher, values=teacher.values + sigma * torch.randn_like(teacher.values))
    return teacher + sigma * torch.randn_like(teacher)


class TeacherSignal:
    """Teacher logits of a batch, from a frozen live model or from an offline cache.

    Parameters
    ----------
    model : PreTrainedModel or None
        The live teacher; put in eval mode, gradients off.
    cache : TeacherCache or None
        Offline top-k logits (used instead of ``model``).
    autocast : callable
        Context manager factory for the forward pass (mixed precision).
    """

    def __init__(self, model: Any = None, cache: TeacherCache | None = None, autocast: Any = None) -> None:
        if (model is None) == (cache is None):
            raise ValueError("TeacherSignal needs exactly one of model or cache")
        self.model = model
        self.cache = cache
        self.autocast = autocast
        if model is not None:
            model.eval()
            model.requires_grad_(False)

    @torch.no_grad()
    def logits(
        self, batch: dict[str, torch.Tensor], examples: Sequence[Example], temperature: float
    ) -> torch.Tensor | TopKTeacher:
        """Teacher logits [B, T, V] (live) or a :class:`TopKTeacher` [B, T, k] (cache, with the
        rest mass at ``temperature``) for ``batch``."""
        if self.cache is not None:
            width = batch["input_ids"].shape[1]
            teacher = self.cache.lookup([example_key(ex.input_ids) for ex in examples], width, temperature)
            return teacher.to(batch["input_ids"].device)
        with self.autocast():
            out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.logits


class Method:
    """Loss of a micro-batch for one method (see the module table).

    Parameters
    ----------
    config : DistillConfig
        The run's config (method, alpha, temperature, beta, skew_alpha, gkd_lambda,
        generation, teacher_noise, train_on_inputs, kd_positions, kd_reduction, kd_eps,
        gkd_retokenize, max_length, seed).
    teacher : TeacherSignal or None
        Teacher logits (None for ``sft`` and ``seqkd``).
    pad_id, eos_id : int
        The tokenizer's padding and end-of-sequence ids.
    vocab_size : int or None
        Shared vocabulary size (``len(tokenizer)``): logits are sliced to it, which drops
        embedding padding rows (:func:`runners.distill.vocab.align_logits`).
    tokenizer : tokenizer or None
        Needed by ``gkd``: its samples stop at the stop strings of ``config.prompt_style``
        (see the module docstring), and ``config.gkd_retokenize`` decodes them
        (:func:`retokenize`).
    """

    def __init__(
        self,
        config: DistillConfig,
        teacher: TeacherSignal | None,
        pad_id: int,
        eos_id: int,
        vocab_size: int | None = None,
        tokenizer: Any = None,
    ) -> None:
        self.config = config
        self.teacher = teacher
        self.pad_id = pad_id
        self.eos_id = eos_id
        self.vocab_size = vocab_size
        self.tokenizer = tokenizer
        if config.method == "gkd" and tokenizer is None:
            raise ValueError(
                "method 'gkd' needs the tokenizer (stop strings of its samples, re-tokenisation)"
            )
        self.stop: tuple[str, ...] = STOP_STRINGS[config.prompt_style]
        name = config.method
        self.kd_name: str | None = (
            {"gkd": "jsd"}.get(name, name) if name in TOKEN_KD_METHODS | {"gkd"} else None
        )
        self.kd_params: dict[str, Any] = {}
        if self.kd_name == "jsd":
            self.kd_params = {"beta": config.beta}
        elif self.kd_name in ("skl", "srkl"):
            self.kd_params = {"alpha": config.skew_alpha}
        if config.kd_eps:
            self.kd_params["eps"] = config.kd_eps
        if self.kd_name is not None and teacher is None:
            raise ValueError(f"method {name!r} needs a teacher signal")

    def on_policy_coin(self, step: int, micro: int, rank: int) -> bool:
        """Whether micro-batch ``micro`` of optimiser step ``step`` is on-policy (``gkd`` only).

        A pure function of ``(seed, step, micro, rank)``, so a resumed run draws the same coins.
        """
        if self.config.method != "gkd" or not self.config.gkd_lambda:
            return False
        draw = np.random.default_rng([self.config.seed, step, micro, rank]).random()
        return bool(draw < self.config.gkd_lambda)

    def loss(
        self,
        student: Any,
        examples: Sequence[Example],
        *,
        device: torch.device,
        autocast: Any,
        on_policy: bool = False,
        generator_model: Any = None,
        noise: bool = True,
    ) -> LossOutput:
        """Forward the student on ``examples`` and return its loss.

        Parameters
        ----------
        student : PreTrainedModel
            The (possibly DDP-wrapped) student in train mode.
        examples : sequence of Example
            The micro-batch.
        device : torch.device
            Where tensors go.
        autocast : callable
            Mixed-precision context factory.
        on_policy : bool
            Replace the batch by student samples first (``gkd``; see :meth:`on_policy_coin`).
        generator_model : PreTrainedModel or None
            The unwrapped student used for sampling (needed when ``on_policy``).
        noise : bool
            Add ``teacher_noise`` to the teacher logits (off for validation).
        """
        if on_policy:
            examples = sample_continuations(
                generator_model,
                examples,
                self.config.generation,
                tokenizer=self.tokenizer,
                stop=self.stop,
                pad_id=self.pad_id,
                eos_id=self.eos_id,
                max_length=self.config.max_length,
                train_on_inputs=self.config.train_on_inputs,
                device=device,
                autocast=autocast,
            )
            if self.config.gkd_retokenize:
                examples = retokenize(self.tokenizer, examples)
        batch = {k: v.to(device) for k, v in collate(examples, self.pad_id).items()}
        with autocast():
            student_logits = student(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
        labels = batch["labels"]
        ce = cross_entropy(student_logits, labels)
        n_tokens = int((labels[:, 1:] != IGNORE_INDEX).sum())
        if self.kd_name is None:
            return LossOutput(ce, ce.detach(), None, None, n_tokens, on_policy)

        assert self.teacher is not None  # checked in __init__
        teacher = self.teacher.logits(batch, examples, self.config.temperature)
        mask = labels[:, 1:] != IGNORE_INDEX
        s_logits, t_logits = align_logits(student_logits[:, :-1], teacher[:, :-1], self.vocab_size)
        kd_mask = mask
        s_kd, t_kd = s_logits, t_logits
        if self.config.kd_positions == "attention":
            kd_mask = batch["attention_mask"] != 0
            s_kd, t_kd = align_logits(student_logits, teacher, self.vocab_size)
        noisy = add_teacher_noise(t_kd, self.config.teacher_noise if noise else 0.0)
        kd = kd_loss(
            self.kd_name,
            s_kd,
            noisy,
            kd_mask,
            temperature=self.config.temperature,
            reduction=self.config.kd_reduction,
            **self.kd_params,
        )
        with torch.no_grad():
            kl = self._kl_to_teacher(s_logits.detach(), t_logits, batch, examples, mask)
        alpha = self.config.alpha
        loss = kd if alpha == 1.0 else alpha * kd + (1.0 - alpha) * ce
        return LossOutput(loss, ce.detach(), kd.detach(), kl, n_tokens, on_policy)

    def _kl_to_teacher(
        self,
        s_logits: torch.Tensor,
        t_logits: torch.Tensor | TopKTeacher,
        batch: dict[str, torch.Tensor],
        examples: Sequence[Example],
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """KL(teacher || student) at temperature 1, the fidelity measure logged as ``kl``."""
        if isinstance(t_logits, TopKTeacher) and self.config.temperature != 1.0:
            assert self.teacher is not None
            t_logits = self.teacher.logits(batch, examples, 1.0)[:, :-1]  # the rest mass at tau = 1
        return kd_loss("fkl", s_logits, t_logits, mask, temperature=1.0)


def build_method(config: DistillConfig, teacher: TeacherSignal | None, tokenizer: Any) -> Method:
    """The :class:`Method` of ``config.method`` for a tokenizer (pad/eos ids, shared vocabulary size)."""
    return Method(
        config,
        teacher,
        pad_id=tokenizer.pad_token_id,
        eos_id=tokenizer.eos_token_id,
        vocab_size=len(tokenizer),
        tokenizer=tokenizer,
    )


def _generate(
    model: Any,
    examples: Sequence[Example],
    gen: GenerationConfig,
    *,
    tokenizer: Any,
    stop: Sequence[str],
    pad_id: int,
    eos_id: int,
    max_new_tokens: int,
    device: torch.device,
    autocast: Any,
) -> list[list[int]]:
    """Sample continuations of the examples' prompts with exactly ``gen`` and the stop strings.

    Each list ends at (and includes) the first EOS; one that reaches a stop string is cut
    before it and ends with EOS (see the module docstring).
    """
    decoding = DecodingConfig(
        do_sample=gen.do_sample,
        temperature=gen.temperature,
        top_p=gen.top_p,
        top_k=gen.top_k,
        max_new_tokens=max_new_tokens,
        stop=tuple(stop),
    )
    prompts = {k: v.to(device) for k, v in collate_prompts(examples, pad_id).items()}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast():
            out = hf_generate(
                model,
                prompts["input_ids"],
                prompts["attention_mask"],
                decoding,
                eos_token_id=eos_id,
                pad_token_id=pad_id,
                tokenizer=tokenizer,
            )
    finally:
        model.train(was_training)
    continuations = []
    for row in out[:, prompts["input_ids"].shape[1] :].tolist():
        cut = row.index(eos_id) + 1 if eos_id in row else len(row)
        stopped = truncate_ids_at_stop(row[:cut], stop, tokenizer) if stop else None
        continuations.append(row[:cut] if stopped is None else [*stopped, eos_id])
    return continuations


def sample_continuations(
    model: Any,
    examples: Sequence[Example],
    gen: GenerationConfig,
    *,
    tokenizer: Any,
    stop: Sequence[str],
    pad_id: int,
    eos_id: int,
    max_length: int,
    train_on_inputs: bool,
    device: torch.device,
    autocast: Any,
) -> list[Example]:
    """Replace each example's response by the model's own sampled continuation of its prompt (``gkd``).

    The continuation stops at EOS or at a stop string (cut before it, EOS appended); see the
    module docstring. ``tokenizer`` decodes the samples to find the stop strings.
    """
    longest_prompt = max(ex.prompt_len for ex in examples)
    budget = max(1, min(gen.max_new_tokens, max_length - longest_prompt))
    continuations = _generate(
        model,
        examples,
        gen,
        tokenizer=tokenizer,
        stop=stop,
        pad_id=pad_id,
        eos_id=eos_id,
        max_new_tokens=budget,
        device=device,
        autocast=autocast,
    )
    new = []
    for ex, cont in zip(examples, continuations, strict=True):
        ids = (ex.prompt_ids + tuple(cont))[:max_length]
        prompt_labels = ex.prompt_ids if train_on_inputs else (IGNORE_INDEX,) * ex.prompt_len
        new.append(Example(ids, (prompt_labels + tuple(cont))[:max_length], ex.prompt_len))
    return new


def retokenize(tokenizer: Any, examples: Sequence[Example]) -> list[Example]:
    """Decode each sequence (special tokens dropped) and tokenise the text again (``gkd_retokenize``).

    What the released GKD does with its samples (``batch_decode(..., skip_special_tokens=True)``
    and the tokenizer on the texts, kd_trainer.py:216-221): the EOS and any special token go,
    the tokenizer's own special tokens (e.g. a BOS) are added, and the token boundaries are
    those of the text. Every token gets a label (the released labels are the input ids with
    padding ignored); ``prompt_len`` is the length of the common prefix with the old prompt.
    """
    new = []
    for ex in examples:
        text = tokenizer.decode(list(ex.input_ids), skip_special_tokens=True)
        ids = tuple(tokenizer(text)["input_ids"])
        prompt_len = 0
        while prompt_len < min(len(ids), ex.prompt_len) and ids[prompt_len] == ex.input_ids[prompt_len]:
            prompt_len += 1
        new.append(Example(ids, ids, prompt_len))
    return new


def generate_teacher_outputs(
    teacher: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    gen: GenerationConfig,
    out_file: str | os.PathLike[str],
    *,
    stop: Sequence[str],
    seed: int,
    device: torch.device,
    autocast: Any,
) -> list[str]:
    """Let the teacher write a response to every prompt (``seqkd``), resumably.

    Responses are appended to ``out_file`` (JSON lines ``{"index", "output"}``) batch by
    batch; a rerun keeps the finished lines and continues. Each batch is sampled with
    the torch seed ``(seed, batch index)``, so an interrupted and an uninterrupted
    generation write the same texts. A response ends at EOS or before the first of ``stop``
    (the run's prompt style's :data:`runners.evaluate.prompts.STOP_STRINGS`), as in evaluation.

    Returns
    -------
    list of str
        The decoded responses (special tokens removed), in the order of ``examples``.
    """
    out_file = Path(out_file)
    done: dict[int, str] = {}
    if out_file.is_file():
        for line in out_file.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                done[int(record["index"])] = str(record["output"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                break  # a line cut by a kill: regenerate from here
        atomic_write_text(
            out_file, "".join(json.dumps({"index": i, "output": done[i]}) + "\n" for i in sorted(done))
        )
    size = gen.batch_size
    todo = [
        b
        for b in range(0, len(examples), size)
        if any(i not in done for i in range(b, b + size) if i < len(examples))
    ]
    if todo:
        log.info("seqkd: the teacher writes %d of %d responses", len(examples) - len(done), len(examples))
    with out_file.open("a", encoding="utf-8") as fh:
        for start in todo:
            batch = list(examples[start : start + size])
            torch.manual_seed(int(np.random.default_rng([seed, start]).integers(2**62)))
            conts = _generate(
                teacher,
                batch,
                gen,
                tokenizer=tokenizer,
                stop=stop,
                pad_id=tokenizer.pad_token_id,
                eos_id=tokenizer.eos_token_id,
                max_new_tokens=gen.max_new_tokens,
                device=device,
                autocast=autocast,
            )
            for offset, cont in enumerate(conts):
                text = tokenizer.decode(cont, skip_special_tokens=True)
                done[start + offset] = text
                fh.write(json.dumps({"index": start + offset, "output": text}) + "\n")
            fh.flush()
    return [done[i] for i in range(len(examples))]
