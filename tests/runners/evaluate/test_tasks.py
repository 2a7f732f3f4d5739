"""Task registries built from the task table, custom JSON tasks, and the published test-set loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdanalysis.errors import ConfigError, SchemaError
from runners.evaluate.config import EvalConfig
from runners.evaluate.tasks import TaskRegistry, TaskSpec, bundled_tasks, json_task, load_items

TASKS = bundled_tasks()

STUDY_TASKS = {
    "math": ["gsm8k", "svamp", "multiarith", "singleeq", "addsub", "aqua"],
    "commonsense": ["boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa"],
}


def _write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_the_fourteen_study_tasks_are_registered() -> None:
    for domain, ids in STUDY_TASKS.items():
        assert set(ids) <= set(TASKS.ids(domain=domain))
    assert TASKS["aqua"].answer_type == "choice_letter"
    assert TASKS["gsm8k"].answer_type == "number"
    assert TASKS["winogrande"].labels == ("option1", "option2")
    assert TASKS["arc_c"].labels == tuple(f"answer{i}" for i in range(1, 6))


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown task 'gsm9k'.*gsm8k.*obqa"):
        TASKS["gsm9k"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"id": "Bad-Id", "domain": "math", "answer_type": "number"}, "lower-case"),
        ({"id": "t", "domain": "math", "answer_type": "float"}, "answer_type"),
        ({"id": "t", "domain": "math", "answer_type": "label"}, "label vocabulary"),
        ({"id": "t", "domain": "math", "answer_type": "choice_letter", "labels": ("A", "Z")}, "A-E"),
        ({"id": "t", "domain": "", "answer_type": "number"}, "domain"),
    ],
)
def test_invalid_specs_are_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TaskSpec(**kwargs)


def test_register_refuses_silent_redefinition() -> None:
    spec = TaskSpec("gsm8k", "math", "label", ("x",))
    with pytest.raises(ConfigError, match="already registered"):
        TASKS.with_tasks(spec)
    assert TASKS["gsm8k"].answer_type == "number"
    assert TASKS.with_tasks(TASKS["gsm8k"]) == TASKS  # the same spec again is a no-op
    replaced = TASKS.with_tasks(spec, replace=True)
    assert replaced["gsm8k"] is spec and list(replaced) == list(TASKS)  # same place in the order
    assert TASKS["gsm8k"].answer_type == "number"  # registries are immutable: the table is unchanged


@pytest.mark.parametrize(
    ("task", "file_name", "size"),
    [("gsm8k", "gsm8k.json", 1319), ("aqua", "AQuA.json", 254), ("siqa", "social_i_qa.json", 1954)],
)
def test_shipped_test_sets_load_with_the_published_sizes(
    shared_data: Path, task: str, file_name: str, size: int
) -> None:
    items = load_items(TASKS[task], shared_data / "testsets")
    assert TASKS[task].file_name == file_name
    assert len(items) == size == TASKS[task].test_size
    assert items[0].item_id == "0" and items[-1].item_id == str(size - 1)
    assert all(it.input == "" for it in items)


def test_missing_hellaswag_says_where_to_get_it(shared_data: Path) -> None:
    # the released repository has it (generative/dataset/hellaswag/test.json, LLM-Adapters' file);
    # only the bundled test-set folder lacks it
    with pytest.raises(ConfigError) as info:
        load_items(TASKS["hellaswag"], shared_data / "testsets")
    message = str(info.value)
    assert "hellaswag.json" in message and "not in the" not in message
    assert "generative/dataset/hellaswag/test.json of the LCS2-IIITD/KD_generalization" in message
    assert "AGI-Edgerunners/LLM-Adapters" in message


def test_json_task_registration_and_loading(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "Toy-Add.json",
        [
            {"instruction": "1+1?", "input": "", "output": "2", "answer": 2},
            {"instruction": "2+3?", "answer": "5"},
        ],
    )
    spec = json_task(path, domain="toy", answer_type="number")
    registry = TASKS.with_tasks(spec)
    assert spec.id == "toy_add" and registry["toy_add"] is spec and "toy_add" not in TASKS
    items = load_items(registry["toy_add"])
    assert [it.gold for it in items] == ["2", "5"]
    assert items[1].input == "" and items[1].reference == ""


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ([{"instruction": "q", "answer": "1"}, {"instruction": "q"}], r"item 1, field 'answer': missing"),
        ([{"instruction": "", "answer": "1"}], r"item 0, field 'instruction'"),
        (
            [{"instruction": "q", "answer": "1"}, {"instruction": "q", "answer": "one"}],
            r"item 1.*not a number",
        ),
        ([{"instruction": "q", "input": 3, "answer": "1"}], r"item 0, field 'input'"),
        ([{"instruction": "q", "answer": True}], r"item 0, field 'answer'"),
        (["just text"], r"item 0: expected an object"),
        ({"instruction": "q"}, r"expected a JSON list"),
        ([], r"empty"),
    ],
)
def test_malformed_files_name_file_index_and_field(tmp_path: Path, payload: object, match: str) -> None:
    path = _write(tmp_path / "bad.json", payload)
    spec = json_task(path, domain="toy", answer_type="number", id="bad_toy")
    with pytest.raises(SchemaError, match=match) as info:
        load_items(spec)
    assert str(path) in str(info.value)


def test_label_outside_vocabulary_and_broken_json(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "yn.json", [{"instruction": "q", "answer": "true"}, {"instruction": "q", "answer": "yes"}]
    )
    spec = json_task(path, domain="toy", answer_type="label", labels=("true", "false"))
    with pytest.raises(SchemaError, match=r"yn\.json: item 1, field 'answer': 'yes' is not one of"):
        load_items(spec)
    path.write_text('[{"instruction": "q",\n "answer": }]', encoding="utf-8")
    with pytest.raises(SchemaError, match=r"yn\.json: invalid JSON at line 2"):
        load_items(spec)


def test_an_eval_config_carries_its_custom_tasks_in_its_registry(tmp_path: Path) -> None:
    path = _write(tmp_path / "arithmetic.json", [{"instruction": "1+1?", "answer": "2"}])
    custom = {"id": "arithmetic", "file": str(path), "domain": "toy", "answer_type": "number"}
    config = EvalConfig(model="m", tasks=["arithmetic", "gsm8k"], custom_tasks=[custom])
    specs = config.task_specs()
    assert [s.id for s in specs] == ["arithmetic", "gsm8k"]
    assert specs[0].domain == "toy" and specs[0].file_name == str(path.resolve())
    assert load_items(specs[0])[0].gold == "2"
    assert TASKS["arithmetic"].file_name is None  # the table's toy entry is not touched
    # the registry is rebuilt from the (serialisable) config alone: no process state
    again = EvalConfig.model_validate(config.resolved())
    assert again.task_registry() == config.task_registry()
    with pytest.raises(ConfigError, match="unknown task 'arith'.*arithmetic"):
        EvalConfig(model="m", tasks=["arith"]).task_specs()


def test_registries_refuse_duplicates_and_non_specs() -> None:
    with pytest.raises(ConfigError, match="'gsm8k' is defined twice"):
        TaskRegistry([TASKS["gsm8k"], TASKS["gsm8k"]])
    with pytest.raises(ConfigError, match="TaskSpec records, got str"):
        TaskRegistry(["gsm8k"])  # type: ignore[list-item]
