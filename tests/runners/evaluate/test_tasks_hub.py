"""Hub row converters rebuild the released test items; the online loader fails cleanly offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from kdanalysis.errors import BackendUnavailableError, ConfigError, SchemaError
from runners.evaluate.hub import CONVERTERS, convert_row, load_hub_items
from runners.evaluate.tasks import bundled_tasks, load_items

TASKS = bundled_tasks()

# First item of each released file, as the original dataset on the hub stores it.
HUB_ROWS = {
    "boolq": {
        "question": "does ethanol take more energy make that produces",
        "answer": False,
        "passage": "...",
    },
    "winogrande": {
        "sentence": "Sarah was a much better surgeon than Maria so _ always got the easier cases.",
        "option1": "Sarah",
        "option2": "Maria",
        "answer": "2",
    },
    "siqa": {
        "context": "Tracy didn't go home that evening and resisted Riley's attacks.",
        "question": "What does Tracy need to do before this?",
        "answerA": "make a new plan",
        "answerB": "Go home and see Riley",
        "answerC": "Find somewhere to go",
        "label": "3",
    },
    "obqa": {
        "question_stem": "A person wants to start saving money so that they can afford a nice "
        "vacation at the end of the year. After looking over their budget and expenses, they decide "
        "the best way to save money is to",
        "choices": {
            "text": [
                "make more phone calls",
                "quit eating lunch out",
                "buy less with monopoly money",
                "have lunch with friends",
            ],
            "label": ["A", "B", "C", "D"],
        },
        "answerKey": "B",
    },
    "aqua": {
        "question": "Roberts has a property worth of $1023.65. But in a record his property worth "
        "is written as "
        "greatest positive even integer less than or equal to his property worth and it is divisible by 100. "
        "Find the difference between actual property and recorded property worth?",
        "options": ["A)23.65", "B)1000", "C)35.62", "D)2.65", "E)1023.65"],
        "correct": "A",
        "rationale": "...",
    },
}


@pytest.mark.parametrize("task", sorted(HUB_ROWS))
def test_converters_reproduce_the_released_items(shared_data: Path, task: str) -> None:
    released = load_items(TASKS[task], shared_data / "testsets")[0]
    converted = convert_row(TASKS[task].hub.converter, HUB_ROWS[task])  # type: ignore[union-attr]
    assert converted["instruction"] == released.instruction
    assert converted["answer"] == released.gold
    assert converted["input"] == ""


def test_every_hub_source_names_a_known_converter() -> None:
    for spec in TASKS.specs():
        if spec.hub is not None:
            assert spec.hub.converter in CONVERTERS, spec.id


def test_gsm8k_converter_splits_the_final_answer() -> None:
    item = convert_row("gsm8k", {"question": "Q?", "answer": "2 + 3 = 5 apples\n#### 1,005"})
    assert item["answer"] == "1005" and item["output"].endswith("The answer is 1005.")


def test_converter_errors_name_the_row() -> None:
    with pytest.raises(SchemaError, match="hub row 7"):
        convert_row("piqa", {"goal": "g"}, index=7)
    with pytest.raises(ConfigError, match="unknown hub converter"):
        convert_row("squad", {})


def test_loader_without_hub_source_or_without_datasets() -> None:
    with pytest.raises(ConfigError, match="no hub source"):
        load_hub_items("addsub")
    if importlib.util.find_spec("datasets") is None:
        with pytest.raises(BackendUnavailableError, match="pip install datasets"):
            load_hub_items("gsm8k")
