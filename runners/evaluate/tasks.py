"""Task registry: the 14 tasks of the study as small specs, and their test-set loader.

A task is a :class:`TaskSpec` (id, domain, answer type, label vocabulary, file name in
the published release, optional HF hub source, test size). The evaluator only reads
specs, so a new task is one :func:`register_task` call (or :func:`register_json_task`
for a test file in the published format) -- never an edit of the evaluator.

Test-set files follow the published format: a JSON list of objects with
``instruction`` (str), optional ``input`` (str), optional ``output`` (str, a reference
rationale) and ``answer`` (the gold label). :func:`load_items` validates every item and
names the file, the item index and the field of the first problem it finds.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from kdanalysis.errors import ConfigError, SchemaError

__all__ = [
    "AnswerType",
    "ANSWER_TYPES",
    "DOMAINS",
    "HubSource",
    "TaskSpec",
    "TaskItem",
    "TASKS",
    "register_task",
    "register_json_task",
    "unregister_task",
    "get_task",
    "list_tasks",
    "task_file",
    "load_items",
]

logger = logging.getLogger(__name__)

AnswerType = Literal["number", "choice_letter", "label"]
ANSWER_TYPES: tuple[str, ...] = ("number", "choice_letter", "label")
#: Domains of the study; other domains may be registered by new tasks.
DOMAINS: tuple[str, ...] = ("math", "commonsense")
_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_CHOICE_LETTERS = ("A", "B", "C", "D", "E")
_RELEASE = "LCS2-IIITD/KD_generalization"


@dataclass(frozen=True)
class HubSource:
    """Where the original test split lives on the Hugging Face hub.

    Attributes
    ----------
    path : str
        Dataset name on the hub (``"openai/gsm8k"``).
    config : str or None
        Dataset configuration (``"main"``), if any.
    split : str
        Split the study used (``"test"``, ``"validation"``, ``"train+test"``).
    converter : str
        Name of the row converter in :data:`runners.evaluate.hub.CONVERTERS` that turns a
        hub row into a test item in the published format.
    """

    path: str
    config: str | None
    split: str
    converter: str


@dataclass(frozen=True)
class TaskSpec:
    """Everything the evaluator needs to know about one task.

    Attributes
    ----------
    id : str
        Lower-case task id (``"gsm8k"``).
    domain : str
        ``"math"``, ``"commonsense"`` or a new domain.
    answer_type : {"number", "choice_letter", "label"}
        How answers are extracted and compared (see :mod:`runners.evaluate.extract`).
    labels : tuple of str
        The label vocabulary (``("true", "false")``); the letters A-E for
        ``choice_letter``; empty for ``number``.
    file_name : str or None
        Test-set file: a name inside the data directory, or an absolute path.
    test_size : int or None
        Expected number of items (a different count is logged, not an error).
    hub : HubSource or None
        Original dataset on the HF hub, for :func:`runners.evaluate.hub.load_hub_items`.
    note : str
        Where the file comes from or how to get it, shown when it is missing.
    """

    id: str
    domain: str
    answer_type: AnswerType
    labels: tuple[str, ...] = ()
    file_name: str | None = None
    test_size: int | None = None
    hub: HubSource | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID_RE.match(self.id):
            raise ConfigError(
                f"task id {self.id!r} must be lower-case letters, digits and '_' (starting with a letter)"
            )
        if not isinstance(self.domain, str) or not self.domain:
            raise ConfigError(f"task {self.id!r}: domain must be a non-empty string, got {self.domain!r}")
        if self.answer_type not in ANSWER_TYPES:
            raise ConfigError(
                f"task {self.id!r}: unknown answer_type {self.answer_type!r}; "
                f"allowed: {', '.join(ANSWER_TYPES)}"
            )
        labels = tuple(self.labels)
        object.__setattr__(self, "labels", labels)
        if self.answer_type == "label" and not labels:
            raise ConfigError(f"task {self.id!r}: answer_type 'label' needs a non-empty label vocabulary")
        if self.answer_type == "number" and labels:
            raise ConfigError(f"task {self.id!r}: answer_type 'number' takes no labels, got {labels}")
        if self.answer_type == "choice_letter" and (
            not labels or any(lab not in _CHOICE_LETTERS for lab in labels)
        ):
            raise ConfigError(f"task {self.id!r}: choice_letter labels must be a subset of A-E, got {labels}")
        if any(not isinstance(lab, str) or not lab for lab in labels):
            raise ConfigError(f"task {self.id!r}: labels must be non-empty strings, got {labels}")
        if self.test_size is not None and self.test_size < 1:
            raise ConfigError(f"task {self.id!r}: test_size must be >= 1, got {self.test_size}")


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


_REGISTRY: dict[str, TaskSpec] = {}
#: Read-only view of the registered tasks, by id.
TASKS: Mapping[str, TaskSpec] = MappingProxyType(_REGISTRY)


def register_task(spec: TaskSpec, *, replace: bool = False) -> TaskSpec:
    """Add a task to the registry and return it.

    Registering an identical spec again is a no-op.

    Raises
    ------
    ConfigError
        If a different task with the same id exists and ``replace`` is false.
    """
    if not isinstance(spec, TaskSpec):
        raise ConfigError(f"register_task expects a TaskSpec, got {type(spec).__name__}")
    if spec.id in _REGISTRY and not replace and _REGISTRY[spec.id] != spec:
        raise ConfigError(f"task {spec.id!r} is already registered; pass replace=True to redefine it")
    _REGISTRY[spec.id] = spec
    return spec


def unregister_task(task_id: str) -> TaskSpec:
    """Remove a task from the registry and return its spec.

    Raises
    ------
    ConfigError
        For an unknown id, listing the known ones.
    """
    spec = get_task(task_id)
    del _REGISTRY[spec.id]
    return spec


def register_json_task(
    path: str | Path,
    *,
    domain: str,
    answer_type: AnswerType,
    labels: Iterable[str] = (),
    id: str | None = None,
    replace: bool = False,
) -> TaskSpec:
    """Register a task whose test set is one JSON file in the published format.

    Parameters
    ----------
    path : str or Path
        The test-set file (stored as an absolute path in the spec).
    domain, answer_type, labels
        As in :class:`TaskSpec`; ``choice_letter`` defaults to the letters A-E.
    id : str, optional
        Task id; defaults to the file stem, lower-cased, with ``-`` turned into ``_``.
    replace : bool
        Redefine an existing task of the same id.

    Returns
    -------
    TaskSpec
    """
    path = Path(path).resolve()
    task_id = id if id is not None else path.stem.lower().replace("-", "_")
    labels = tuple(labels) or (_CHOICE_LETTERS if answer_type == "choice_letter" else ())
    spec = TaskSpec(id=task_id, domain=domain, answer_type=answer_type, labels=labels, file_name=str(path))
    return register_task(spec, replace=replace)


def get_task(task_id: str | TaskSpec) -> TaskSpec:
    """Return the registered spec of ``task_id`` (a spec is returned unchanged).

    Raises
    ------
    ConfigError
        For an unknown id, listing the known ones.
    """
    if isinstance(task_id, TaskSpec):
        return task_id
    try:
        return _REGISTRY[task_id]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown task {task_id!r}; known tasks: {', '.join(_REGISTRY)}") from None


def list_tasks(domain: str | None = None) -> list[str]:
    """Ids of the registered tasks (of one domain if given), in registration order."""
    return [t.id for t in _REGISTRY.values() if domain is None or t.domain == domain]


def task_file(task: str | TaskSpec, data_dir: str | Path | None = None) -> Path:
    """Path of the task's test-set file (``file_name`` inside ``data_dir`` unless absolute).

    Raises
    ------
    ConfigError
        If the task has no file, the data directory is needed but not given, or the
        file does not exist (the message says how to get it).
    """
    spec = get_task(task)
    if spec.file_name is None:
        raise ConfigError(f"task {spec.id!r} has no test-set file; load it from the hub instead")
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


def load_items(task: str | TaskSpec, data_dir: str | Path | None = None) -> list[TaskItem]:
    """Load and validate a task's test set in the published JSON format.

    Parameters
    ----------
    task : str or TaskSpec
        Task id or spec.
    data_dir : str or Path, optional
        Folder holding the release's test files (e.g.
        ``../shared/data/kd_generalization/testsets``); not needed for tasks registered
        with an absolute path.

    Returns
    -------
    list of TaskItem
        In file order; ``item_id`` is the 0-based position.

    Raises
    ------
    ConfigError
        Unknown task or missing file.
    SchemaError
        Invalid JSON, a top level that is not a list, or an invalid item (the message
        names the file, the item index and the field).
    """
    spec = get_task(task)
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


def _register_study_tasks() -> None:
    def hub(path: str, config: str | None, split: str, converter: str) -> HubSource:
        return HubSource(path=path, config=config, split=split, converter=converter)

    answers = tuple(f"answer{i}" for i in range(1, 6))
    specs = [
        TaskSpec(
            "gsm8k", "math", "number", (), "gsm8k.json", 1319, hub("openai/gsm8k", "main", "test", "gsm8k")
        ),
        TaskSpec(
            "svamp",
            "math",
            "number",
            (),
            "SVAMP.json",
            1000,
            hub("MU-NLPC/Calc-svamp", None, "test", "svamp"),
        ),
        TaskSpec(
            "multiarith",
            "math",
            "number",
            (),
            "MultiArith.json",
            600,
            hub("ChilleD/MultiArith", None, "train+test", "multiarith"),
        ),
        TaskSpec("singleeq", "math", "number", (), "SingleEq.json", 508),
        TaskSpec("addsub", "math", "number", (), "AddSub.json", 395),
        TaskSpec(
            "aqua",
            "math",
            "choice_letter",
            _CHOICE_LETTERS,
            "AQuA.json",
            254,
            hub("deepmind/aqua_rat", "raw", "test", "aqua"),
        ),
        TaskSpec(
            "boolq",
            "commonsense",
            "label",
            ("true", "false"),
            "boolq.json",
            3270,
            hub("google/boolq", None, "validation", "boolq"),
        ),
        TaskSpec(
            "piqa",
            "commonsense",
            "label",
            ("solution1", "solution2"),
            "piqa.json",
            1838,
            hub("ybisk/piqa", None, "validation", "piqa"),
        ),
        TaskSpec(
            "siqa",
            "commonsense",
            "label",
            answers,
            "social_i_qa.json",
            1954,
            hub("allenai/social_i_qa", None, "validation", "siqa"),
        ),
        TaskSpec(
            "hellaswag",
            "commonsense",
            "label",
            tuple(f"ending{i}" for i in range(1, 5)),
            "hellaswag.json",
            10042,
            hub("Rowan/hellaswag", None, "validation", "hellaswag"),
            note=(
                f"HellaSwag's test file is not in the {_RELEASE} release (13 of 14 test sets "
                "are shipped). Take dataset/hellaswag/test.json from the LLM-Adapters repository "
                "(AGI-Edgerunners/LLM-Adapters) and save it as hellaswag.json in the data "
                "directory, or build it online with runners.evaluate.hub.write_hub_test_set"
                "('hellaswag', DATA_DIR)."
            ),
        ),
        TaskSpec(
            "winogrande",
            "commonsense",
            "label",
            ("option1", "option2"),
            "winogrande.json",
            1267,
            hub("allenai/winogrande", "winogrande_xl", "validation", "winogrande"),
        ),
        TaskSpec(
            "arc_e",
            "commonsense",
            "label",
            answers,
            "ARC-Easy.json",
            2376,
            hub("allenai/ai2_arc", "ARC-Easy", "test", "arc"),
        ),
        TaskSpec(
            "arc_c",
            "commonsense",
            "label",
            answers,
            "ARC-Challenge.json",
            1172,
            hub("allenai/ai2_arc", "ARC-Challenge", "test", "arc"),
        ),
        TaskSpec(
            "obqa",
            "commonsense",
            "label",
            answers,
            "openbookqa.json",
            500,
            hub("allenai/openbookqa", "main", "test", "obqa"),
        ),
    ]
    for spec in specs:
        release_note = f"It is shipped in the {_RELEASE} release (testsets/{spec.file_name})."
        register_task(spec if spec.note else replace(spec, note=release_note))


_register_study_tasks()
