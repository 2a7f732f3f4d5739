"""A cache build that the error bound would refuse stops early (``refuse_above``): a heavy-tailed
toy teacher is refused after its first batch, without logits, and a run given that cache uses the
live teacher; a peaked teacher is built in full and served."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from kdanalysis.errors import ConfigError
from runners.distill.cache import TAIL_MASS_BOUND, TeacherCache, build_teacher_cache
from runners.distill.data import encode_items, load_items
from runners.models import load_causal_lm

K = 16


@pytest.fixture(scope="module")
def peaked_teacher(toy, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The toy teacher with its final norm scaled by 100: logits 100x as far apart, so nearly all
    of each position's mass lies on its top few tokens."""
    model, tokenizer = load_causal_lm(str(toy["teacher"]), dtype="float32", device="cpu")
    with torch.no_grad():
        model.model.norm.weight.mul_(100.0)
    out = tmp_path_factory.mktemp("peaked") / "teacher"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _positions(toy, teacher: Path) -> int:  # type: ignore[no-untyped-def]
    _, tokenizer = load_causal_lm(str(teacher), dtype="float32", device="cpu")
    examples = encode_items(
        tokenizer,
        load_items(toy["data"]),
        max_length=96,
        train_on_inputs=True,
        prompt_style="published_train",
    )
    return sum(len(ex.input_ids) for ex in {tuple(ex.input_ids): ex for ex in examples}.values())


