"""Training items from the shipped test sets, disjoint from the items that are scored.

Offline, the released training sets (Math10K, Commonsense15K) are not at hand, but the
shipped test sets are, in the same ``{instruction, input, output, answer}`` format with a
reference ``output``. An evaluation with ``limit = n`` scores the first ``n`` items of
every task (:func:`runners.evaluate.run.run_eval`); :func:`heldout_items` takes the items
after those, so a model can be fine-tuned on real questions of the task without seeing
the ones it is scored on (the grid's ``train: heldout:test-sets``). Disjointness is by
position in the file: a test set that repeats a question at two positions is not
de-duplicated.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdanalysis.errors import ConfigError
from kdanalysis.tasks import bundled_tasks
from runners.distill.data import load_items
from runners.evaluate.tasks import task_file

__all__ = ["heldout_items"]


def heldout_items(
    tasks: Sequence[str], data_dir: str | Path, *, skip: int, per_task: int
) -> list[dict[str, Any]]:
    """Items ``skip .. skip + per_task - 1`` of each task's test-set file, task after task.

    Parameters
    ----------
    tasks : sequence of str
        Task ids of the task table (``data/tasks.yaml``) that have a test-set file.
    data_dir : str or Path
        Folder of the test-set files.
    skip : int
        Items evaluated per task (the evaluation's ``limit``), left out.
    per_task : int
        Training items taken from each task.

    Returns
    -------
    list of dict
        The items as stored (``instruction``, ``input``, ``output``, ``answer``), in task
        order and file order: a training file for :mod:`runners.distill`.

    Raises
    ------
    ConfigError
        Unknown task, missing file, ``skip < 0`` or ``per_task < 1``, or a test set with
        fewer than ``skip + per_task`` items.
    """
    if skip < 0 or per_task < 1:
        raise ConfigError(
            f"held-out items need skip >= 0 and per_task >= 1, got skip={skip}, per_task={per_task}"
        )
    table = bundled_tasks()
    out: list[dict[str, Any]] = []
    for task in tasks:
        if task not in table:
            raise ConfigError(f"unknown task {task!r}; known: {', '.join(table)}")
        path = task_file(table[task], data_dir)
        items = load_items(path)
        if len(items) < skip + per_task:
            raise ConfigError(
                f"{path} has {len(items)} items: too few for {per_task} training items after the "
                f"{skip} evaluated ones"
            )
        out.extend(items[skip : skip + per_task])
    return out
