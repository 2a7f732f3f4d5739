"""Import lm-evaluation-harness output folders into the results and per-item tables.

Read, never run: this module parses the files lm-evaluation-harness writes and does not
import ``lm_eval``. Supported: the files written by lm-evaluation-harness 0.4.3 to 0.4.13
with ``--output_path DIR`` (and ``--log_samples``), checked against its
``lm_eval/loggers/evaluation_tracker.py`` and ``lm_eval/evaluator.py``:

- ``DIR/<model_name_sanitized>/results_<date_id>.json``: ``results`` maps each task to
  ``"<metric>,<filter>"`` keys (``"acc,none"``, ``"exact_match,strict-match"``) and their
  ``"<metric>_stderr,<filter>"``; ``n-samples`` the number of items, ``model_name`` (or
  ``config.model_args``) the model evaluated, ``groups`` the group aggregates (not imported:
  the contract's per-domain ``average`` is computed, not read).
- ``samples_<task>_<date_id>.jsonl`` beside it (same ``date_id``): one line per item and
  filter with ``doc_id``, ``target``, ``resps``, ``filtered_resps``, ``doc_hash``,
  ``prompt_hash`` and the item's value of each metric; ``filter`` names the filter since
  0.4.7 (older files are read when their task has a single filter).

What becomes what
-----------------
- One row of the results table per (run, task, imported metric): ``acc``, ``acc_norm``
  and ``exact_match`` under each of their filters (:data:`IMPORTED_METRICS`; other metrics
  are skipped with a log line). Values and stderr are in percent. The task's *primary*
  key becomes ``metric="accuracy"``: the mapping's ``metric`` for the task, else
  ``acc,none``, else the first ``exact_match`` filter lm-eval reports; every other key
  ``"accuracy@<metric>,<filter>"``. ``n`` is lm-eval's effective number of items;
  ``ci_low``/``ci_high`` stay NaN and ``stderr`` holds lm-eval's standard error.
- One row of the per-item table per (run, task, item) from the samples of the primary
  key: ``item_id`` = ``doc_id``, ``prompt_hash`` lm-eval's, ``correct`` the item's value
  of the primary metric, ``gold`` the target, ``output`` the model's raw response (the
  JSON list of ``[log-likelihood, is_greedy]`` for log-likelihood tasks), ``pred`` the
  filtered response (multiple choice scored by ``acc``: the index of the likeliest choice;
  empty for ``acc_norm`` and single log-likelihood requests), ``n_tokens`` NA.
- ``run_id`` is the run's name in the mapping file (:mod:`kdanalysis.importers.mapping`),
  ``source`` the results file relative to ``DIR``.

Checks (each a one-line :class:`~kdanalysis.errors.SchemaError` or
:class:`~kdanalysis.errors.ConfigError`, raised before anything is written): no results file,
a results or samples file that is not valid JSON (e.g. truncated), a run not in the map or
matching two entries, a task imported twice for one run, a samples file whose items do not
match its results (doc ids repeated or missing, item count or mean score different from
the results file), the same item of a task with different documents in two runs.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.importers.mapping import RunEntry, StudyMap, read_study_map
from kdanalysis.results import (
    ITEM_COLUMNS,
    validate_items,
    validate_results,
    write_results_and_items,
)
from kdanalysis.runfolder import ITEMS_FILE, RESULTS_FILE

__all__ = [
    "DEFAULT_MAP",
    "IMPORTED_METRICS",
    "LMEvalRun",
    "find_lm_eval_runs",
    "import_lm_eval",
    "write_lm_eval_import",
]

logger = logging.getLogger(__name__)

#: lm-eval metrics imported (all are proportions of items answered correctly).
IMPORTED_METRICS: tuple[str, ...] = ("acc", "acc_norm", "exact_match")
#: Order in which lm-eval picks the model name out of ``model_args`` (``GeneralConfigTracker``).
_MODEL_ARG_KEYS = ("peft", "delta", "pretrained", "model", "path", "engine")
#: Tolerance of the mean of the per-item scores against the results file (proportions).
_SCORE_TOL = 1e-6
#: Mapping file looked for in the imported folder when none is given.
DEFAULT_MAP = "study.yaml"
_MAX_NAMED = 5


@dataclass(frozen=True)
class LMEvalRun:
    """One ``results_<date_id>.json`` of lm-evaluation-harness.

    Attributes
    ----------
    path : Path
        The results file.
    folder : str
        Its folder relative to the imported directory (``"."`` for the directory itself).
    date_id : str
        The time stamp shared by the results file and its samples files.
    model_name : str
        The model lm-eval evaluated (``model_name``, or from ``config.model_args``).
    data : dict
        The parsed file.
    """

    path: Path
    folder: str
    date_id: str
    model_name: str
    data: dict[str, Any]

    def samples_path(self, task: str) -> Path:
        """``samples_<task>_<date_id>.jsonl`` beside the results file (it may not exist)."""
        return self.path.with_name(f"samples_{task}_{self.date_id}.jsonl")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SchemaError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "truncated or damaged lm-eval results file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: cannot be read ({exc})") from None


def _model_name(data: dict[str, Any], path: Path) -> str:
    if isinstance(data.get("model_name"), str) and data["model_name"]:
        return data["model_name"]
    args = (data.get("config") or {}).get("model_args")
    if isinstance(args, dict):
        args = ",".join(f"{k}={v}" for k, v in args.items())
    if isinstance(args, str):
        for key in _MODEL_ARG_KEYS:
            if f"{key}=" in args:
                return args.split(f"{key}=", 1)[1].split(",")[0]
    raise SchemaError(
        f"{path}: no model name (neither 'model_name' nor config.model_args with pretrained=...)"
    )


def find_lm_eval_runs(directory: str | os.PathLike[str]) -> list[LMEvalRun]:
    """Every ``results_*.json`` under ``directory`` (recursively), parsed, sorted by path.

    Raises
    ------
    SchemaError
        If ``directory`` is not a folder or holds no results file, or a file is not an
        lm-eval results file (invalid JSON, no ``results`` mapping, no model name).
    """
    root = Path(directory)
    if not root.is_dir():
        raise SchemaError(f"lm-eval output folder not found: {root}")
    paths = sorted(p for p in root.rglob("results_*.json") if p.is_file())
    if not paths:
        raise SchemaError(
            f"no lm-evaluation-harness results file (results_<date>.json) under {root}; "
            "run lm_eval with --output_path (lm-eval >= 0.4.3)"
        )
    runs = []
    for path in paths:
        data = _read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            raise SchemaError(f"{path}: not an lm-eval results file (no 'results' mapping of tasks)")
        runs.append(
            LMEvalRun(
                path=path,
                folder=path.parent.relative_to(root).as_posix(),
                date_id=path.stem.removeprefix("results_"),
                model_name=_model_name(data, path),
                data=data,
            )
        )
    return runs


def _match(run: LMEvalRun, study: StudyMap) -> tuple[str, RunEntry] | None:
    hits = [
        (name, entry)
        for name, entry in study.runs.items()
        if (entry.model is not None and entry.model == run.model_name)
        or (entry.folder is not None and fnmatch.fnmatchcase(run.folder, entry.folder))
    ]
    if len(hits) > 1:
        raise ConfigError(
            f"{run.path}: model {run.model_name!r} in folder {run.folder!r} matches several runs of the "
            f"map: {', '.join(name for name, _ in hits)}"
        )
    return hits[0] if hits else None


def _assign(runs: list[LMEvalRun], study: StudyMap, root: Path) -> list[tuple[str, RunEntry, LMEvalRun]]:
    assigned, missing = [], []
    for run in runs:
        hit = _match(run, study)
        if hit is None:
            missing.append(f"{run.path.relative_to(root)} (model {run.model_name!r})")
        else:
            assigned.append((*hit, run))
    if missing:
        shown = "; ".join(missing[:_MAX_NAMED]) + (
            f" (+{len(missing) - _MAX_NAMED} more)" if len(missing) > _MAX_NAMED else ""
        )
        raise ConfigError(
            f"{len(missing)} lm-eval run(s) not in the study map (add them under runs: with model: "
            f"or folder:): {shown}"
        )
    return assigned


def _metric_keys(task: str, scores: dict[str, Any]) -> list[tuple[str, str]]:
    """``(metric, filter)`` pairs of the imported metrics of one task, in lm-eval's order."""
    keys = []
    for key in scores:
        if "," not in key:
            continue
        metric, filt = key.split(",", 1)
        if metric in IMPORTED_METRICS:
            keys.append((metric, filt))
        elif not metric.endswith("_stderr"):
            logger.info("task %s: metric %s not imported (only %s)", task, key, ", ".join(IMPORTED_METRICS))
    return keys


