"""Decoding settings shared by every evaluation backend.

:class:`DecodingConfig` is backend-neutral: the HF backend turns it into a
``transformers.GenerationConfig`` (:func:`runners.evaluate.hf_backend.hf_generation_config`)
and the vLLM backend into ``SamplingParams`` keyword arguments
(:func:`runners.evaluate.vllm_backend.sampling_params_kwargs`).

Greedy decoding is the default (deterministic, comparable across backends). The
published protocol of the study (PAPER.md) sampled once per question at temperature
1.0 with top_p 1 and top_k 0 (no truncation) and at most 256 new tokens; it is the
named preset ``"published"``. The paper used no seed; the preset keeps the seed field
so that a rerun draws the same samples.

In YAML a decoding block is either a preset name or a mapping, optionally starting
from a preset and overriding fields::

    decoding: published
    decoding: {preset: published, seed: 3}
    decoding: {max_new_tokens: 128, stop: ["### Instruction"]}

An evaluation run adds its prompt style's stop strings
(:data:`runners.evaluate.prompts.STOP_STRINGS`, a second ``### Response:``) to ``stop``
(:func:`with_stop`, applied by :class:`~runners.evaluate.config.EvalConfig`), so generation
ends where the published scoring cuts the response; backends only read ``stop``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kdanalysis.errors import ConfigError

__all__ = [
    "DecodingConfig",
    "DECODING_PRESETS",
    "decoding_preset",
    "item_seed",
    "truncate_at_stop",
    "truncate_ids_at_stop",
    "with_stop",
]

#: Named decoding protocols; values are keyword arguments of :class:`DecodingConfig`.
DECODING_PRESETS: dict[str, dict[str, Any]] = {
    "greedy": {"do_sample": False, "max_new_tokens": 256},
    "published": {
        "do_sample": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "n": 1,
        "max_new_tokens": 256,
    },
}


class DecodingConfig(BaseModel):
    """How new tokens are chosen.

    Attributes
    ----------
    do_sample : bool
        False (default): greedy decoding. True: ancestral sampling with the settings below.
    temperature : float
        Softmax temperature (> 0) when sampling; ignored under greedy decoding.
    top_p : float
        Nucleus mass in (0, 1]; 1 disables nucleus truncation.
    top_k : int
        Keep the ``top_k`` most likely tokens; 0 disables top-k truncation.
    n : int
        Samples per item (> 1 needs ``do_sample``).
    seed : int
        Run seed of sampling: every backend samples each request with its own generator,
        seeded with :func:`item_seed` of this seed and the request's id (its prompt when
        the id is empty), so an item's samples do not depend on the batch it is in.
    max_new_tokens : int
        Most tokens generated per sample.
    stop : tuple of str
        Generation of a sample ends at the first of these strings; the string itself
        is removed from the output.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    n: int = Field(1, ge=1)
    seed: int = 0
    max_new_tokens: int = Field(256, ge=1)
    stop: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        if isinstance(data, str):
            return dict(_preset_values(data))
        if isinstance(data, dict) and "preset" in data:
            data = dict(data)
            return {**_preset_values(data.pop("preset")), **data}
        return data

    @model_validator(mode="after")
    def _check_combination(self) -> DecodingConfig:
        if self.n > 1 and not self.do_sample:
            raise ValueError(f"n={self.n} samples per item needs do_sample=true (greedy gives one answer)")
        if any(s == "" for s in self.stop):
            raise ValueError("stop strings must be non-empty")
        return self

    @property
    def is_greedy(self) -> bool:
        """True when decoding is deterministic (no sampling)."""
        return not self.do_sample


def _preset_values(name: Any) -> dict[str, Any]:
    if name not in DECODING_PRESETS:
        raise ValueError(f"unknown decoding preset {name!r}; known presets: {', '.join(DECODING_PRESETS)}")
    return DECODING_PRESETS[name]


