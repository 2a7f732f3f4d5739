"""Training data: items → token examples → padded batches, in a resumable order.

Items are the published format ``{instruction, input?, output, answer?}``. One item
becomes one :class:`Example`: the prompt (:func:`runners.evaluate.prompts.format_prompt`)
tokenised with the tokenizer's special tokens, then the response tokenised on its own
plus EOS, truncated to ``max_length``. Tokenising the prompt on its own is what the
model sees at generation time, and it makes the prompt/response boundary exact.

The batch order is a pure function of ``(seed, epoch)`` (:func:`epoch_batches`), so a
resumed run only needs its step number to continue with exactly the same batches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdanalysis.errors import ConfigError
from runners.distill.schedule import steps_per_epoch
from runners.evaluate.prompts import PromptStyle, format_prompt

__all__ = [
    "IGNORE_INDEX",
    "Example",
    "load_items",
    "split_items",
    "encode_item",
    "encode_pairs",
    "encode_items",
    "example_key",
    "epoch_batches",
    "collate",
    "collate_prompts",
]

log = logging.getLogger(__name__)

#: Label of positions that no loss sees (prompt tokens when ``train_on_inputs`` is False, padding).
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One tokenised training sequence.

    Attributes
    ----------
    input_ids : tuple of int
        Prompt tokens followed by response tokens (+ EOS), at most ``max_length``.
    labels : tuple of int
        ``input_ids`` with :data:`IGNORE_INDEX` where no loss applies.
    prompt_len : int
        Number of prompt tokens at the start of ``input_ids``.
    """

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    prompt_len: int

    @property
    def prompt_ids(self) -> tuple[int, ...]:
        """The prompt tokens (what a generating model is given)."""
        return self.input_ids[: self.prompt_len]


def load_items(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON list of ``{instruction, input?, output, answer?}`` items.

    Raises
    ------
    ConfigError
        If the file is not a JSON list or an item lacks a string ``instruction``/``output``.
    """
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read training data {path}: {err}") from None
    if not isinstance(items, list):
        raise ConfigError(f"training data {path} must be a JSON list of items, got {type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ConfigError(f"training data {path}: item {i} is not an object")
        for key in ("instruction", "output"):
            if not isinstance(item.get(key), str):
                raise ConfigError(f"training data {path}: item {i} lacks a string {key!r}")
    return items


def split_items(
    items: Sequence[dict[str, Any]], val_size: int, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hold out ``val_size`` items chosen by a seeded shuffle; return ``(train, val)``.

    The training items keep their file order (the epoch order is shuffled later).
    """
    if val_size == 0:
        return list(items), []
    if val_size >= len(items):
        raise ConfigError(f"data.val_size={val_size} leaves no training items (the file has {len(items)})")
    held_out = set(np.random.default_rng(seed).permutation(len(items))[:val_size].tolist())
    train = [it for i, it in enumerate(items) if i not in held_out]
    val = [it for i, it in enumerate(items) if i in held_out]
    return train, val


def encode_item(
    tokenizer: Any,
    item: Mapping[str, Any],
    *,
    max_length: int,
    train_on_inputs: bool,
    prompt_style: PromptStyle,
) -> Example:
    """Tokenise one item (prompt with special tokens, response + EOS) and build its labels."""
    prompt = format_prompt(item["instruction"], item.get("input") or None, style=prompt_style)
    prompt_ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    response_ids = list(tokenizer(item["output"], add_special_tokens=False)["input_ids"])
    response_ids.append(tokenizer.eos_token_id)
    input_ids = (prompt_ids + response_ids)[:max_length]
    prompt_len = min(len(prompt_ids), len(input_ids))
    labels = list(input_ids)
    if not train_on_inputs:
        labels[:prompt_len] = [IGNORE_INDEX] * prompt_len
    return Example(tuple(input_ids), tuple(labels), prompt_len)


def encode_pairs(
    tokenizer: Any,
    items: Iterable[Mapping[str, Any]],
    *,
    max_length: int,
    train_on_inputs: bool,
    prompt_style: PromptStyle,
) -> list[tuple[Mapping[str, Any], Example]]:
    """Tokenise items, keeping ``(item, example)`` pairs; items without any target token
    (the prompt fills ``max_length``) are dropped with a warning."""
    pairs = [
        (
            it,
            encode_item(
                tokenizer,
                it,
                max_length=max_length,
                train_on_inputs=train_on_inputs,
                prompt_style=prompt_style,
            ),
        )
        for it in items
    ]
    kept = [(it, ex) for it, ex in pairs if ex.prompt_len < len(ex.input_ids)]
    if len(kept) < len(pairs):
        log.warning(
            "dropped %d of %d items whose prompt fills max_length=%d",
            len(pairs) - len(kept),
            len(pairs),
            max_length,
        )
    return kept


def encode_items(
    tokenizer: Any,
    items: Iterable[Mapping[str, Any]],
    *,
    max_length: int,
    train_on_inputs: bool,
    prompt_style: PromptStyle,
) -> list[Example]:
    """Tokenise items into examples (see :func:`encode_pairs` for dropped items)."""
    return [
        ex
        for _, ex in encode_pairs(
            tokenizer,
            items,
            max_length=max_length,
            train_on_inputs=train_on_inputs,
            prompt_style=prompt_style,
        )
    ]


def example_key(input_ids: Sequence[int]) -> str:
    """Content key of a token sequence (used by the teacher-logit cache)."""
    return hashlib.sha1(np.asarray(input_ids, dtype=np.int64).tobytes()).hexdigest()


def epoch_batches(n_examples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Index batches of one epoch: a permutation seeded by ``(seed, epoch)``, last partial batch dropped."""
    order = np.random.default_rng([seed, epoch]).permutation(n_examples)
    return [
        order[b * batch_size : (b + 1) * batch_size].tolist()
        for b in range(steps_per_epoch(n_examples, batch_size))
    ]


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, Any]:
    """Right-pad examples into tensors ``input_ids``, ``attention_mask``, ``labels`` of shape [B, T]."""
    import torch

    width = max(len(ex.input_ids) for ex in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, ex in enumerate(examples):
        n = len(ex.input_ids)
        ids[row, :n] = torch.tensor(ex.input_ids)
        labels[row, :n] = torch.tensor(ex.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collate_prompts(examples: Sequence[Example], pad_id: int) -> dict[str, Any]:
    """Left-pad the prompts of examples (for ``generate``): ``input_ids``, ``attention_mask`` [B, P]."""
    import torch

    width = max(ex.prompt_len for ex in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, ex in enumerate(examples):
        n = ex.prompt_len
        ids[row, width - n :] = torch.tensor(ex.prompt_ids)
        mask[row, width - n :] = 1
    return {"input_ids": ids, "attention_mask": mask}
