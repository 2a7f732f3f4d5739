"""Property tests of the KD losses with hypothesis (shapes, scales, temperatures, parameters)."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from runners.distill.losses import TopKTeacher, generalized_jsd, kd_loss  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)

losses = st.sampled_from(["fkl", "rkl", "jsd", "tvd", "skl", "srkl"])
weights = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def problems(draw):
    batch = draw(st.integers(1, 3))
    length = draw(st.integers(1, 6))
    vocab = draw(st.integers(2, 40))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 30.0]))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    student = (scale * torch.randn(batch, length, vocab, generator=gen)).requires_grad_()
    teacher = scale * torch.randn(batch, length, vocab, generator=gen)
    mask = torch.rand(batch, length, generator=gen) > 0.3
    temperature = draw(st.sampled_from([0.5, 1.0, 2.0, 5.0]))
    return student, teacher, mask, temperature


def _params(name: str, weight: float) -> dict:
    return {"jsd": {"beta": weight}, "skl": {"alpha": weight}, "srkl": {"alpha": weight}}.get(name, {})


@SETTINGS
@given(problem=problems(), name=losses, weight=weights, chunk=st.integers(1, 7))
def test_nonnegative_finite_and_chunked_equals_dense(problem, name, weight, chunk) -> None:
    student, teacher, mask, temperature = problem
    params = _params(name, weight)
    loss = kd_loss(name, student, teacher, mask, temperature, chunk_size=chunk, **params)
    assert torch.isfinite(loss) and loss.item() >= -1e-6
    loss.backward()
    grad = student.grad.clone()
    assert torch.isfinite(grad).all()
    assert grad[~mask].abs().sum().item() == 0.0
    student.grad = None
    dense = kd_loss(name, student, teacher, mask, temperature, chunked=False, **params)
    assert loss.item() == pytest.approx(dense.item(), rel=1e-4, abs=1e-5)
    if dense.requires_grad:
        dense.backward()
        assert torch.allclose(grad, student.grad, rtol=1e-3, atol=1e-5)


@SETTINGS
@given(problem=problems(), name=losses, weight=weights)
def test_zero_for_identical_distributions(problem, name, weight) -> None:
    student, _, mask, temperature = problem
    shifted = student.detach() + 3.0  # same distribution: softmax is shift-invariant
    loss = kd_loss(name, student, shifted, mask, temperature, **_params(name, weight))
    assert loss.item() == pytest.approx(0.0, abs=1e-5)


@SETTINGS
@given(problem=problems())
def test_jsd_half_is_symmetric(problem) -> None:
    student, teacher, mask, temperature = problem
    one_way = generalized_jsd(student, teacher, mask, temperature, beta=0.5)
    other_way = generalized_jsd(teacher, student.detach(), mask, temperature, beta=0.5)
    assert one_way.item() == pytest.approx(other_way.item(), rel=1e-4, abs=1e-6)


@SETTINGS
@given(problem=problems(), name=losses, weight=weights)
def test_top_k_covering_the_vocabulary_is_exact(problem, name, weight) -> None:
    student, teacher, mask, temperature = problem
    params = _params(name, weight)
    full = kd_loss(name, student, teacher, mask, temperature, **params)
    top = TopKTeacher.from_logits(teacher, k=teacher.shape[-1], temperature=temperature)
    cached = kd_loss(name, student, top, mask, temperature, **params)
    assert cached.item() == pytest.approx(full.item(), rel=1e-4, abs=1e-5)
