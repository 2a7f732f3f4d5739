"""The task table: every fact about each evaluation task, read from ``data/tasks.yaml``.

The table (shipped as ``kdanalysis._bundled/tasks.yaml``) lists each task once: id,
display label, tags (suites), domain, answer type, label vocabulary, test-set file and
size, column name in the paper's released CSVs, HF hub source and a note on where the
file comes from; its order is the display order. :func:`task_table` reads and validates
it once (pydantic; any problem is one :class:`~kdanalysis.errors.ConfigError` naming the
file, the field and the value) into frozen records:

- :class:`TaskSpec` per task and :class:`HubSource` for its hub source;
- :class:`TaskRegistry`, an immutable, ordered set of specs looked up by id; the
  evaluator receives one explicitly (``EvalConfig.task_registry()``), and custom tasks
  (a grid's synthetic test sets, a user's JSON file) are added to a copy with
  :meth:`TaskRegistry.with_tasks`, never to a global;
- :class:`TaskTable`, the registry plus the ``average`` pseudo-task of result tables,
  with the display labels, orders and paper columns that analysis code reads.

The model is lm-evaluation-harness's task YAML files (``lm_eval/tasks/gsm8k/gsm8k.yaml``)
and its ``TaskManager`` index of them; only the facts carry over.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kdanalysis.config import read_yaml_mapping, validation_error_message
from kdanalysis.errors import ConfigError

__all__ = [
    "AnswerType",
    "ANSWER_TYPES",
    "CHOICE_LETTERS",
    "TASKS_FILE",
    "STUDY_TAG",
    "TOY_TAG",
    "HubSource",
    "TaskSpec",
    "TaskRegistry",
    "AverageTask",
    "TaskTable",
    "read_task_table",
    "task_table",
    "bundled_tasks",
]

AnswerType = Literal["number", "choice_letter", "label"]
#: How answers can be extracted and compared (see ``runners.evaluate.extract``).
ANSWER_TYPES: tuple[str, ...] = ("number", "choice_letter", "label")
#: The letters a ``choice_letter`` task may use.
CHOICE_LETTERS: tuple[str, ...] = ("A", "B", "C", "D", "E")
#: File name of the task table inside the bundled data package.
TASKS_FILE = "tasks.yaml"
#: Tag of the 14 tasks of the paper's study (arXiv 2505.15442) in the task table.
STUDY_TAG = "kd_generalization"
#: Tag of the synthetic tasks whose test sets a grid generates (``runners.toy``).
TOY_TAG = "toy"
_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class HubSource:
    """Where the original test split lives on the Hugging Face hub.

    Attributes
    ----------
    path : str
        Dataset name on the hub (``"openai/gsm8k"``; lm-eval's ``dataset_path``).
    config : str or None
        Dataset configuration (``"main"``; lm-eval's ``dataset_name``), if any.
    split : str
        Split the study used (``"test"``, ``"validation"``, ``"train+test"``).
    converter : str
        Name of the row converter in ``runners.evaluate.hub.CONVERTERS`` that turns a hub
        row into a test item in the published format.
    """

    path: str
    config: str | None
    split: str
    converter: str


@dataclass(frozen=True)
class TaskSpec:
    """Everything the evaluator and the analysis need to know about one task.

    Attributes
    ----------
    id : str
        Lower-case task id (``"gsm8k"``).
    domain : str
        ``"math"``, ``"commonsense"`` or a new domain.
    answer_type : {"number", "choice_letter", "label"}
        How answers are extracted and compared (see ``runners.evaluate.extract``).
    labels : tuple of str
        The label vocabulary (``("true", "false")``); letters A-E for ``choice_letter``;
        empty for ``number``.
    file_name : str or None
        Test-set file: a name inside the data directory, or an absolute path.
    test_size : int or None
        Expected number of items (a different count is logged, not an error).
    hub : HubSource or None
        Original dataset on the HF hub (``runners.evaluate.hub.load_hub_items``).
    note : str
        Where the file comes from or how to get it, shown when it is missing.
    label : str
        Display label in figures and reports; ``""`` = the id.
    tags : tuple of str
        Suites the task belongs to (``"kd_generalization"``, ``"toy"``).
    paper_column : str or None
        The task's column name in the paper's released result CSVs.

    Raises
    ------
    ConfigError
        On construction, for an invalid id, domain, answer type, label vocabulary or size.
    """

    id: str
    domain: str
    answer_type: AnswerType
    labels: tuple[str, ...] = ()
    file_name: str | None = None
    test_size: int | None = None
    hub: HubSource | None = None
    note: str = ""
    label: str = ""
    tags: tuple[str, ...] = ()
    paper_column: str | None = None

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
        object.__setattr__(self, "tags", tuple(self.tags))
        if not self.label:
            object.__setattr__(self, "label", self.id)
        if self.answer_type == "label" and not labels:
            raise ConfigError(f"task {self.id!r}: answer_type 'label' needs a non-empty label vocabulary")
        if self.answer_type == "number" and labels:
            raise ConfigError(f"task {self.id!r}: answer_type 'number' takes no labels, got {labels}")
        if self.answer_type == "choice_letter" and (
            not labels or any(lab not in CHOICE_LETTERS for lab in labels)
        ):
            raise ConfigError(f"task {self.id!r}: choice_letter labels must be a subset of A-E, got {labels}")
        if any(not isinstance(lab, str) or not lab for lab in labels):
            raise ConfigError(f"task {self.id!r}: labels must be non-empty strings, got {labels}")
        if self.test_size is not None and self.test_size < 1:
            raise ConfigError(f"task {self.id!r}: test_size must be >= 1, got {self.test_size}")


class TaskRegistry:
    """An immutable, ordered set of :class:`TaskSpec` looked up by id.

    Built from the task table (:func:`bundled_tasks`) and handed to whatever needs task
    facts; a run's custom tasks are added to a new registry with :meth:`with_tasks`.
    Iterating yields the ids in order; ``registry[task_id]`` gives the spec.

    Parameters
    ----------
    specs : iterable of TaskSpec
        The tasks, in order.

    Raises
    ------
    ConfigError
        If an element is not a :class:`TaskSpec` or two specs share an id.
    """

    __slots__ = ("_specs",)

    def __init__(self, specs: Iterable[TaskSpec] = ()) -> None:
        index: dict[str, TaskSpec] = {}
        for spec in specs:
            if not isinstance(spec, TaskSpec):
                raise ConfigError(f"a task registry holds TaskSpec records, got {type(spec).__name__}")
            if spec.id in index:
                raise ConfigError(f"task {spec.id!r} is defined twice")
            index[spec.id] = spec
        self._specs = MappingProxyType(index)

    def __getitem__(self, task_id: str) -> TaskSpec:
        """The spec of ``task_id``.

        Raises
        ------
        ConfigError
            For an unknown id, listing the known ones.
        """
        try:
            return self._specs[task_id]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown task {task_id!r}; known tasks: {', '.join(self._specs)}") from None

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskRegistry):
            return NotImplemented
        return tuple(self._specs.values()) == tuple(other._specs.values())

    def __hash__(self) -> int:
        return hash(tuple(self._specs.values()))

    def __repr__(self) -> str:
        return f"TaskRegistry({', '.join(self._specs)})"

    def specs(self) -> tuple[TaskSpec, ...]:
        """All specs, in order."""
        return tuple(self._specs.values())

    def ids(self, *, domain: str | None = None, tag: str | None = None) -> list[str]:
        """Task ids in order, of one domain and/or one tag if given."""
        return [
            s.id
            for s in self._specs.values()
            if (domain is None or s.domain == domain) and (tag is None or tag in s.tags)
        ]

    def domains(self, *, tag: str | None = None) -> tuple[str, ...]:
        """Domains in order of first appearance (of the tasks with ``tag`` if given)."""
        return tuple(dict.fromkeys(self._specs[t].domain for t in self.ids(tag=tag)))

    def with_tasks(self, *specs: TaskSpec, replace: bool = False) -> TaskRegistry:
        """A new registry with ``specs`` added after the present tasks.

        A spec identical to a present one is a no-op; a different spec with a present id
        takes its place (keeping its position) only with ``replace``.

        Raises
        ------
        ConfigError
            If a different task of the same id exists and ``replace`` is false.
        """
        merged = dict(self._specs)
        for spec in specs:
            if not isinstance(spec, TaskSpec):
                raise ConfigError(f"a task registry holds TaskSpec records, got {type(spec).__name__}")
            if spec.id in merged and merged[spec.id] != spec and not replace:
                raise ConfigError(f"task {spec.id!r} is already registered; pass replace=True to redefine it")
            merged[spec.id] = spec
        return TaskRegistry(merged.values())


@dataclass(frozen=True)
class AverageTask:
    """The per-domain mean that result tables carry as a pseudo-task (no items of its own).

    Attributes
    ----------
    id : str
        Its task id in result tables (``"average"``).
    label : str
        Display label.
    paper_column : str
        Its column name in the paper's released CSVs.
    """

    id: str
    label: str
    paper_column: str


@dataclass(frozen=True)
class TaskTable:
    """The task table: the tasks and the ``average`` pseudo-task, in display order.

    Attributes
    ----------
    tasks : TaskRegistry
        Every task of the table.
    average : AverageTask
        The per-domain mean of result tables.
    release : str
        The released repository whose ``generative/dataset/<test_file stem>/test.json`` are the
        test files.
    source : str
        The file the table was read from.
    """

    tasks: TaskRegistry
    average: AverageTask
    release: str
    source: str

    def order(self, *, tag: str | None = None) -> tuple[str, ...]:
        """Task ids in display order (of one tag if given), then the average's id."""
        return (*self.tasks.ids(tag=tag), self.average.id)

    def labels(self) -> dict[str, str]:
        """Display label of every task id and of the average, in display order."""
        return {**{s.id: s.label for s in self.tasks.specs()}, self.average.id: self.average.label}

    def paper_columns(self) -> dict[str, str]:
        """Released-CSV column name -> task id, for the tasks that have one and the average."""
        columns = {s.paper_column: s.id for s in self.tasks.specs() if s.paper_column is not None}
        return {**columns, self.average.paper_column: self.average.id}


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _HubEntry(_Entry):
    dataset_path: str = Field(min_length=1)
    dataset_name: str | None
    test_split: str = Field(min_length=1)
    converter: str = Field(min_length=1)


class _TaskEntry(_Entry):
    task: str
    label: str = Field(min_length=1)
    tag: list[str] = Field(min_length=1)
    domain: str
    answer_type: AnswerType
    labels: list[str] = Field(default_factory=list)
    test_file: str | None = None
    test_size: int | None = None
    paper_column: str | None = None
    hub: _HubEntry | None = None
    note: str | None = None


class _AverageEntry(_Entry):
    task: str = Field(min_length=1)
    label: str = Field(min_length=1)
    paper_column: str = Field(min_length=1)


class _TableEntry(_Entry):
    release: str = Field(min_length=1)
    average: _AverageEntry
    tasks: list[_TaskEntry] = Field(min_length=1)


def _spec(entry: _TaskEntry, release: str) -> TaskSpec:
    hub = entry.hub
    note = entry.note
    if note is None and entry.test_file is not None:
        stem = Path(entry.test_file).stem
        note = (
            f"It is generative/dataset/{stem}/test.json of the {release} repository; "
            f"save it as {entry.test_file} in the data directory."
        )
    return TaskSpec(
        id=entry.task,
        domain=entry.domain,
        answer_type=entry.answer_type,
        labels=tuple(entry.labels),
        file_name=entry.test_file,
        test_size=entry.test_size,
        hub=None
        if hub is None
        else HubSource(hub.dataset_path, hub.dataset_name, hub.test_split, hub.converter),
        note=note or "",
        label=entry.label,
        tags=tuple(entry.tag),
        paper_column=entry.paper_column,
    )


def read_task_table(path: str | Path) -> TaskTable:
    """Read and validate a task table file (the layout of ``data/tasks.yaml``).

    Parameters
    ----------
    path : str or Path
        The YAML file.

    Returns
    -------
    TaskTable

    Raises
    ------
    ConfigError
        One message naming the file, the field (``tasks.3.answer_type``) and the value of
        each problem: unreadable or invalid YAML, unknown or missing keys, wrong types,
        invalid task facts, duplicate ids or paper columns.
    """
    where = str(path)
    data = read_yaml_mapping(path, "task table")
    try:
        table = _TableEntry.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_error_message(exc, where)) from None
    specs = []
    for i, entry in enumerate(table.tasks):
        try:
            specs.append(_spec(entry, table.release))
        except ConfigError as exc:
            raise ConfigError(f"{where}: tasks.{i}: {exc}") from None
    try:
        registry = TaskRegistry(specs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    columns = [s.paper_column for s in specs if s.paper_column is not None] + [table.average.paper_column]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice or table.average.task in registry:
        problem = (
            f"paper_column {twice[0]!r} is used twice"
            if twice
            else f"average.task {table.average.task!r} is also the id of a task"
        )
        raise ConfigError(f"{where}: {problem}")
    average = AverageTask(table.average.task, table.average.label, table.average.paper_column)
    return TaskTable(tasks=registry, average=average, release=table.release, source=where)


@cache
def task_table() -> TaskTable:
    """The bundled task table (``kdanalysis._bundled/tasks.yaml``), read once."""
    from kdanalysis import _bundled

    with resources.as_file(resources.files(_bundled) / TASKS_FILE) as path:
        return read_task_table(path)


def bundled_tasks() -> TaskRegistry:
    """Registry of every task of the bundled table (:func:`task_table`)."""
    return task_table().tasks