def test_a_heavy_tailed_teacher_is_refused_after_its_first_batch(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = build_teacher_cache(
        str(toy["teacher"]),
        toy["data"],
        tmp_path / "cache",
        k=K,
        max_length=96,
        batch_size=4,
        refuse_above=TAIL_MASS_BOUND,
    )
    index = json.loads((folder / "index.json").read_text())
    refused = index["refused"]
    total = _positions(toy, Path(toy["teacher"]))
    # stopped after one batch of 4 of the 40 sequences; no logits kept
    assert refused["n_tokens"] == total and 0 < refused["seen_tokens"] < total / 5
    assert sorted(p.name for p in folder.iterdir()) == ["index.json"] and index["shards"] == []
    # the recorded lower bound is what was seen over all positions, and it proves the refusal
    assert refused["mean_at_least"] == pytest.approx(
        refused["seen_mean"]["1"] * refused["seen_tokens"] / total
    )
    assert refused["mean_at_least"] > TAIL_MASS_BOUND and refused["temperature"] == 1.0
    # the full build of the same teacher confirms it: its mean tail mass is above the lower bound
    full = TeacherCache.open(
        build_teacher_cache(str(toy["teacher"]), toy["data"], tmp_path / "full", k=K, max_length=96)
    )
    assert full.tail_mass(1.0)["mean"] >= refused["mean_at_least"]
    cache = TeacherCache.open(folder)
    for tau in (1.0, 2.0, 5.0):
        why = cache.bound_problem("fkl", tau) or ""
        assert "stopped after" in why and f"> {TAIL_MASS_BOUND:.1%}" in why and f"τ={tau:g}" in why
    looser = cache.bound_problem("fkl", 1.0, max_tail_mass=0.99) or ""
    assert "holds no logits" in looser and "without refuse_above" in looser
    assert "cannot bound" in (cache.bound_problem("rkl", 1.0) or "")
    with pytest.raises(ConfigError, match="holds no logits: the cache build stopped"):
        cache.lookup(["x"], 4)
    with pytest.raises(ConfigError, match="holds no logits"):
        cache.tail_mass(1.0)


def test_the_build_stops_only_once_all_positions_could_not_bring_the_mean_under_the_bound(
    toy, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Not an estimate from the first batches: a bound just above the full mean at τ = 1 is never
    refused (though the tail is heavier at τ = 2, 5), one just below is decided by the full mean,
    and half the mean is refused only after at least half the positions."""
    options = {"k": K, "max_length": 96, "batch_size": 4}
    full = TeacherCache.open(
        build_teacher_cache(str(toy["teacher"]), toy["data"], tmp_path / "full", **options)
    )
    mean = full.tail_mass(1.0)["mean"]
    for name, bound in (("above", mean * 1.0001), ("below", mean * 0.98)):
        cache = TeacherCache.open(
            build_teacher_cache(
                str(toy["teacher"]), toy["data"], tmp_path / name, refuse_above=bound, **options
            )
        )
        assert cache.refused is None and cache.tail_mass(1.0)["mean"] == pytest.approx(mean)
        assert (cache.bound_problem("fkl", 1.0, max_tail_mass=bound) is None) == (name == "above")
    half = TeacherCache.open(
        build_teacher_cache(
            str(toy["teacher"]), toy["data"], tmp_path / "half", refuse_above=mean / 2, **options
        )
    )
    assert half.refused is not None
    assert half.refused["n_tokens"] / 2 <= half.refused["seen_tokens"] < half.refused["n_tokens"]


def test_a_refused_cache_is_reused_only_for_a_bound_it_decides(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = (str(toy["teacher"]), toy["data"], tmp_path / "cache")
    options = {"k": K, "max_length": 96, "batch_size": 4}
    folder = build_teacher_cache(*args, refuse_above=TAIL_MASS_BOUND, **options)
    mtime = (folder / "index.json").stat().st_mtime_ns
    assert build_teacher_cache(*args, refuse_above=TAIL_MASS_BOUND / 2, **options) == folder
    assert (folder / "index.json").stat().st_mtime_ns == mtime
    with pytest.raises(ConfigError, match="holds a refused teacher cache"):
        build_teacher_cache(*args, **options)
    with pytest.raises(ConfigError, match="refuse_above must be in"):
        build_teacher_cache(*args, refuse_above=0.0, **options)


def test_a_peaked_teacher_is_built_in_full_and_served(peaked_teacher: Path, toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = build_teacher_cache(
        str(peaked_teacher),
        toy["data"],
        tmp_path / "cache",
        k=K,
        max_length=96,
        batch_size=4,
        refuse_above=TAIL_MASS_BOUND,
    )
    index = json.loads((folder / "index.json").read_text())
    assert "refused" not in index and index["n_tokens"] == _positions(toy, peaked_teacher)
    cache = TeacherCache.open(folder)
    mean = cache.tail_mass(1.0)["mean"]
    assert mean <= TAIL_MASS_BOUND and cache.bound_problem("fkl", 1.0) is None
    # the bound is on the smallest cached τ: far heavier tails at τ = 5 do not refuse a bound
    # that τ = 1 meets
    assert cache.tail_mass(5.0)["mean"] > 10 * mean
    tight = build_teacher_cache(
        str(peaked_teacher),
        toy["data"],
        tmp_path / "tight",
        k=K,
        max_length=96,
        batch_size=4,
        refuse_above=mean * 1.0001,
    )
    assert TeacherCache.open(tight).refused is None


def test_a_run_given_a_refused_cache_uses_the_live_teacher(
    make_config, toy, tmp_path: Path, loaded_models, caplog
) -> None:  # type: ignore[no-untyped-def]
    from runners.distill.run import run_distill

    folder = build_teacher_cache(
        str(toy["teacher"]), toy["data"], tmp_path / "cache", k=K, max_length=96, refuse_above=TAIL_MASS_BOUND
    )
    loaded = loaded_models
    loaded.clear()  # the loads of the run only, not of the cache build
    config = make_config("fkl", teacher_cache=str(folder), optim={"max_steps": 2}, eval_every=0)
    with caplog.at_level(logging.WARNING, logger="runners.distill.trainer"):
        run_distill(config, tmp_path / "run")
    assert str(toy["teacher"]) in loaded
    assert "not using teacher cache" in caplog.text and "the cache build stopped after" in caplog.text
