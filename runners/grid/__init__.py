"""Resumable KD grids: a YAML grid → a plan of cells → local/GPU-pool/SLURM execution → results.

Command line: ``kdanalysis run-grid GRID.yaml [--dry-run] [--retry-failed]``. In Python::

    from runners.grid import load_grid, build_plan, run_grid
    plan = build_plan(load_grid("data/grids/demo.yaml"), root="data/grids")
    result = run_grid(plan, "runs/demo")

Modules: :mod:`~runners.grid.spec` (the grid file), :mod:`~runners.grid.plan` (cells and
ids), :mod:`~runners.grid.state` (on-disk state, lock, cell execution),
:mod:`~runners.grid.executors`, :mod:`~runners.grid.runner` (the driver),
:mod:`~runners.grid.stages` (cells → runners), :mod:`~runners.grid.inputs` (input files
checked at plan time), :mod:`~runners.grid.estimate`,
:mod:`~runners.grid.progress`, :mod:`~runners.grid.worker`. Nothing here imports torch
until a cell runs.
"""

from runners.grid.plan import Cell, Plan, build_plan
from runners.grid.runner import GridRunResult, bundled_grids, plan_states, resolve_grid, run_grid
from runners.grid.spec import GridSpec, load_grid

__all__ = [
    "Cell",
    "GridRunResult",
    "GridSpec",
    "Plan",
    "build_plan",
    "bundled_grids",
    "load_grid",
    "plan_states",
    "resolve_grid",
    "run_grid",
]
