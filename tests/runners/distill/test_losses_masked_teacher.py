"""KD losses against a teacher with ``-inf`` logits (tokens of teacher probability zero).

Exact divergences are checked against scipy in float64; reverse KL, +inf whenever the
student has mass on such a token, against its documented finite form (the infinite terms
left out, as DistiLLM does): by hand, by its gradient formula, through the identity with the
loss on the teacher's support, and with ``torch.autograd.gradcheck``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, rel_entr

from runners.distill.losses import TopKTeacher, kd_loss, reverse_kl

V = 11
ZERO = [2, 5, 6]  # vocabulary ids the teacher excludes
SUPPORT = [i for i in range(V) if i not in ZERO]
EXACT = [
    ("fkl", {}),
    ("tvd", {}),
    ("jsd", {"beta": 0.3}),
    ("skl", {"alpha": 0.2}),
    ("srkl", {"alpha": 0.2}),
]
ALL = [*EXACT, ("rkl", {}), ("jsd", {"beta": 1.0}), ("srkl", {"alpha": 0.0})]
IDS = [f"{n}-{p}" for n, p in ALL]


def _inputs(
    dtype: torch.dtype = torch.float64, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Student logits [2, 4, V] (requires grad), teacher logits with ``-inf`` at ZERO, a mask."""
    gen = torch.Generator().manual_seed(seed)
    student = (2 * torch.randn(2, 4, V, generator=gen, dtype=torch.float64)).to(dtype).requires_grad_()
    teacher = 2 * torch.randn(2, 4, V, generator=gen, dtype=torch.float64)
    teacher[..., ZERO] = -float("inf")
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1]], dtype=torch.bool)
    return student, teacher.to(dtype), mask


