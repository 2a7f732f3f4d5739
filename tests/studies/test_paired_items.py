"""studies.paired_items: each KD run against the SFT run of its student, item by item."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from kdanalysis.errors import SchemaError
from kdanalysis.io import atomic_write_json
from kdanalysis.report import load_report_data
from kdanalysis.results import results_frame, write_items, write_results
from kdanalysis.stats import DegenerateDataWarning
from kdanalysis.studies.paired_items import PAIRED_ITEM_COLUMNS, paired_item_tests

CELLS = {
    "s-sft": {"student": "s", "method": "sft", "seed": 1},
    "s-fkl": {"student": "s", "method": "fkl", "teacher": "t", "temperature": 1.0, "seed": 1},
    "s-rkl": {"student": "s", "method": "rkl", "teacher": "t", "temperature": 2.0, "seed": 2},
    "u-fkl": {"student": "u", "method": "fkl", "teacher": "t", "temperature": 1.0, "seed": 1},
}
#: Per task and run, which of 12 items are answered correctly.
OUTCOMES = {
    "alpha": {
        "s-sft": [1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0],
        "s-fkl": [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1],
        "s-rkl": [1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0],
        "u-fkl": [1] * 12,
    },
    "beta": {
        "s-sft": [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1],
        "s-fkl": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
        "s-rkl": [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1],
        "u-fkl": [0] * 12,
    },
}


def _study() -> tuple[pd.DataFrame, pd.DataFrame]:
    results = results_frame(
        {
            "study": "x",
            "domain": "d",
            "task": task,
            "metric": "accuracy",
            "value": 100 * np.mean(outcome),
            "run_id": run,
            **CELLS[run],
        }
        for task, runs in OUTCOMES.items()
        for run, outcome in runs.items()
    )
    items = pd.DataFrame(
        {
            "run_id": run,
            "task": task,
            "item_id": str(i),
            "prompt_hash": f"h{i}",
            "output": "",
            "pred": "",
            "gold": "",
            "correct": bool(c),
            "n_tokens": pd.NA,
        }
        for task, runs in OUTCOMES.items()
        for run, outcome in runs.items()
        for i, c in enumerate(outcome)
    )
    return results, items


def test_counts_p_values_and_holm_against_the_binomial_test() -> None:
    table = paired_item_tests(*_study(), n_boot=2000)
    assert list(table.columns) == list(PAIRED_ITEM_COLUMNS)
    assert sorted(zip(table["kd_run"], table["sft_run"], table["pairing"], strict=True)) == [
        ("s-fkl", "s-sft", "same seed"),
        ("s-fkl", "s-sft", "same seed"),
        ("s-rkl", "s-sft", "other seed"),
        ("s-rkl", "s-sft", "other seed"),
    ]  # u has no SFT run
    fkl = table[table["kd_run"] == "s-fkl"].set_index("task")
    p_raw = {}
    for task in ("alpha", "beta"):
        kd, sft = np.array(OUTCOMES[task]["s-fkl"], bool), np.array(OUTCOMES[task]["s-sft"], bool)
        kd_only, sft_only = int(np.sum(kd & ~sft)), int(np.sum(~kd & sft))
        row = fkl.loc[task]
        assert (row["n"], row["n_kd_only"], row["n_sft_only"], row["n_discordant"]) == (
            12,
            kd_only,
            sft_only,
            kd_only + sft_only,
        )
        assert row["diff"] == pytest.approx(100 * (kd.mean() - sft.mean()))
        assert row["acc_kd"] == pytest.approx(100 * kd.mean())
        p_raw[task] = binomtest(kd_only, kd_only + sft_only, 0.5).pvalue
        assert row["p_mcnemar"] == pytest.approx(p_raw[task])
        assert row["ci_low"] <= row["diff"] <= row["ci_high"]
    low, high = sorted(p_raw.values())
    holm = {p: min(1.0, 2 * low) if p == low else max(min(1.0, 2 * low), high) for p in p_raw.values()}
    for task, p in p_raw.items():
        assert fkl.loc[task, "p_holm"] == pytest.approx(holm[p])
    assert fkl.loc["alpha", "temperature"] == 1.0 and fkl.loc["alpha", "teacher"] == "t"
    assert set(table["domain"]) == {"d"}


def test_items_missing_for_one_run_give_a_nan_row_with_a_note() -> None:
    results, items = _study()
    items = items[~((items["run_id"] == "s-sft") & (items["task"] == "beta") & (items["item_id"] == "0"))]
    with pytest.warns(DegenerateDataWarning, match="beta"):
        table = paired_item_tests(results, items, n_boot=500)
    beta = table[(table["kd_run"] == "s-fkl") & (table["task"] == "beta")].iloc[0]
    assert np.isnan(beta["p_mcnemar"]) and "only for 's-fkl'" in beta["note"]
    alpha = table[(table["kd_run"] == "s-fkl") & (table["task"] == "alpha")].iloc[0]
    assert alpha["p_holm"] == pytest.approx(alpha["p_mcnemar"])  # a family of one task


def test_one_run_id_for_two_cells_is_refused() -> None:
    results, items = _study()
    results.loc[results["run_id"] == "s-rkl", "run_id"] = "s-fkl"
    with pytest.raises(SchemaError, match="run_id 's-fkl' names more than one"):
        paired_item_tests(results, items)


def test_no_items_give_an_empty_table() -> None:
    results, items = _study()
    table = paired_item_tests(results, items.iloc[:0])
    assert table.empty and list(table.columns) == list(PAIRED_ITEM_COLUMNS)


def test_runs_folder_of_kdanalysis_gives_the_same_pairs(tmp_path: Path) -> None:
    """Run folders of kdanalysis' runners (status done, results.parquet, items.parquet)."""
    results, items = _study()
    for run in ("s-sft", "s-fkl"):
        folder = tmp_path / "runs" / run
        folder.mkdir(parents=True)
        write_results(results[results["run_id"] == run], folder / "results.parquet")
        write_items(items[items["run_id"] == run], folder / "items.parquet")
        atomic_write_json(folder / "status.json", {"state": "done"})
    collected, found_models, _, found_items = load_report_data(tmp_path / "runs")
    assert found_models is None and len(found_items) == 2 * 2 * 12
    table = paired_item_tests(collected, found_items, n_boot=500)
    expected = paired_item_tests(results, items, n_boot=500)
    expected = expected[expected["kd_run"] == "s-fkl"].reset_index(drop=True)
    pd.testing.assert_frame_equal(table, expected)
