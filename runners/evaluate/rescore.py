"""Re-scoring a finished run from its saved outputs, without any model.

A run folder (:mod:`kdanalysis.runfolder`) holds, at its root, ``items.parquet`` (per-item
outputs), ``results.parquet`` (results rows) and ``run_meta.json``
(:class:`~runners.evaluate.scoring.RunMeta`). A folder whose ``status.json`` says the run
is still running or failed is refused; one without ``status.json`` (tables assembled by
hand) is re-scored.
:func:`rescore_run` re-extracts every answer from the saved ``output`` column with the
chosen extractor and recomputes the accuracy rows exactly as the first scoring did.

Writing
-------
- ``out=None`` (default): the run folder is updated in place. The previous tables are
  kept as ``items.prev.parquet`` and ``results.prev.parquet`` (overwriting older backups),
  then the new ``items.parquet`` and ``results.parquet`` are written atomically and
  ``run_meta.json`` records the extractor now in force. Rows of ``results.parquet`` with
  other metrics (agreement, bleu, kl, ...) are kept; only this run's ``accuracy`` rows
  are replaced.
- ``out=PATH``: only the new results table is written to ``PATH`` (``.parquet`` or
  ``.csv``); the run folder is left untouched.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import pandas as pd

from kdanalysis.errors import ConfigError
from kdanalysis.results import read_items, read_results, validate_results, write_items, write_results
from kdanalysis.runfolder import ITEMS_FILE, RESULTS_FILE, RunState, read_status
from runners.evaluate.config import read_run_tasks
from runners.evaluate.extract import get_extractor
from runners.evaluate.scoring import (
    accuracy_results,
    read_run_meta,
    rescore_items,
    write_run_meta,
)

__all__ = ["rescore_run", "PREV_SUFFIX"]

logger = logging.getLogger(__name__)

#: Suffix of the backups kept by an in-place re-score (``results.prev.parquet``).
PREV_SUFFIX = ".prev"


def _backup(path: Path) -> None:
    if path.is_file():
        shutil.copy2(path, path.with_name(path.stem + PREV_SUFFIX + path.suffix))


def rescore_run(
    run_dir: str | Path, extractor: str = "published", *, out: str | Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Re-score a run folder's saved outputs with ``extractor``.

    Parameters
    ----------
    run_dir : str or Path
        Run folder with ``items.parquet`` and ``run_meta.json`` at its root
        (``results.parquet`` is optional). Its tasks are looked up in the registry of its
        ``config.yaml`` (:func:`~runners.evaluate.config.read_run_tasks`), so a run's
        custom tasks (a grid's ``arithmetic``) are found without any global state.
    extractor : {"published", "strict"}
        Extraction rule (see :mod:`runners.evaluate.extract`).
    out : str or Path, optional
        Write the results here instead of updating the run folder (see the module docstring).

    Returns
    -------
    items_df : pandas.DataFrame
        The re-scored per-item table (:data:`kdanalysis.results.ITEM_COLUMNS`).
    results_df : pandas.DataFrame
        The run's results table after re-scoring: the new ``accuracy`` rows (one per
        task, Wilson CI) plus any other rows the saved results table had.

    Raises
    ------
    ConfigError
        If ``run_dir`` is not a folder, lacks ``run_meta.json``, holds a run that is not done,
        has an invalid ``config.yaml`` or a task that its registry lacks, or ``extractor`` is
        unknown.
    RunFolderError
        If the run folder's ``status.json`` is damaged.
    SchemaError
        If ``items.parquet`` is missing or invalid.
    """
    get_extractor(extractor)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder not found: {run_dir}")
    status = read_status(run_dir)
    if status is not None and status["state"] is not RunState.DONE:
        raise ConfigError(f"{run_dir}: the run is {status['state']}, not done; re-score it once it is done")
    meta = read_run_meta(run_dir)
    tasks = read_run_tasks(run_dir)
    meta = dataclasses.replace(meta, extractor=extractor, source=meta.source or str(run_dir))
    old_items = read_items(run_dir / ITEMS_FILE)
    items_df = rescore_items(old_items, extractor, tasks=tasks)
    accuracy = accuracy_results(items_df, meta, tasks=tasks)
    results_path = run_dir / RESULTS_FILE
    if results_path.is_file():
        old = read_results(results_path)
        kept = old[~((old["metric"] == "accuracy") & (old["run_id"] == meta.run_id))]
        results_df = validate_results(pd.concat([accuracy, kept], ignore_index=True))
    else:
        results_df = accuracy
    changed = int((old_items["pred"] != items_df["pred"]).sum())
    logger.info(
        "%s: %d of %d predictions changed with extractor %r", run_dir, changed, len(items_df), extractor
    )
    if out is not None:
        write_results(results_df, out)
        return items_df, results_df
    _backup(run_dir / ITEMS_FILE)
    _backup(results_path)
    write_items(items_df, run_dir / ITEMS_FILE)
    write_results(results_df, results_path)
    write_run_meta(run_dir, meta)
    return items_df, results_df
