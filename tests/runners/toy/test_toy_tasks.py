"""Synthetic tasks: format of the published test sets, determinism, bad arguments."""

from __future__ import annotations

import json
import re

import pytest

from kdanalysis.errors import ConfigError
from runners.toy import ITEM_KEYS, make_arithmetic_task, make_choice_task, write_task_json
from runners.toy.tasks import OPERATIONS

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


def test_default_items_are_unchanged() -> None:
    # the shipped toy data, the tokenizer corpus and existing runs depend on these exact items
    first = make_arithmetic_task(1, seed=0)[0]
    assert first["instruction"] == (
        "Omar has 4 coins. Then Omar uses 3 coins. Then the number of coins Omar has triples. "
        "How many coins does Omar have now?"
    )
    assert first["answer"] == "3.0"
    defaults = make_arithmetic_task(30, seed=2, difficulty=3)
    assert defaults == make_arithmetic_task(30, seed=2, difficulty=3, max_number=None, operations=OPERATIONS)


def test_max_number_and_operations_bound_the_problems() -> None:
    items = make_arithmetic_task(200, seed=4, difficulty=1, max_number=9, operations=["add"])
    assert items == make_arithmetic_task(200, seed=4, difficulty=1, max_number=9, operations=("add",))
    assert items[:5] == make_arithmetic_task(5, seed=4, difficulty=1, max_number=9, operations=["add"])
    for item in items:
        ((left, op, right, result),) = _EQUATION.findall(item["output"])
        assert op == "+" and 2 <= int(left) <= 9 and 1 <= int(right) <= 9
        assert float(item["answer"]) == int(result) == int(left) + int(right)
    seen_ops = set()
    for item in make_arithmetic_task(200, seed=4, difficulty=3, max_number=5, operations=["add", "sub"]):
        equations = _EQUATION.findall(item["output"])
        seen_ops |= {op for _, op, _, _ in equations}
        start = int(equations[0][0])
        assert 2 <= start <= 5
        assert all(int(right) <= 5 for _, op, right, _ in equations if op == "+")
    assert seen_ops == {"+", "-"}


def test_int_answer_style_matches_addsub() -> None:
    items = make_arithmetic_task(10, seed=0, answer_style="int")
    assert all(re.fullmatch(r"\d+", item["answer"]) for item in items)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n": 0}, "n"),
        ({"n": 3, "difficulty": 0}, "difficulty"),
        ({"n": 2.5}, "n"),
        ({"n": 3, "answer_style": "text"}, "answer_style"),
        ({"n": 3, "max_number": 1}, "max_number"),
        ({"n": 3, "max_number": 4.0}, "max_number"),
        ({"n": 3, "max_number": True}, "max_number"),
        ({"n": 3, "operations": ["sub"]}, "operations"),
        ({"n": 3, "operations": ["add", "div"]}, "operations"),
        ({"n": 3, "operations": ["add", "add"]}, "operations"),
    ],
)
def test_arithmetic_bad_arguments(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^(unknown )?{field} "):
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
