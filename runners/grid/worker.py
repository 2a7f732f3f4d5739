"""Worker entry point: ``python -m runners.grid.worker RUNS_DIR CELL_ID`` computes one cell.

Used by :class:`runners.grid.executors.GpuPoolExecutor` (one process per cell, pinned to
a GPU by ``CUDA_VISIBLE_DEVICES``). The cell is read from ``RUNS_DIR/plan.json``.
Exit code 0 when the cell is done, 1 when it failed (its folder holds the traceback), 2
when its cell cannot be read from ``plan.json`` (one line on stderr).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from kdanalysis.errors import RunFailedError
from kdanalysis.io import read_json
from runners.grid.plan import Cell
from runners.grid.state import PLAN_FILE, CellState, execute_cell

__all__ = ["load_cell", "main"]


def load_cell(runs_dir: Path, cid: str) -> Cell:
    """Cell ``cid`` of the plan saved in ``RUNS_DIR/plan.json``.

    Raises
    ------
    RunFailedError
        If ``plan.json`` is missing, damaged or lacks the cell (the message names it).
    """
    path = Path(runs_dir) / PLAN_FILE
    try:
        cells = read_json(path)["cells"]
        found = [data for data in cells if data["id"] == cid]
        cell = Cell.from_json(found[0]) if found else None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise RunFailedError(
            f"{path} cannot be read ({type(exc).__name__}: {exc}); "
            "run run-grid again to rewrite it from the grid"
        ) from exc
    if cell is None:
        raise RunFailedError(f"cell {cid} is not in {path}")
    return cell


def main(argv: list[str] | None = None) -> int:
    """Run one cell; see the module docstring."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m runners.grid.worker RUNS_DIR CELL_ID\n")
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    runs_dir = Path(args[0])
    try:
        cell = load_cell(runs_dir, args[1])
    except RunFailedError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    status = execute_cell(cell, runs_dir)
    return 0 if status.state is CellState.DONE else 1


if __name__ == "__main__":
    sys.exit(main())
