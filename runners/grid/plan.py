"""Expand a grid into a dependency graph of cells — the stages of the published study.

Stages (in dependency order)::

    prepare            toy models and the synthetic task's data (toy grids), SmolLM2 and its
                       layer-pruned copies (smollm2:<k>), training items held out of the test
                       sets (train: heldout:test-sets)
    teacher_sft        LoRA-SFT of each teacher on each domain        → teacher_eval
                       (``training`` with the grid's ``teacher_training`` over it)
    teacher_base_eval  zero-shot eval of a teacher used as a base teacher (ablation)
    teacher_cache      one teacher-logit pass per (teacher, domain), shared by the KD cells of the
                       token-level methods (``runners.distill.config.TOKEN_KD_METHODS``: off-policy,
                       teacher-forced); ``gkd`` and ``seqkd`` need the live teacher
    student_base_eval  zero-shot eval of each student
    student_sft        LoRA-SFT of each student                        → student_sft_eval
    kd                 one cell per (pair, method, τ, seed[, ablation]) → kd_eval → kd_fidelity
    sft_fidelity       agreement/BLEU of each SFT student with each of its teachers

A :class:`Cell` is a frozen record: its stage, its resolved config (a JSON-ready dict
that refers to its inputs by their cell ids) and its dependencies. The cell id is a
short SHA-256 of the canonical JSON of ``(kind, config)``, so identical work is one cell
(a model that is both a teacher and a student is fine-tuned once) and editing a grid
keeps the ids of unchanged cells, whose outputs are reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdanalysis.errors import ConfigError
from runners.distill.cache import TAIL_MASS_BOUND, planned_teacher_signal
from runners.distill.config import TOKEN_KD_METHODS
from runners.distill.schedule import n_train_items, total_steps
from runners.grid.settings import check_settings
from runners.grid.spec import (
    HELDOUT_TRAIN,
    SMOLLM2_PREFIX,
    TOY_PREFIX,
    DomainSpec,
    GridSpec,
    ModelSpec,
    PairSpec,
)
from runners.models import looks_like_local_path
from runners.pretrained import SMOLLM2_DISTRIBUTION, SMOLLM2_VERSION

__all__ = [
    "STAGES",
    "Cell",
    "Plan",
    "cell_id",
    "build_plan",
    "tail_mass_bound",
    "teacher_signal",
    "teacher_signal_lines",
    "training_steps",
]

#: Stage names in display (and dependency) order.
STAGES: tuple[str, ...] = (
    "prepare",
    "teacher_sft",
    "teacher_eval",
    "teacher_base_eval",
    "teacher_cache",
    "student_base_eval",
    "student_sft",
    "student_sft_eval",
    "kd",
    "kd_eval",
    "kd_fidelity",
    "sft_fidelity",
)
#: Cell kinds (what executes a cell) per stage.
STAGE_KIND: dict[str, str] = {
    "prepare": "prepare",
    "teacher_sft": "train",
    "teacher_eval": "eval",
    "teacher_base_eval": "eval",
    "teacher_cache": "cache",
    "student_base_eval": "eval",
    "student_sft": "train",
    "student_sft_eval": "eval",
    "kd": "train",
    "kd_eval": "eval",
    "kd_fidelity": "fidelity",
    "sft_fidelity": "fidelity",
}
_ID_LEN = 12


def cell_id(kind: str, config: Mapping[str, Any]) -> str:
    """Stable id of a cell: the first 12 hex digits of SHA-256 of canonical JSON."""
    payload = json.dumps(
        {"kind": kind, "config": config},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return hashlib.sha256(payload.encode("ascii")).hexdigest()[:_ID_LEN]


@dataclass(frozen=True)
class Cell:
    """One unit of work of a grid.

    Attributes
    ----------
    id : str
        :func:`cell_id` of ``(kind, config)``.
    stage : str
        One of :data:`STAGES` (display and scheduling; not part of the id).
    kind : str
        ``prepare``, ``train``, ``cache``, ``eval`` or ``fidelity``: what executes it.
    config : dict
        The resolved, JSON-ready config; inputs are referenced by cell id.
    deps : tuple of str
        Ids of the cells whose outputs this cell reads.
    label : str
        Short human-readable description (``kd fkl τ=2 Qwen2.5-3B→Qwen2.5-0.5B math s6``).
    """

    id: str
    stage: str
    kind: str
    config: Mapping[str, Any] = field(hash=False, compare=False)
    deps: tuple[str, ...]
    label: str = field(compare=False)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (what ``cell.json`` in a cell folder holds)."""
        return {
            "id": self.id,
            "stage": self.stage,
            "kind": self.kind,
            "config": dict(self.config),
            "deps": list(self.deps),
            "label": self.label,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cell:
        """Inverse of :meth:`to_json`."""
        return cls(
            id=data["id"],
            stage=data["stage"],
            kind=data["kind"],
            config=data["config"],
            deps=tuple(data["deps"]),
            label=data["label"],
        )


@dataclass(frozen=True)
class Plan:
    """The cells of a grid in a dependency (topological) order.

    Attributes
    ----------
    grid : GridSpec
    root : Path
        Folder relative paths of the grid file are resolved against.
    cells : dict of str to Cell
        Insertion order is a topological order.
    """

    grid: GridSpec
    root: Path
    cells: dict[str, Cell]

    def __iter__(self) -> Iterator[Cell]:
        return iter(self.cells.values())

    def __len__(self) -> int:
        return len(self.cells)

    def stage_counts(self) -> dict[str, int]:
        """Number of cells per stage, in :data:`STAGES` order (stages with cells only)."""
        counts = Counter(c.stage for c in self.cells.values())
        return {s: counts[s] for s in STAGES if counts[s]}

    def dependents(self, ids: set[str]) -> set[str]:
        """All cells that depend, directly or not, on any of ``ids``."""
        out: set[str] = set()
        for cell in self.cells.values():  # topological order: one pass suffices
            if any(d in ids or d in out for d in cell.deps):
                out.add(cell.id)
        return out


def _deps_of(config: Any) -> set[str]:
    """Cell ids referenced anywhere in ``config`` under a key ending in ``cell``."""
    found: set[str] = set()
    if isinstance(config, Mapping):
        for key, value in config.items():
            if key.endswith("cell") and isinstance(value, str):
                found.add(value)
            else:
                found |= _deps_of(value)
    elif isinstance(config, list):
        for value in config:
            found |= _deps_of(value)
    return found


class _Builder:
    """Accumulates cells while expanding a grid (merging identical cells)."""

    def __init__(self, grid: GridSpec, root: Path) -> None:
        self.grid = grid
        self.root = root
        self.cells: dict[str, Cell] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def add(self, stage: str, config: dict[str, Any], label: str) -> str:
        kind = STAGE_KIND[stage]
        cid = cell_id(kind, config)
        if cid not in self.cells:
            deps = tuple(sorted(_deps_of(config)))
            missing = [d for d in deps if d not in self.cells]
            if missing:  # programming error guard: dependencies are always added first
                raise ConfigError(f"cell {label}: dependencies {missing} not planned before it")
            self.cells[cid] = Cell(id=cid, stage=stage, kind=kind, config=config, deps=deps, label=label)
        return cid

    def resolve_path(self, value: str) -> str:
        value = os.path.expandvars(value)
        path = Path(value).expanduser()
        if path.is_absolute():
            return str(path)
        local = self.root / path
        # a relative path that exists next to the grid file is local; otherwise a hub id ("Qwen/Qwen2.5-3B")
        return str(local.resolve()) if local.exists() or value.startswith(".") else value

    def model_location(self, model_id: str) -> str:
        """A model ``path`` of the grid as the runs load it: a local folder or a hub id.

        The rule (see :class:`~runners.grid.spec.ModelSpec`): after expanding ``$VARS`` and
        ``~``, a path that exists next to the grid file, or that looks local
        (:func:`runners.models.looks_like_local_path`: absolute, starting with ``.``, more than
        one ``/``), is a local folder, resolved against the grid file's folder (``..``
        included), which must exist now; anything else must be a valid hub id
        (``huggingface_hub``'s ``validate_repo_id``, where installed).

        Raises
        ------
        ConfigError
            ``models.<id>.path: '<value>': ...`` naming the folder looked for or the hub-id rule.
        """
        value = self.grid.models[model_id].path
        where = f"models.{model_id}.path: {value!r}"
        expanded = os.path.expandvars(value)
        path = Path(expanded).expanduser()
        local = path if path.is_absolute() else self.root / path
        if local.exists() or looks_like_local_path(expanded):
            if not local.is_dir():
                raise ConfigError(
                    f"{where}: local model folder not found: {local.resolve()} (a relative path is "
                    f"resolved against the grid file's folder {self.root}; a hub id looks like 'org/name')"
                )
            return str(path) if path.is_absolute() else str(local.resolve())
        try:
            from huggingface_hub.utils import HFValidationError, validate_repo_id
        except ImportError:  # without the train extra nothing is loaded from the hub anyway
            return expanded
        try:
            validate_repo_id(expanded)
        except HFValidationError as exc:
            raise ConfigError(
                f"{where}: neither a local model folder (none at {local.resolve()}) nor a hub id: {exc}"
            ) from None
        return expanded

    def base_model(self, model_id: str) -> dict[str, Any]:
        spec: ModelSpec = self.grid.models[model_id]
        if spec.path.startswith(TOY_PREFIX):
            _, family, size = spec.path.split(":")
            cid = self.add(
                "prepare",
                {"what": "toy_model", "family": family, "size": size, "seed": 0},
                f"toy model {family}:{size}",
            )
            return {"name": model_id, "base_cell": cid}
        if spec.path.startswith(SMOLLM2_PREFIX):
            keep_every = int(spec.path[len(SMOLLM2_PREFIX) :])
            config = {
                "what": "smollm2",
                "package": f"{SMOLLM2_DISTRIBUTION}=={SMOLLM2_VERSION}",
                "keep_every": keep_every,
            }
            cid = self.add("prepare", config, f"smollm2 every {keep_every} layer(s)")
            return {"name": model_id, "base_cell": cid}
        return {"name": model_id, "path": self.model_location(model_id)}

    def domain_data(self, domain: str) -> dict[str, Any]:
        spec: DomainSpec = self.grid.domains[domain]
        if spec.is_toy:
            config = {
                "what": "toy_data",
                "n_train": spec.toy_items,
                "n_test": spec.toy_test_items,
                "seed": 0,
                "tasks": list(spec.tasks),
                "difficulty": spec.toy_difficulty,
                "max_number": spec.toy_max_number,
                "operations": list(spec.toy_operations),
            }
            cid = self.add("prepare", config, f"toy data {domain}")
            return {"data_cell": cid, "tasks": list(spec.tasks)}
        if spec.train == HELDOUT_TRAIN:
            limit = self.grid.evaluation.get("limit")
            if limit is None:
                raise ConfigError(
                    f"domain {domain!r}: train: {HELDOUT_TRAIN!r} needs evaluation.limit (the training "
                    "items are taken after the first `limit` items of each test set, which are evaluated)"
                )
            data_dir = self.resolve_path(str(spec.data_dir))
            config = {
                "what": "heldout_data",
                "data_dir": data_dir,
                "tasks": list(spec.tasks),
                "skip": int(limit),
                "per_task": spec.heldout_items,
            }
            cid = self.add("prepare", config, f"held-out training items {domain}")
            return {"heldout_cell": cid, "tasks": list(spec.tasks), "data_dir": data_dir}
        out: dict[str, Any] = {"train_path": self.resolve_path(spec.train), "tasks": list(spec.tasks)}
        if spec.data_dir is not None:
            out["data_dir"] = self.resolve_path(spec.data_dir)
        return out

    def training(self, domain: str, *, teacher: bool = False) -> dict[str, Any]:
        """``training`` with the domain's epochs, and for a teacher's SFT ``teacher_training`` over both."""
        settings = dict(self.grid.training)
        epochs = self.grid.domains[domain].epochs
        if epochs is not None:
            settings["optim"] = {**settings.get("optim", {}), "epochs": epochs}
        return _merge(settings, self.grid.teacher_training) if teacher else settings

    # -- stages ----------------------------------------------------------------------------------
    def train(
        self,
        stage: str,
        student: str,
        domain: str,
        seed: int,
        *,
        method: str = "sft",
        teacher: dict[str, Any] | None = None,
        teacher_kind: str = "none",
        temperature: float | None = None,
        noise: float = 0.0,
        params: Mapping[str, Any] | None = None,
        cache: str | None = None,
    ) -> dict[str, Any]:
        config: dict[str, Any] = {
            "student": self.base_model(student),
            "domain": domain,
            "data": self.domain_data(domain),
            "method": method,
            "seed": seed,
            "training": self.training(domain, teacher=stage == "teacher_sft"),
            "teacher": teacher,
            "teacher_kind": teacher_kind,
            "temperature": temperature,
            "teacher_noise": noise,
            "method_params": dict(params or {}),
        }
        if cache is not None:
            config["cache_cell"] = cache
        who = f"{teacher['name']}→{student}" if teacher else student
        tau = f" τ={temperature:g}" if temperature is not None else ""
        sigma = f" σ={noise:g}" if noise else ""
        kind = " base-teacher" if teacher_kind == "base" else ""
        cid = self.add(stage, config, f"{stage} {method}{tau}{sigma}{kind} {who} {domain} s{seed}")
        return {**self.base_model(student), "train_cell": cid}

    def evaluate(
        self, stage: str, model: dict[str, Any], domain: str, seed: int, labels: dict[str, Any]
    ) -> str:
        data = self.domain_data(domain)
        config = {
            "model": model,
            "domain": domain,
            "data": data,
            "seed": seed,
            "evaluation": dict(self.grid.evaluation),
            "labels": {"study": self.grid.study, **labels},
        }
        return self.add(stage, config, f"{stage} {_describe(labels)}")

    def cache(self, teacher: dict[str, Any], domain: str, refuse_above: float) -> str:
        """The cache cell of ``teacher`` on ``domain``; ``refuse_above``: the loosest tail-mass bound
        of the KD cells it serves (in the config only where it is not ``training``'s own)."""
        training = self.training(domain)
        config: dict[str, Any] = {
            "teacher": teacher,
            "domain": domain,
            "data": self.domain_data(domain),
            "training": training,
            "top_k": self.grid.teacher_cache.top_k,
        }
        if refuse_above != tail_mass_bound(training, {}):
            config["refuse_above"] = refuse_above
        return self.add("teacher_cache", config, f"teacher_cache {teacher['name']} {domain}")

    def fidelity(self, stage: str, student_eval: str, teacher_eval: str, labels: dict[str, Any]) -> str:
        config = {
            "student_eval_cell": student_eval,
            "teacher_eval_cell": teacher_eval,
            "kl": self.grid.fidelity_kl,
            "labels": {"study": self.grid.study, **labels},
        }
        return self.add(stage, config, f"{stage} {_describe(labels)}")


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``; mappings present in both are merged key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(labels: Mapping[str, Any]) -> str:
    """``fkl τ=2 σ=0.5 base-teacher T→S math s6`` from result labels."""
    tau = f" τ={labels['temperature']:g}" if labels["temperature"] is not None else ""
    sigma = f" σ={labels['teacher_noise']:g}" if labels["teacher_noise"] else ""
    kind = " base-teacher" if labels["teacher_kind"] == "base" else ""
    who = labels["student"] if labels["teacher"] == "none" else f"{labels['teacher']}→{labels['student']}"
    return f"{labels['method']}{tau}{sigma}{kind} {who} {labels['domain']} s{labels['seed']}"


def _labels(
    domain: str,
    student: str,
    method: str,
    seed: int,
    teacher: str = "none",
    teacher_kind: str = "none",
    temperature: float | None = None,
    noise: float = 0.0,
) -> dict[str, Any]:
    return {
        "domain": domain,
        "student": student,
        "teacher": teacher,
        "method": method,
        "teacher_kind": teacher_kind,
        "temperature": temperature,
        "teacher_noise": noise,
        "seed": seed,
    }


def _kd_axes(grid: GridSpec, pair: PairSpec) -> list[tuple[str, float, float, str, dict[str, Any]]]:
    """(method, τ, σ, teacher_kind, params) combinations for one pair, main grid then ablations."""
    axes: list[tuple[str, float, float, str, dict[str, Any]]] = []
    for spec in grid.methods:
        if spec.teachers is None or pair.teacher in spec.teachers:
            for tau in spec.temperatures or grid.temperatures:
                axes.append((spec.method, float(tau), 0.0, "task_aware", dict(spec.params)))
    params = {spec.method: dict(spec.params) for spec in grid.methods}
    base = grid.ablations.base_teacher
    if base is not None and (base.teachers is None or pair.teacher in base.teachers):
        for method in base.methods:
            for tau in base.temperatures:
                axes.append((method, float(tau), 0.0, "base", params.get(method, {})))
    noise = grid.ablations.teacher_noise
    if noise is not None and (noise.teachers is None or pair.teacher in noise.teachers):
        for method in noise.methods:
            for tau in noise.temperatures:
                for sigma in noise.sigmas:
                    axes.append((method, float(tau), float(sigma), "task_aware", params.get(method, {})))
    return axes


def tail_mass_bound(training: Mapping[str, Any], params: Mapping[str, Any]) -> float:
    """The ``teacher_cache_max_tail_mass`` a KD cell runs with: its method's ``params``, else
    ``training``'s, else :data:`runners.distill.cache.TAIL_MASS_BOUND`."""
    bound = params.get("teacher_cache_max_tail_mass", training.get("teacher_cache_max_tail_mass"))
    return TAIL_MASS_BOUND if bound is None else float(bound)


def teacher_signal(
    grid: GridSpec, method: str, temperature: float, max_tail_mass: float | None = None
) -> tuple[str, str]:
    """``("cache" | "live", why)`` for a token-level KD cell (:func:`planned_teacher_signal`,
    with the cell's tail-mass bound ``max_tail_mass``); ``("", "")`` for other methods."""
    if method not in TOKEN_KD_METHODS:
        return "", ""
    if not grid.teacher_cache.enabled:
        return "live", "teacher_cache is not enabled"
    return planned_teacher_signal(method, temperature, grid.teacher_cache.top_k, max_tail_mass)


def teacher_signal_lines(plan: Plan) -> list[str]:
    """One line per token-level KD cell: ``<id> <label>: teacher signal: cache|live (why)``."""
    lines = []
    for cell in plan:
        if cell.stage == "kd":
            cfg = cell.config
            bound = tail_mass_bound(cfg["training"], cfg["method_params"])
            source, why = teacher_signal(plan.grid, cfg["method"], cfg["temperature"], bound)
            if source:
                lines.append(f"{cell.id} {cell.label}: teacher signal: {source} ({why})")
    return lines


def build_plan(grid: GridSpec, root: str | Path = ".") -> Plan:
    """Expand ``grid`` into its cells (see the module docstring for the stages).

    Parameters
    ----------
    grid : GridSpec
        The validated grid.
    root : path
        Folder that relative paths in the grid are resolved against (the grid file's folder).

    Returns
    -------
    Plan
        Cells in a topological order; identical cells merged.

    Raises
    ------
    ConfigError
        If ``training``/``evaluation`` hold keys the runners' configs do not know.

    Notes
    -----
    Teachers are fine-tuned, evaluated and cached once per domain, with the first seed;
    students get base evaluation, SFT and KD cells for every seed.
    """
    check_settings(grid.training, grid.evaluation, grid.teacher_training)
    b = _Builder(grid, Path(root).resolve())
    pairs = grid.resolved_pairs()
    first_seed = grid.seeds[0]
    for domain in grid.domains:
        teacher_eval: dict[tuple[str, str], str] = {}
        teacher_ref: dict[tuple[str, str], dict[str, Any]] = {}
        caches: dict[tuple[str, str], str] = {}
        # teachers: SFT → eval (once, with the first seed)
        for teacher in grid.teachers:
            ref = b.train("teacher_sft", teacher, domain, first_seed)
            teacher_ref[teacher, "task_aware"] = ref
            teacher_eval[teacher, "task_aware"] = b.evaluate(
                "teacher_eval", ref, domain, first_seed, _labels(domain, teacher, "sft", first_seed)
            )
        needs_base = {p.teacher for p in pairs if any(k == "base" for *_, k, _p in _kd_axes(grid, p))}
        for teacher in needs_base:
            ref = b.base_model(teacher)
            teacher_ref[teacher, "base"] = ref
            teacher_eval[teacher, "base"] = b.evaluate(
                "teacher_base_eval", ref, domain, first_seed, _labels(domain, teacher, "base", first_seed)
            )
        if grid.teacher_cache.enabled:
            bounds: dict[tuple[str, str], float] = {}
            for pair in pairs:
                for method, tau, _sigma, kind, params in _kd_axes(grid, pair):
                    if teacher_signal(grid, method, tau)[0] == "cache":
                        bound = tail_mass_bound(b.training(domain), params)
                        bounds[pair.teacher, kind] = max(bound, bounds.get((pair.teacher, kind), 0.0))
            for (teacher, kind), bound in bounds.items():
                caches[teacher, kind] = b.cache(teacher_ref[teacher, kind], domain, bound)
        for seed in grid.seeds:
            sft_eval: dict[str, str] = {}
            for student in grid.students:
                b.evaluate(
                    "student_base_eval",
                    b.base_model(student),
                    domain,
                    seed,
                    _labels(domain, student, "base", seed),
                )
                ref = b.train("student_sft", student, domain, seed)
                sft_eval[student] = b.evaluate(
                    "student_sft_eval", ref, domain, seed, _labels(domain, student, "sft", seed)
                )
            for pair in pairs:
                for method, tau, sigma, kind, params in _kd_axes(grid, pair):
                    cached = teacher_signal(grid, method, tau)[0] == "cache"
                    cache = caches.get((pair.teacher, kind)) if cached else None
                    ref = b.train(
                        "kd",
                        pair.student,
                        domain,
                        seed,
                        method=method,
                        teacher=teacher_ref[pair.teacher, kind],
                        teacher_kind=kind,
                        temperature=tau,
                        noise=sigma,
                        params=params,
                        cache=cache,
                    )
                    labels = _labels(domain, pair.student, method, seed, pair.teacher, kind, tau, sigma)
                    student_eval = b.evaluate("kd_eval", ref, domain, seed, labels)
                    b.fidelity("kd_fidelity", student_eval, teacher_eval[pair.teacher, kind], labels)
                b.fidelity(
                    "sft_fidelity",
                    sft_eval[pair.student],
                    teacher_eval[pair.teacher, "task_aware"],
                    _labels(domain, pair.student, "sft", seed, pair.teacher, "task_aware"),
                )
    return Plan(grid=grid, root=b.root, cells=b.cells)


def training_steps(n_items: int | None, training: Mapping[str, Any]) -> int | None:
    """Optimizer steps of a training cell, counted as the trainer counts them.

    ``n_items`` is the number of items in the training file (None: unknown). The validation
    split and ``data.max_train_items`` (:func:`runners.distill.schedule.n_train_items`) and the
    step count (:func:`runners.distill.schedule.total_steps`) are the trainer's, with the
    distillation config's defaults; items the trainer drops at tokenisation (a prompt that
    fills ``max_length``) are not known here. Unknown ``n_items``: ``optim.max_steps`` or None.

    Raises
    ------
    ConfigError
        If the training items do not fill one batch (the trainer would refuse the cell).
    """
    optim = training.get("optim", {})
    if n_items is None:
        return int(optim["max_steps"]) if optim.get("max_steps") else None
    return total_steps(n_train_items(n_items, training.get("data", {})), optim)
