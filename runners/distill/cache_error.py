"""Error of the top-k teacher cache against the full-vocabulary loss, and synthetic teachers.

:func:`cache_error` compares a KD loss computed from what :mod:`runners.distill.cache` stores
(top-k logits rounded to the storage dtype, the exact rest mass at τ) with the same loss
from the full teacher logits: the relative error of the value, the cosine between the two
gradients with respect to the student's logits, and the teacher's mean mass outside the
top-k (the quantity :meth:`~runners.distill.cache.TeacherCache.bound_problem` bounds).
``bench/cache_error.py`` and the cache tests use it.

:func:`synthetic_logits` draws deterministic teachers with a language-model-like shape:
``"peaked"`` — a Gaussian bulk (sd 2) with a few candidates 10–20 nats above it, so little
mass lies outside a small top-k at τ = 1; ``"heavy"`` — Zipf-distributed probabilities
(exponent 1.1, log-normal noise), so a sizeable share lies outside any small top-k.
:func:`synthetic_student` derives a student from a teacher: ``"close"`` (the teacher's logits
plus unit Gaussian noise) or ``"far"`` (half the teacher's logits plus noise of sd 2, a
flatter and less aligned distribution, as early in training).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from kdanalysis.errors import ConfigError
from runners.distill.cache import tail_mass
from runners.distill.losses import TopKTeacher, kd_loss

__all__ = ["TEACHER_KINDS", "STUDENT_KINDS", "synthetic_logits", "synthetic_student", "cache_error"]

TEACHER_KINDS = ("peaked", "heavy")
STUDENT_KINDS = ("close", "far")
_CANDIDATES = 8
_ZIPF_EXPONENT = 1.1


def synthetic_logits(kind: str, n: int, vocab: int, seed: int) -> Tensor:
    """Deterministic teacher logits ``[n, vocab]`` (float64) of one of :data:`TEACHER_KINDS`.

    Raises
    ------
    ConfigError
        Unknown ``kind`` or ``vocab`` smaller than 2 × the candidate count.
    """
    if kind not in TEACHER_KINDS:
        raise ConfigError(f"synthetic teacher kind must be one of {TEACHER_KINDS}, got {kind!r}")
    if vocab < 2 * _CANDIDATES or n < 1:
        raise ConfigError(f"need n >= 1 and vocab >= {2 * _CANDIDATES}, got n={n}, vocab={vocab}")
    gen = torch.Generator().manual_seed(seed)
    if kind == "peaked":
        logits = 2.0 * torch.randn(n, vocab, generator=gen, dtype=torch.float64)
        ids = torch.stack([torch.randperm(vocab, generator=gen)[:_CANDIDATES] for _ in range(n)])
        lift = 10.0 + 10.0 * torch.rand(n, _CANDIDATES, generator=gen, dtype=torch.float64)
        return logits.scatter_add(1, ids, lift)
    ranks = torch.stack([torch.randperm(vocab, generator=gen) for _ in range(n)]).double() + 1.0
    noise = 0.5 * torch.randn(n, vocab, generator=gen, dtype=torch.float64)
    return -_ZIPF_EXPONENT * ranks.log() + noise


def synthetic_student(teacher: Tensor, kind: str, seed: int) -> Tensor:
    """Student logits derived from ``teacher`` logits, one of :data:`STUDENT_KINDS`.

    Raises
    ------
    ConfigError
        Unknown ``kind``.
    """
    if kind not in STUDENT_KINDS:
        raise ConfigError(f"synthetic student kind must be one of {STUDENT_KINDS}, got {kind!r}")
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(teacher.shape, generator=gen, dtype=torch.float64)
    if kind == "close":
        return teacher.double() + noise
    return 0.5 * teacher.double() + 2.0 * noise


def _loss_and_grad(
    loss: str, student: Tensor, teacher: Tensor | TopKTeacher, temperature: float
) -> tuple[float, Tensor]:
    logits = student.detach().double().requires_grad_(True)
    value = kd_loss(loss, logits, teacher, temperature=temperature)
    value.backward()
    assert logits.grad is not None
    return float(value.detach()), logits.grad.flatten()


def cache_error(
    loss: str,
    teacher_logits: Tensor,
    student_logits: Tensor,
    k: int,
    temperature: float,
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16",
) -> dict[str, float]:
    """The cached loss against the full-vocabulary loss for one (loss, τ, k).

    Parameters
    ----------
    loss : str
        KD loss name (:func:`runners.distill.losses.kd_loss`).
    teacher_logits, student_logits : Tensor
        ``[n, V]`` logits of the positions compared (computed in float64).
    k : int
        Top-k of the cache.
    temperature : float
        τ of the loss and of the cached rest mass.
    dtype : {"float32", "bfloat16", "float16"}
        Storage dtype of the cached top-k values (the cache's ``dtype``).

    Returns
    -------
    dict
        ``full``, ``cached`` (loss values), ``rel_err`` (``cached / full − 1``), ``cosine``
        (of the two gradients with respect to the student logits) and ``tail_mass`` (the
        teacher's mean mass outside the top-k at τ).
    """
    teacher = teacher_logits.double()
    top = TopKTeacher.from_logits(teacher, k, temperature=temperature)
    stored = TopKTeacher(
        top.values.to(getattr(torch, dtype)).double(), top.indices, top.rest, top.temperature
    )
    full, full_grad = _loss_and_grad(loss, student_logits, teacher, temperature)
    cached, cached_grad = _loss_and_grad(loss, student_logits, stored, temperature)
    assert top.rest is not None
    return {
        "full": full,
        "cached": cached,
        "rel_err": cached / full - 1.0,
        "cosine": float(torch.nn.functional.cosine_similarity(full_grad, cached_grad, dim=0)),
        "tail_mass": float(tail_mass(top.values, top.rest, temperature).mean()),
    }
