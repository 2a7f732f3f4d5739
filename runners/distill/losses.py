r"""Token-level knowledge-distillation losses: pure functions, logits in, scalar out.

Every loss takes

- ``student_logits`` — ``[..., V]`` (usually ``[B, T, V]``), any float dtype, requires grad;
- ``teacher`` — teacher logits of the same shape (treated as constants), or a
  :class:`TopKTeacher` (top-k logits, e.g. from an offline cache);
- ``mask`` — ``[...]`` (``[B, T]``) bool or 0/1 tensor, ``None`` = every position;
- ``temperature`` τ > 0: both distributions are ``softmax(logits / τ)`` and the loss is
  multiplied by τ² (Hinton et al.), so gradient scales match across τ;

and returns the **masked token mean** of a per-token divergence (a 0-dim float32 tensor;
0 when the mask is empty), or with ``reduction="sequence_mean"`` the mean over sequences (all
dimensions of the mask but the last; sequences without a masked position left out) of each
sequence's mean over its masked positions, as the released code of the paper reduces.
Softmaxes are computed in float32 whatever the input dtype, except
that float64 student logits are computed (and returned) in float64 (for gradient checks).

Definitions (``p_T``, ``p_S`` the teacher/student distributions at τ; ``KL(p‖q) = Σ p log(p/q)``):

``forward_kl`` (method id ``fkl``)
    ``KL(p_T ‖ p_S)`` — the paper's "SeqKD".
``reverse_kl`` (``rkl``)
    ``KL(p_S ‖ p_T)`` — the paper's "RevKD".
``generalized_jsd`` (``jsd``; parameter ``beta`` in [0, 1], default 0.5)
    ``β·KL(p_T ‖ m) + (1−β)·KL(p_S ‖ m)`` with ``m = β·p_T + (1−β)·p_S`` (GKD, Agarwal et
    al. 2024, and TRL's ``generalized_jsd_loss``). ``β = 0`` is *defined* as
    ``KL(p_T‖p_S)`` and ``β = 1`` as ``KL(p_S‖p_T)`` (TRL's convention). These are the limits
    of the *normalised* divergence: ``JSD_β / β → KL(p_T‖p_S)`` as β→0 and
    ``JSD_β / (1−β) → KL(p_S‖p_T)`` as β→1 (the unnormalised ``JSD_β`` itself tends to 0 at
    both ends). ``β = 0.5`` is the symmetric Jensen–Shannon divergence (≤ log 2).
``total_variation`` (``tvd``)
    ``½ Σ |p_T − p_S|`` (≤ 1).
``skew_forward_kl`` (``skl``; parameter ``alpha`` in [0, 1], default 0.1)
    ``KL(p_T ‖ α·p_T + (1−α)·p_S)`` (DistiLLM); α = 0 is forward KL, α = 1 gives 0.
``skew_reverse_kl`` (``srkl``; parameter ``alpha``)
    ``KL(p_S ‖ α·p_S + (1−α)·p_T)``; α = 0 is reverse KL.

Memory: the loss is computed over chunks of ``chunk_size`` masked tokens (default: about
2²¹ logits per chunk), and the gradient with respect to the student logits is computed
chunk by chunk *in the forward pass* (a :class:`torch.autograd.Function`) into one buffer of
the student logits' shape and dtype; the float32 intermediates of a chunk are freed before
the next. Peak memory is therefore the gradient buffer plus one chunk's intermediates,
instead of several float32 ``tokens × V`` tensors kept for autograd by the dense
computation (``chunked=False``, kept as the reference and the benchmark baseline; see
``bench/kd_loss_memory.py``). The returned loss supports one backward pass (call the loss
again to backward twice); double backward is not supported. Without gradients (student
logits not requiring grad, or under ``torch.no_grad``) no buffer is allocated.

Numerics: log-probabilities are floored at -1e30 (``exp`` of it is exactly 0 in float32), so
``0·log 0 = 0`` terms and their gradients are 0, not NaN.

Teacher tokens of probability zero (``-inf`` teacher logits, e.g. a teacher that masks part of
its vocabulary; ``Z`` below is that set and ``m = Σ_{i∈Z} p_S(i)`` the student's mass on it):

- ``forward_kl``, ``skew_forward_kl``, ``total_variation``, ``generalized_jsd`` with 0 < β < 1
  and ``skew_reverse_kl`` with α > 0 are finite and computed **exactly**: a token of ``Z``
  contributes 0 to forward and skew-forward KL and, through the student's mass only,
  ``½·p_S`` to TVD, ``−(1−β)·p_S·log(1−β)`` to JSD(β) and ``−p_S·log α`` to skew-reverse KL.
- ``reverse_kl`` (and ``generalized_jsd`` with β = 1, ``skew_reverse_kl`` with α = 0, which are
  reverse KL) is **+∞** whenever ``m > 0``. It is made finite by leaving out the infinite terms
  ``p_S·log(p_S/0)``, as DistiLLM's ``reverse_kl`` does (``inf_mask`` on the teacher's
  ``-inf`` logits): the value is ``Σ_{i∉Z} p_S(i)·log(p_S(i)/p_T(i))``, with ``p_S`` normalised
  over the whole vocabulary, so a token of ``Z`` acts through the student's mass only. Equivalently
  ``(1−m)·KL(p̃_S ‖ p_T) + (1−m)·log(1−m)``, ``p̃_S`` the student renormalised over the teacher's
  support; when ``m = 0`` this is the exact reverse KL. It is not a divergence for ``m > 0``:
  it can be negative (down to ``−1/e``) and its minimum puts mass ``1 − 1/e`` on ``Z``, so it
  does not teach the student to avoid the tokens the teacher excludes — use JSD or
  skew-reverse KL (exact, finite) for such teachers. A finite teacher logit, however
  negative, is a non-zero probability and is never left out.

Top-k teacher (:class:`TopKTeacher`): the teacher distribution is collapsed to ``k + 1``
buckets — its top-k tokens and one bucket for all other tokens — and the student's
distribution is collapsed the same way (its probabilities at the teacher's top-k ids, and
the rest of its mass); the divergence is taken between the two ``k+1``-bucket
distributions. To be exact, a cache must store per token:

- ``values`` — the teacher's top-k **raw logits** (model output, τ=1 scale; any float dtype),
- ``indices`` — their token ids (int32 or int64),
- ``rest`` — float32 ``logsumexp`` over the *non*-top-k vocabulary of ``logits / τ_c``, i.e.
  the log of the un-normalised probability mass outside the top-k at the cache temperature
  ``τ_c`` (``temperature`` field, default 1).

:meth:`TopKTeacher.from_logits` computes all three. With ``rest``, the loss at temperature
τ = τ_c is exactly the divergence between the collapsed full distributions, and equals the
full-vocabulary loss when k covers the vocabulary. The top-k *set* does not depend on τ but
the rest mass does, so a loss at τ ≠ τ_c raises :class:`ConfigError` — build one
``TopKTeacher`` per temperature from the same teacher pass (``values``/``indices`` are
shared, only ``rest`` differs). Without ``rest`` (``None``), both distributions are
renormalised over the teacher's top-k ids (no rest bucket on either side, any τ allowed):
an approximation that ignores the student's mass outside the top-k; it keeps every
divergence finite (reverse KL against a teacher with zero rest mass would be infinite).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from kdanalysis.errors import ConfigError
from runners.distill.config import LOSS_ALIASES

__all__ = [
    "LOSSES",
    "LOSS_ALIASES",
    "TopKTeacher",
    "forward_kl",
    "reverse_kl",
    "generalized_jsd",
    "total_variation",
    "skew_forward_kl",
    "skew_reverse_kl",
    "kd_loss",
]

#: Log-probability used for "probability zero": finite, so that 0·log 0 terms and their
#: gradients stay 0 instead of NaN (exp(_LOG_ZERO) == 0 in float32).
_LOG_ZERO = -1e30
#: Default number of logits (tokens × vocabulary) per chunk.
_CHUNK_ELEMENTS = 2**21

Divergence = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class TopKTeacher:
    """Top-k teacher logits (see the module docstring for what a cache must store).

    Parameters
    ----------
    values : Tensor
        ``[..., k]`` raw teacher logits of the top-k tokens (τ=1 scale).
    indices : Tensor
        ``[..., k]`` their vocabulary ids (integer dtype).
    rest : Tensor or None
        ``[...]`` float32 ``logsumexp`` of ``logits / temperature`` over the tokens *not* in
        the top-k; ``None``: unknown, both distributions are renormalised over the top-k.
    temperature : float
        Temperature at which ``rest`` was computed; a loss with ``rest`` must use it.

    Notes
    -----
    Indexing ``teacher[index]`` applies ``index`` (ints/slices/tensors over the token
    dimensions, not the k dimension) to all fields, e.g. ``teacher[:, :-1]`` for shifted
    next-token targets. ``dataclasses.replace(teacher, values=...)`` keeps ``rest``.
    """

    values: Tensor
    indices: Tensor
    rest: Tensor | None = None
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.values.shape != self.indices.shape or self.values.dim() < 1:
            raise ConfigError(
                f"TopKTeacher values {tuple(self.values.shape)} and indices {tuple(self.indices.shape)} "
                "must have the same shape [..., k]"
            )
        if self.indices.is_floating_point() or self.indices.is_complex():
            raise ConfigError(f"TopKTeacher indices must be integers, got {self.indices.dtype}")
        if self.rest is not None and self.rest.shape != self.values.shape[:-1]:
            raise ConfigError(
                f"TopKTeacher rest {tuple(self.rest.shape)} must have the token shape "
                f"{tuple(self.values.shape[:-1])}"
            )
        if not self.temperature > 0:
            raise ConfigError(f"TopKTeacher temperature must be > 0, got {self.temperature!r}")

    @property
    def k(self) -> int:
        """Number of kept tokens per position."""
        return self.values.shape[-1]

    @classmethod
    def from_logits(cls, logits: Tensor, k: int, temperature: float = 1.0) -> TopKTeacher:
        """Keep the top-k of full teacher logits, plus the log-mass of the rest at ``temperature``.

        Parameters
        ----------
        logits : Tensor
            ``[..., V]`` teacher logits (any float dtype; computed in float32).
        k : int
            Tokens kept per position, 1 <= k <= V.
        temperature : float
            Temperature of the loss this teacher will be used with.

        Returns
        -------
        TopKTeacher
            ``values`` in the dtype of ``logits``, ``indices`` int64, ``rest`` float32.
        """
        vocab = logits.shape[-1]
        if not isinstance(k, int) or not 1 <= k <= vocab:
            raise ConfigError(f"top-k size must be an integer from 1 to the vocabulary size {vocab}, got {k}")
        with torch.no_grad():
            top = torch.topk(logits, k, dim=-1)
            scaled = logits.float() / temperature
            rest = scaled.scatter(-1, top.indices, _LOG_ZERO).logsumexp(-1)
        return cls(top.values, top.indices, rest, float(temperature))

    def __getitem__(self, index: Any) -> TopKTeacher:
        token_index = index if isinstance(index, tuple) else (index,)
        if any(part is Ellipsis for part in token_index):
            raise ConfigError("TopKTeacher indexing takes token-dimension indices only (no Ellipsis)")
        full = (*token_index, slice(None))
        rest = None if self.rest is None else self.rest[token_index]
        return TopKTeacher(self.values[full], self.indices[full], rest, self.temperature)

    def to(self, device: torch.device | str) -> TopKTeacher:
        """Move all tensors to ``device``."""
        rest = None if self.rest is None else self.rest.to(device)
        return TopKTeacher(self.values.to(device), self.indices.to(device), rest, self.temperature)


# --- per-token divergences of log-probabilities [n, K] -> [n] ---------------------------------


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p ‖ q) per row."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _kl_on_support(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p ‖ q) per row without the infinite terms ``p·log(p/0)`` (``log q`` at the floor)."""
    return (log_p.exp() * (log_p - log_q).masked_fill(log_q <= _LOG_ZERO, 0.0)).sum(-1)


