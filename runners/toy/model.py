"""Tiny random-init Qwen2 / Llama causal LMs that share the toy tokenizer.

Sizes (parameter counts with the unpadded toy vocabulary of ~1k tokens):

========  ======  ======  =====  ========  ============  ====================  ======
size      hidden  layers  heads  kv heads  intermediate  tied embeddings       params
========  ======  ======  =====  ========  ============  ====================  ======
tiny      32      2       4      2         64            yes                   ~50 K
small     64      2       4      2         128           yes                   ~0.1 M
teacher   128     4       4      2         384           no                    ~1 M
========  ======  ======  =====  ========  ============  ====================  ======

They are small enough for the tests and the CPU demo to train on a CPU. Both families use
the same tokenizer (:func:`runners.toy.tokenizer.build_tokenizer`), so any toy teacher can distil into any
toy student of the same family *and* across families. ``pad_to_multiple_of`` pads the
embedding/LM-head rows beyond the tokenizer's size, like Qwen2.5 (151,665 tokens,
151,936 or 152,064 rows), so vocabulary alignment is exercised.

Weights are drawn from the config's initialiser under ``torch.manual_seed(seed)`` inside a
forked RNG, so building a model never changes the caller's global random state.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kdanalysis.errors import ConfigError
from runners.toy.tokenizer import MODEL_MAX_LENGTH, build_tokenizer

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

__all__ = ["FAMILIES", "SIZES", "Family", "Size", "toy_config", "build_model", "save_toy_model"]

Family = Literal["qwen2", "llama"]
Size = Literal["tiny", "small", "teacher"]
FAMILIES: tuple[str, ...] = ("qwen2", "llama")

#: Architecture of each size (see the module docstring).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        tie_word_embeddings=True,
    ),
    "small": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        tie_word_embeddings=True,
    ),
    "teacher": dict(
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=384,
        tie_word_embeddings=False,
    ),
}


def _padded(size: int, multiple: int | None) -> int:
    if multiple is None:
        return size
    if not isinstance(multiple, int) or multiple < 1:
        raise ConfigError(f"pad_to_multiple_of must be a positive integer, got {multiple!r}")
    return -(-size // multiple) * multiple


def toy_config(
    family: Family = "qwen2",
    size: Size = "tiny",
    vocab_size: int | None = None,
    *,
    pad_to_multiple_of: int | None = None,
) -> PretrainedConfig:
    """The transformers config of a toy model.

    Parameters
    ----------
    family : {"qwen2", "llama"}
        ``Qwen2Config`` or ``LlamaConfig``.
    size : {"tiny", "small", "teacher"}
        Architecture from :data:`SIZES`.
    vocab_size : int or None
        Embedding rows; ``None`` uses the toy tokenizer's size. Must be at least that size.
    pad_to_multiple_of : int or None
        Round the embedding rows up to a multiple of this (e.g. 64), like Qwen2.5's padding.

    Returns
    -------
    transformers.PretrainedConfig
        With the toy tokenizer's pad/bos/eos ids and ``max_position_embeddings`` =
        :data:`~runners.toy.tokenizer.MODEL_MAX_LENGTH`.

    Raises
    ------
    ConfigError
        Unknown family/size, a vocabulary smaller than the tokenizer, or a bad padding multiple.
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown toy model family {family!r}; allowed: {', '.join(FAMILIES)}")
    if size not in SIZES:
        raise ConfigError(f"unknown toy model size {size!r}; allowed: {', '.join(SIZES)}")
    tokenizer = build_tokenizer()
    n_tokens = len(tokenizer)
    rows = n_tokens if vocab_size is None else vocab_size
    if not isinstance(rows, int) or rows < n_tokens:
        raise ConfigError(
            f"vocab_size must be an integer >= the toy tokenizer's {n_tokens} tokens, got {rows!r}"
        )
    rows = _padded(rows, pad_to_multiple_of)

    from transformers import LlamaConfig, Qwen2Config

    config_class = Qwen2Config if family == "qwen2" else LlamaConfig
    return config_class(
        vocab_size=rows,
        max_position_embeddings=MODEL_MAX_LENGTH,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **SIZES[size],
    )


def build_model(
    family: Family = "qwen2",
    size: Size = "tiny",
    vocab_size: int | None = None,
    seed: int = 0,
    *,
    pad_to_multiple_of: int | None = None,
) -> PreTrainedModel:
    """Build a random-init toy causal LM (float32, CPU, eval mode).

    Parameters
    ----------
    family, size, vocab_size, pad_to_multiple_of
        As in :func:`toy_config`.
    seed : int
        Seed of the weight initialisation; the same arguments give identical weights.

    Returns
    -------
    transformers.PreTrainedModel
        ``Qwen2ForCausalLM`` or ``LlamaForCausalLM``; ``model(input_ids).logits`` has shape
        ``[B, T, model.config.vocab_size]``.
    """
    config = toy_config(family, size, vocab_size, pad_to_multiple_of=pad_to_multiple_of)
    import torch
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = config.pad_token_id
    return model.eval()


def save_toy_model(
    path: str | Path,
    family: Family = "qwen2",
    size: Size = "tiny",
    seed: int = 0,
    *,
    vocab_size: int | None = None,
    pad_to_multiple_of: int | None = None,
) -> Path:
    """Build a toy model and save it with its tokenizer, loadable offline by ``from_pretrained``.

    Parameters
    ----------
    path : str or Path
        Destination folder (created). It receives ``config.json``, ``model.safetensors``,
        ``generation_config.json`` and the tokenizer files.
    family, size, seed, vocab_size, pad_to_multiple_of
        As in :func:`build_model`.

    Returns
    -------
    Path
        ``path``; ``AutoModelForCausalLM.from_pretrained(path)`` and
        ``AutoTokenizer.from_pretrained(path)`` (or :func:`runners.models.load_causal_lm`)
        load it without network.
    """
    model = build_model(family, size, vocab_size, seed, pad_to_multiple_of=pad_to_multiple_of)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return path
