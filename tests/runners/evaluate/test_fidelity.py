"""Teacher-student fidelity: agreement, BLEU (vs sacrebleu directly) and teacher-forced KL."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sacrebleu

from kdanalysis.errors import ConfigError
from kdanalysis.results import RESULT_COLUMNS, read_results, write_items
from runners.evaluate.fidelity import fidelity_frame, fidelity_rows, join_runs, teacher_forced_kl
from runners.evaluate.scoring import RunMeta, score_outputs, write_run_meta
from runners.evaluate.tasks import TaskItem, TaskRegistry, TaskSpec, bundled_tasks, json_task, load_items

TASKS = bundled_tasks()

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
    a, _ = score_outputs(TASKS["gsm8k"], MATH, math_outputs, run_meta=meta)
    b, _ = score_outputs(TASKS["boolq"], BOOL, bool_outputs, run_meta=meta)
    return pd.concat([a, b], ignore_index=True)


def _run(path: Path, meta: RunMeta, items: pd.DataFrame) -> Path:
    write_items(items, path / "items.parquet")
    write_run_meta(path, meta)
    return path


def test_agreement_and_bleu_per_task() -> None:
    s = _items(STUDENT, STUDENT_MATH, ["the correct answer is true", "the correct answer is true"])
    t = _items(TEACHER, TEACHER_MATH, ["the correct answer is true", "the correct answer is false"])
    rows = fidelity_frame(s, t, STUDENT, TEACHER, tasks=TASKS)
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
    rows = fidelity_frame(s, t, STUDENT, TEACHER, tasks=TASKS).set_index(["task", "metric"])["value"]
    assert rows["gsm8k", "agreement"] == 100.0 and rows["gsm8k", "bleu"] == pytest.approx(100.0)


def test_sft_student_against_teacher_gets_teacher_kind_from_the_teacher_run() -> None:
    sft = RunMeta(run_id="sft", student="Qwen2.5-0.5B", method="sft")
    base_teacher = RunMeta(run_id="tb", student="Qwen2.5-3B", method="base")
    t = _items(base_teacher, TEACHER_MATH, ["true", "false"])
    rows = fidelity_frame(t.assign(run_id="sft"), t, sft, base_teacher, tasks=TASKS)
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


# --- teacher-forced KL with the toy models ---------------------------------------------------

PROMPTS = ["Below is a question. How many apples?", "Q: 3 + 4 = ?"]
RESPONSES = ["Tom has 3 apples and buys 2 more. The answer is 5.", "3 + 4 = 7. The answer is 7."]


@pytest.fixture(scope="module")
def toy() -> dict:
    pytest.importorskip("torch")
    from runners.toy import build_model, build_tokenizer

    return {
        "tok": build_tokenizer(),
        "a": build_model("qwen2", "tiny", seed=0),
        "a_again": build_model("qwen2", "tiny", seed=0),
        "b": build_model("qwen2", "tiny", seed=1),
        "padded": build_model("qwen2", "small", seed=2, pad_to_multiple_of=64),
    }


def test_kl_of_identical_models_is_zero_and_of_different_models_positive(toy: dict) -> None:
    same = teacher_forced_kl(toy["a"], toy["a_again"], toy["tok"], PROMPTS, RESPONSES)
    diff = teacher_forced_kl(toy["b"], toy["a"], toy["tok"], PROMPTS, RESPONSES)
    n_tokens = [len(toy["tok"](r, add_special_tokens=False)["input_ids"]) for r in RESPONSES]
    assert [n for _, n in same] == [n for _, n in diff] == n_tokens
    assert all(abs(kl) < 1e-5 for kl, _ in same)
    assert all(kl > 0 for kl, _ in diff)


def test_kl_matches_torch_distributions_on_one_item(toy: dict) -> None:
    import torch
    from torch.distributions import Categorical, kl_divergence

    tok, student, teacher = toy["tok"], toy["b"], toy["a"]
    ((kl, n),) = teacher_forced_kl(student, teacher, tok, PROMPTS[:1], RESPONSES[:1])
    p_ids = tok(PROMPTS[0])["input_ids"]
    ids = torch.tensor([p_ids + tok(RESPONSES[0], add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        t_logits, s_logits = teacher(ids).logits[0], student(ids).logits[0]
    positions = slice(len(p_ids) - 1, ids.shape[1] - 1)
    expected = kl_divergence(Categorical(logits=t_logits[positions]), Categorical(logits=s_logits[positions]))
    assert n == expected.numel()
    assert kl == pytest.approx(float(expected.sum()), rel=1e-4)


def test_kl_batches_with_padding_and_padded_vocabulary(toy: dict) -> None:
    one_by_one = [
        teacher_forced_kl(toy["b"], toy["padded"], toy["tok"], [p], [r])[0]
        for p, r in zip(PROMPTS, RESPONSES, strict=True)
    ]
    batched = teacher_forced_kl(
        toy["b"], toy["padded"], toy["tok"], PROMPTS + [""], RESPONSES + [""], batch_size=3
    )
    assert toy["padded"].config.vocab_size > toy["b"].config.vocab_size
    assert [n for _, n in batched[:2]] == [n for _, n in one_by_one]
    assert [kl for kl, _ in batched[:2]] == pytest.approx([kl for kl, _ in one_by_one], rel=1e-4)
    assert batched[2] == (0.0, 0)


@pytest.fixture
def toy_task(tmp_path: Path) -> TaskSpec:
    from runners.toy import make_arithmetic_task, write_task_json

    path = write_task_json(tmp_path / "toy_fid.json", make_arithmetic_task(5, seed=3))
    return json_task(path, domain="math", answer_type="number", id="toy_fid")


def test_fidelity_rows_with_kl_from_saved_toy_models(tmp_path: Path, toy: dict, toy_task: TaskSpec) -> None:
    from runners.toy import save_toy_model

    teacher_path = save_toy_model(tmp_path / "teacher", "qwen2", "small", seed=0)
    student_path = save_toy_model(tmp_path / "student", "qwen2", "tiny", seed=1)
    items = load_items(toy_task)
    runs = {}
    for name, path, outputs in [
        ("t", teacher_path, [it.reference for it in items]),
        ("s", student_path, ["The answer is 3."] * len(items)),
        ("same", teacher_path, [it.reference for it in items]),
    ]:
        meta = RunMeta(run_id=name, student=f"toy-{name}", method="sft", model=str(path))
        runs[name] = _run(tmp_path / name, meta, score_outputs(toy_task, items, outputs, run_meta=meta)[0])
    tasks = TaskRegistry([toy_task])
    rows = fidelity_rows(runs["s"], runs["t"], kl=True, tasks=tasks).set_index("metric")
    assert rows.loc["kl", "value"] > 0 and rows.loc["kl", "n"] == len(items)
    assert rows.loc["kl", "task"] == toy_task.id
    same = fidelity_rows(runs["same"], runs["t"], kl=True, tasks=tasks).set_index("metric")
    assert same.loc["kl", "value"] == pytest.approx(0.0, abs=1e-5)
    assert same.loc["agreement", "value"] == 100.0
