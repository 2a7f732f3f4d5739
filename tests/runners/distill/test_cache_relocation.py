"""A teacher cache finds its local teacher where it was built or at the same place relative to the
cache folder, so a folder holding both can be moved; a cache moved without its teacher still
serves the teacher at its recorded absolute path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kdanalysis.errors import ConfigError
from runners.distill.cache import CacheKey, TeacherCache, build_teacher_cache
from runners.models import load_causal_lm


def _run_key(teacher: Path, toy, tokenizer) -> CacheKey:  # type: ignore[no-untyped-def]
    return CacheKey.build(
        teacher=str(teacher.resolve()),
        teacher_gguf_file=None,
        tokenizer=tokenizer,
        data=[toy["data"]],
        max_length=96,
        prompt_style="published_train",
        temperatures=(1.0,),
    )


def test_a_folder_with_teacher_and_cache_moves_as_a_whole(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    old = tmp_path / "old"
    shutil.copytree(toy["teacher"], old / "teacher")
    build_teacher_cache(str(old / "teacher"), toy["data"], old / "cells" / "c" / "cache", k=8, max_length=96)
    _, tokenizer = load_causal_lm(str(toy["student"]), dtype="float32", device="cpu")
    new = tmp_path / "a" / "b" / "new"
    new.parent.mkdir(parents=True)
    shutil.copytree(old, new)
    cache = TeacherCache.open(new / "cells" / "c" / "cache")
    assert cache.fingerprint["teacher_from_cache"] == "../../../teacher"
    cache.check(_run_key(new / "teacher", toy, tokenizer))  # the moved teacher
    cache.check(_run_key(old / "teacher", toy, tokenizer))  # the one it was built from, still there
    with pytest.raises(
        ConfigError, match=r"teacher: run '.*elsewhere' vs cache '.*old/teacher' or '.*new/teacher'"
    ):
        cache.check(_run_key(tmp_path / "elsewhere", toy, tokenizer))
    # building into the moved folder finds the same cache (not another fingerprint) and keeps it
    index = new / "cells" / "c" / "cache" / "index.json"
    mtime = index.stat().st_mtime_ns
    shutil.rmtree(old)
    build_teacher_cache(str(new / "teacher"), toy["data"], new / "cells" / "c" / "cache", k=8, max_length=96)
    assert index.stat().st_mtime_ns == mtime


def test_a_cache_moved_without_its_teacher_serves_the_recorded_path(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built = build_teacher_cache(str(toy["teacher"]), toy["data"], tmp_path / "cache", k=8, max_length=96)
    moved = tmp_path / "moved" / "cache"
    shutil.copytree(built, moved)
    _, tokenizer = load_causal_lm(str(toy["student"]), dtype="float32", device="cpu")
    TeacherCache.open(moved).check(_run_key(Path(toy["teacher"]), toy, tokenizer))
