"""Each token-level KD cell's teacher signal (cache or live, and why) in the plan and the dry run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from runners.distill.cache import TAIL_MASS_BOUND
from runners.grid.command import run_grid_command
from runners.grid.plan import build_plan, tail_mass_bound, teacher_signal_lines
from runners.grid.runner import bundled_grids
from runners.grid.spec import GridSpec, load_grid, parse_grid


def test_dry_run_prints_each_kd_cells_teacher_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KD_DATA", str(tmp_path / "no_data"))
    monkeypatch.setenv("COLUMNS", "400")
    assert run_grid_command(bundled_grids()["paper"], tmp_path / "runs", dry_run=True, progress=False) == 0
    out = capsys.readouterr().out
    lines = re.findall(r"^\S+ kd (\w+) τ=(\S+) .*: teacher signal: (cache|live) \((.+)\)$", out, re.MULTILINE)
    plan = build_plan(load_grid(bundled_grids()["paper"]))
    kd = [c for c in plan if c.stage == "kd" and c.config["method"] in ("fkl", "rkl")]
    assert len(lines) == len(kd) == len(teacher_signal_lines(plan))
    for method, tau, source, why in lines:
        assert source == ("cache" if method == "fkl" and tau == "1" else "live"), (method, tau, why)
        if method == "rkl":
            assert "student's mass outside the teacher's top-64" in why
        elif tau != "1":
            assert f"at τ={tau}" in why and "far above 0.2%" in why
    # the plan follows the signal: only the cells shown as "cache" depend on a cache cell
    caches = {c.id for c in plan if c.stage == "teacher_cache"}
    for cell in kd:
        shown_cache = cell.config["method"] == "fkl" and cell.config["temperature"] == 1.0
        assert bool(caches & set(cell.deps)) == shown_cache == ("cache_cell" in cell.config)


def _small_grid(**changes: object) -> GridSpec:
    data = yaml.safe_load((Path(__file__).parent / "small_grid.yaml").read_text(encoding="utf-8"))
    data.update(changes)
    return parse_grid(yaml.safe_dump(data, sort_keys=False))


def test_a_cache_planned_cell_says_it_goes_live_if_the_cache_cell_finds_the_tail_too_heavy() -> None:
    plan = build_plan(_small_grid())
    (fkl,) = [line for line in teacher_signal_lines(plan) if " kd fkl " in line]
    assert fkl.endswith(
        "teacher signal: cache (cache if the teacher's mean mass outside its top-k at τ=1 is ≤ 0.2%, "
        "else live: measured by the cache cell, which stops building as soon as the mass it has seen "
        "exceeds that)"
    )
    (cache,) = [c for c in plan if c.stage == "teacher_cache"]
    assert "refuse_above" not in cache.config  # the training's bound: the cell id of earlier versions


def test_a_methods_own_tail_mass_bound_is_shown_and_given_to_the_cache_cell() -> None:
    methods = [{"method": "fkl", "params": {"teacher_cache_max_tail_mass": 0.05}}, {"method": "skl"}]
    plan = build_plan(_small_grid(methods=methods))
    lines = {m: line for line in teacher_signal_lines(plan) for m in ("fkl", "skl") if f" kd {m} " in line}
    assert "is ≤ 5.0%, else live" in lines["fkl"] and "is ≤ 0.2%, else live" in lines["skl"]
    (cache,) = [c for c in plan if c.stage == "teacher_cache"]
    assert cache.config["refuse_above"] == 0.05  # the loosest bound of the cells it serves
    assert tail_mass_bound(cache.config["training"], {}) == TAIL_MASS_BOUND


def test_the_cache_cell_of_a_heavy_tailed_teacher_stops_early(tmp_path: Path) -> None:
    """The grid's cache cell builds with its KD cells' bound: the random toy teacher (most of its mass
    outside any top-64) is refused after one batch, and the folder holds no logits."""
    from runners.distill.cache import TeacherCache
    from runners.grid.plan import Plan
    from runners.grid.runner import run_grid

    plan = build_plan(_small_grid(ablations={"base_teacher": {"methods": ["fkl"]}}), root=tmp_path)
    (cache,) = [c for c in plan if c.stage == "teacher_cache" and "train_cell" not in c.config["teacher"]]
    subset = {cid: cell for cid, cell in plan.cells.items() if cid in (*cache.deps, cache.id)}
    assert run_grid(Plan(plan.grid, plan.root, subset), tmp_path / "runs").counts == {"done": len(subset)}
    folder = tmp_path / "runs" / "cells" / cache.id / "cache"
    built = TeacherCache.open(folder)
    assert built.refused is not None and built.refused["bound"] == TAIL_MASS_BOUND
    assert built.refused["seen_tokens"] < built.refused["n_tokens"] / 2
    assert [p.name for p in folder.iterdir()] == ["index.json"]