def _mixture(log_p: Tensor, log_q: Tensor, weight_p: float) -> Tensor:
    """log(w·p + (1−w)·q) for 0 < w < 1."""
    return torch.logaddexp(log_p + math.log(weight_p), log_q + math.log1p(-weight_p))


def _forward_kl(log_s: Tensor, log_t: Tensor) -> Tensor:
    return _kl(log_t, log_s)


def _reverse_kl(log_s: Tensor, log_t: Tensor) -> Tensor:
    return _kl_on_support(log_s, log_t)


def _forward_kl_eps(eps: float) -> Divergence:
    """Σ (p_T + ε)·(log(p_T + ε) − log p_S): the released fkl (teacher probabilities + ε)."""

    def divergence(log_s: Tensor, log_t: Tensor) -> Tensor:
        target = log_t.exp() + eps
        return (target * (target.log() - log_s)).sum(-1)

    return divergence


def _reverse_kl_eps(eps: float) -> Divergence:
    """Σ (p_S + ε)·(log p_S − log p_T): the released rkl (student probabilities + ε)."""
    return lambda log_s, log_t: ((log_s.exp() + eps) * (log_s - log_t)).sum(-1)


def _jsd(beta: float) -> Divergence:
    if beta == 0.0:
        return _forward_kl
    if beta == 1.0:
        return _reverse_kl

    def divergence(log_s: Tensor, log_t: Tensor) -> Tensor:
        log_m = _mixture(log_t, log_s, beta)
        return beta * _kl(log_t, log_m) + (1.0 - beta) * _kl(log_s, log_m)

    return divergence


