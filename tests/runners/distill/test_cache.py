"""Offline teacher-logit cache: equals the live teacher at full k, fingerprints, reuse by runs."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

from kdanalysis.errors import ConfigError
from runners.distill.cache import CacheKey, TeacherCache, build_teacher_cache, build_teacher_cache_for
from runners.distill.data import encode_items, example_key, load_items
from runners.distill.methods import Method, TeacherSignal
from runners.models import load_causal_lm

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def full_cache(toy, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A cache that keeps every logit (k >= vocabulary), in float32."""
    return build_teacher_cache(
        str(toy["teacher"]),
        toy["data"],
        tmp_path_factory.mktemp("c") / "full",
        k=10**6,
        max_length=96,
        dtype="float32",
        shard_tokens=2000,
    )


def test_layout_and_index(full_cache: Path, toy) -> None:  # type: ignore[no-untyped-def]
    index = json.loads((full_cache / "index.json").read_text())
    assert index["n_examples"] == 40 and len(index["shards"]) > 1  # several shards
    fp = index["fingerprint"]
    assert fp["k"] == fp["vocab_size"] and fp["max_length"] == 96 and fp["dtype"] == "float32"
    assert fp["teacher"] == str(toy["teacher"]) and len(fp["data"][0]["sha256"]) == 64
    assert all((full_cache / name).is_file() for name in index["shards"])


@pytest.mark.parametrize("method", ["fkl", "rkl", "jsd", "tvd", "srkl"])
def test_kd_from_full_cache_equals_live_teacher(make_config, full_cache, toy, method) -> None:  # type: ignore[no-untyped-def]
    student, tok = load_causal_lm(str(toy["student"]), dtype="float32", device="cpu")
    teacher, _ = load_causal_lm(str(toy["teacher"]), dtype="float32", device="cpu")
    examples = encode_items(
        tok, load_items(toy["data"])[:6], max_length=96, train_on_inputs=False, prompt_style="published_train"
    )
    config = make_config(method, temperature=2.0)
    live = Method(
        config,
        TeacherSignal(model=teacher, autocast=contextlib.nullcontext),
        tok.pad_token_id,
        tok.eos_token_id,
    )
    cached = Method(
        config, TeacherSignal(cache=TeacherCache.open(full_cache)), tok.pad_token_id, tok.eos_token_id
    )
    with torch.no_grad():
        a = live.loss(student, examples, device=CPU, autocast=contextlib.nullcontext)
        b = cached.loss(student, examples, device=CPU, autocast=contextlib.nullcontext)
    assert torch.allclose(a.kd, b.kd, rtol=1e-4, atol=1e-6), (a.kd, b.kd)
    assert torch.allclose(a.kl, b.kl, rtol=1e-4, atol=1e-6)


