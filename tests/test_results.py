"""The results contract: validation, round trips, and clear errors on bad tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdanalysis.errors import SchemaError
from kdanalysis.results import (
    ITEM_COLUMNS,
    KEY_COLUMNS,
    MODEL_COLUMNS,
    RESULT_COLUMNS,
    check_choice,
    read_items,
    read_models,
    read_results,
    results_frame,
    validate_items,
    validate_models,
    validate_results,
    write_items,
    write_models,
    write_results,
)


def _records() -> list[dict]:
    base = dict(study="s", domain="math", task="gsm8k", student="Qwen2.5-0.5B", metric="accuracy")
    return [
        {**base, "method": "base", "value": 6.82, "n": 1319},
        {**base, "method": "sft", "value": 30.1, "n": 1319},
        {**base, "method": "fkl", "teacher": "Qwen2.5-3B", "temperature": 1.0, "value": 35.0},
        {**base, "method": "fkl", "teacher": "Qwen2.5-3B", "temperature": 2.0, "value": 36.0},
        {
            **base,
            "method": "fkl",
            "teacher": "Qwen2.5-3B",
            "teacher_kind": "base",
            "temperature": 1.0,
            "value": 10.0,
        },
    ]


def test_results_frame_fills_defaults_and_orders_columns() -> None:
    df = results_frame(_records())
    assert tuple(df.columns) == RESULT_COLUMNS
    assert df.loc[0, "teacher"] == "none" and df.loc[0, "teacher_kind"] == "none"
    assert df.loc[2, "teacher_kind"] == "task_aware"
    assert np.isnan(df.loc[0, "temperature"])
    assert str(df["n"].dtype) == "Int64" and pd.isna(df.loc[2, "n"])
    assert df["seed"].dtype == np.int64


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_round_trip(tmp_path, suffix) -> None:
    df = results_frame(_records())
    path = write_results(df, tmp_path / f"r{suffix}")
    back = read_results(path)
    pd.testing.assert_frame_equal(back, df, check_dtype=True)


def test_missing_column_named() -> None:
    df = results_frame(_records()).drop(columns=["metric"])
    with pytest.raises(SchemaError, match="missing column.*metric"):
        validate_results(df)


def test_nan_in_key_names_column_and_rows() -> None:
    df = results_frame(_records())
    df.loc[3, "student"] = None
    with pytest.raises(SchemaError, match=r"student.*|.*\[3\]") as err:
        validate_results(df)
    assert "[3]" in str(err.value) and "student" in str(err.value)


def test_wrong_type_named() -> None:
    df = results_frame(_records())
    df["value"] = df["value"].astype(object)
    df.loc[1, "value"] = "high"
    with pytest.raises(SchemaError, match=r"'high'.*\[1\].*value"):
        validate_results(df)


def test_duplicate_key_rows_named() -> None:
    df = pd.concat([results_frame(_records()), results_frame(_records()[2:3])])
    with pytest.raises(SchemaError, match=r"duplicate key.*\[2, 5\]"):
        validate_results(df)


def test_nan_temperature_is_a_key_value() -> None:
    rec = _records()[1]
    with pytest.raises(SchemaError, match="duplicate"):
        results_frame([rec, {**rec, "value": 1.0}])


@pytest.mark.parametrize(
    ("column", "value", "allowed"),
    [("method", "distill", "fkl"), ("metric", "f1", "accuracy"), ("teacher_kind", "big", "task_aware")],
)
def test_unknown_ids_list_allowed(column, value, allowed) -> None:
    df = results_frame(_records())
    df.loc[2, column] = value
    with pytest.raises(SchemaError, match=f"unknown {column} '{value}'.*allowed:.*{allowed}"):
        validate_results(df)


def test_teacher_kind_consistency() -> None:
    df = results_frame(_records())
    df.loc[0, "teacher_kind"] = "task_aware"
    with pytest.raises(SchemaError, match="teacher_kind must be 'none'"):
        validate_results(df)


def test_not_a_results_csv_is_one_clear_error(tmp_path) -> None:
    path = tmp_path / "other.csv"
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(path, index=False)
    with pytest.raises(SchemaError, match=f"{path.name}.*missing column"):
        read_results(path)


def test_missing_file_and_bad_suffix(tmp_path) -> None:
    with pytest.raises(SchemaError, match="not found"):
        read_results(tmp_path / "nope.parquet")
    bad = tmp_path / "r.xlsx"
    bad.write_text("x")
    with pytest.raises(SchemaError, match="unsupported file type"):
        read_results(bad)


def test_invalid_write_leaves_nothing(tmp_path) -> None:
    df = results_frame(_records())
    df.loc[0, "metric"] = "nonsense"
    with pytest.raises(SchemaError):
        write_results(df, tmp_path / "r.parquet")
    assert list(tmp_path.iterdir()) == []


def test_key_columns_are_result_columns() -> None:
    assert set(KEY_COLUMNS) <= set(RESULT_COLUMNS)


def test_models_table(tmp_path) -> None:
    models = pd.DataFrame(
        {
            "model": ["a", "b"],
            "family": ["f", "f"],
            "params_b": [0.5, 3],
            "vocab_size": [151936, None],
            "role": ["student", "both"],
        }
    )
    out = validate_models(models)
    assert tuple(out.columns) == MODEL_COLUMNS
    pd.testing.assert_frame_equal(read_models(write_models(out, tmp_path / "m.csv")), out)
    with pytest.raises(SchemaError, match="params_b must be > 0"):
        validate_models(models.assign(params_b=[0, 1]))
    with pytest.raises(SchemaError, match="duplicate model"):
        validate_models(models.assign(model=["a", "a"]))


def test_items_table(tmp_path) -> None:
    items = pd.DataFrame(
        {
            "run_id": ["r", "r"],
            "task": ["gsm8k"] * 2,
            "item_id": ["0", "1"],
            "prompt_hash": ["ab", "cd"],
            "output": ["The answer is 3", None],
            "pred": ["3", ""],
            "gold": ["3", "4"],
            "correct": [True, False],
            "n_tokens": [5, 0],
        }
    )
    out = validate_items(items)
    assert tuple(out.columns) == ITEM_COLUMNS and out.loc[1, "output"] == ""
    pd.testing.assert_frame_equal(read_items(write_items(out, tmp_path / "i.parquet")), out)
    with pytest.raises(SchemaError, match="duplicate item"):
        validate_items(items.assign(item_id=["0", "0"]))
    with pytest.raises(SchemaError, match="non-boolean"):
        validate_items(items.assign(correct=["yes", "no"]))


def test_check_choice_lists_allowed() -> None:
    assert check_choice("method", "fkl", ["fkl", "rkl"]) == "fkl"
    with pytest.raises(SchemaError, match="unknown method 'x'; allowed: fkl, rkl"):
        check_choice("method", "x", ["fkl", "rkl"])