def _tvd(log_s: Tensor, log_t: Tensor) -> Tensor:
    return 0.5 * (log_t.exp() - log_s.exp()).abs().sum(-1)


def _skew_forward(alpha: float) -> Divergence:
    if alpha == 0.0:
        return _forward_kl
    if alpha == 1.0:
        return lambda log_s, log_t: _kl(log_t, log_t)
    return lambda log_s, log_t: _kl(log_t, _mixture(log_t, log_s, alpha))


def _skew_reverse(alpha: float) -> Divergence:
    if alpha == 0.0:
        return _reverse_kl
    if alpha == 1.0:
        return lambda log_s, log_t: _kl(log_s, log_s)
    return lambda log_s, log_t: _kl(log_s, _mixture(log_s, log_t, alpha))


# --- distributions of one chunk --------------------------------------------------------------


def _compute_dtype(student_logits: Tensor) -> torch.dtype:
    """float64 for float64 logits, float32 for every other dtype."""
    return torch.float64 if student_logits.dtype == torch.float64 else torch.float32


def _log_probs(student: Tensor, teacher: Tensor | TopKTeacher, temperature: float) -> tuple[Tensor, Tensor]:
    """Student/teacher log-probabilities of one chunk of rows ([n, V] or [n, k+1]), in ``student``'s dtype."""
    scaled = student / temperature
    if isinstance(teacher, Tensor):
        log_s = torch.log_softmax(scaled, dim=-1)
        log_t = torch.log_softmax(teacher.to(student.dtype) / temperature, dim=-1)
    else:
        indices = teacher.indices.long()
        student_top = scaled.gather(-1, indices)
        teacher_top = teacher.values.to(student.dtype) / temperature
        if teacher.rest is not None:  # k + 1 buckets
            student_rest = scaled.scatter(-1, indices, _LOG_ZERO).logsumexp(-1, keepdim=True)
            student_top = torch.cat([student_top, student_rest], dim=-1)
            teacher_top = torch.cat([teacher_top, teacher.rest.to(student.dtype).unsqueeze(-1)], dim=-1)
        log_s = torch.log_softmax(student_top, dim=-1)
        log_t = torch.log_softmax(teacher_top, dim=-1)
    return log_s.clamp_min(_LOG_ZERO), log_t.clamp_min(_LOG_ZERO)