def test_top_k_lookup_matches_the_teachers_top_logits(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = TeacherCache.open(
        build_teacher_cache(
            str(toy["teacher"]), toy["data"], tmp_path / "k8", k=8, max_length=96, dtype="float32"
        )
    )
    teacher, tok = load_causal_lm(str(toy["teacher"]), dtype="float32", device="cpu")
    ex = encode_items(
        tok, load_items(toy["data"])[:1], max_length=96, train_on_inputs=True, prompt_style="published_train"
    )[0]
    top_k = cache.lookup([example_key(ex.input_ids)], width=len(ex.input_ids) + 3)
    values, indices = top_k.values, top_k.indices
    with torch.no_grad():
        logits = teacher(torch.tensor([ex.input_ids])).logits[0]
    top = torch.topk(logits, 8, dim=-1)
    n = len(ex.input_ids)
    assert torch.allclose(values[0, :n], top.values, atol=1e-5)
    assert torch.equal(indices[0, :n], top.indices)
    assert (values[0, n:] == 0).all()  # padding
    rest = torch.logsumexp(logits.scatter(-1, top.indices, float("-inf")), dim=-1)
    assert torch.allclose(top_k.rest[0, :n], rest, atol=1e-4)  # mass outside the top-k, tau = 1
    with pytest.raises(ConfigError, match="has no logits for a training sequence"):
        cache.lookup(["0" * 40], width=4)


def test_reuse_and_fingerprint_mismatch(make_config, full_cache, toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index = full_cache / "index.json"
    before = index.stat().st_mtime_ns
    assert (
        build_teacher_cache(
            str(toy["teacher"]),
            toy["data"],
            full_cache,
            k=10**6,
            max_length=96,
            dtype="float32",
            shard_tokens=2000,
        )
        == full_cache
    )
    assert index.stat().st_mtime_ns == before  # complete cache reused, not rebuilt
    with pytest.raises(ConfigError, match="another fingerprint.*max_length: 96 vs 64"):
        build_teacher_cache(
            str(toy["teacher"]),
            toy["data"],
            full_cache,
            k=10**6,
            max_length=64,
            dtype="float32",
            shard_tokens=2000,
        )
    _, tok = load_causal_lm(str(toy["student"]), dtype="float32", device="cpu")
    cache = TeacherCache.open(full_cache)
    with pytest.raises(ConfigError, match="teacher: run 'other/teacher'.*max_length: run 64 vs cache 96"):
        cache.check(
            CacheKey.build(
                teacher="other/teacher",
                teacher_gguf_file=None,
                tokenizer=tok,
                data=[toy["data"]],
                max_length=64,
                prompt_style="published_train",
                temperatures=(1.0,),
            )
        )
    with pytest.raises(ConfigError, match=r"temperature 3.0 is not cached \(cached: \[1.0, 2.0, 5.0\]\)"):
        cache.check(
            CacheKey.build(
                teacher=str(toy["teacher"]),
                teacher_gguf_file=None,
                tokenizer=tok,
                data=[toy["data"]],
                max_length=96,
                prompt_style="published_train",
                temperatures=(3.0,),
            )
        )
    other = tmp_path / "other.json"
    other.write_text("[]")
    with pytest.raises(ConfigError, match="is not one of the cached files"):
        cache.check(
            CacheKey.build(
                teacher=str(toy["teacher"]),
                teacher_gguf_file=None,
                tokenizer=tok,
                data=[other],
                max_length=96,
                prompt_style="published_train",
                temperatures=(1.0,),
            )
        )
    with pytest.raises(ConfigError, match="missing or unfinished"):
        TeacherCache.open(tmp_path)


def test_run_from_cache_never_loads_the_teacher(make_config, toy, tmp_path: Path, loaded_models) -> None:  # type: ignore[no-untyped-def]
    from runners.distill.run import run_distill

    config = make_config("fkl")
    # k covers the toy vocabulary: exact, so the run uses it (a k=32 cache of the toy teacher's
    # flat distribution misses most of its mass; tests/runners/distill/test_cache_bound.py)
    cache = build_teacher_cache_for(config, tmp_path / "cache", k=10**6, dtype="float32")
    loaded = loaded_models
    loaded.clear()  # the loads of the run only, not of the cache build
    run = run_distill(make_config("fkl", teacher_cache=str(cache)), tmp_path / "run")
    assert loaded == [str(toy["student"])]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kl = [r["kl"] for r in rows if "loss" in r]
    assert sum(kl[-3:]) < sum(kl[:3])
    with pytest.raises(ConfigError, match="does not match this run: max_length"):
        run_distill(make_config("fkl", teacher_cache=str(cache), max_length=80), tmp_path / "run2")


def test_a_cache_written_before_cache_key_is_recognised(make_config, toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # index.json of a k=16 float32 cache of the toy teacher, written by the code before CacheKey
    # existed (paths replaced by placeholders): its fingerprint is read, checked and rebuilt unchanged
    text = (Path(__file__).parent / "golden" / "cache_index_format1.json").read_text()
    index = json.loads(text.replace("{teacher}", str(toy["teacher"])).replace("{data}", str(toy["data"])))
    folder = tmp_path / "old_cache"
    folder.mkdir()
    (folder / "index.json").write_text(json.dumps(index))
    cache = TeacherCache.open(folder)
    assert (
        cache.key.fingerprint(k=16, vocab_size=index["fingerprint"]["vocab_size"], dtype="float32")
        == (index["fingerprint"])
    )
    _, tok = load_causal_lm(str(toy["student"]), dtype="float32", device="cpu")
    cache.check(CacheKey.for_run(make_config("fkl", temperature=2.0, teacher_cache=str(folder)), tok))
    mtime = (folder / "index.json").stat().st_mtime_ns
    assert (
        build_teacher_cache(str(toy["teacher"]), toy["data"], folder, k=16, max_length=96, dtype="float32")
        == folder
    )
    assert (folder / "index.json").stat().st_mtime_ns == mtime  # same fingerprint: reused, not rebuilt
    with pytest.raises(ConfigError, match="does not match this run: max_length: run 64 vs cache 96"):
        cache.check(CacheKey.for_run(make_config("fkl", max_length=64, teacher_cache=str(folder)), tok))