def _primary(
    task: str, keys: list[tuple[str, str]], chosen: str | None, path: Path
) -> tuple[str, str] | None:
    if chosen is not None:
        metric, filt = chosen.split(",", 1)
        if (metric, filt) not in keys:
            raise ConfigError(
                f"{path}: task {task!r} has no metric {chosen!r}; it has "
                f"{', '.join(f'{m},{f}' for m, f in keys) or 'no imported metric'}"
            )
        return metric, filt
    if ("acc", "none") in keys:
        return "acc", "none"
    return next((k for k in keys if k[0] == "exact_match"), None)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _task_rows(
    name: str, entry: RunEntry, run: LMEvalRun, task: str, study: StudyMap, root: Path
) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
    scores = run.data["results"][task]
    spec = study.tasks.get(task)
    keys = _metric_keys(task, scores)
    primary = _primary(task, keys, spec.metric if spec else None, run.path)
    n = (run.data.get("n-samples") or {}).get(task, {}).get("effective")
    base = {
        "study": study.study,
        "domain": (spec.domain if spec and spec.domain else study.domain),
        "task": (spec.task if spec and spec.task else task.lower()),
        "student": entry.student,
        "teacher": entry.teacher,
        "method": entry.method,
        "teacher_kind": entry.kind,
        "temperature": math.nan if entry.temperature is None else entry.temperature,
        "teacher_noise": entry.teacher_noise,
        "seed": entry.seed,
        "n": n,
        "run_id": name,
        "source": run.path.relative_to(root).as_posix(),
    }
    rows = []
    for metric, filt in keys:
        key = f"{metric},{filt}"
        label = "accuracy" if (metric, filt) == primary else f"accuracy@{key}"
        stderr = _number(scores.get(f"{metric}_stderr,{filt}"))
        rows.append({**base, "metric": label, "value": 100 * _number(scores[key]), "stderr": 100 * stderr})
    return rows, primary