def _reference(name: str, params: dict, student: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """Per-token values from the definitions (float64, scipy; ``rel_entr(0, q) = 0``)."""
    p_s, p_t = np.exp(log_softmax(student, axis=-1)), np.exp(log_softmax(teacher, axis=-1))
    if name == "fkl":
        return rel_entr(p_t, p_s).sum(-1)
    if name == "tvd":
        return 0.5 * np.abs(p_t - p_s).sum(-1)
    if name == "jsd" and params["beta"] < 1:
        beta = params["beta"]
        mix = beta * p_t + (1 - beta) * p_s
        return beta * rel_entr(p_t, mix).sum(-1) + (1 - beta) * rel_entr(p_s, mix).sum(-1)
    if name == "skl":
        return rel_entr(p_t, params["alpha"] * p_t + (1 - params["alpha"]) * p_s).sum(-1)
    if name == "srkl" and params["alpha"] > 0:
        return rel_entr(p_s, params["alpha"] * p_s + (1 - params["alpha"]) * p_t).sum(-1)
    # reverse KL with the infinite terms p_s*log(p_s/0) left out
    return np.where(p_t > 0, rel_entr(p_s, np.where(p_t > 0, p_t, 1.0)), 0.0).sum(-1)


@pytest.mark.parametrize(("name", "params"), ALL, ids=IDS)
@pytest.mark.parametrize("chunked", [True, False])
def test_values_equal_the_definitions(name: str, params: dict, chunked: bool) -> None:
    student, teacher, mask = _inputs()
    got = kd_loss(name, student, teacher, mask, chunked=chunked, chunk_size=2, **params)
    per_token = _reference(name, params, student.detach().numpy(), teacher.numpy())
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(per_token[mask.numpy()].mean(), rel=1e-12, abs=1e-14)


@pytest.mark.parametrize(("name", "params"), ALL, ids=IDS)
def test_gradcheck_float64(name: str, params: dict) -> None:
    student, teacher, mask = _inputs()
    assert torch.autograd.gradcheck(
        lambda s: kd_loss(name, s, teacher, mask, 1.5, chunked=False, **params), (student,)
    )


@pytest.mark.parametrize(("name", "params"), ALL, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunked_equals_dense_values_and_gradients(name: str, params: dict, dtype: torch.dtype) -> None:
    student, teacher, mask = _inputs(dtype, seed=1)
    dense = kd_loss(name, student, teacher, mask, 2.0, chunked=False, **params)
    (dense_grad,) = torch.autograd.grad(dense, student)
    chunked = kd_loss(name, student, teacher, mask, 2.0, chunk_size=3, **params)
    (chunked_grad,) = torch.autograd.grad(chunked, student)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert chunked.item() == pytest.approx(dense.item(), rel=tol, abs=tol)
    assert torch.allclose(chunked_grad, dense_grad, rtol=tol, atol=tol)
    assert torch.isfinite(chunked_grad).all() and chunked_grad.abs().max() < 10


def test_reverse_kl_gradient_equals_the_hand_formula() -> None:
    """dL/dz_j = p_j·[(g_j + s_j) − (L + 1 − m)] per token, g_j = s_j·log(p_j/q_j), s_j = [q_j > 0]."""
    student, teacher, mask = _inputs()
    loss = reverse_kl(student, teacher, mask)
    loss.backward()
    log_p = log_softmax(student.detach().numpy(), axis=-1)
    log_q = log_softmax(teacher.numpy(), axis=-1)
    p, s = np.exp(log_p), np.isfinite(log_q)
    g = np.where(s, log_p - np.where(s, log_q, 0.0), 0.0)
    per_token = (p * g).sum(-1, keepdims=True)
    outside = (p * ~s).sum(-1, keepdims=True)
    grad = p * ((g + s) - (per_token + 1 - outside)) * mask.numpy()[..., None] / mask.sum().item()
    np.testing.assert_allclose(student.grad.numpy(), grad, rtol=1e-10, atol=1e-14)
    assert np.all(student.grad.numpy()[..., ZERO] <= 0)  # documented: it pushes mass onto excluded tokens
    assert loss.item() == pytest.approx(per_token[..., 0][mask.numpy()].mean(), rel=1e-12)


@pytest.mark.parametrize("chunked", [True, False])
def test_reverse_kl_against_the_loss_on_the_teachers_support(chunked: bool) -> None:
    """L = (1−m)·RKL(student renormalised on the support ‖ teacher) + (1−m)·log(1−m), values and gradients."""
    student, teacher, mask = _inputs(seed=2)
    got = reverse_kl(student, teacher, mask, chunked=chunked, chunk_size=2)
    (got_grad,) = torch.autograd.grad(got, student)

    on_support = student[..., SUPPORT]
    kept = torch.exp(on_support.logsumexp(-1) - student.logsumexp(-1))  # 1 − m per token
    per_token = torch.stack(
        [reverse_kl(on_support[b, t][None], teacher[b, t, SUPPORT][None]) for b in range(2) for t in range(4)]
    ).view(2, 4)
    expected = (kept * per_token + kept * kept.log())[mask].mean()
    (expected_grad,) = torch.autograd.grad(expected, student)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.allclose(got_grad, expected_grad, rtol=1e-10, atol=1e-14)

    # a student without mass on the excluded tokens: exactly the reverse KL on the support
    with torch.no_grad():
        student[..., ZERO] = -float("inf")
    full = reverse_kl(student, teacher, mask, chunked=chunked, chunk_size=2)
    reduced = reverse_kl(student[..., SUPPORT], teacher[..., SUPPORT], mask, chunked=chunked)
    assert full.item() == pytest.approx(reduced.item(), rel=1e-12)
    (full_grad,) = torch.autograd.grad(full, student)
    (reduced_grad,) = torch.autograd.grad(reduced, student)
    assert torch.allclose(full_grad, reduced_grad, rtol=1e-10, atol=1e-14)


def test_top_k_teacher_with_an_empty_rest_equals_the_dense_teacher() -> None:
    """A teacher that excludes everything outside its top-k: the rest bucket has mass 0 on both paths."""
    student, teacher, mask = _inputs(torch.float32, seed=3)
    top = TopKTeacher.from_logits(teacher, k=len(SUPPORT))
    assert bool((top.rest <= -1e29).all())
    for name, params in ALL:
        dense = kd_loss(name, student, teacher, mask, **params)
        (dense_grad,) = torch.autograd.grad(dense, student)
        cached = kd_loss(name, student, top, mask, **params)
        (cached_grad,) = torch.autograd.grad(cached, student)
        assert cached.item() == pytest.approx(dense.item(), rel=1e-5, abs=1e-6), name
        assert torch.allclose(cached_grad, dense_grad, rtol=1e-4, atol=1e-6), name
