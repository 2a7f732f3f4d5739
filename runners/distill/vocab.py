"""Teacher/student vocabulary checks and logit alignment.

Token-level KD compares the two models' distributions id by id, so both must use the
*same* tokenizer: the same token → id map, the same special tokens and the same text
pre-processing. Sizes alone are not enough (two different tokenizers can have the same
size) and are not required to match: checkpoints pad their embedding matrices beyond the
tokenizer (Qwen2.5: 151,665 tokens; 151,936 rows for 0.5B–3B, 152,064 for 7B/14B). The
padding rows are never targets, so the logits are sliced to a shared size.

Typical use::

    n_tokens = check_same_tokenizer(teacher_tok, student_tok)
    student_logits, teacher_logits = align_logits(student_logits, teacher_logits)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kdanalysis.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

    from runners.distill.losses import TopKTeacher

__all__ = ["tokenizer_differences", "check_same_tokenizer", "align_logits"]

_SPECIAL = ("bos_token", "eos_token", "unk_token")
_PIPELINE = ("normalizer", "pre_tokenizer")
_EXAMPLES = 5


def _name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def _pipeline(tokenizer: Any) -> dict[str, Any]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return {}
    spec = json.loads(backend.to_str())
    return {part: spec.get(part) for part in _PIPELINE}


def tokenizer_differences(teacher_tok: Any, student_tok: Any) -> list[str]:
    """List how two tokenizers differ (empty when they are interchangeable for KD).

    Compared: the full token → id maps (``get_vocab()``, added tokens included), the
    bos/eos/unk tokens, and — for fast tokenizers — the normalizer and pre-tokenizer. The pad
    token is not compared: loaders set it (often to eos) and padded positions are masked.

    Parameters
    ----------
    teacher_tok, student_tok : transformers.PreTrainedTokenizerBase
        The two tokenizers.

    Returns
    -------
    list of str
        One human-readable line per difference.
    """
    differences = []
    teacher_vocab, student_vocab = teacher_tok.get_vocab(), student_tok.get_vocab()
    only_teacher = sorted(set(teacher_vocab) - set(student_vocab))
    only_student = sorted(set(student_vocab) - set(teacher_vocab))
    moved = sorted(t for t in set(teacher_vocab) & set(student_vocab) if teacher_vocab[t] != student_vocab[t])
    if only_teacher:
        differences.append(f"{len(only_teacher)} tokens only in the teacher, e.g. {only_teacher[:_EXAMPLES]}")
    if only_student:
        differences.append(f"{len(only_student)} tokens only in the student, e.g. {only_student[:_EXAMPLES]}")
    if moved:
        examples = [(t, teacher_vocab[t], student_vocab[t]) for t in moved[:_EXAMPLES]]
        differences.append(
            f"{len(moved)} tokens with different ids (token, teacher id, student id), e.g. {examples}"
        )
    for attribute in _SPECIAL:
        teacher_value = getattr(teacher_tok, attribute, None)
        student_value = getattr(student_tok, attribute, None)
        if teacher_value != student_value:
            differences.append(f"{attribute}: teacher {teacher_value!r}, student {student_value!r}")
    teacher_pipeline, student_pipeline = _pipeline(teacher_tok), _pipeline(student_tok)
    if teacher_pipeline and student_pipeline:
        for part in _PIPELINE:
            if teacher_pipeline[part] != student_pipeline[part]:
                differences.append(f"different {part.replace('_', '-')}")
    return differences


def check_same_tokenizer(teacher_tok: Any, student_tok: Any) -> int:
    """Refuse KD between models that do not share a tokenizer.

    Parameters
    ----------
    teacher_tok, student_tok : transformers.PreTrainedTokenizerBase
        The two tokenizers (compared as in :func:`tokenizer_differences`).

    Returns
    -------
    int
        The shared number of tokens, ``len(tokenizer)`` (e.g. 151,665 for Qwen2.5): slicing
        logits to it with :func:`align_logits` drops every embedding padding row.

    Raises
    ------
    ConfigError
        If they differ; the message names both tokenizers and lists the differences.
    """
    differences = tokenizer_differences(teacher_tok, student_tok)
    if differences:
        raise ConfigError(
            f"teacher tokenizer {_name(teacher_tok)!r} and student tokenizer {_name(student_tok)!r} differ; "
            "token-level KD needs one shared tokenizer: " + "; ".join(differences)
        )
    return len(student_tok)


def align_logits(
    student_logits: Tensor, teacher: Tensor | TopKTeacher, vocab_size: int | None = None
) -> tuple[Tensor, Tensor | TopKTeacher]:
    """Slice student and teacher logits to a shared vocabulary size (views, no copy).

    Parameters
    ----------
    student_logits : Tensor
        ``[..., V_s]``.
    teacher : Tensor or TopKTeacher
        ``[..., V_t]`` logits, or a top-k teacher (returned unchanged; its token ids must be
        below the shared size).
    vocab_size : int or None
        Shared size; ``None``: ``min(V_s, V_t)`` for dense teachers (keeps the student's
        size for a top-k teacher). Pass :func:`check_same_tokenizer`'s result to drop all
        padding rows.

    Returns
    -------
    student_logits, teacher
        ``student_logits[..., :n]`` and ``teacher[..., :n]`` (or the top-k teacher).

    Raises
    ------
    ConfigError
        If ``vocab_size`` exceeds either side, or a top-k token id is not below it.
    """
    from runners.distill.losses import TopKTeacher

    student_size = student_logits.shape[-1]
    if isinstance(teacher, TopKTeacher):
        shared = student_size if vocab_size is None else vocab_size
        largest = int(teacher.indices.max()) if teacher.indices.numel() else -1
        if not 0 < shared <= student_size or largest >= shared:
            raise ConfigError(
                f"cannot align to {shared} tokens: student has {student_size} logits, top-k teacher uses "
                f"token id {largest}"
            )
        return student_logits[..., :shared], teacher
    teacher_size = teacher.shape[-1]
    shared = min(student_size, teacher_size) if vocab_size is None else vocab_size
    if not 0 < shared <= min(student_size, teacher_size):
        raise ConfigError(
            f"cannot align to {shared} tokens: student has {student_size} logits, teacher {teacher_size}"
        )
    return student_logits[..., :shared], teacher[..., :shared]
