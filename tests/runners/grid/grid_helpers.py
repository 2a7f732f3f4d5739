"""Helpers of the grid tests: a small toy grid and a fast, deterministic fake stage function.

The fake stages exercise the grid machinery (planning, state, resume, executors,
collection) without models; ``test_grid_toy_e2e.py`` runs the real runners.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from pathlib import Path

from kdanalysis.results import results_frame, write_results
from runners.grid.plan import Cell

SMALL_GRID = """\
study: grid_test
models:
  teacher: {path: "toy:qwen2:small", family: toy, params_b: 0.000137}
  student: {path: "toy:qwen2:tiny", family: toy, params_b: 0.0000502}
teachers: [teacher]
students: [student]
methods:
  - {method: fkl}
  - {method: rkl}
temperatures: [1]
seeds: [6]
domains:
  math: {train: "toy:arithmetic", tasks: [arithmetic], toy_items: 24, toy_test_items: 6}
training:
  max_length: 128
  precision: fp32
  data: {val_size: 4}
  optim: {lr: 0.003, warmup_steps: 1, batch_size: 4, max_steps: 3}
  eval_every: 0
  checkpoint_every: 0
evaluation:
  batch_size: 8
  decoding: {max_new_tokens: 12}
"""


def fake_value(cell: Cell) -> float:
    """Deterministic 'measurement' of a cell."""
    return int(hashlib.sha256(cell.id.encode()).hexdigest()[:6], 16) % 1000 / 10


def fake_stage(cell: Cell, work: Path, deps: Mapping[str, Path], delay: float = 0.0) -> dict[str, str]:
    """Write what the real stages write, minus the models: results rows for eval/fidelity cells."""
    time.sleep(delay)
    for dep in deps.values():  # inputs must be published final folders
        assert (dep / "status.json").is_file()
    if cell.kind in ("eval", "fidelity"):
        labels = dict(cell.config["labels"])
        tau = labels.pop("temperature")
        rows = [{**labels, "temperature": float("nan") if tau is None else tau, "task": "arithmetic",
                 "metric": "accuracy" if cell.kind == "eval" else "agreement",
                 "value": fake_value(cell), "run_id": cell.id}]
        write_results(results_frame(rows), work / "results.parquet")
        return {"results": "results.parquet"}
    (work / "out.txt").write_text(cell.id)
    return {"out": "out.txt"}