class _ChunkedDivergence(torch.autograd.Function):
    """Sum of a divergence over rows, chunk by chunk, gradient computed in the forward pass."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        student_logits: Tensor,
        teacher: Tensor | TopKTeacher,
        positions: Tensor,
        divergence: Divergence,
        temperature: float,
        scale: float | Tensor,
        chunk_rows: int,
    ) -> Tensor:
        need_grad = bool(ctx.needs_input_grad[0])
        grad = torch.zeros_like(student_logits) if need_grad else None
        dtype = _compute_dtype(student_logits)
        total = torch.zeros((), dtype=dtype, device=student_logits.device)
        for n, chunk in enumerate(positions.split(chunk_rows)):
            index = tuple(chunk.unbind(1))
            with torch.enable_grad():
                rows = student_logits[index].detach().to(dtype).requires_grad_(need_grad)
                log_s, log_t = _log_probs(rows, teacher[index], temperature)
                value = _weighted_sum(divergence(log_s, log_t), scale, n * chunk_rows)
            if grad is not None and value.requires_grad:  # not for a constant divergence (skew α=1)
                (row_grad,) = torch.autograd.grad(value, rows)
                grad[index] = row_grad.to(grad.dtype)
            total += value.detach()
        ctx.grad = grad
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        grad = ctx.grad
        if grad is None:
            raise RuntimeError("a chunked KD loss supports one backward pass; compute the loss again")
        ctx.grad = None
        return grad.mul_(grad_output.to(grad.dtype)), None, None, None, None, None, None


# --- input checks and the generic driver ------------------------------------------------------


def _positions(student_logits: Tensor, mask: Tensor | None) -> Tensor:
    """Indices [M, ndim-1] of the positions that count."""
    shape = student_logits.shape[:-1]
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=student_logits.device).nonzero()
    if tuple(mask.shape) != tuple(shape):
        raise ConfigError(f"mask shape {tuple(mask.shape)} does not match token shape {tuple(shape)}")
    if mask.dtype != torch.bool:
        if ((mask != 0) & (mask != 1)).any():
            raise ConfigError("mask must be boolean or contain only 0 and 1")
        mask = mask != 0
    return mask.to(student_logits.device).nonzero()


def _weights(positions: Tensor, temperature: float, reduction: str) -> float | Tensor:
    """τ² times each position's weight in the reduction: a number (token mean) or a tensor [M]."""
    if reduction == "token_mean":
        return temperature**2 / max(len(positions), 1)
    if reduction != "sequence_mean":
        raise ConfigError(f"unknown reduction {reduction!r}; allowed: token_mean, sequence_mean")
    if not len(positions) or positions.shape[1] == 1:  # no position, or one sequence
        return temperature**2 / max(len(positions), 1)
    _, sequence, counts = positions[:, :-1].unique(dim=0, return_inverse=True, return_counts=True)
    return temperature**2 / (counts[sequence].double() * len(counts))


