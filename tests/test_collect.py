"""kdanalysis.collect: run folders → results contract + per-item table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kdanalysis.collect import collect_runs, find_run_folders, write_collected
from kdanalysis.errors import SchemaError
from kdanalysis.io import atomic_write_json
from kdanalysis.results import (
    ITEM_COLUMNS,
    read_items,
    read_results,
    results_frame,
    write_items,
    write_results,
)


def _run_folder(
    folder: Path, *, method: str = "sft", state: dict | None = None, items: bool = True, run_id: str = ""
) -> Path:
    rows = [
        {
            "study": "s",
            "domain": "math",
            "task": task,
            "student": "tiny",
            "method": method,
            "metric": "accuracy",
            "value": value,
            "n": 2,
            "seed": 6,
            "run_id": run_id,
        }
        for task, value in (("gsm8k", 50.0), ("svamp", 100.0))
    ]
    write_results(results_frame(rows), folder / "results.parquet")
    if items:
        write_items(
            pd.DataFrame(
                [
                    {
                        "run_id": run_id or folder.name,
                        "task": "gsm8k",
                        "item_id": str(i),
                        "prompt_hash": "h",
                        "output": "The answer is 1",
                        "pred": "1",
                        "gold": "1",
                        "correct": bool(i),
                        "n_tokens": 5,
                    }
                    for i in range(2)
                ]
            ),
            folder / "items.parquet",
        )
    atomic_write_json(folder / "status.json", state or {"state": "done"})
    return folder


def test_collects_finished_folders_only(tmp_path: Path) -> None:
    _run_folder(tmp_path / "cells" / "a" / "run", state={"state": "completed"})  # an eval run inside a cell
    atomic_write_json(tmp_path / "cells" / "a" / "status.json", {"state": "done"})
    _run_folder(tmp_path / "cells" / "b", method="fkl", state={"status": "done"}, items=False, run_id="b")
    _run_folder(tmp_path / "cells" / "c", method="rkl", state={"state": "failed"})  # failed cell
    _run_folder(tmp_path / "cells" / ".tmp-d-1", method="gkd", state={"state": "done"})  # in progress
    atomic_write_json(tmp_path / "cells" / "e" / "status.json", {"state": "running"})
    _run_folder(tmp_path / "cells" / "e" / "run", method="jsd")  # inside an unfinished cell

    found = [p.relative_to(tmp_path).as_posix() for p in find_run_folders(tmp_path)]
    assert found == ["cells/a/run", "cells/b"]
    results, items = collect_runs(tmp_path)
    assert sorted(results["method"].unique()) == ["fkl", "sft"] and len(results) == 4
    assert set(results["source"]) == {"cells/a/run", "cells/b"}
    assert set(results["run_id"]) == {"run", "b"}  # empty run_id → folder name
    assert list(items.columns) == list(ITEM_COLUMNS) and len(items) == 2


def test_duplicate_results_name_the_folders(tmp_path: Path) -> None:
    _run_folder(tmp_path / "x")
    _run_folder(tmp_path / "y")
    with pytest.raises(SchemaError, match=r"duplicate results \(4 rows.*\) from run folders: x, y"):
        collect_runs(tmp_path)


def test_bad_table_names_the_file(tmp_path: Path) -> None:
    _run_folder(tmp_path / "ok")
    bad = _run_folder(tmp_path / "bad", method="fkl")
    df = pd.read_parquet(bad / "results.parquet")
    df.loc[0, "metric"] = "perplexity"
    df.to_parquet(bad / "results.parquet")
    with pytest.raises(SchemaError, match=r"bad/results.parquet.*unknown metric 'perplexity'"):
        collect_runs(tmp_path)


def test_no_run_folders_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="no finished run folders"):
        collect_runs(tmp_path)
    with pytest.raises(SchemaError, match="runs folder not found"):
        collect_runs(tmp_path / "missing")


def test_write_collected_and_cli(tmp_path: Path) -> None:
    _run_folder(tmp_path / "runs" / "r1")
    _run_folder(tmp_path / "runs" / "r2", method="fkl")
    results_path, items_path = write_collected(tmp_path / "runs")
    assert results_path == tmp_path / "runs" / "results.parquet"
    assert len(read_results(results_path)) == 4 and len(read_items(items_path)) == 4
    out = tmp_path / "out"
    command = [sys.executable, "-m", "kdanalysis", "collect", str(tmp_path / "runs"), "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "4 result rows" in proc.stdout and (out / "items.parquet").is_file()
    pd.testing.assert_frame_equal(read_results(out / "results.parquet"), read_results(results_path))
