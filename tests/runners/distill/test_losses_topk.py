"""Top-k teacher: exact when k covers the vocabulary, collapsed k+1-bucket definition otherwise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from kdanalysis.errors import ConfigError

torch = pytest.importorskip("torch")

from runners.distill.losses import TopKTeacher, forward_kl, kd_loss  # noqa: E402

NAMES = [
    ("fkl", {}),
    ("rkl", {}),
    ("jsd", {"beta": 0.5}),
    ("tvd", {}),
    ("skl", {"alpha": 0.1}),
    ("srkl", {"alpha": 0.1}),
]
IDS = [name for name, _ in NAMES]


def _inputs(seed: int, shape=(2, 6, 40)):
    gen = torch.Generator().manual_seed(seed)
    student = (2 * torch.randn(*shape, generator=gen)).requires_grad_()
    teacher = 2 * torch.randn(*shape, generator=gen)
    mask = torch.rand(shape[:-1], generator=gen) > 0.25
    return student, teacher, mask


def _collapsed_reference(name, student, teacher, mask, k, temperature, with_rest, **params) -> float:
    """Float64: collapse both distributions as documented, then apply the definition."""
    s = student.detach().double().numpy() / temperature
    t = teacher.double().numpy() / temperature
    idx = np.argsort(-teacher.numpy(), axis=-1, kind="stable")[..., :k]
    ps_full, pt_full = softmax(s, axis=-1), softmax(t, axis=-1)
    ps_top, pt_top = np.take_along_axis(ps_full, idx, -1), np.take_along_axis(pt_full, idx, -1)
    if with_rest:  # k + 1 buckets: the top-k and everything else
        ps = np.concatenate([ps_top, 1 - ps_top.sum(-1, keepdims=True)], -1)
        pt = np.concatenate([pt_top, 1 - pt_top.sum(-1, keepdims=True)], -1)
    else:  # both renormalised over the teacher's top-k
        ps = ps_top / ps_top.sum(-1, keepdims=True)
        pt = pt_top / pt_top.sum(-1, keepdims=True)

    def kl(p, q):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0).sum(-1)

    if name == "fkl":
        per = kl(pt, ps)
    elif name == "rkl":
        per = kl(ps, pt)
    elif name == "jsd":
        m = 0.5 * pt + 0.5 * ps
        per = 0.5 * kl(pt, m) + 0.5 * kl(ps, m)
    elif name == "tvd":
        per = 0.5 * np.abs(pt - ps).sum(-1)
    elif name == "skl":
        per = kl(pt, params["alpha"] * pt + (1 - params["alpha"]) * ps)
    else:
        per = kl(ps, params["alpha"] * ps + (1 - params["alpha"]) * pt)
    return float(per[mask.numpy()].mean() * temperature**2)


@pytest.mark.parametrize(("name", "params"), NAMES, ids=IDS)
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_full_k_matches_the_full_vocabulary_loss(name: str, params: dict, temperature: float) -> None:
    student, teacher, mask = _inputs(0)
    full = kd_loss(name, student, teacher, mask, temperature, **params)
    full.backward()
    grad_full = student.grad.clone()
    student.grad = None
    top = TopKTeacher.from_logits(teacher, k=teacher.shape[-1], temperature=temperature)
    cached = kd_loss(name, student, top, mask, temperature, chunk_size=5, **params)
    cached.backward()
    assert cached.item() == pytest.approx(full.item(), rel=1e-5, abs=1e-6)
    assert torch.allclose(student.grad, grad_full, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(("name", "params"), NAMES, ids=IDS)
@pytest.mark.parametrize("with_rest", [True, False])
def test_partial_k_is_the_collapsed_divergence(name: str, params: dict, with_rest: bool) -> None:
    student, teacher, mask = _inputs(1)
    top = TopKTeacher.from_logits(teacher, k=8, temperature=2.0)
    if not with_rest:
        top = dataclasses.replace(top, rest=None)
    got = kd_loss(name, student, top, mask, 2.0, **params)
    expected = _collapsed_reference(name, student, teacher, mask, 8, 2.0, with_rest, **params)
    assert got.item() == pytest.approx(expected, rel=1e-4, abs=1e-6)
    got.backward()
    assert torch.isfinite(student.grad).all() and student.grad[mask].abs().sum() > 0


def test_from_logits_stores_top_k_and_rest_log_mass() -> None:
    _, teacher, _ = _inputs(2)
    top = TopKTeacher.from_logits(teacher.bfloat16(), k=5, temperature=2.0)
    reference = torch.topk(teacher.bfloat16(), 5, dim=-1)
    assert torch.equal(top.values, reference.values) and torch.equal(top.indices, reference.indices)
    assert top.values.dtype == torch.bfloat16 and top.rest.dtype == torch.float32 and top.k == 5
    t = teacher.bfloat16().double().numpy() / 2.0
    keep = np.zeros(t.shape, dtype=bool)
    np.put_along_axis(keep, reference.indices.numpy(), True, -1)
    expected = logsumexp(np.where(keep, -np.inf, t), axis=-1)
    assert np.allclose(top.rest.numpy(), expected, rtol=1e-5)
    with pytest.raises(ConfigError, match="top-k size"):
        TopKTeacher.from_logits(teacher, k=41)


def test_rest_temperature_must_match_the_loss() -> None:
    student, teacher, mask = _inputs(3)
    top = TopKTeacher.from_logits(teacher, k=4)
    with pytest.raises(ConfigError, match="temperature 1.0.*temperature=2.0"):
        forward_kl(student, top, mask, temperature=2.0)
    forward_kl(student, dataclasses.replace(top, rest=None), mask, temperature=2.0)  # renormalised: any τ


def test_token_slicing_and_int32_indices() -> None:
    student, teacher, mask = _inputs(4)
    top = TopKTeacher.from_logits(teacher, k=6)
    shifted = top[:, :-1]
    direct = TopKTeacher.from_logits(teacher[:, :-1], k=6)
    assert torch.equal(shifted.values, direct.values) and torch.allclose(shifted.rest, direct.rest)
    as_int32 = dataclasses.replace(top, indices=top.indices.to(torch.int32))
    assert forward_kl(student, as_int32, mask).item() == forward_kl(student, top, mask).item()
    with pytest.raises(ConfigError, match="Ellipsis"):
        top[..., 0]


def test_invalid_top_k_teachers_are_refused() -> None:
    student, teacher, mask = _inputs(5)
    values = torch.zeros(2, 6, 3)
    with pytest.raises(ConfigError, match="same shape"):
        TopKTeacher(values, torch.zeros(2, 6, 4, dtype=torch.long))
    with pytest.raises(ConfigError, match="integers"):
        TopKTeacher(values, values)
    with pytest.raises(ConfigError, match="rest"):
        TopKTeacher(values, values.long(), rest=torch.zeros(2, 5))
    with pytest.raises(ConfigError, match="outside the student vocabulary"):
        forward_kl(student, TopKTeacher(values, torch.full((2, 6, 3), 40)), mask)
    with pytest.raises(ConfigError, match="token shape"):
        forward_kl(student, TopKTeacher(values[:, :5], values[:, :5].long()), mask)
