"""Work estimate of a plan: training steps/tokens and evaluation items per stage, and a time
estimate from the durations of cells already computed in the runs folder.

Item counts come from the data where they can be read without a model: the training
file's length, the test-set files' lengths (or the task table's published test size), and
the synthetic task's configured sizes. A teacher-cache cell counts every training item it
would run the teacher on: an upper bound, as it stops early when the teacher's tail is
provably too heavy (:func:`runners.distill.cache.build_teacher_cache`, ``refuse_above``).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from runners.distill.config import DistillConfig, OptimConfig
from runners.grid.plan import STAGES, Cell, Plan, training_steps
from runners.grid.state import CellState, CellStatus

__all__ = ["StageEstimate", "estimate_plan"]


@dataclass(frozen=True)
class StageEstimate:
    """Work of one stage.

    Attributes
    ----------
    stage : str
    cells, done, failed, blocked, pending : int
        Cell counts (``pending`` includes running cells).
    train_steps, train_tokens, eval_items : int or None
        Work of the cells still to compute (None when a count is unknown).
    seconds_per_cell : float or None
        Median wall time of this stage's finished cells.
    remaining_s : float or None
        ``seconds_per_cell × pending``.
    """

    stage: str
    cells: int
    done: int
    failed: int
    blocked: int
    pending: int
    train_steps: int | None
    train_tokens: int | None
    eval_items: int | None
    seconds_per_cell: float | None
    remaining_s: float | None


@cache
def _json_len(path: str) -> int | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return len(data) if isinstance(data, list) else None


def _test_items(task: str, data_dir: str | None) -> int | None:
    from runners.evaluate.tasks import bundled_tasks, task_file

    tasks = bundled_tasks()
    if task not in tasks:
        return None
    spec = tasks[task]
    if data_dir is not None:
        try:
            n = _json_len(str(task_file(spec, data_dir)))
        except Exception:  # noqa: BLE001 - a missing file only makes the estimate unknown
            n = None
        if n is not None:
            return n
    return spec.test_size


def _plan_configs(plan: Plan) -> dict[str, Mapping[str, Any]]:
    return {c.id: c.config for c in plan if c.kind == "prepare"}


def _n_train(data: Mapping[str, Any], prepared: Mapping[str, Mapping[str, Any]]) -> int | None:
    if "data_cell" in data:
        return int(prepared[data["data_cell"]]["n_train"])
    if "heldout_cell" in data:
        return int(prepared[data["heldout_cell"]]["per_task"]) * len(data["tasks"])
    return _json_len(data["train_path"])


def _n_test(
    data: Mapping[str, Any], prepared: Mapping[str, Mapping[str, Any]], limit: int | None
) -> int | None:
    """Items an evaluation scores: per task its test-set size, at most ``limit`` (EvalConfig.limit)."""
    if "data_cell" in data:
        counts: list[int | None] = [int(prepared[data["data_cell"]]["n_test"])] * len(data["tasks"])
    else:
        counts = [_test_items(t, data.get("data_dir")) for t in data["tasks"]]
    if limit is not None:
        counts = [None if c is None else min(c, int(limit)) for c in counts]
    return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)


#: The trainer's defaults, read from its config models (never restated here).
_DEFAULT_BATCH: int = OptimConfig.model_fields["batch_size"].default
_DEFAULT_MAX_LENGTH: int = DistillConfig.model_fields["max_length"].default


def _work(cell: Cell, plan: Plan, prepared: Mapping[str, Mapping[str, Any]]) -> tuple[int | None, ...]:
    """(train_steps, train_tokens, eval_items) of one cell."""
    cfg = cell.config
    if cell.kind == "train":
        steps = training_steps(_n_train(cfg["data"], prepared), cfg["training"])
        batch = int(cfg["training"].get("optim", {}).get("batch_size", _DEFAULT_BATCH))
        max_len = int(cfg["training"].get("max_length", _DEFAULT_MAX_LENGTH))
        return steps, None if steps is None else steps * batch * max_len, 0
    if cell.kind == "cache":
        return 0, 0, _n_train(cfg["data"], prepared)
    if cell.kind == "eval":
        return 0, 0, _n_test(cfg["data"], prepared, cfg["evaluation"].get("limit"))
    if cell.kind == "fidelity":
        student_eval = plan.cells[cfg["student_eval_cell"]].config
        return 0, 0, _n_test(student_eval["data"], prepared, student_eval["evaluation"].get("limit"))
    return 0, 0, 0


def _total(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def estimate_plan(plan: Plan, states: Mapping[str, CellStatus]) -> list[StageEstimate]:
    """Per-stage counts and the work still to do, in :data:`~runners.grid.plan.STAGES` order.

    Parameters
    ----------
    plan : Plan
    states : mapping of cell id to CellStatus
        From :func:`runners.grid.runner.plan_states`.

    Returns
    -------
    list of StageEstimate
    """
    prepared = _plan_configs(plan)
    by_stage: dict[str, list[Cell]] = defaultdict(list)
    for cell in plan:
        by_stage[cell.stage].append(cell)
    out = []
    for stage in STAGES:
        cells = by_stage.get(stage)
        if not cells:
            continue
        st = [states[c.id].state for c in cells]
        todo = [c for c in cells if states[c.id].state in (CellState.PENDING, CellState.RUNNING)]
        work = [_work(c, plan, prepared) for c in todo]
        durations = [
            d
            for c in cells
            if states[c.id].state is CellState.DONE and (d := states[c.id].duration_s) is not None
        ]
        per_cell = statistics.median(durations) if durations else None
        out.append(
            StageEstimate(
                stage=stage,
                cells=len(cells),
                done=st.count(CellState.DONE),
                failed=st.count(CellState.FAILED),
                blocked=st.count(CellState.BLOCKED),
                pending=len(todo),
                train_steps=_total([w[0] for w in work]),
                train_tokens=_total([w[1] for w in work]),
                eval_items=_total([w[2] for w in work]),
                seconds_per_cell=per_cell,
                remaining_s=None if per_cell is None else per_cell * len(todo),
            )
        )
    return out
