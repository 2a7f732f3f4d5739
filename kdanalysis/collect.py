"""Collect finished run folders into the results contract and the per-item table.

A *run folder* (:mod:`kdanalysis.runfolder`) is collected when its ``status.json``
says ``done`` (in any dialect :func:`kdanalysis.runfolder.read_status` reads) and it
holds a ``results.parquet`` (and usually an ``items.parquet``): an evaluation run inside
a grid cell (``RUNS_DIR/cells/<id>/run``), a fidelity cell, or a run of
``python -m runners.evaluate`` written directly under ``RUNS_DIR``. Not searched: folders
whose names start with ``.`` (work in progress, trash), the sub-folders of a run folder,
and folders whose ``status.json`` says anything but done (a failed grid cell's partial
outputs are never collected). A damaged ``status.json`` stops the collection with a
:class:`~kdanalysis.errors.RunFolderError` naming it.

This module is torch-free: ``kdanalysis report RUNS_DIR`` uses it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from kdanalysis.errors import SchemaError
from kdanalysis.results import (
    ITEM_COLUMNS,
    KEY_COLUMNS,
    read_items,
    read_results,
    validate_items,
    validate_results,
    write_results_and_items,
)
from kdanalysis.runfolder import ITEMS_FILE, RESULTS_FILE, STATUS_FILE, is_done

__all__ = ["find_run_folders", "collect_runs", "write_collected"]

logger = logging.getLogger(__name__)

_MAX_NAMED = 5


def find_run_folders(
    runs_dir: str | os.PathLike[str], within: Iterable[str | os.PathLike[str]] | None = None
) -> list[Path]:
    """Finished run folders under ``runs_dir`` (see the module docstring), sorted.

    Parameters
    ----------
    runs_dir : path
    within : iterable of paths, optional
        Search only these sub-folders of ``runs_dir`` (e.g. the cells of the current grid,
        so that cells of an earlier version of a grid are left out).

    Raises
    ------
    SchemaError
        If ``runs_dir`` is not a folder.
    RunFolderError
        If a ``status.json`` on the way is damaged (the message names it).
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise SchemaError(f"runs folder not found: {root}")
    tops = [root] if within is None else [root / p for p in within]
    found: list[Path] = []
    for top in tops:
        found.extend(_walk(top))
    return sorted(found)


def _walk(top: Path) -> list[Path]:
    found: list[Path] = []
    for current, dirs, files in os.walk(top):
        here = Path(current)
        if STATUS_FILE in files and not is_done(here):
            dirs[:] = []
            continue
        if RESULTS_FILE in files and STATUS_FILE in files:
            found.append(here)
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return found


def _read_raw(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path}: cannot be read as a parquet table ({exc})") from exc


def _fill_ids(df: pd.DataFrame, folder: Path, root: Path) -> pd.DataFrame:
    rel = folder.relative_to(root).as_posix() or "."
    out = df.copy()
    if "run_id" not in out.columns:
        out["run_id"] = ""
    blank = out["run_id"].isna() | (out["run_id"].astype(str) == "")
    out["run_id"] = out["run_id"].astype(object).where(~blank, folder.name)
    out["source"] = rel
    out["_folder"] = rel
    return out


def _check_duplicates(results: pd.DataFrame) -> None:
    dup = results.duplicated(subset=list(KEY_COLUMNS), keep=False)
    if dup.any():
        folders = sorted(results.loc[dup, "_folder"].unique())
        first = results.loc[dup].iloc[0]
        key = ", ".join(
            f"{c}={first[c]}"
            for c in ("domain", "task", "student", "teacher", "method", "temperature", "seed", "metric")
        )
        shown = ", ".join(folders[:_MAX_NAMED]) + (
            f" (+{len(folders) - _MAX_NAMED} more)" if len(folders) > _MAX_NAMED else ""
        )
        raise SchemaError(f"duplicate results ({int(dup.sum())} rows, e.g. {key}) from run folders: {shown}")


def collect_runs(
    runs_dir: str | os.PathLike[str], *, within: Iterable[str | os.PathLike[str]] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the results table and the per-item table from the run folders under ``runs_dir``.

    ``within`` restricts the search to sub-folders (see :func:`find_run_folders`).
    ``source`` is set to the run folder relative to ``runs_dir`` (where the row was found;
    producers may have recorded a temporary path); an empty ``run_id`` becomes the
    folder's name.

    Returns
    -------
    results : pandas.DataFrame
        The results contract (:data:`kdanalysis.results.RESULT_COLUMNS`), validated.
    items : pandas.DataFrame
        The per-item table (:data:`kdanalysis.results.ITEM_COLUMNS`: run_id, task, item_id,
        prompt_hash, output, pred, gold, correct, n_tokens), validated; empty when no run
        folder has an ``items.parquet``.

    Raises
    ------
    SchemaError
        If no finished run folder is found, a folder's table breaks the contract (the
        message names the file), or two folders produce the same result key (the
        message names the folders).
    """
    root = Path(runs_dir)
    folders = find_run_folders(root, within)
    if not folders:
        raise SchemaError(f"no finished run folders (status.json done + results.parquet) under {root}")
    results, items = [], []
    for folder in folders:
        results.append(_fill_ids(_read_raw(folder / RESULTS_FILE), folder, root))
        if (folder / ITEMS_FILE).is_file():
            items.append(_read_raw(folder / ITEMS_FILE))
    # validating the concatenation once is much faster than file by file; on a problem,
    # the files are checked one by one so that the message names the culprit
    try:
        table = validate_results(
            pd.concat(results, ignore_index=True).drop(columns="_folder"),
            what=f"results collected from {root}",
        )
    except SchemaError:
        for folder in folders:
            read_results(folder / RESULTS_FILE)
        _check_duplicates(pd.concat(results, ignore_index=True))
        raise
    try:
        item_table = validate_items(
            pd.concat(items, ignore_index=True)
            if items
            else pd.DataFrame({c: pd.Series(dtype=object) for c in ITEM_COLUMNS}),
            what=f"items collected from {root}",
        )
    except SchemaError:
        for folder in folders:
            if (folder / ITEMS_FILE).is_file():
                read_items(folder / ITEMS_FILE)
        raise
    logger.info(
        "collected %d result rows and %d items from %d run folders under %s",
        len(table),
        len(item_table),
        len(folders),
        root,
    )
    return table, item_table


def write_collected(
    runs_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    within: Iterable[str | os.PathLike[str]] | None = None,
) -> tuple[Path, Path]:
    """Collect ``runs_dir`` and write ``results.parquet`` and ``items.parquet``, both or neither.

    Parameters
    ----------
    runs_dir : path
    out_dir : path, optional
        Destination folder (default: ``runs_dir``).
    within : iterable of paths, optional
        As in :func:`collect_runs`.

    Returns
    -------
    (Path, Path)
        The results and items files.
    """
    results, items = collect_runs(runs_dir, within=within)
    out = Path(out_dir) if out_dir is not None else Path(runs_dir)
    return write_results_and_items(results, items, out / RESULTS_FILE, out / ITEMS_FILE)
