"""Synthetic tasks: format of the published test sets, determinism, bad arguments."""

from __future__ import annotations

import json
import re

import pytest

from kdanalysis.errors import ConfigError
from runners.toy import ITEM_KEYS, make_arithmetic_task, make_choice_task, write_task_json

_EQUATION = re.compile(r"(\d+) ([-+*]) (\d+) = (\d+)")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def test_arithmetic_items_have_the_test_set_format() -> None:
    items = make_arithmetic_task(50, seed=3, difficulty=3)
    assert len(items) == 50
    for item in items:
        assert tuple(item) == ITEM_KEYS
        assert item["input"] == ""
        assert item["output"].startswith("\nA: ")
        stated = re.search(r"The answer is (\d+)\.$", item["output"])
        assert stated is not None
        assert float(item["answer"]) == float(stated.group(1))
        assert item["answer"].endswith(".0")


def test_arithmetic_rationale_steps_are_correct_and_chained() -> None:
    for item in make_arithmetic_task(100, seed=1, difficulty=4):
        equations = _EQUATION.findall(item["output"])
        assert len(equations) == 4
        previous = None
        for left, op, right, result in equations:
            assert _OPS[op](int(left), int(right)) == int(result)
            assert previous is None or int(left) == previous
            assert int(result) >= 1
            previous = int(result)
        assert float(item["answer"]) == previous


def test_arithmetic_is_deterministic_and_prefix_stable() -> None:
    assert make_arithmetic_task(20, seed=5) == make_arithmetic_task(20, seed=5)
    assert make_arithmetic_task(20, seed=5)[:7] == make_arithmetic_task(7, seed=5)
    assert make_arithmetic_task(20, seed=5) != make_arithmetic_task(20, seed=6)


def test_int_answer_style_matches_addsub() -> None:
    items = make_arithmetic_task(10, seed=0, answer_style="int")
    assert all(re.fullmatch(r"\d+", item["answer"]) for item in items)


@pytest.mark.parametrize(
    "kwargs", [{"n": 0}, {"n": 3, "difficulty": 0}, {"n": 3, "answer_style": "text"}, {"n": 2.5}]
)
def test_arithmetic_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        make_arithmetic_task(**kwargs)


def test_choice_items_use_the_commonsense_label_format() -> None:
    items = make_choice_task(40, seed=2, n_choices=4)
    for item in items:
        assert tuple(item) == ITEM_KEYS
        assert item["instruction"].endswith("Answer format: answer1/answer2/answer3/answer4")
        assert item["output"] == f"the correct answer is {item['answer']}"
        values = [int(v) for v in re.findall(r"Answer\d: (\d+)", item["instruction"])]
        pick = max(values) if "largest" in item["instruction"] else min(values)
        assert item["answer"] == f"answer{values.index(pick) + 1}"
    assert len({item["answer"] for item in items}) > 1
    with pytest.raises(ConfigError):
        make_choice_task(3, n_choices=6)


def test_write_task_json_round_trips_and_refuses_bad_items(tmp_path) -> None:
    items = make_arithmetic_task(5, seed=0)
    path = write_task_json(tmp_path / "sub" / "toy.json", items)
    assert json.loads(path.read_text()) == items
    with pytest.raises(ConfigError, match="item 1"):
        write_task_json(tmp_path / "bad.json", [items[0], {"instruction": "x", "output": "y"}])
    with pytest.raises(ConfigError, match="strings"):
        write_task_json(tmp_path / "bad.json", [{**items[0], "answer": 3}])
