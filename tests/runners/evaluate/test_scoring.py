"""Per-item tables, accuracy rows with Wilson intervals, and run metadata."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from statsmodels.stats.proportion import proportion_confint

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.results import ITEM_COLUMNS, RESULT_COLUMNS
from runners.evaluate.prompts import format_prompt, prompt_hash
from runners.evaluate.scoring import (
    RunMeta,
    accuracy_results,
    read_run_meta,
    rescore_items,
    score_outputs,
    write_run_meta,
)
from runners.evaluate.tasks import TaskItem, bundled_tasks, load_items

TASKS = bundled_tasks()

META = RunMeta(run_id="run-a", student="Qwen2.5-0.5B", method="fkl", teacher="Qwen2.5-3B", temperature=2.0)
ITEMS = [
    TaskItem("0", "2+2?", "", "4"),
    TaskItem("1", "3+3?", "", "6.0"),
    TaskItem("2", "1+0?", "", "1"),
    TaskItem("3", "5-5?", "", "0"),
]


def test_score_outputs_builds_items_and_accuracy_rows() -> None:
    outputs = ["2+2 = 4. The answer is 4.", "The answer is 6", None, "I cannot tell"]
    items_df, results_df = score_outputs(TASKS["gsm8k"], ITEMS, outputs, run_meta=META, n_tokens=[9, 4, 0, 3])
    assert list(items_df.columns) == list(ITEM_COLUMNS)
    assert items_df["pred"].tolist() == ["4", "6", "", ""]
    assert items_df["correct"].tolist() == [True, True, False, False]
    assert items_df["output"].tolist()[2] == ""
    assert items_df["prompt_hash"][0] == prompt_hash(format_prompt("2+2?"))
    assert items_df["n_tokens"].tolist() == [9, 4, 0, 3]

    assert list(results_df.columns) == list(RESULT_COLUMNS)
    row = results_df.iloc[0]
    low, high = proportion_confint(2, 4, alpha=0.05, method="wilson")
    assert (row.metric, row.task, row.domain, row.n) == ("accuracy", "gsm8k", "math", 4)
    assert row.value == pytest.approx(50.0)
    assert (row.ci_low, row.ci_high) == pytest.approx((100 * low, 100 * high))
    assert (row.student, row.teacher, row.method, row.teacher_kind) == (
        "Qwen2.5-0.5B",
        "Qwen2.5-3B",
        "fkl",
        "task_aware",
    )
    assert row.temperature == 2.0 and row.run_id == "run-a"


def test_explicit_prompts_are_hashed_and_lengths_are_checked() -> None:
    items_df, _ = score_outputs(TASKS["gsm8k"], ITEMS[:1], ["4"], run_meta=META, prompts=["custom prompt"])
    assert items_df["prompt_hash"][0] == prompt_hash("custom prompt")
    with pytest.raises(ConfigError, match="3 outputs for 4 items"):
        score_outputs(TASKS["gsm8k"], ITEMS, ["1", "2", "3"], run_meta=META)
    with pytest.raises(ConfigError, match="no items"):
        score_outputs(TASKS["gsm8k"], [], [], run_meta=META)


def test_rescore_items_and_accuracy_per_task(shared_data: Path) -> None:
    items = load_items(TASKS["aqua"], shared_data / "testsets")
    items_df, published = score_outputs(TASKS["aqua"], items, [it.reference for it in items], run_meta=META)
    strict_df = rescore_items(items_df, "strict", tasks=TASKS)
    strict = accuracy_results(strict_df, META, tasks=TASKS)
    assert (strict_df["pred"] != items_df["pred"]).sum() > 0
    assert strict.iloc[0].value == pytest.approx(100 * strict_df["correct"].mean())
    assert published.iloc[0].value == pytest.approx(100 * items_df["correct"].mean())
    # re-scoring with the same extractor reproduces the first scoring exactly
    assert rescore_items(items_df, "published", tasks=TASKS).equals(items_df)


def test_accuracy_results_rejects_empty_tables() -> None:
    items_df, _ = score_outputs(TASKS["gsm8k"], ITEMS, ["4"] * 4, run_meta=META)
    with pytest.raises(SchemaError, match="empty"):
        accuracy_results(items_df.iloc[:0], META, tasks=TASKS)


def test_run_meta_round_trip_and_validation(tmp_path: Path) -> None:
    write_run_meta(tmp_path, META)
    back = read_run_meta(tmp_path)
    assert back == META and back.teacher_kind == "task_aware"
    assert math.isnan(RunMeta(run_id="r", student="s").key_columns()["temperature"])
    assert RunMeta(run_id="r", student="s").teacher_kind == "none"
    with pytest.raises(SchemaError, match="unknown method 'distill'"):
        RunMeta(run_id="r", student="s", method="distill")
    with pytest.raises(ConfigError, match="teacher_kind must be 'none'"):
        RunMeta(run_id="r", student="s", teacher_kind="base")
    with pytest.raises(ConfigError, match="unknown key.*studnt"):
        RunMeta.from_dict({"run_id": "r", "studnt": "s"})
    with pytest.raises(ConfigError, match="run metadata not found"):
        read_run_meta(tmp_path / "nowhere")
    (tmp_path / "run_meta.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid JSON"):
        read_run_meta(tmp_path)
