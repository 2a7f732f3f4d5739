"""Tasks for the evaluator: specs from the task table, custom JSON tasks, and the test-set loader.

Task facts (id, domain, answer type, label vocabulary, file name in the published
release, HF hub source, test size) live in the task table ``data/tasks.yaml``, read by
:mod:`kdanalysis.tasks` into frozen :class:`TaskSpec` records and a
:class:`TaskRegistry`. Nothing here is global state: the evaluator is handed a registry
(``EvalConfig.task_registry()``: the table plus the run's ``custom_tasks``), and a new
task is a row of the table or a :func:`json_task` added to a registry with
:meth:`TaskRegistry.with_tasks` -- never an edit of the evaluator.

Test-set files follow the published format: a JSON list of objects with
``instruction`` (str), optional ``input`` (str), optional ``output`` (str, a reference
rationale) and ``answer`` (the gold label). :func:`load_items` validates every item and
names the file, the item index and the field of the first problem it finds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.tasks import (
    CHOICE_LETTERS,
    AnswerType,
    HubSource,
    TaskRegistry,
    TaskSpec,
    bundled_tasks,
)

__all__ = [
    "HubSource",
    "TaskSpec",
    "TaskRegistry",
    "TaskItem",
    "bundled_tasks",
    "json_task",
    "task_file",
    "load_items",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskItem:
    """One test question in the published format.

    Attributes
    ----------
    item_id : str
        Stable id within the task: the 0-based position in the test file.
    instruction : str
    input : str
        ``""`` when the file has none.
    gold : str
        The gold ``answer`` as a string.
    reference : str
        The file's ``output`` field (a model-written rationale in the release), ``""`` if absent.
    """

    item_id: str
    instruction: str
    input: str
    gold: str
    reference: str = ""


def json_task(
    path: str | Path,
    *,
    domain: str,
    answer_type: AnswerType,
    labels: Iterable[str] = (),
    id: str | None = None,
) -> TaskSpec:
    """The spec of a task whose test set is one JSON file in the published format.

    Add it to a registry with :meth:`TaskRegistry.with_tasks`.

    Parameters
    ----------
    path : str or Path
        The test-set file (stored as an absolute path in the spec).
    domain, answer_type, labels
        As in :class:`TaskSpec`; ``choice_letter`` defaults to the letters A-E.
    id : str, optional
        Task id; defaults to the file stem, lower-cased, with ``-`` turned into ``_``.

    Returns
    -------
    TaskSpec
    """
    path = Path(path).resolve()
    task_id = id if id is not None else path.stem.lower().replace("-", "_")
    labels = tuple(labels) or (CHOICE_LETTERS if answer_type == "choice_letter" else ())
    return TaskSpec(id=task_id, domain=domain, answer_type=answer_type, labels=labels, file_name=str(path))


def task_file(spec: TaskSpec, data_dir: str | Path | None = None) -> Path:
    """Path of the task's test-set file (``file_name`` inside ``data_dir`` unless absolute).

    Raises
    ------
    ConfigError
        If the task has no file, the data directory is needed but not given, or the
        file does not exist (the message says how to get it).
    """
    if spec.file_name is None:
        hint = f". {spec.note}" if spec.note else "; load it from the hub instead"
        raise ConfigError(f"task {spec.id!r} has no test-set file{hint}")
    path = Path(spec.file_name)
    if not path.is_absolute():
        if data_dir is None:
            raise ConfigError(f"task {spec.id!r}: a data directory is needed to find {spec.file_name}")
        path = Path(data_dir) / path
    if not path.is_file():
        hint = f" {spec.note}" if spec.note else ""
        raise ConfigError(f"task {spec.id!r}: test-set file not found: {path}.{hint}")
    return path


def _field_error(path: Path, index: int, field: str, problem: str) -> SchemaError:
    return SchemaError(f"{path}: item {index}, field {field!r}: {problem}")


def _optional_str(path: Path, index: int, raw: Mapping[str, Any], field: str) -> str:
    value = raw.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _field_error(path, index, field, f"expected a string, got {type(value).__name__}")
    return value


def _gold(spec: TaskSpec, path: Path, index: int, raw: Mapping[str, Any]) -> str:
    if "answer" not in raw or raw["answer"] is None:
        raise _field_error(path, index, "answer", "missing")
    value = raw["answer"]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _field_error(path, index, "answer", f"expected a string or number, got {value!r}")
    gold = str(value).strip()
    if spec.answer_type == "number":
        try:
            float(gold.replace(",", ""))
        except ValueError:
            raise _field_error(path, index, "answer", f"{value!r} is not a number") from None
        return gold.replace(",", "")
    if gold not in spec.labels:
        raise _field_error(
            path, index, "answer", f"{value!r} is not one of the task's labels {', '.join(spec.labels)}"
        )
    return gold


def load_items(spec: TaskSpec, data_dir: str | Path | None = None) -> list[TaskItem]:
    """Load and validate a task's test set in the published JSON format.

    Parameters
    ----------
    spec : TaskSpec
        The task (``registry[task_id]``).
    data_dir : str or Path, optional
        Folder holding the release's test files (e.g.
        ``../shared/data/kd_generalization/testsets``); not needed for tasks whose file
        is an absolute path.

    Returns
    -------
    list of TaskItem
        In file order; ``item_id`` is the 0-based position.

    Raises
    ------
    ConfigError
        Missing file.
    SchemaError
        Invalid JSON, a top level that is not a list, or an invalid item (the message
        names the file, the item index and the field).
    """
    path = task_file(spec, data_dir)
    try:
        raw_items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SchemaError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if not isinstance(raw_items, list):
        raise SchemaError(f"{path}: expected a JSON list of items, got {type(raw_items).__name__}")
    if not raw_items:
        raise SchemaError(f"{path}: the test set is empty")
    items = []
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, dict):
            raise SchemaError(f"{path}: item {index}: expected an object, got {type(raw).__name__}")
        instruction = raw.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise _field_error(
                path, index, "instruction", f"expected a non-empty string, got {instruction!r}"
            )
        items.append(
            TaskItem(
                item_id=str(index),
                instruction=instruction,
                input=_optional_str(path, index, raw, "input"),
                gold=_gold(spec, path, index, raw),
                reference=_optional_str(path, index, raw, "output"),
            )
        )
    if spec.test_size is not None and len(items) != spec.test_size:
        logger.warning(
            "%s: %d items, the study's %s test set has %d", path, len(items), spec.id, spec.test_size
        )
    return items
