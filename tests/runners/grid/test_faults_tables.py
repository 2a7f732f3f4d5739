"""A truncated parquet table in a done cell, or a truncated collected table, is repaired by the next run."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

from kdanalysis.results import read_results
from runners.grid.executors import SequentialExecutor
from runners.grid.plan import build_plan
from runners.grid.runner import run_grid
from runners.grid.spec import parse_grid
from runners.grid.state import CellState, cell_dir, cell_state

HERE = Path(__file__).parent
fake_stage = runpy.run_path(str(HERE / "test_grid_run.py"))["fake_stage"]
PLAN = build_plan(parse_grid((HERE / "small_grid.yaml").read_text(encoding="utf-8")))


def _run(runs: Path):  # noqa: ANN202
    return run_grid(PLAN, runs, executor=SequentialExecutor(runs, fake_stage))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_table_of_a_done_cell_is_recomputed(tmp_path: Path) -> None:
    first = _run(tmp_path)
    expected = read_results(first.results_path)
    cid = next(c.id for c in PLAN if c.kind == "eval")
    _truncate(cell_dir(tmp_path, cid) / "results.parquet")
    assert cell_state(tmp_path, cid).state is CellState.PENDING
    again = _run(tmp_path)
    assert again.computed == [cid]
    assert again.counts == first.counts
    assert read_results(again.results_path).drop(columns="source").equals(expected.drop(columns="source"))


def test_a_truncated_collected_table_is_rewritten_though_it_is_newest(tmp_path: Path) -> None:
    first = _run(tmp_path)
    expected = first.results_path.read_bytes()
    _truncate(first.results_path)
    later = first.results_path.stat().st_mtime + 60
    os.utime(first.results_path, (later, later))
    again = _run(tmp_path)
    assert again.computed == []
    assert again.results_path.read_bytes() == expected