def _samples(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SchemaError(
                    f"{path}:{number}: not valid JSON ({exc.msg}); truncated or damaged lm-eval samples file"
                ) from None
            if not isinstance(record, dict) or "doc_id" not in record:
                raise SchemaError(f"{path}:{number}: not an lm-eval sample (no doc_id)")
            yield record


def _item_texts(record: dict[str, Any], metric: str) -> tuple[str, str]:
    """``(output, pred)`` of one sample: raw response and extracted answer."""
    resps, filtered = record.get("resps") or [], record.get("filtered_resps") or []
    if filtered and all(isinstance(r, list) and len(r) == 2 for r in filtered):  # [log-likelihood, is_greedy]
        lls = [_number(r[0]) for r in filtered]
        choice = len(lls) > 1 and metric == "acc"  # one request per choice: the prediction is the likeliest
        return json.dumps(filtered), str(max(range(len(lls)), key=lls.__getitem__)) if choice else ""
    output = resps[0][0] if resps and isinstance(resps[0], list) and resps[0] else ""
    pred = filtered[0] if filtered and isinstance(filtered[0], str) else ""
    return str(output), pred


def _item_rows(
    name: str, run: LMEvalRun, task: str, primary: tuple[str, str], filters: set[str]
) -> list[dict[str, Any]]:
    path = run.samples_path(task)
    metric, filt = primary
    records = [r for r in _samples(path) if r.get("filter", filt if len(filters) == 1 else None) == filt]
    if not records and len(filters) > 1:
        raise SchemaError(
            f"{path}: no samples of filter {filt!r}; files of lm-eval < 0.4.7 without a 'filter' field "
            "can be read only for tasks with one filter"
        )
    ids = [str(r["doc_id"]) for r in records]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})[:_MAX_NAMED]
        raise SchemaError(
            f"{path}: doc ids do not match the results: doc_id repeated for filter {filt!r}: {repeated}"
        )
    n = (run.data.get("n-samples") or {}).get(task, {}).get("effective")
    if n is not None and len(ids) != int(n):
        raise SchemaError(
            f"{path}: doc ids do not match the results: {len(ids)} items for filter {filt!r}, "
            f"{run.path.name} reports {n}"
        )
    rows = []
    for record, item_id in zip(records, ids, strict=True):
        value = _number(record.get(metric))
        if value not in (0.0, 1.0):
            raise SchemaError(
                f"{path}: doc_id {item_id}: {metric} is {record.get(metric)!r}, expected 0 or 1 per item"
            )
        output, pred = _item_texts(record, metric)
        rows.append(
            {
                "run_id": name,
                "task": task,
                "item_id": item_id,
                "prompt_hash": str(record.get("prompt_hash", "")),
                "output": output,
                "pred": pred,
                "gold": str(record.get("target", "")),
                "correct": value == 1.0,
                "n_tokens": pd.NA,
                "_doc_hash": str(record.get("doc_hash", "")),
            }
        )
    reported = _number(run.data["results"][task].get(f"{metric},{filt}"))
    mean = sum(r["correct"] for r in rows) / len(rows) if rows else math.nan
    if not abs(mean - reported) <= _SCORE_TOL:
        raise SchemaError(
            f"{path}: doc ids do not match the results: mean {metric},{filt} of the samples is {mean:.6g}, "
            f"{run.path.name} reports {reported:.6g}"
        )
    return rows


