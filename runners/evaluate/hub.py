"""Online loader: the study's test sets rebuilt from the original datasets on the HF hub.

Each task of the task table may carry a :class:`~runners.evaluate.tasks.HubSource` (dataset name,
configuration, split, converter). :func:`load_hub_items` downloads that split with the
``datasets`` library and converts every row into the published test-item format
(``instruction, input, output, answer``), with the instruction templates of the released
files (e.g. ``"Please answer the following question with true or false, question: ...?
\\n\\nAnswer format: true/false"``); :func:`write_hub_test_set` saves it as a test-set
file that :func:`~runners.evaluate.tasks.load_items` reads.

Not exercised offline: our machines have no hub access, so only the row converters
(pure functions, :data:`CONVERTERS`) are tested, on rows shaped like the hub's. SingleEq
and AddSub have no hub source registered (no canonical hub copy); use the released files.
The HellaSwag template follows the other shipped commonsense files; it could not be
compared with a released HellaSwag file, which the release lacks.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kdanalysis.errors import BackendUnavailableError, ConfigError, SchemaError
from kdanalysis.io import atomic_write_text
from runners.evaluate.tasks import TaskItem, bundled_tasks, load_items

__all__ = ["CONVERTERS", "convert_row", "load_hub_items", "write_hub_test_set"]

logger = logging.getLogger(__name__)

Row = Mapping[str, Any]
Converted = dict[str, str]


def _item(instruction: str, answer: str, output: str = "") -> Converted:
    return {"instruction": instruction, "input": "", "output": output, "answer": answer}


def _label_item(instruction: str, label: str) -> Converted:
    return _item(instruction, label, f"the correct answer is {label}")


def _choices(prefix: str, texts: Sequence[str], sep: str) -> str:
    return sep.join(f"{prefix}{i}: {text}" for i, text in enumerate(texts, start=1))


def _answer_format(prefix: str, n: int) -> str:
    return "Answer format: " + "/".join(f"{prefix}{i}" for i in range(1, n + 1))


def _gsm8k(row: Row) -> Converted:
    rationale, _, answer = str(row["answer"]).rpartition("####")
    answer = answer.strip().replace(",", "")
    return _item(str(row["question"]), answer, f"{rationale.strip()} The answer is {answer}.")


def _svamp(row: Row) -> Converted:
    return _item(str(row["question_with_body"]), str(float(row["answer"])))


def _multiarith(row: Row) -> Converted:
    return _item(str(row["question"]), str(float(row["final_ans"])))


def _aqua(row: Row) -> Converted:
    options = " ".join(re.sub(r"^([A-E])\)\s*", r"(\1) ", str(opt)) for opt in row["options"])
    return _item(
        f"{row['question']} Answer Choices: {options}", str(row["correct"]), str(row.get("rationale", ""))
    )


def _boolq(row: Row) -> Converted:
    question = f"Please answer the following question with true or false, question: {row['question']}?"
    return _label_item(f"{question}\n\nAnswer format: true/false", "true" if row["answer"] else "false")


def _piqa(row: Row) -> Converted:
    body = _choices("Solution", [row["sol1"], row["sol2"]], "\n\n")
    instruction = (
        f"Please choose the correct solution to the question: {row['goal']}\n\n{body}\n\n"
        f"{_answer_format('solution', 2)}"
    )
    return _label_item(instruction, f"solution{int(row['label']) + 1}")


def _multiple_choice(question: str, texts: Sequence[str], correct: int) -> Converted:
    instruction = (
        f"Please choose the correct answer to the question: {question}\n\n"
        f"{_choices('Answer', texts, ' ')}\n\n{_answer_format('answer', len(texts))}"
    )
    return _label_item(instruction, f"answer{correct + 1}")


def _siqa(row: Row) -> Converted:
    texts = [row["answerA"], row["answerB"], row["answerC"]]
    return _multiple_choice(f"{row['context']} {row['question']}", texts, int(row["label"]) - 1)


def _arc(row: Row) -> Converted:
    labels = list(row["choices"]["label"])
    return _multiple_choice(
        str(row["question"]), list(row["choices"]["text"]), labels.index(row["answerKey"])
    )


def _obqa(row: Row) -> Converted:
    labels = list(row["choices"]["label"])
    return _multiple_choice(
        str(row["question_stem"]), list(row["choices"]["text"]), labels.index(row["answerKey"])
    )


def _winogrande(row: Row) -> Converted:
    instruction = (
        "Please choose the correct answer to fill in the blank to complete the given sentence: "
        f"{row['sentence']}\n\nOption1: {row['option1']} Option2: {row['option2']} "
        f"{_answer_format('option', 2)}"
    )
    return _label_item(instruction, f"option{row['answer']}")


def _hellaswag(row: Row) -> Converted:
    instruction = (
        "Please choose the correct ending to complete the given sentence: "
        f"{row['activity_label']}: {row['ctx']}"
        f"\n\n{_choices('Ending', list(row['endings']), ' ')}\n\n{_answer_format('ending', 4)}"
    )
    return _label_item(instruction, f"ending{int(row['label']) + 1}")


#: Row converters by name (the ``converter`` of a :class:`~runners.evaluate.tasks.HubSource`).
CONVERTERS: dict[str, Callable[[Row], Converted]] = {
    "gsm8k": _gsm8k,
    "svamp": _svamp,
    "multiarith": _multiarith,
    "aqua": _aqua,
    "boolq": _boolq,
    "piqa": _piqa,
    "siqa": _siqa,
    "arc": _arc,
    "obqa": _obqa,
    "winogrande": _winogrande,
    "hellaswag": _hellaswag,
}


def convert_row(converter: str, row: Row, *, index: int = 0) -> Converted:
    """Convert one hub row with the named converter into a published-format item.

    Raises
    ------
    ConfigError
        Unknown converter name.
    SchemaError
        The row lacks a field the converter needs or has an unexpected value (names the
        row index).
    """
    try:
        convert = CONVERTERS[converter]
    except KeyError:
        raise ConfigError(f"unknown hub converter {converter!r}; known: {', '.join(CONVERTERS)}") from None
    try:
        return convert(row)
    except (KeyError, ValueError, TypeError) as exc:
        raise SchemaError(f"hub row {index} cannot be converted by {converter!r}: {exc!r}") from exc


def load_hub_items(task: str) -> list[dict[str, str]]:
    """Download a task's original test split and convert it to the published format.

    Parameters
    ----------
    task : str
        Id of a task of the task table with a hub source.

    Returns
    -------
    list of dict
        Items with keys ``instruction, input, output, answer`` (the JSON test-set format).

    Raises
    ------
    ConfigError
        The task has no hub source.
    BackendUnavailableError
        ``datasets`` is not installed or the hub cannot be reached.
    """
    spec = bundled_tasks()[task]
    if spec.hub is None:
        raise ConfigError(f"task {spec.id!r} has no hub source; use its released test file. {spec.note}")
    try:
        from datasets import load_dataset
    except ImportError as exc:
        raise BackendUnavailableError("loading from the HF hub needs `pip install datasets`") from exc
    source = spec.hub
    try:
        rows = load_dataset(source.path, source.config, split=source.split)
    except Exception as exc:  # network, authentication or hub errors of any kind
        raise BackendUnavailableError(
            f"cannot load {source.path} ({source.config}, {source.split}) from the HF hub: {exc}"
        ) from exc
    return [convert_row(source.converter, row, index=i) for i, row in enumerate(rows)]


def write_hub_test_set(task: str, data_dir: str | Path) -> Path:
    """Build a task's test set from the hub and save it as ``data_dir/<file_name>``.

    The written file is read back with :func:`~runners.evaluate.tasks.load_items` to
    validate it. Returns the path.
    """
    spec = bundled_tasks()[task]
    if spec.file_name is None or Path(spec.file_name).is_absolute():
        raise ConfigError(f"task {spec.id!r} has no release file name to write in {data_dir}")
    items = load_hub_items(spec.id)
    path = Path(data_dir) / spec.file_name
    atomic_write_text(path, json.dumps(items, indent=1, ensure_ascii=False) + "\n")
    loaded: list[TaskItem] = load_items(spec, data_dir)
    logger.info("wrote %d %s items to %s", len(loaded), spec.id, path)
    return path
