"""Damaged files of a runs folder: a corrupted ``plan.json`` or ``status.json`` is named, never a
traceback, and never makes ``collect``/``report`` return fewer rows silently."""

from __future__ import annotations

import runpy
from collections.abc import Callable
from pathlib import Path

import pytest

from kdanalysis.results import read_results
from runners.cli import main
from runners.grid.executors import SequentialExecutor
from runners.grid.plan import build_plan
from runners.grid.runner import run_grid
from runners.grid.spec import parse_grid
from runners.grid.state import cell_dir
from runners.grid.worker import main as worker_main

HERE = Path(__file__).parent
fake_stage = runpy.run_path(str(HERE / "test_grid_run.py"))["fake_stage"]
PLAN = build_plan(parse_grid((HERE / "small_grid.yaml").read_text(encoding="utf-8")))


def _run(runs: Path):  # noqa: ANN202
    return run_grid(PLAN, runs, executor=SequentialExecutor(runs, fake_stage))


def test_a_corrupted_plan_is_named_by_the_worker_and_rewritten_by_the_next_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _run(tmp_path)
    (tmp_path / "plan.json").write_text('{"study": "x", "cells": [')
    assert worker_main([str(tmp_path), next(iter(PLAN)).id]) == 2
    err = capsys.readouterr().err
    assert "plan.json cannot be read" in err and "run-grid again" in err and "Traceback" not in err
    again = _run(tmp_path)
    assert again.counts == first.counts and again.computed == []
    assert worker_main([str(tmp_path), "nope"]) == 2  # readable again: only the unknown cell is refused


def test_a_corrupted_status_of_a_done_cell_is_named_not_dropped(
    tmp_path: Path, run_cli: Callable[..., tuple[int, str]]
) -> None:
    result = _run(tmp_path)
    n_rows = len(read_results(result.results_path))
    cid = next(c.id for c in PLAN if c.kind == "eval")
    status = cell_dir(tmp_path, cid) / "status.json"
    status.write_text(status.read_text()[:20])
    for command in (["collect", str(tmp_path)], ["report", str(tmp_path), "--out", str(tmp_path / "r")]):
        code, out = run_cli(main, *command)
        assert code == 2 and str(status) in out and "Traceback" not in out
    assert len(read_results(result.results_path)) == n_rows  # the earlier collection is left alone


def test_run_grid_on_a_full_disk_is_one_line_and_keeps_the_collected_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., tuple[int, str]]
) -> None:
    import errno
    import tempfile

    runs = tmp_path / "runs"
    first = _run(runs)
    items_before = first.items_path.read_bytes()
    first.results_path.unlink()  # the collection must be written again
    grid = tmp_path / "grid.yaml"
    grid.write_text((HERE / "small_grid.yaml").read_text(encoding="utf-8"))
    real = tempfile.mkstemp

    def full(*args: object, **kwargs: object) -> tuple[int, str]:
        if str(kwargs.get("prefix", "")).startswith(".results.parquet"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("kdanalysis.io.tempfile.mkstemp", full)
    code, out = run_cli(main, "run-grid", str(grid), "--runs-dir", str(runs), "--no-progress")
    assert code == 2 and "Traceback" not in out
    assert "no space left writing" in out and "results.parquet" in out and "MiB free" in out
    assert first.items_path.read_bytes() == items_before and not first.results_path.exists()