def _weighted_sum(values: Tensor, scale: float | Tensor, start: int = 0) -> Tensor:
    """Σ values·weight for the rows ``start, start + 1, ...`` of the weights (see :func:`_weights`)."""
    if isinstance(scale, Tensor):
        return (values * scale[start : start + len(values)].to(values.dtype)).sum()
    return values.sum() * scale


def _check_teacher(student_logits: Tensor, teacher: Tensor | TopKTeacher, temperature: float) -> None:
    vocab = student_logits.shape[-1]
    if isinstance(teacher, TopKTeacher):
        if teacher.values.shape[:-1] != student_logits.shape[:-1]:
            raise ConfigError(
                f"top-k teacher token shape {tuple(teacher.values.shape[:-1])} does not match the student's "
                f"{tuple(student_logits.shape[:-1])}"
            )
        if teacher.rest is not None and not math.isclose(teacher.temperature, temperature):
            raise ConfigError(
                f"top-k teacher's rest mass was computed at temperature {teacher.temperature}, the loss asks "
                f"for {temperature}; build it with TopKTeacher.from_logits(..., temperature={temperature})"
            )
        if teacher.indices.numel() and int(teacher.indices.max()) >= vocab:
            raise ConfigError(
                f"top-k teacher token id {int(teacher.indices.max())} is outside the student vocabulary "
                f"({vocab} tokens)"
            )
    elif isinstance(teacher, Tensor):
        if teacher.shape != student_logits.shape:
            raise ConfigError(
                f"teacher logits {tuple(teacher.shape)} and student logits {tuple(student_logits.shape)} "
                "differ in shape; align padded vocabularies with runners.distill.vocab.align_logits"
            )
    else:
        raise ConfigError(f"teacher must be a logits tensor or a TopKTeacher, got {type(teacher).__name__}")


