"""KD losses: golden values against a direct float64 computation, and invariants (TRL-style)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax, rel_entr

from kdanalysis.errors import ConfigError

torch = pytest.importorskip("torch")

from runners.distill.losses import (  # noqa: E402
    LOSS_ALIASES,
    LOSSES,
    forward_kl,
    generalized_jsd,
    kd_loss,
    reverse_kl,
    skew_forward_kl,
    skew_reverse_kl,
    total_variation,
)

#: (name, params) of every loss, with non-default parameters where it has some.
CASES = [
    ("fkl", {}),
    ("rkl", {}),
    ("jsd", {"beta": 0.5}),
    ("jsd", {"beta": 0.2}),
    ("tvd", {}),
    ("skl", {"alpha": 0.1}),
    ("srkl", {"alpha": 0.3}),
]
IDS = [f"{name}{params}" for name, params in CASES]


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return rel_entr(p, q).sum(-1)


def reference(name: str, student, teacher, mask, temperature: float = 1.0, **params) -> float:
    """The loss computed directly from the definitions, in float64 with scipy."""
    ls = log_softmax(np.asarray(student, dtype=np.float64) / temperature, axis=-1)
    lt = log_softmax(np.asarray(teacher, dtype=np.float64) / temperature, axis=-1)
    ps, pt = np.exp(ls), np.exp(lt)
    if name == "fkl":
        per_token = _kl(pt, ps)
    elif name == "rkl":
        per_token = _kl(ps, pt)
    elif name == "jsd":
        beta = params["beta"]
        m = beta * pt + (1 - beta) * ps
        per_token = beta * _kl(pt, m) + (1 - beta) * _kl(ps, m)
    elif name == "tvd":
        per_token = 0.5 * np.abs(pt - ps).sum(-1)
    elif name == "skl":
        per_token = _kl(pt, params["alpha"] * pt + (1 - params["alpha"]) * ps)
    elif name == "srkl":
        per_token = _kl(ps, params["alpha"] * ps + (1 - params["alpha"]) * pt)
    else:
        raise AssertionError(name)
    mask = np.asarray(mask, dtype=bool)
    return float(per_token[mask].mean() * temperature**2)


def _inputs(seed: int, shape=(3, 7, 33), scale: float = 3.0):
    gen = torch.Generator().manual_seed(seed)
    student = (scale * torch.randn(*shape, generator=gen)).requires_grad_()
    teacher = scale * torch.randn(*shape, generator=gen)
    mask = torch.rand(shape[:-1], generator=gen) > 0.3
    mask[0, 0] = True
    return student, teacher, mask


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.7])
def test_golden_values_against_float64_definitions(name: str, params: dict, temperature: float) -> None:
    student, teacher, mask = _inputs(1)
    got = kd_loss(name, student, teacher, mask, temperature, **params)
    expected = reference(name, student.detach().numpy(), teacher.numpy(), mask.numpy(), temperature, **params)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_gradients_match_float64_autograd(name: str, params: dict) -> None:
    student, teacher, mask = _inputs(2, shape=(2, 5, 17))
    kd_loss(name, student, teacher, mask, 2.0, chunk_size=3, **params).backward()
    s64 = student.detach().double().requires_grad_()
    kd_loss(name, s64, teacher.double(), mask, 2.0, chunked=False, **params).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert torch.allclose(student.grad.double(), s64.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
def test_chunked_equals_dense(name: str, params: dict, chunk_size: int) -> None:
    student, teacher, mask = _inputs(3)
    chunked = kd_loss(name, student, teacher, mask, 1.5, chunk_size=chunk_size, **params)
    chunked.backward()
    grad_chunked = student.grad.clone()
    student.grad = None
    dense = kd_loss(name, student, teacher, mask, 1.5, chunked=False, **params)
    dense.backward()
    assert chunked.item() == pytest.approx(dense.item(), rel=1e-6, abs=1e-7)
    assert torch.allclose(grad_chunked, student.grad, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_identical_inputs_give_zero(name: str, params: dict) -> None:
    student, _, mask = _inputs(4)
    loss = kd_loss(name, student, student.detach().clone(), mask, **params)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert student.grad.abs().max().item() < 1e-6


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_masked_positions_do_not_contribute(name: str, params: dict) -> None:
    student, teacher, mask = _inputs(5)
    loss = kd_loss(name, student, teacher, mask, **params)
    loss.backward()
    assert student.grad[~mask].abs().max().item() == 0.0
    changed = student.detach().clone()
    changed[~mask] = 100 * torch.randn_like(changed[~mask])
    other_teacher = teacher.clone()
    other_teacher[~mask] = -50.0
    again = kd_loss(name, changed, other_teacher, mask, **params)
    assert again.item() == pytest.approx(loss.item(), rel=1e-6)
    as_float = kd_loss(name, student, teacher, mask.float(), **params)
    assert as_float.item() == loss.item()


def test_empty_mask_gives_zero_loss_and_zero_gradient() -> None:
    student, teacher, _ = _inputs(6)
    loss = forward_kl(student, teacher, torch.zeros(student.shape[:-1], dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and student.grad.abs().max().item() == 0.0


def test_mask_none_means_every_position() -> None:
    student, teacher, _ = _inputs(7)
    full = torch.ones(student.shape[:-1], dtype=torch.bool)
    assert reverse_kl(student, teacher).item() == reverse_kl(student, teacher, full).item()


def test_temperature_factor_is_tau_squared() -> None:
    student, teacher, mask = _inputs(8)
    at_2 = forward_kl(student, teacher, mask, temperature=2.0)
    same_distributions = forward_kl(student / 2, teacher / 2, mask, temperature=1.0)
    assert at_2.item() == pytest.approx(4 * same_distributions.item(), rel=1e-6)


def test_jsd_endpoints_are_the_documented_kl_limits() -> None:
    student, teacher, mask = _inputs(9, scale=1.0)
    fkl = forward_kl(student, teacher, mask).item()
    rkl = reverse_kl(student, teacher, mask).item()
    assert generalized_jsd(student, teacher, mask, beta=0.0).item() == fkl
    assert generalized_jsd(student, teacher, mask, beta=1.0).item() == rkl
    # the normalised divergence tends to the endpoint values: JSD/β -> KL(T‖S), JSD/(1-β) -> KL(S‖T)
    errors = []
    for eps in (1e-2, 1e-4):
        near_0 = generalized_jsd(student, teacher, mask, beta=eps).item() / eps
        near_1 = generalized_jsd(student, teacher, mask, beta=1 - eps).item() / eps
        errors.append((abs(near_0 - fkl) / fkl, abs(near_1 - rkl) / rkl))
    assert max(errors[1]) < 2e-3
    assert errors[1][0] < errors[0][0] and errors[1][1] < errors[0][1]
    # ... while the unnormalised value vanishes at both ends
    assert generalized_jsd(student, teacher, mask, beta=eps).item() < 1e-3 * fkl


def test_jsd_half_is_symmetric_and_skews_reduce_to_kl() -> None:
    student, teacher, mask = _inputs(10)
    swapped = generalized_jsd(teacher, student.detach(), mask, beta=0.5).item()
    assert generalized_jsd(student, teacher, mask, beta=0.5).item() == pytest.approx(swapped, rel=1e-6)
    assert generalized_jsd(student, teacher, mask, beta=0.5).item() <= np.log(2) + 1e-6
    fkl, rkl = forward_kl(student, teacher, mask).item(), reverse_kl(student, teacher, mask).item()
    assert skew_forward_kl(student, teacher, mask, alpha=0.0).item() == fkl
    assert skew_reverse_kl(student, teacher, mask, alpha=0.0).item() == rkl
    assert skew_forward_kl(student, teacher, mask, alpha=1.0).item() == 0.0
    assert total_variation(student, teacher, mask).item() <= 1.0


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_low_precision_inputs_use_float32_softmax(name: str, params: dict) -> None:
    student, teacher, mask = _inputs(11, scale=8.0)
    student_bf16 = student.detach().bfloat16().requires_grad_()
    teacher_bf16 = teacher.bfloat16()
    low = kd_loss(name, student_bf16, teacher_bf16, mask, **params)
    upcast = kd_loss(name, student_bf16.detach().float(), teacher_bf16.float(), mask, **params)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(upcast.item(), rel=1e-6, abs=1e-7)
    low.backward()
    assert student_bf16.grad.dtype == torch.bfloat16 and torch.isfinite(student_bf16.grad.float()).all()


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_extreme_logits_give_finite_values_and_gradients(name: str, params: dict) -> None:
    student, teacher, mask = _inputs(12, scale=1.0)
    with torch.no_grad():
        student[0, 0, :5] = 1e4
        student[1, :, 3] = -1e4
    teacher[0, 0, 5:] = -float("inf")  # a teacher that masks part of the vocabulary
    teacher[1, 1] = 1e4 * torch.arange(teacher.shape[-1]) / teacher.shape[-1]
    loss = kd_loss(name, student, teacher, mask, **params)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_non_contiguous_shifted_logits() -> None:
    student, teacher, mask = _inputs(13)
    shifted = student[:, :-1]
    assert not shifted.is_contiguous()
    got = forward_kl(shifted, teacher[:, :-1], mask[:, 1:], chunk_size=2)
    expected = forward_kl(shifted.contiguous(), teacher[:, :-1].contiguous(), mask[:, 1:], chunked=False)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    got.backward()
    assert student.grad[:, -1].abs().max().item() == 0.0


def test_one_backward_pass_only() -> None:
    student, teacher, mask = _inputs(14)
    loss = forward_kl(student, teacher, mask)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward pass"):
        loss.backward()


def test_teacher_gets_no_gradient_and_no_grad_mode_works() -> None:
    student, teacher, mask = _inputs(15)
    teacher.requires_grad_()
    forward_kl(student, teacher, mask).backward()
    assert teacher.grad is None and student.grad is not None
    with torch.no_grad():
        assert forward_kl(student, teacher, mask).item() > 0


def test_kd_loss_dispatch_names_and_errors() -> None:
    student, teacher, mask = _inputs(16)
    for alias, function_name in LOSS_ALIASES.items():
        by_alias = kd_loss(alias, student, teacher, mask)
        by_name = kd_loss(function_name, student, teacher, mask)
        direct = LOSSES[function_name][0](student, teacher, mask)
        assert by_alias.item() == by_name.item() == direct.item()
    with pytest.raises(ConfigError, match="unknown KD loss 'kl'.*fkl.*srkl"):
        kd_loss("kl", student, teacher, mask)
    with pytest.raises(ConfigError, match="does not take \\['beta'\\]"):
        kd_loss("fkl", student, teacher, mask, beta=0.5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, t, m: generalized_jsd(s, t, m, beta=1.5), "beta"),
        (lambda s, t, m: skew_forward_kl(s, t, m, alpha=-0.1), "alpha"),
        (lambda s, t, m: forward_kl(s, t, m, temperature=0.0), "temperature"),
        (lambda s, t, m: forward_kl(s, t, m, chunk_size=0), "chunk_size"),
        (lambda s, t, m: forward_kl(s, t[..., :-1], m), "align_logits"),
        (lambda s, t, m: forward_kl(s, t, m[:, :-1]), "mask shape"),
        (lambda s, t, m: forward_kl(s, t, m.float() * 2), "only 0 and 1"),
        (lambda s, t, m: forward_kl(s, t.numpy(), m), "TopKTeacher"),
    ],
)
def test_bad_arguments_raise_config_error(call, message: str) -> None:
    student, teacher, mask = _inputs(17)
    with pytest.raises(ConfigError, match=message):
        call(student, teacher, mask)
