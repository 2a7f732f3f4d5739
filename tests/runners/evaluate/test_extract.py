"""Answer extraction: the published rules on edge cases and on the shipped rationales."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdanalysis.errors import ConfigError
from runners.evaluate.extract import EXTRACTORS, answers_match, canonical_number, extract_answer
from runners.evaluate.tasks import bundled_tasks, load_items

TASKS = bundled_tasks()


@pytest.mark.parametrize(
    ("text", "pred"),
    [
        ("So 7 - 3 = 4 crayons. The answer is 4.", "4"),
        ("She pays $1,234.50 in total", "1234.5"),
        ("The temperature fell to -12 degrees", "-12"),
        ("3 apples and 2.0 pears", "2"),
        ("Answer: 5.", "5"),
        ("no digits at all", ""),
        ("", ""),
        ("9" * 400, "inf"),
    ],
)
def test_published_number_takes_the_last_number_without_commas(text: str, pred: str) -> None:
    assert extract_answer(text, TASKS["gsm8k"]) == pred


def test_number_comparison_uses_the_published_tolerance() -> None:
    assert answers_match(TASKS["gsm8k"], "4", "4.0")
    assert answers_match(TASKS["gsm8k"], "0.3334", "0.3333")
    assert not answers_match(TASKS["gsm8k"], "0.335", "0.333")
    assert not answers_match(TASKS["gsm8k"], "", "0")
    assert not answers_match(TASKS["gsm8k"], "inf", "4")
    assert canonical_number("4.") == "4" and canonical_number("-0.50") == "-0.5"


@pytest.mark.parametrize(
    ("text", "pred"),
    [
        ("The answer is (C).", "C"),
        ("Both trains ... The answer is (C).", "B"),  # published: first capital A-E anywhere
        ("the answer is c", ""),
        ("", ""),
    ],
)
def test_published_aqua_takes_the_first_capital_a_to_e(text: str, pred: str) -> None:
    assert extract_answer(text, TASKS["aqua"]) == pred


@pytest.mark.parametrize(
    ("task", "text", "pred"),
    [
        ("boolq", "the correct answer is false", "false"),
        ("boolq", "True, it is false", "false"),  # case-sensitive: "True" is not a label
        ("boolq", "it is untrue", "true"),  # no word boundary in the published regex
        ("piqa", "solution2 is better than solution1", "solution2"),
        ("arc_c", "answer5 or answer1", "answer5"),
        ("winogrande", "Option1", ""),
        ("hellaswag", "the correct answer is ending3", "ending3"),
        ("siqa", "I do not know", ""),
    ],
)
def test_published_labels_take_the_first_vocabulary_match(task: str, text: str, pred: str) -> None:
    assert extract_answer(text, TASKS[task]) == pred


@pytest.mark.parametrize(
    ("task", "text", "pred"),
    [
        ("gsm8k", "3 + 4 = 7. The answer is 7. Then 9 more.", "7"),
        ("gsm8k", "It costs 5 dollars, total 12", ""),
        ("multiarith", "The answer is 49 - 34 = 15 customers.", "15"),
        ("gsm8k", "the answer is 2. Wait, The final answer is: $1,500.", "1500"),
        ("aqua", "Both work. The answer is (C).", "C"),
        ("aqua", "The correct answer is E: 64 m", "E"),
        ("aqua", "The answer is Both", ""),
        ("boolq", "The correct answer is True", "true"),
        ("boolq", "the correct answer is untrue", ""),
        ("winogrande", "option1 ... the correct answer is Option2.", "option2"),
    ],
)
def test_strict_reads_only_the_last_explicit_statement(task: str, text: str, pred: str) -> None:
    assert extract_answer(text, TASKS[task], "strict") == pred


@pytest.mark.parametrize("extractor", EXTRACTORS)
@pytest.mark.parametrize("task", ["gsm8k", "aqua", "boolq"])
@pytest.mark.parametrize("text", [None, "", "   ", "\n\n", "😀 ✓ \x00", "the answer is"])
def test_empty_or_garbage_generation_is_wrong_not_a_crash(
    extractor: str, task: str, text: str | None
) -> None:
    pred = extract_answer(text, TASKS[task], extractor)
    assert pred == ""
    assert not answers_match(
        TASKS[task], pred, "true" if task == "boolq" else ("A" if task == "aqua" else "0")
    )


def test_unknown_extractor_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="published, strict"):
        extract_answer("4", TASKS["gsm8k"], "lenient")


@pytest.mark.parametrize("task", ["boolq", "piqa", "siqa", "winogrande", "arc_e", "arc_c", "obqa"])
def test_shipped_commonsense_label_sentences_extract_to_gold(shared_data: Path, task: str) -> None:
    items = load_items(TASKS[task], shared_data / "testsets")
    for extractor in EXTRACTORS:
        assert all(extract_answer(it.reference, TASKS[task], extractor) == it.gold for it in items)


def test_shipped_math_rationales_state_their_own_answer(shared_data: Path) -> None:
    # On "... The answer is N." rationales both extractors read the same N.
    items = load_items(TASKS["addsub"], shared_data / "testsets")
    stated = [it for it in items if it.reference.rstrip().endswith(".") and "The answer is" in it.reference]
    assert len(stated) > 300
    for it in stated:
        published = extract_answer(it.reference, TASKS["addsub"])
        strict = extract_answer(it.reference, TASKS["addsub"], "strict")
        assert answers_match(TASKS["addsub"], published, strict), it.reference
