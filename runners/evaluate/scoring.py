"""Scoring model outputs: per-item tables, accuracy rows with Wilson intervals, run metadata.

One code path turns generations into the two tables of a run folder:

- the per-item table (``items.parquet``; :data:`kdanalysis.results.ITEM_COLUMNS`), made
  by :func:`score_outputs` from fresh generations or by :func:`rescore_items` from a
  saved table, and
- accuracy rows in the results contract (``results.parquet``), made by
  :func:`accuracy_results` from any per-item table, so re-scoring without a model gives
  exactly what the first scoring gave.

A run's identity (student, teacher, method, ...) is a :class:`RunMeta`, stored as
``run_meta.json`` at the run folder root by :func:`write_run_meta` and read back by
:func:`read_run_meta`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.io import atomic_write_json
from kdanalysis.results import (
    METHODS,
    NO_TEACHER,
    TEACHER_KINDS,
    check_choice,
    results_frame,
    validate_items,
)
from kdanalysis.runfolder import ITEMS_FILE, RESULTS_FILE, RUN_META_FILE
from runners.evaluate.extract import answers_match, extract_answer, get_extractor
from runners.evaluate.prompts import PROMPT_STYLES, PromptStyle, format_prompt, prompt_hash
from runners.evaluate.tasks import TaskItem, TaskRegistry, TaskSpec

__all__ = [
    "RUN_META_FILE",
    "ITEMS_FILE",
    "RESULTS_FILE",
    "CI_LEVEL",
    "RunMeta",
    "write_run_meta",
    "read_run_meta",
    "score_outputs",
    "rescore_items",
    "accuracy_results",
]

#: Confidence level of the Wilson interval of accuracies.
CI_LEVEL = 0.95


@dataclass(frozen=True)
class RunMeta:
    """Identity of one evaluation run: the key columns of its results rows, plus provenance.

    Attributes
    ----------
    run_id : str
        Identifier of the run (folder or grid cell id); non-empty.
    student : str
        The evaluated model, named as in the paper (``"Qwen2.5-0.5B"``).
    study : str
        Study name of the rows.
    method : str
        One of :data:`kdanalysis.results.METHODS` (``"base"``, ``"sft"``, ``"fkl"``...).
    teacher : str
        Teacher model, or ``"none"``.
    teacher_kind : str or None
        ``"task_aware"``, ``"base"`` or ``"none"``; ``None`` = derived from ``teacher``
        (``"none"`` without a teacher, else ``"task_aware"``).
    temperature : float or None
        KD temperature; ``None`` (NaN in the table) where not applicable.
    teacher_noise : float
        Std of the Gaussian noise on teacher logits.
    seed : int
        Training/evaluation seed.
    model : str
        Name or path of the checkpoint that generated the outputs (for fidelity KL).
    adapter : str
        Path of a LoRA adapter applied to ``model``; ``""`` if none.
    prompt_style : str
        The :func:`runners.evaluate.prompts.format_prompt` style of the prompts.
    extractor : str
        The extractor behind the current ``pred``/``correct`` columns.
    method_label : str
        The producer's own label for the method.
    source : str
        Where the rows come from (the run folder); ``""`` = filled by the writer.
    """

    run_id: str
    student: str
    study: str = "kdanalysis"
    method: str = "base"
    teacher: str = NO_TEACHER
    teacher_kind: str | None = None
    temperature: float | None = None
    teacher_noise: float = 0.0
    seed: int = 0
    model: str = ""
    adapter: str = ""
    prompt_style: str = "published"
    extractor: str = "published"
    method_label: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("run_id", "student", "study", "teacher"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"run_meta.{name} must be a non-empty string, got {value!r}")
        check_choice("method", self.method, METHODS)
        kind = self.teacher_kind
        if kind is None:
            kind = "none" if self.teacher == NO_TEACHER else "task_aware"
            object.__setattr__(self, "teacher_kind", kind)
        check_choice("teacher_kind", kind, TEACHER_KINDS)
        if (self.teacher == NO_TEACHER) != (kind == "none"):
            raise ConfigError(
                f"run_meta: teacher_kind must be 'none' exactly when teacher is 'none' "
                f"(teacher={self.teacher!r}, teacher_kind={kind!r})"
            )
        if self.temperature is not None and not (
            isinstance(self.temperature, int | float) and self.temperature > 0
        ):
            raise ConfigError(f"run_meta.temperature must be > 0 or None, got {self.temperature!r}")
        check_choice("prompt_style", self.prompt_style, PROMPT_STYLES)
        get_extractor(self.extractor)

    def key_columns(self) -> dict[str, Any]:
        """The results-contract columns this run fixes (all but domain/task/metric/value/n/CI)."""
        return {
            "study": self.study,
            "student": self.student,
            "teacher": self.teacher,
            "method": self.method,
            "teacher_kind": self.teacher_kind,
            "temperature": math.nan if self.temperature is None else float(self.temperature),
            "teacher_noise": float(self.teacher_noise),
            "seed": int(self.seed),
            "run_id": self.run_id,
            "source": self.source,
            "method_label": self.method_label,
        }

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "run_meta") -> RunMeta:
        """Build from a dict; unknown or missing required keys raise :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        missing = [k for k in ("run_id", "student") if k not in data]
        if missing:
            raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")
        try:
            return cls(**data)
        except (ConfigError, SchemaError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc


def write_run_meta(run_dir: str | Path, meta: RunMeta) -> Path:
    """Write ``meta`` atomically to ``run_dir/run_meta.json`` and return the path."""
    return atomic_write_json(Path(run_dir) / RUN_META_FILE, meta.to_dict())


def read_run_meta(run_dir: str | Path) -> RunMeta:
    """Read ``run_dir/run_meta.json``.

    Raises
    ------
    ConfigError
        If the file is missing, not JSON, or not a valid :class:`RunMeta` (names the file).
    """
    path = Path(run_dir) / RUN_META_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: run metadata not found (is {run_dir} a run folder?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return RunMeta.from_dict(data, where=str(path))


def _check_lengths(what: str, values: Sequence[Any] | None, n_items: int) -> None:
    if values is not None and len(values) != n_items:
        raise ConfigError(f"score_outputs: {len(values)} {what} for {n_items} items")


def score_outputs(
    spec: TaskSpec,
    items: Sequence[TaskItem],
    outputs: Sequence[str | None],
    *,
    run_meta: RunMeta,
    extractor: str | None = None,
    prompts: Sequence[str] | None = None,
    n_tokens: Sequence[int | None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score one task's generations.

    Parameters
    ----------
    spec : TaskSpec
        The task the items belong to.
    items : sequence of TaskItem
        The questions, as returned by :func:`runners.evaluate.tasks.load_items`.
    outputs : sequence of str or None
        The model's response to each item, in the same order (``None``/``""`` = wrong).
    run_meta : RunMeta
        Identity of the run (fills the results key columns).
    extractor : {"published", "strict"}, optional
        Defaults to ``run_meta.extractor``.
    prompts : sequence of str, optional
        The exact prompts sent to the model (hashed into ``prompt_hash``); by default
        rebuilt with :func:`~runners.evaluate.prompts.format_prompt` in
        ``run_meta.prompt_style``.
    n_tokens : sequence of int or None, optional
        Number of generated tokens per item (NA when not given).

    Returns
    -------
    items_df : pandas.DataFrame
        Columns :data:`kdanalysis.results.ITEM_COLUMNS`: run_id, task, item_id,
        prompt_hash (16 hex chars of SHA-256), output, pred (``""`` if nothing extracted),
        gold, correct (bool), n_tokens (Int64).
    results_df : pandas.DataFrame
        One ``accuracy`` row in :data:`kdanalysis.results.RESULT_COLUMNS` (see
        :func:`accuracy_results`).

    Raises
    ------
    ConfigError
        If ``outputs``/``prompts``/``n_tokens`` do not have one entry per item, or there
        are no items.
    """
    rule = extractor or run_meta.extractor
    if not items:
        raise ConfigError(f"score_outputs: no items for task {spec.id!r}")
    _check_lengths("outputs", outputs, len(items))
    _check_lengths("prompts", prompts, len(items))
    _check_lengths("n_tokens", n_tokens, len(items))
    if prompts is None:
        style = cast(PromptStyle, run_meta.prompt_style)
        prompts = [format_prompt(it.instruction, it.input, style=style) for it in items]
    preds = [extract_answer(out, spec, rule) for out in outputs]
    items_df = pd.DataFrame(
        {
            "run_id": run_meta.run_id,
            "task": spec.id,
            "item_id": [it.item_id for it in items],
            "prompt_hash": [prompt_hash(p) for p in prompts],
            "output": [out or "" for out in outputs],
            "pred": preds,
            "gold": [it.gold for it in items],
            "correct": [answers_match(spec, p, it.gold) for p, it in zip(preds, items, strict=True)],
            "n_tokens": pd.array(
                list(n_tokens) if n_tokens is not None else [None] * len(items), dtype="Int64"
            ),
        }
    )
    items_df = validate_items(items_df)
    return items_df, accuracy_results(items_df, run_meta, tasks=TaskRegistry([spec]))


def rescore_items(
    items_df: pd.DataFrame, extractor: str = "published", *, tasks: TaskRegistry
) -> pd.DataFrame:
    """Re-extract ``pred`` and recompute ``correct`` from the saved ``output`` column.

    Parameters
    ----------
    items_df : pandas.DataFrame
        A per-item table (validated here).
    extractor : {"published", "strict"}
    tasks : TaskRegistry
        Specs of the table's tasks (a run's registry: ``EvalConfig.task_registry()``).

    Returns
    -------
    pandas.DataFrame
        A copy with new ``pred`` and ``correct`` columns (other columns unchanged).

    Raises
    ------
    ConfigError
        For an unknown extractor, or a task id that ``tasks`` lacks.
    """
    get_extractor(extractor)
    out = validate_items(items_df)
    preds: list[str] = []
    correct: list[bool] = []
    for task_id, output, gold in zip(out["task"], out["output"], out["gold"], strict=True):
        spec = tasks[task_id]
        pred = extract_answer(output, spec, extractor)
        preds.append(pred)
        correct.append(answers_match(spec, pred, gold))
    out["pred"] = preds
    out["correct"] = correct
    return validate_items(out)


def accuracy_results(items_df: pd.DataFrame, run_meta: RunMeta, *, tasks: TaskRegistry) -> pd.DataFrame:
    """Accuracy rows (one per task) of a per-item table, with 95 % Wilson intervals.

    Parameters
    ----------
    items_df : pandas.DataFrame
        Per-item table of one run.
    run_meta : RunMeta
        Fills the key columns.
    tasks : TaskRegistry
        Specs of the table's tasks; ``domain`` comes from each task's spec.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`kdanalysis.results.RESULT_COLUMNS`, ``metric == "accuracy"``,
        ``value`` = 100 * correct / n, ``n`` = items, ``ci_low``/``ci_high`` = the Wilson
        interval (statsmodels ``proportion_confint(method="wilson")``) in percent.
    """
    items_df = validate_items(items_df)
    if items_df.empty:
        raise SchemaError("accuracy_results: the per-item table is empty")
    records = []
    for task_id, group in items_df.groupby("task", sort=False):
        n = len(group)
        k = int(group["correct"].sum())
        low, high = proportion_confint(k, n, alpha=1 - CI_LEVEL, method="wilson")
        records.append(
            {
                **run_meta.key_columns(),
                "domain": tasks[str(task_id)].domain,
                "task": str(task_id),
                "metric": "accuracy",
                "value": 100.0 * k / n,
                "n": n,
                "ci_low": 100.0 * low,
                "ci_high": 100.0 * high,
            }
        )
    return results_frame(records)
