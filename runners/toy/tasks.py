"""Synthetic tasks in the published test-set JSON format, for tests and the CPU demo.

Two generators, both deterministic functions of ``(n, seed, ...)`` (``random.Random(seed)``,
independent of any global random state):

``make_arithmetic_task``
    Multi-step word problems in the math test-set format (GSM8K/MultiArith style): a
    person starts with some items and a chain of ``difficulty`` operations (buy/find →
    ``+``, give/lose → ``-``, "every bag ... doubles/triples" → ``*``) changes the count.
    ``output`` is a step-by-step rationale, one equation per step, ending with
    ``"The answer is N."``; ``answer`` is the gold number as the shipped files write it
    (``"15.0"`` like GSM8K/SVAMP/MultiArith, or ``"15"`` like AddSub/SingleEq).
    ``max_number`` and ``operations`` make the task small enough for the CPU demo's toy
    models to learn (e.g. one-digit numbers and ``+``/``-`` only).
``make_choice_task``
    Multiple-choice questions in the commonsense format (ARC/OBQA style): "which number
    is the largest/smallest", choices ``Answer1: … Answer2: …``, ``output`` = ``"the
    correct answer is answerK"``, ``answer`` = ``"answerK"``.

Every item is a dict with exactly the keys ``instruction, input, output, answer``
(``input`` is always ``""``, as in the shipped test sets).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from kdanalysis.errors import ConfigError
from kdanalysis.io import atomic_write_json

__all__ = [
    "ITEM_KEYS",
    "AnswerStyle",
    "OPERATIONS",
    "Operation",
    "check_operations",
    "make_arithmetic_task",
    "make_choice_task",
    "write_task_json",
]

#: Keys of every item (the shipped test-set files use these four).
ITEM_KEYS: tuple[str, ...] = ("instruction", "input", "output", "answer")

AnswerStyle = Literal["float", "int"]
#: Operations of an arithmetic step: ``add`` (buy/find), ``sub`` (give/lose), ``mul`` (doubles/triples).
Operation = Literal["add", "sub", "mul"]
OPERATIONS: tuple[Operation, ...] = ("add", "sub", "mul")

_NAMES = ("Tom", "Anna", "Sam", "Maria", "Ben", "Lucy", "Omar", "Mia", "Jack", "Nina", "Leo", "Emma")
_ITEMS = ("apples", "marbles", "books", "stickers", "pencils", "cookies", "coins", "shells", "cards", "toys")
_GAIN_VERBS = ("buys", "finds", "gets", "receives", "picks up")
_LOSS_VERBS = ("gives away", "loses", "sells", "uses", "eats")
_FACTORS = {2: "doubles", 3: "triples"}
_MAX_START = 50
_MAX_STEP = 20


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _format_answer(value: int, style: AnswerStyle) -> str:
    if style == "float":
        return f"{float(value)}"
    if style == "int":
        return str(value)
    raise ConfigError(f"unknown answer_style {style!r}; allowed: float, int")


def check_operations(operations: Sequence[str]) -> tuple[str, ...]:
    """``operations`` as a tuple if it is valid for :func:`make_arithmetic_task`, else ConfigError."""
    ops = tuple(operations)
    unknown = [op for op in ops if op not in OPERATIONS]
    if unknown or "add" not in ops or len(set(ops)) != len(ops):
        raise ConfigError(
            f"operations must be distinct names from {', '.join(OPERATIONS)} including 'add' "
            f"(the one step that always applies), got {list(ops)!r}"
        )
    return ops


def _arithmetic_item(
    rng: random.Random,
    difficulty: int,
    style: AnswerStyle,
    max_start: int,
    max_step: int,
    operations: tuple[str, ...],
) -> dict[str, str]:
    name = rng.choice(_NAMES)
    items = rng.choice(_ITEMS)
    count = rng.randint(2, max_start)
    question = [f"{name} has {count} {items}."]
    steps = [f"{name} starts with {count} {items}."]
    for _ in range(difficulty):
        kinds = ["add"]
        if count >= 2 and "sub" in operations:
            kinds.append("sub")
        if count <= 2 * max_start and "mul" in operations:
            kinds.append("mul")
        kind = rng.choice(kinds)
        if kind == "add":
            amount = rng.randint(1, max_step)
            question.append(f"Then {name} {rng.choice(_GAIN_VERBS)} {amount} more {items}.")
            steps.append(
                f"After getting {amount} more, {name} has {count} + {amount} = {count + amount} {items}."
            )
            count += amount
        elif kind == "sub":
            amount = rng.randint(1, count - 1)
            question.append(f"Then {name} {rng.choice(_LOSS_VERBS)} {amount} {items}.")
            steps.append(f"After losing {amount}, {name} has {count} - {amount} = {count - amount} {items}.")
            count -= amount
        else:
            factor = rng.choice(tuple(_FACTORS))
            question.append(f"Then the number of {items} {name} has {_FACTORS[factor]}.")
            steps.append(
                f"The number {_FACTORS[factor]}, so {name} has {count} * {factor} = {count * factor} {items}."
            )
            count *= factor
    question.append(f"How many {items} does {name} have now?")
    rationale = "\nA: " + " ".join(steps) + f" The answer is {count}."
    return {
        "instruction": " ".join(question),
        "input": "",
        "output": rationale,
        "answer": _format_answer(count, style),
    }


def make_arithmetic_task(
    n: int,
    seed: int = 0,
    difficulty: int = 2,
    *,
    answer_style: AnswerStyle = "float",
    max_number: int | None = None,
    operations: Sequence[str] = OPERATIONS,
) -> list[dict[str, str]]:
    """Generate ``n`` multi-step arithmetic word problems with rationales.

    Parameters
    ----------
    n : int
        Number of items (> 0).
    seed : int
        Seed of the generator; the same arguments always give the same items, and the first
        ``m`` items of a larger ``n`` equal those of ``n=m``.
    difficulty : int
        Number of operations after the starting count (>= 1); each adds one rationale step.
    answer_style : {"float", "int"}
        How ``answer`` is written: ``"15.0"`` (GSM8K, SVAMP, MultiArith) or ``"15"`` (AddSub).
    max_number : int or None
        Largest starting count and largest amount added (>= 2); ``None``: 50 and 20.
        Amounts subtracted keep the count >= 1; ``mul`` applies while the count is at most
        twice the largest starting count.
    operations : sequence of str
        Step kinds to draw from, a subset of :data:`OPERATIONS` that includes ``"add"``.

    Returns
    -------
    list of dict
        Keys ``instruction`` (the question), ``input`` (``""``), ``output`` (``"\\nA: "`` +
        one sentence per step + ``"The answer is N."``), ``answer`` (the gold number as text).

    Raises
    ------
    ConfigError
        If ``n`` or ``difficulty`` is not a positive integer, ``max_number`` is below 2,
        ``operations`` is not as described, or ``answer_style`` is unknown (the message
        names the argument).
    """
    _check_positive("n", n)
    _check_positive("difficulty", difficulty)
    _format_answer(0, answer_style)
    ops = check_operations(operations)
    if max_number is None:
        max_start, max_step = _MAX_START, _MAX_STEP
    else:
        if not isinstance(max_number, int) or isinstance(max_number, bool) or max_number < 2:
            raise ConfigError(f"max_number must be an integer >= 2 (counts start at 2), got {max_number!r}")
        max_start = max_step = max_number
    rng = random.Random(seed)
    return [_arithmetic_item(rng, difficulty, answer_style, max_start, max_step, ops) for _ in range(n)]


def _choice_item(rng: random.Random, n_choices: int) -> dict[str, str]:
    numbers = rng.sample(range(1, 100), n_choices)
    largest = rng.random() < 0.5
    target = max(numbers) if largest else min(numbers)
    correct = numbers.index(target) + 1
    choices = " ".join(f"Answer{i}: {value}" for i, value in enumerate(numbers, start=1))
    labels = "/".join(f"answer{i}" for i in range(1, n_choices + 1))
    instruction = (
        "Please choose the correct answer to the question: "
        f"Which number is the {'largest' if largest else 'smallest'}?\n\n{choices}\n\nAnswer format: {labels}"
    )
    return {
        "instruction": instruction,
        "input": "",
        "output": f"the correct answer is answer{correct}",
        "answer": f"answer{correct}",
    }


def make_choice_task(n: int, seed: int = 0, n_choices: int = 4) -> list[dict[str, str]]:
    """Generate ``n`` multiple-choice questions in the commonsense label format.

    Parameters
    ----------
    n : int
        Number of items (> 0).
    seed : int
        Seed of the generator (deterministic, as in :func:`make_arithmetic_task`).
    n_choices : int
        Number of choices, 2 to 5 (labels ``answer1`` … ``answer5`` as in ARC/OBQA/SIQA).

    Returns
    -------
    list of dict
        Keys ``instruction`` (question, ``AnswerK: value`` choices and the ``Answer format:``
        line), ``input`` (``""``), ``output`` (``"the correct answer is answerK"``),
        ``answer`` (``"answerK"``).

    Raises
    ------
    ConfigError
        If ``n`` is not a positive integer or ``n_choices`` is outside 2..5.
    """
    _check_positive("n", n)
    if not isinstance(n_choices, int) or not 2 <= n_choices <= 5:
        raise ConfigError(f"n_choices must be an integer from 2 to 5, got {n_choices!r}")
    rng = random.Random(seed)
    return [_choice_item(rng, n_choices) for _ in range(n)]


def write_task_json(path: str | Path, items: Sequence[dict[str, str]]) -> Path:
    """Write items as a test-set JSON list (atomic) and return the path.

    Parameters
    ----------
    path : str or Path
        Destination ``.json`` file; parent folders are created.
    items : sequence of dict
        Items with exactly the keys :data:`ITEM_KEYS` (string values).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ConfigError
        If an item lacks a key, has an extra key or a non-string value (the message names
        the item index).
    """
    for index, item in enumerate(items):
        if set(item) != set(ITEM_KEYS):
            raise ConfigError(
                f"task item {index} has keys {sorted(item)}; expected exactly {list(ITEM_KEYS)}"
            )
        bad = [key for key in ITEM_KEYS if not isinstance(item[key], str)]
        if bad:
            raise ConfigError(f"task item {index}: fields {bad} must be strings")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, list(items))
    return path