def _loss(
    divergence: Divergence,
    student_logits: Tensor,
    teacher: Tensor | TopKTeacher,
    mask: Tensor | None,
    temperature: float,
    chunk_size: int | None,
    chunked: bool,
    reduction: str = "token_mean",
) -> Tensor:
    if not (isinstance(temperature, int | float) and temperature > 0):
        raise ConfigError(f"temperature must be a positive number, got {temperature!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if student_logits.dim() < 2 or not student_logits.is_floating_point():
        got = f"{student_logits.dtype} {tuple(student_logits.shape)}"
        raise ConfigError(f"student logits must be a float tensor [..., V], got {got}")
    _check_teacher(student_logits, teacher, temperature)
    if isinstance(teacher, Tensor):
        teacher = teacher.detach()
    positions = _positions(student_logits, mask)
    scale = _weights(positions, temperature, reduction)
    if not chunked:
        index = tuple(positions.unbind(1))
        rows = student_logits[index].to(_compute_dtype(student_logits))
        log_s, log_t = _log_probs(rows, teacher[index], temperature)
        return _weighted_sum(divergence(log_s, log_t), scale)
    rows = chunk_size or max(1, _CHUNK_ELEMENTS // student_logits.shape[-1])
    return _ChunkedDivergence.apply(student_logits, teacher, positions, divergence, temperature, scale, rows)


def _check_eps(value: float) -> float:
    if not (isinstance(value, int | float) and 0.0 <= value < 1e-3):
        raise ConfigError(f"eps must be a number in [0, 1e-3), got {value!r}")
    return float(value)


def _check_weight(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


# --- public losses ------------------------------------------------------------------------------

_DOC_PARAMS = """
    Parameters
    ----------
    student_logits : Tensor
        ``[..., V]`` student logits (any float dtype; gradients flow to them).
    teacher : Tensor or TopKTeacher
        ``[..., V]`` teacher logits (no gradient) or top-k teacher logits.
    mask : Tensor or None
        ``[...]`` bool or 0/1: positions that count; ``None`` = all.
    temperature : float
        τ > 0; distributions are ``softmax(logits / τ)``, the loss is multiplied by τ².
    chunk_size : int or None
        Tokens per chunk; ``None``: about 2**21 logits per chunk.
    chunked : bool
        ``False`` computes densely with plain autograd (reference / benchmark baseline).
    reduction : {"token_mean", "sequence_mean"}
        Mean over the masked positions, or over sequences of each sequence's mean.

    Returns
    -------
    Tensor
        0-dim float32 (float64 for float64 student logits): τ² × the reduction over masked
        positions of the per-token divergence.
"""


def forward_kl(
    student_logits: Tensor,
    teacher: Tensor | TopKTeacher,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    *,
    eps: float = 0.0,
    chunk_size: int | None = None,
    chunked: bool = True,
    reduction: str = "token_mean",
) -> Tensor:
    divergence = _forward_kl_eps(_check_eps(eps)) if eps else _forward_kl
    return _loss(divergence, student_logits, teacher, mask, temperature, chunk_size, chunked, reduction)


def reverse_kl(
    student_logits: Tensor,
    teacher: Tensor | TopKTeacher,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    *,
    eps: float = 0.0,
    chunk_size: int | None = None,
    chunked: bool = True,
    reduction: str = "token_mean",
) -> Tensor:
    divergence = _reverse_kl_eps(_check_eps(eps)) if eps else _reverse_kl
    return _loss(divergence, student_logits, teacher, mask, temperature, chunk_size, chunked, reduction)


def generalized_jsd(
    student_logits: Tensor,
    teacher: Tensor | TopKTeacher,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    *,
    beta: float = 0.5,
    chunk_size: int | None = None,
    chunked: bool = True,
    reduction: str = "token_mean",
) -> Tensor:
    divergence = _jsd(_check_weight("beta", beta))
    return _loss(divergence, student_logits, teacher, mask, temperature, chunk_size, chunked, reduction)


def total_variation(
    student_logits: Tensor,
    teacher: Tensor | TopKTeacher,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    *,
    chunk_size: int | None = None,
    chunked: bool = True,
    reduction: str = "token_mean",
) -> Tensor:
    return _loss(_tvd, student_logits, teacher, mask, temperature, chunk_size, chunked, reduction)


def skew_forward_kl(
    student_logits: Tensor,
    teacher: Tensor | TopKTeacher,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    *,
    alpha: float = 0.1,
    chunk_size: int | None = None,
    chunked: bool = True,
    reduction: str = "token_mean",
) -> Tensor:
    divergence = _skew_forward(_check_weight("alpha", alpha))
    return _loss(divergence, student_logits, teacher, mask, temperature, chunk_size, chunked, reduction)


def skew_reverse_kl(
    student_logits: Tensor,
    teacher: Tensor | TopKTeacher,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    *,
    alpha: float = 0.1,
    chunk_size: int | None = None,
    chunked: bool = True,
    reduction: str = "token_mean",
) -> Tensor:
    divergence = _skew_reverse(_check_weight("alpha", alpha))
    return _loss(divergence, student_logits, teacher, mask, temperature, chunk_size, chunked, reduction)


forward_kl.__doc__ = (
    'Forward KL(p_T ‖ p_S), the paper\'s "SeqKD" loss.\n\n'
    "    ``eps`` > 0: Σ (p_T + ε)·(log(p_T + ε) − log p_S), the released code's variant.\n" + _DOC_PARAMS
)
reverse_kl.__doc__ = (
    'Reverse KL(p_S ‖ p_T), the paper\'s "RevKD" loss.\n\n'
    "    ``eps`` > 0: Σ (p_S + ε)·(log p_S − log p_T), the released code's variant.\n" + _DOC_PARAMS
)
generalized_jsd.__doc__ = (
    "Generalized JSD(β) of GKD: β·KL(p_T‖m) + (1−β)·KL(p_S‖m), m = β·p_T + (1−β)·p_S.\n\n"
    "    β = 0 is forward KL and β = 1 reverse KL (see the module docstring); ``beta`` in [0, 1].\n"
    + _DOC_PARAMS
)
total_variation.__doc__ = "Total variation distance ½·Σ|p_T − p_S|.\n" + _DOC_PARAMS
skew_forward_kl.__doc__ = (
    "Skew forward KL(p_T ‖ α·p_T + (1−α)·p_S) (DistiLLM); ``alpha`` in [0, 1], 0 = forward KL.\n"
    + _DOC_PARAMS
)
skew_reverse_kl.__doc__ = (
    "Skew reverse KL(p_S ‖ α·p_S + (1−α)·p_T) (DistiLLM); ``alpha`` in [0, 1], 0 = reverse KL.\n"
    + _DOC_PARAMS
)

#: Losses by function name, with the keyword parameters each accepts.
LOSSES: dict[str, tuple[Callable[..., Tensor], tuple[str, ...]]] = {
    "forward_kl": (forward_kl, ("eps",)),
    "reverse_kl": (reverse_kl, ("eps",)),
    "generalized_jsd": (generalized_jsd, ("beta",)),
    "total_variation": (total_variation, ()),
    "skew_forward_kl": (skew_forward_kl, ("alpha",)),
    "skew_reverse_kl": (skew_reverse_kl, ("alpha",)),
}


def kd_loss(
    name: str,
    student_logits: Tensor,
    teacher: Tensor | TopKTeacher,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    *,
    chunk_size: int | None = None,
    chunked: bool = True,
    reduction: str = "token_mean",
    **params: float,
) -> Tensor:
    """Compute a KD loss chosen by name.

    Parameters
    ----------
    name : str
        A method id (``fkl``, ``rkl``, ``jsd``, ``tvd``, ``skl``, ``srkl``) or a function
        name of :data:`LOSSES` (``forward_kl``, ...).
    student_logits, teacher, mask, temperature, chunk_size, chunked, reduction
        As in :func:`forward_kl`.
    **params : float
        The loss's own parameters: ``beta`` (jsd), ``alpha`` (skl, srkl), ``eps`` (fkl, rkl).

    Returns
    -------
    Tensor
        The loss (0-dim float32; float64 for float64 student logits).

    Raises
    ------
    ConfigError
        Unknown name (the message lists the allowed ones) or a parameter the loss does not take.
    """
    key = LOSS_ALIASES.get(name, name)
    if key not in LOSSES:
        allowed = ", ".join([*LOSS_ALIASES, *LOSSES])
        raise ConfigError(f"unknown KD loss {name!r}; allowed: {allowed}")
    function, accepted = LOSSES[key]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"KD loss {name!r} does not take {unknown}; it accepts {list(accepted) or 'no parameters'}"
        )
    return function(
        student_logits,
        teacher,
        mask,
        temperature,
        chunk_size=chunk_size,
        chunked=chunked,
        reduction=reduction,
        **params,
    )