def _check_same_items(items: pd.DataFrame) -> None:
    """The same (task, item_id) must be the same document in every run that has it."""
    known = items[items["_doc_hash"] != ""]
    hashes = known.groupby(["task", "item_id"])["_doc_hash"].nunique()
    bad = hashes[hashes > 1]
    if len(bad):
        task, item_id = bad.index[0]
        runs = sorted(known.loc[(known["task"] == task) & (known["item_id"] == item_id), "run_id"])
        raise SchemaError(
            f"doc ids do not match across runs: {len(bad)} item(s) are different documents in "
            f"different runs, e.g. task {task!r} doc_id {item_id} in runs {', '.join(runs)}"
        )


def _study_map(
    study: StudyMap | str | os.PathLike[str] | None, root: Path, runs: list[LMEvalRun]
) -> StudyMap:
    if isinstance(study, StudyMap):
        return study
    if study is None:
        if not (root / DEFAULT_MAP).is_file():
            models = sorted({run.model_name for run in runs})
            raise ConfigError(
                f"no study map: give --map FILE or write {root / DEFAULT_MAP} (runs: name: "
                f"model:, student:, method:, ...); models found: {', '.join(models)}"
            )
        study = root / DEFAULT_MAP
    return read_study_map(study)


def import_lm_eval(
    directory: str | os.PathLike[str], study: StudyMap | str | os.PathLike[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read lm-evaluation-harness output into the results table and the per-item table.

    Parameters
    ----------
    directory : path
        lm-eval's ``--output_path`` folder(s): every ``results_*.json`` below it is read.
    study : StudyMap or path, optional
        The mapping of runs to study cells (:mod:`kdanalysis.importers.mapping`); default:
        ``study.yaml`` in ``directory``.

    Returns
    -------
    results : pandas.DataFrame
        The results contract (:data:`kdanalysis.results.RESULT_COLUMNS`) plus ``stderr``.
    items : pandas.DataFrame
        The per-item table (:data:`kdanalysis.results.ITEM_COLUMNS`: run_id, task, item_id,
        prompt_hash, output, pred, gold, correct, n_tokens); empty without samples files.
        ``task`` is the lm-eval task name mapped like the results' ``task``.

    Raises
    ------
    SchemaError, ConfigError
        See the module docstring; the message names the file or runs.
    """
    root = Path(directory)
    runs = find_lm_eval_runs(root)
    study = _study_map(study, root, runs)
    assigned = _assign(runs, study, root)
    rows: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], Path] = {}
    for name, entry, run in assigned:
        groups = set(run.data.get("groups") or {})
        for task in run.data["results"]:
            if task in groups:
                continue
            if (name, task) in seen:
                raise SchemaError(
                    f"run {name!r} has task {task!r} twice: {seen[name, task].relative_to(root)} and "
                    f"{run.path.relative_to(root)} (keep one)"
                )
            seen[name, task] = run.path
            task_rows, primary = _task_rows(name, entry, run, task, study, root)
            rows.extend(task_rows)
            if primary is not None and run.samples_path(task).is_file():
                filters = {f for _, f in _metric_keys(task, run.data["results"][task])}
                spec = study.tasks.get(task)
                contract_task = spec.task if spec and spec.task else task.lower()
                items.extend(
                    {**r, "task": contract_task} for r in _item_rows(name, run, task, primary, filters)
                )
    if not rows:
        raise SchemaError(f"no {', '.join(IMPORTED_METRICS)} scores in the lm-eval results under {root}")
    try:
        results = validate_results(pd.DataFrame(rows), what="results")
    except SchemaError as exc:
        raise SchemaError(f"lm-eval runs under {root}: {exc}") from None
    frame = pd.DataFrame(items, columns=[*ITEM_COLUMNS, "_doc_hash"])
    _check_same_items(frame)
    item_table = validate_items(frame.drop(columns="_doc_hash"), what=f"items imported from {root}")
    logger.info(
        "imported %d result rows and %d items from %d lm-eval runs",
        len(results),
        len(item_table),
        len(assigned),
    )
    return results, item_table


def write_lm_eval_import(
    directory: str | os.PathLike[str],
    study: StudyMap | str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
) -> tuple[Path, Path]:
    """Import ``directory`` (:func:`import_lm_eval`) and write ``results.parquet`` and ``items.parquet``.

    Nothing is written unless the whole import succeeds; the two files are written both or
    neither (:func:`kdanalysis.results.write_results_and_items`).

    Returns
    -------
    (Path, Path)
        The results and items files in ``out_dir``.
    """
    results, items = import_lm_eval(directory, study)
    out = Path(out_dir)
    return write_results_and_items(results, items, out / RESULTS_FILE, out / ITEMS_FILE)
