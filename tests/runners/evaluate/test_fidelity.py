"""Teacher-student fidelity: agreement, BLEU (vs sacrebleu directly) and teacher-forced KL."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sacrebleu

from kdanalysis.errors import ConfigError
from kdanalysis.results import RESULT_COLUMNS, read_results, write_items
from runners.evaluate.fidelity import fidelity_frame, fidelity_rows, join_runs
from runners.evaluate.scoring import RunMeta, score_outputs, write_run_meta
from runners.evaluate.tasks import TaskItem

TEACHER = RunMeta(run_id="t-run", student="Qwen2.5-3B", method="sft")
STUDENT = RunMeta(run_id="s-run", student="Qwen2.5-0.5B", method="rkl", teacher="Qwen2.5-3B", temperature=1.0)
MATH = [TaskItem(str(i), f"question {i}", "", g) for i, g in enumerate(["4", "10", "7", "3"])]
TEACHER_MATH = [
    "2 + 2 = 4. The answer is 4.",
    "5 * 2 = 10. The answer is 10.",
    "9 - 2 = 7. The answer is 7.",
    "6 / 2 = 3. The answer is 3.",
]
STUDENT_MATH = [
    "2 + 2 = 4. The answer is 4.",  # same answer, same text
    "5 + 2 = 7. The answer is 7.",  # disagrees
    "9 - 2 = 7. So the answer is 7.0",  # agrees numerically (7 vs 7.0)
    "I am not sure.",  # nothing extracted: never agrees
]
BOOL = [TaskItem("0", "q", "", "true"), TaskItem("1", "q", "", "false")]


def _items(meta: RunMeta, math_outputs: list[str], bool_outputs: list[str]) -> pd.DataFrame:
    a, _ = score_outputs("gsm8k", MATH, math_outputs, run_meta=meta)
    b, _ = score_outputs("boolq", BOOL, bool_outputs, run_meta=meta)
    return pd.concat([a, b], ignore_index=True)


def _run(path: Path, meta: RunMeta, items: pd.DataFrame) -> Path:
    write_items(items, path / "items.parquet")
    write_run_meta(path, meta)
    return path


def test_agreement_and_bleu_per_task() -> None:
    s = _items(STUDENT, STUDENT_MATH, ["the correct answer is true", "the correct answer is true"])
    t = _items(TEACHER, TEACHER_MATH, ["the correct answer is true", "the correct answer is false"])
    rows = fidelity_frame(s, t, STUDENT, TEACHER)
    assert list(rows.columns) == list(RESULT_COLUMNS)
    get = rows.set_index(["task", "metric"])["value"]
    assert get["gsm8k", "agreement"] == pytest.approx(50.0)
    assert get["boolq", "agreement"] == pytest.approx(50.0)
    assert get["gsm8k", "bleu"] == pytest.approx(sacrebleu.corpus_bleu(STUDENT_MATH, [TEACHER_MATH]).score)
    assert 0 < get["gsm8k", "bleu"] < 100
    row = rows[(rows.task == "gsm8k") & (rows.metric == "agreement")].iloc[0]
    assert (row.student, row.teacher, row.method, row.teacher_kind) == (
        "Qwen2.5-0.5B",
        "Qwen2.5-3B",
        "rkl",
        "task_aware",
    )
    assert row.run_id == "s-run|t-run" and row.n == 4
    assert row.ci_low < row.value < row.ci_high
    assert set(rows["metric"]) == {"agreement", "bleu"}


def test_identical_runs_agree_fully_and_score_bleu_100() -> None:
    t = _items(TEACHER, TEACHER_MATH, ["the correct answer is true", "the correct answer is false"])
    s = t.assign(run_id="s-run")
    rows = fidelity_frame(s, t, STUDENT, TEACHER).set_index(["task", "metric"])["value"]
    assert rows["gsm8k", "agreement"] == 100.0 and rows["gsm8k", "bleu"] == pytest.approx(100.0)


def test_sft_student_against_teacher_gets_teacher_kind_from_the_teacher_run() -> None:
    sft = RunMeta(run_id="sft", student="Qwen2.5-0.5B", method="sft")
    base_teacher = RunMeta(run_id="tb", student="Qwen2.5-3B", method="base")
    t = _items(base_teacher, TEACHER_MATH, ["true", "false"])
    rows = fidelity_frame(t.assign(run_id="sft"), t, sft, base_teacher)
    assert set(rows["teacher_kind"]) == {"base"} and set(rows["teacher"]) == {"Qwen2.5-3B"}


def test_mismatched_item_sets_report_counts() -> None:
    t = _items(TEACHER, TEACHER_MATH, ["true", "false"])
    s = t.iloc[1:].assign(run_id="s-run")
    with pytest.raises(
        ConfigError, match=r"student 5, teacher 6, common 5; only in student: 0 \[\]; only in teacher: 1"
    ):
        join_runs(s, t)
    other_prompt = t.assign(run_id="s-run")
    other_prompt.loc[0, "prompt_hash"] = "0" * 16
    with pytest.raises(ConfigError, match="differ in prompt_hash on 1 item"):
        join_runs(other_prompt, t)


def test_fidelity_rows_from_run_folders(tmp_path: Path) -> None:
    s_dir = _run(tmp_path / "s", STUDENT, _items(STUDENT, STUDENT_MATH, ["true", "true"]))
    t_dir = _run(tmp_path / "t", TEACHER, _items(TEACHER, TEACHER_MATH, ["true", "false"]))
    rows = fidelity_rows(s_dir, t_dir, out=tmp_path / "fid.parquet")
    assert read_results(tmp_path / "fid.parquet").equals(rows)
    assert len(rows) == 4 and rows.loc[rows.metric == "bleu", "ci_low"].isna().all()
    with pytest.raises(ConfigError, match="no model recorded"):
        fidelity_rows(s_dir, t_dir, kl=True)
