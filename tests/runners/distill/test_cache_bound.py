"""The teacher cache's error bound: the rest mass per τ, the served (method, τ) cells within 1 %
relative error and gradient cosine >= 0.999, the live-teacher fallback, and format versions."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import pytest
import torch

from kdanalysis.errors import ConfigError
from runners.distill.cache import (
    SERVED_METHODS,
    TAIL_MASS_BOUND,
    TeacherCache,
    build_teacher_cache,
    build_teacher_cache_for,
)
from runners.distill.cache_error import (
    STUDENT_KINDS,
    TEACHER_KINDS,
    cache_error,
    synthetic_logits,
    synthetic_student,
)
from runners.distill.data import encode_items, example_key, load_items
from runners.distill.losses import TopKTeacher
from runners.models import load_causal_lm

K = 8
TEMPERATURES = (1.0, 2.0, 5.0)


@pytest.fixture(scope="module")
def small_cache(toy, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A k=8 float32 cache of the toy teacher at τ = 1, 2, 5."""
    return build_teacher_cache(
        str(toy["teacher"]),
        toy["data"],
        tmp_path_factory.mktemp("c") / "k8",
        k=K,
        max_length=96,
        dtype="float32",
        temperatures=TEMPERATURES,
    )


def _live_logits(toy, n: int = 3) -> tuple[list[str], torch.Tensor, int]:  # type: ignore[no-untyped-def]
    model, tokenizer = load_causal_lm(str(toy["teacher"]), dtype="float32", device="cpu")
    examples = encode_items(
        tokenizer,
        load_items(toy["data"])[:n],
        max_length=96,
        train_on_inputs=True,
        prompt_style="published_train",
    )
    width = min(len(ex.input_ids) for ex in examples)
    ids = torch.tensor([ex.input_ids[:width] for ex in examples])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[..., : len(tokenizer)].float()
    return [example_key(ex.input_ids) for ex in examples], logits, width


def test_lookup_gives_the_rest_mass_of_the_asked_temperature(small_cache: Path, toy) -> None:  # type: ignore[no-untyped-def]
    keys, logits, width = _live_logits(toy)
    cache = TeacherCache.open(small_cache)
    for tau in TEMPERATURES:
        got = cache.lookup(keys, width, temperature=tau)
        want = TopKTeacher.from_logits(logits, K, temperature=tau)
        assert got.temperature == tau
        torch.testing.assert_close(got.values, want.values, rtol=0, atol=1e-5)
        torch.testing.assert_close(got.rest, want.rest, rtol=0, atol=1e-5)
    # the rest masses differ across τ far more than the tolerance, so each τ's is told apart
    gap = (want.rest - TopKTeacher.from_logits(logits, K, temperature=1.0).rest).abs()
    assert gap.max() > 100 * 1e-5


def test_tail_mass_recorded_and_recomputed_for_a_format_1_cache(small_cache: Path, tmp_path: Path) -> None:
    index = json.loads((small_cache / "index.json").read_text())
    assert index["format"] == 3 and set(index["tail_mass"]) == {"1", "2", "5"}
    recorded = TeacherCache.open(small_cache)
    assert recorded.tail_mass(1.0)["mean"] < recorded.tail_mass(2.0)["mean"] < recorded.tail_mass(5.0)["mean"]
    old = tmp_path / "old"
    old.mkdir()
    for shard in index["shards"]:
        (old / shard).symlink_to(small_cache / shard)
    del index["tail_mass"]
    (old / "index.json").write_text(json.dumps({**index, "format": 1}))
    computed = TeacherCache.open(old)
    for tau in TEMPERATURES:
        assert computed.tail_mass(tau) == pytest.approx(recorded.tail_mass(tau), rel=1e-5)
    (old / "index.json").write_text(json.dumps({**index, "format": 4}))
    with pytest.raises(ConfigError, match="has format 4; this version reads formats 1, 2, 3; rebuild it"):
        TeacherCache.open(old)


def test_bound_problem_names_the_reason(small_cache: Path) -> None:
    cache = TeacherCache.open(small_cache)
    assert "cannot bound" in (cache.bound_problem("rkl", 1.0) or "")
    mean = cache.tail_mass(1.0)["mean"]
    assert mean > TAIL_MASS_BOUND  # the toy teacher is nearly flat over its ~1k tokens
    assert f"{mean:.2%} > {TAIL_MASS_BOUND:.1%}" in (cache.bound_problem("fkl", 1.0) or "")


def test_a_run_whose_cache_is_out_of_bound_uses_the_live_teacher(
    make_config, toy, tmp_path, loaded_models, caplog
) -> None:  # type: ignore[no-untyped-def]
    from runners.distill.run import run_distill

    config = make_config("fkl")
    cache = build_teacher_cache_for(config, tmp_path / "cache", k=32, dtype="float32")
    loaded = loaded_models
    loaded.clear()  # the loads of the run only, not of the cache build
    with caplog.at_level(logging.WARNING, logger="runners.distill.trainer"):
        run_distill(make_config("fkl", teacher_cache=str(cache)), tmp_path / "run")
    assert str(toy["teacher"]) in loaded
    assert "not using teacher cache" in caplog.text and "using the live teacher" in caplog.text


def _cells(vocab: int = 8192, n: int = 16) -> list[tuple[str, str, int, str, float, int, dict[str, float]]]:
    out = []
    for teacher_kind, seed in itertools.product(TEACHER_KINDS, (0, 1)):
        teacher = synthetic_logits(teacher_kind, n, vocab, seed)
        for student_kind in STUDENT_KINDS:
            student = synthetic_student(teacher, student_kind, seed + 10)
            for loss, tau, k in itertools.product(("fkl", "skl", "rkl"), TEMPERATURES, (4, 64, 512)):
                error = cache_error(loss, teacher, student, k, tau, dtype="float32")
                out.append((teacher_kind, student_kind, seed, loss, tau, k, error))
    return out


@pytest.fixture(scope="module")
def cells() -> list[tuple[str, str, int, str, float, int, dict[str, float]]]:
    return _cells()


def test_every_cell_the_cache_serves_is_within_the_bound(cells) -> None:  # type: ignore[no-untyped-def]
    served = [c for c in cells if c[3] in SERVED_METHODS and c[6]["tail_mass"] <= TAIL_MASS_BOUND]
    for *where, error in served:
        assert abs(error["rel_err"]) <= 0.01 and error["cosine"] >= 0.999, (where, error)
    # not vacuous: the rule serves fkl and skl cells at τ = 1, and turns away cells that miss the bound
    assert {(c[3], c[4]) for c in served} == {("fkl", 1.0), ("skl", 1.0)}
    refused = [c for c in cells if c[3] in SERVED_METHODS and c[6]["tail_mass"] > TAIL_MASS_BOUND]
    assert any(abs(c[6]["rel_err"]) > 0.01 for c in refused)
    # and the bound is not loose: a tail mass a few times above it already breaks the 1 %
    assert any(c[6]["tail_mass"] <= 5 * TAIL_MASS_BOUND and abs(c[6]["rel_err"]) > 0.01 for c in refused)


def test_reverse_kl_misses_the_bound_even_with_a_small_teacher_tail(cells) -> None:  # type: ignore[no-untyped-def]
    # why rkl is not served: its error is the student's tail mass times a tail divergence
    small_tail = [c for c in cells if c[3] == "rkl" and c[6]["tail_mass"] <= TAIL_MASS_BOUND]
    assert small_tail and any(abs(c[6]["rel_err"]) > 0.01 for c in small_tail)
