"""Each token-level KD cell's teacher signal (cache or live, and why) in the plan and the dry run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runners.grid.command import run_grid_command
from runners.grid.plan import build_plan, teacher_signal_lines
from runners.grid.runner import bundled_grids
from runners.grid.spec import load_grid


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