def decoding_preset(name: str, **overrides: Any) -> DecodingConfig:
    """Return the named preset, with ``overrides`` applied.

    Parameters
    ----------
    name : {"greedy", "published"}
        A key of :data:`DECODING_PRESETS`.
    **overrides
        Fields of :class:`DecodingConfig` to change (e.g. ``seed=3``).

    Raises
    ------
    ConfigError
        If ``name`` is not a known preset.
    """
    if name not in DECODING_PRESETS:
        raise ConfigError(f"unknown decoding preset {name!r}; known presets: {', '.join(DECODING_PRESETS)}")
    return DecodingConfig(**{**DECODING_PRESETS[name], **overrides})


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` before the earliest occurrence of any stop string.

    Parameters
    ----------
    text : str
        A generated continuation.
    stop : sequence of str
        Stop strings (as in :attr:`DecodingConfig.stop`).

    Returns
    -------
    str
        ``text`` up to (not including) the first stop string, or ``text`` unchanged.
    """
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def with_stop(decoding: DecodingConfig, stop: tuple[str, ...] | list[str]) -> DecodingConfig:
    """``decoding`` with the strings of ``stop`` it lacks appended to its stop strings.

    Parameters
    ----------
    decoding : DecodingConfig
    stop : sequence of str
        Stop strings that must be in force (e.g. a prompt style's
        :data:`runners.evaluate.prompts.STOP_STRINGS`).

    Returns
    -------
    DecodingConfig
        ``decoding`` itself when it already has them all; otherwise a copy whose ``stop`` is
        the old strings followed by the missing ones, in order.
    """
    missing = tuple(s for s in dict.fromkeys(stop) if s not in decoding.stop)
    if not missing:
        return decoding
    return decoding.model_copy(update={"stop": decoding.stop + missing})


def item_seed(seed: int, key: str) -> int:
    """The sampling seed of one request: a hash of the run seed and the item's key.

    The first 8 bytes (big-endian) of ``blake2b`` over ``seed`` and ``key`` joined by a NUL
    byte, shifted right by one bit: in ``[0, 2**63)``, valid for
    ``torch.Generator.manual_seed``. Deterministic across processes and Python versions
    (unlike ``hash``).

    Parameters
    ----------
    seed : int
        The run's seed (``DecodingConfig.seed``).
    key : str
        What identifies the item: its ``request_id`` (``"task/item_id"``), else its prompt.
    """
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def truncate_ids_at_stop(ids: Sequence[int], stop: Sequence[str], tokenizer: Any) -> list[int] | None:
    """Token ids of a continuation cut where :func:`truncate_at_stop` cuts its text.

    The text is ``tokenizer.decode(ids, skip_special_tokens=True)`` (what the backends
    score). When it contains a stop string, the result is the longest run of leading ids
    whose text is a prefix of the cut text (the sampled tokens before the stop string),
    followed by the tokenisation (no special tokens) of the rest of the cut text, e.g. the
    space of a ``" ###"`` token in which the stop string starts. Its text is then exactly
    ``truncate_at_stop(text, stop)`` for tokenizers that decode what they encode (the
    byte-level BPE of Qwen2, Llama 3, SmolLM2).

    Parameters
    ----------
    ids : sequence of int
        A generated continuation (without the prompt; special tokens are ignored).
    stop : sequence of str
        Stop strings (as in :attr:`DecodingConfig.stop`).
    tokenizer : transformers tokenizer
        Decodes and encodes the text.

    Returns
    -------
    list of int or None
        The cut ids, or None when the text contains no stop string.
    """

    def decode(part: Sequence[int]) -> str:
        return tokenizer.decode(list(part), skip_special_tokens=True)

    text = decode(ids)
    cut = truncate_at_stop(text, stop)
    if len(cut) == len(text):
        return None
    keep = len(ids)
    while not cut.startswith(decode(ids[:keep])):  # ends at keep = 0 at the latest
        keep -= 1
    rest = cut[len(decode(ids[:keep])) :]
    return list(ids[:keep]) + (list(tokenizer(rest, add_special_tokens=False)["input_ids"]) if rest else [])
