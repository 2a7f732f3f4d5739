"""Conversion of the paper's released result CSVs into the results contract.

The paper (arXiv 2505.15442, github.com/LCS2-IIITD/KD_generalization, Apache-2.0) released
ten wide CSV files: four accuracy tables (one row per model/method, one column per task)
and six behavioural tables (agreement ``EM1``/``EM2`` and fidelity ``BLEU``/``BLEU2``, one
row per teacher-student pair and method).  :func:`build_paper_tables` turns them into one
tidy results table (:mod:`kdanalysis.results`) and a models table;
:func:`write_paper_tables` writes both into a folder (``data/`` of the repository is built
this way by ``scripts/convert_paper_results.py``).

Mapping
-------
- ``study="kd_generalization"``, ``seed=6`` (the paper's training seed), ``teacher_noise=0``.
- ``domain`` from the file (``math`` or ``commonsense``); task columns map to the ids of
  :data:`TASK_IDS` (the task table ``data/tasks.yaml``); ``n`` is the task's test-set size
  (:data:`TEST_SET_SIZES`, NA for ``average``).
- Accuracy files: ``BaseModel`` -> ``base`` and ``SFT`` -> ``sft`` (teacher ``"none"``; a
  teacher's own SFT row is the row whose student is that teacher);
  ``student_KD_temp_X`` -> ``fkl`` at temperature X (teacher_kind ``task_aware``),
  ``student_KD_base_teacher_temp_X`` -> ``fkl`` with teacher_kind ``base``,
  ``student_RevKD_temp_X`` -> ``rkl``, ``student_GKD_temp_X`` -> ``gkd``.
  Teacher names drop any ``_suffix`` (``Qwen2.5-3B_ckpt2400`` -> ``Qwen2.5-3B``).
- Behavioural files: ``EM1*`` -> metric ``agreement``, ``EM2*`` -> ``agreement2``,
  ``BLEU`` -> ``bleu``, ``BLEU2`` -> ``bleu2``; Method ``SFT`` -> ``sft`` with the row's
  teacher (teacher_kind ``task_aware``), ``KD`` -> ``kd``; temperature NaN.
- ``method_label`` keeps the raw Method string, ``run_id`` is ``"<file>#<row index>"``
  (0-based data row) and ``source`` the file name.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from kdanalysis.errors import SchemaError
from kdanalysis.results import (
    NO_TEACHER,
    results_frame,
    validate_models,
    write_models,
    write_results,
)
from kdanalysis.tasks import STUDY_TAG, task_table

__all__ = [
    "STUDY",
    "SEED",
    "ACCURACY_FILES",
    "BEHAVIOUR_FILES",
    "RAW_FILES",
    "TASK_IDS",
    "TEST_SET_SIZES",
    "MODELS",
    "RESULTS_FILE",
    "MODELS_FILE",
    "parse_method_label",
    "build_paper_tables",
    "write_paper_tables",
]

logger = logging.getLogger(__name__)

STUDY = "kd_generalization"
SEED = 6
RESULTS_FILE = "paper_results.parquet"
MODELS_FILE = "paper_models.csv"

#: Accuracy files and their domain.
ACCURACY_FILES: dict[str, str] = {
    "math_results_main.csv": "math",
    "llama_math_results.csv": "math",
    "cs_results_main.csv": "commonsense",
    "llama_cs_results.csv": "commonsense",
}
#: Behavioural files and their (domain, metric).
BEHAVIOUR_FILES: dict[str, tuple[str, str]] = {
    "EM1.csv": ("math", "agreement"),
    "EM2.csv": ("math", "agreement2"),
    "EM1_cs.csv": ("commonsense", "agreement"),
    "EM2_cs.csv": ("commonsense", "agreement2"),
    "BLEU.csv": ("math", "bleu"),
    "BLEU2.csv": ("math", "bleu2"),
}
#: All ten raw files, in conversion order.
RAW_FILES: tuple[str, ...] = (*ACCURACY_FILES, *BEHAVIOUR_FILES)

#: Raw task column -> task id (the ``paper_column`` of each task in ``data/tasks.yaml``, and the average).
TASK_IDS: dict[str, str] = task_table().paper_columns()
#: Test-set size of each task of the study (``test_size`` in ``data/tasks.yaml``; checked against the
#: shipped test sets in the tests).
TEST_SET_SIZES: dict[str, int] = {
    s.id: s.test_size for s in task_table().tasks.specs() if STUDY_TAG in s.tags and s.test_size is not None
}
#: The paper's models: family, parameters (billions) and vocabulary size of the HF config
#: (Qwen2.5 pads its embedding to 151936 for 0.5B/1.5B/3B and 152064 for 7B/14B).
MODELS: dict[str, dict[str, Any]] = {
    "Qwen2.5-0.5B": {"family": "qwen2.5", "params_b": 0.5, "vocab_size": 151936},
    "Qwen2.5-1.5B": {"family": "qwen2.5", "params_b": 1.5, "vocab_size": 151936},
    "Qwen2.5-3B": {"family": "qwen2.5", "params_b": 3.0, "vocab_size": 151936},
    "Qwen2.5-7B": {"family": "qwen2.5", "params_b": 7.0, "vocab_size": 152064},
    "Qwen2.5-14B": {"family": "qwen2.5", "params_b": 14.0, "vocab_size": 152064},
    "Llama-3.2-1B": {"family": "llama3", "params_b": 1.0, "vocab_size": 128256},
    "Llama-3.2-3B": {"family": "llama3", "params_b": 3.0, "vocab_size": 128256},
    "Llama-3.1-8B": {"family": "llama3", "params_b": 8.0, "vocab_size": 128256},
}

_RAW_TEACHER_NONE = "-"
_KD_LABEL = re.compile(r"^student_(?P<kind>KD_base_teacher|KD|RevKD|GKD)_temp_(?P<tau>\d+(?:\.\d+)?)$")
_KD_KINDS: dict[str, tuple[str, str]] = {
    "KD": ("fkl", "task_aware"),
    "KD_base_teacher": ("fkl", "base"),
    "RevKD": ("rkl", "task_aware"),
    "GKD": ("gkd", "task_aware"),
}
_PLAIN_LABELS: dict[str, str] = {"BaseModel": "base", "SFT": "sft"}
_BEHAVIOUR_LABELS: dict[str, str] = {"SFT": "sft", "KD": "kd"}
_ID_COLUMNS = {
    "accuracy": ("Teacher", "Student", "Method"),
    "behaviour": ("Teacher", "Student", "Pair", "Method"),
}


def parse_method_label(label: str) -> tuple[str, str, float]:
    """Map a Method string of the accuracy files to ``(method, teacher_kind, temperature)``.

    Parameters
    ----------
    label : str
        ``BaseModel``, ``SFT`` or ``student_{KD,KD_base_teacher,RevKD,GKD}_temp_X``.

    Returns
    -------
    tuple
        Method id, teacher kind (``"none"`` for BaseModel/SFT) and temperature (NaN for
        BaseModel/SFT).

    Raises
    ------
    SchemaError
        If the label follows none of these patterns.
    """
    if label in _PLAIN_LABELS:
        return _PLAIN_LABELS[label], "none", float("nan")
    match = _KD_LABEL.match(label)
    if match is None:
        raise SchemaError(
            f"unknown Method {label!r}; expected BaseModel, SFT or "
            "student_{KD,KD_base_teacher,RevKD,GKD}_temp_<tau>"
        )
    method, kind = _KD_KINDS[match["kind"]]
    return method, kind, float(match["tau"])


def _teacher_name(raw: str) -> str:
    return NO_TEACHER if raw == _RAW_TEACHER_NONE else raw.split("_")[0]


def _read_raw(path: Path, id_columns: tuple[str, ...]) -> tuple[pd.DataFrame, list[str]]:
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise SchemaError(f"{path}: cannot be read as a CSV ({exc})") from exc
    missing = [c for c in id_columns if c not in df.columns]
    if missing:
        raise SchemaError(
            f"{path}: missing column(s) {', '.join(missing)}; present: {', '.join(map(str, df.columns))}"
        )
    tasks = [c for c in df.columns if c not in id_columns]
    unknown = [c for c in tasks if c not in TASK_IDS]
    if unknown:
        raise SchemaError(
            f"{path}: unknown task column(s) {', '.join(unknown)}; allowed: {', '.join(TASK_IDS)}"
        )
    for col in tasks:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna()
        if bad.any():
            raise SchemaError(
                f"{path}: non-numeric or missing value in column {col}, "
                f"data row(s) {', '.join(map(str, df.index[bad][:5]))}"
            )
        df[col] = values.astype("float64")
    return df, tasks


def _row_records(
    path: Path, df: pd.DataFrame, tasks: list[str], domain: str, metric: str, labels: Mapping[str, str] | None
) -> list[dict[str, Any]]:
    """Records of one raw file; ``labels`` maps behavioural Method strings, None = accuracy."""
    records = []
    for idx, row in df.iterrows():
        label = str(row["Method"])
        teacher = _teacher_name(str(row["Teacher"]))
        if labels is None:
            try:
                method, teacher_kind, temperature = parse_method_label(label)
            except SchemaError as exc:
                raise SchemaError(f"{path}, data row {idx}: {exc}") from exc
            if (teacher_kind == "none") != (teacher == NO_TEACHER):
                raise SchemaError(
                    f"{path}, data row {idx}: Method {label!r} does not fit Teacher {row['Teacher']!r}"
                )
        else:
            if label not in labels:
                raise SchemaError(
                    f"{path}, data row {idx}: unknown Method {label!r}; allowed: {', '.join(labels)}"
                )
            method, teacher_kind, temperature = labels[label], "task_aware", float("nan")
        for col in tasks:
            task = TASK_IDS[col]
            records.append(
                {
                    "study": STUDY,
                    "domain": domain,
                    "task": task,
                    "student": str(row["Student"]),
                    "teacher": teacher,
                    "method": method,
                    "teacher_kind": teacher_kind,
                    "temperature": temperature,
                    "teacher_noise": 0.0,
                    "seed": SEED,
                    "metric": metric,
                    "value": row[col],
                    "n": TEST_SET_SIZES.get(task, pd.NA),
                    "run_id": f"{path.name}#{idx}",
                    "source": path.name,
                    "method_label": label,
                }
            )
    return records


def _models_table(results: pd.DataFrame) -> pd.DataFrame:
    kd = results[results["teacher"] != NO_TEACHER]
    students, teachers = set(kd["student"]), set(kd["teacher"])
    names = sorted(set(results["student"]) | teachers)
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise SchemaError(
            f"model(s) {', '.join(unknown)} missing from the models table; known: {', '.join(MODELS)}"
        )
    rows = []
    for model, info in MODELS.items():
        is_student, is_teacher = model in students, model in teachers
        role = "both" if is_student and is_teacher else "teacher" if is_teacher else "student"
        rows.append({"model": model, **info, "role": role})
    return validate_models(pd.DataFrame(rows), what="paper models")


def build_paper_tables(raw_dir: str | os.PathLike[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Convert the ten released CSVs of ``raw_dir`` into the results and models tables.

    Parameters
    ----------
    raw_dir : path
        Folder holding :data:`RAW_FILES` (the repository's ``results/`` folder).

    Returns
    -------
    results : pandas.DataFrame
        The results table (:data:`kdanalysis.results.RESULT_COLUMNS`), one row per raw cell.
    models : pandas.DataFrame
        The models table (model, family, params_b, vocab_size, role).

    Raises
    ------
    SchemaError
        If ``raw_dir`` is not a folder, a file is missing or unreadable, a column, Method
        or value is unexpected, or the mapping produces a duplicate key.
    """
    raw = Path(raw_dir)
    if not raw.is_dir():
        raise SchemaError(f"raw results folder not found: {raw}")
    missing = [name for name in RAW_FILES if not (raw / name).is_file()]
    if missing:
        raise SchemaError(
            f"{raw}: missing raw file(s) {', '.join(missing)}; expected all of {', '.join(RAW_FILES)}"
        )
    records: list[dict[str, Any]] = []
    for name, domain in ACCURACY_FILES.items():
        df, tasks = _read_raw(raw / name, _ID_COLUMNS["accuracy"])
        records += _row_records(raw / name, df, tasks, domain, "accuracy", None)
    for name, (domain, metric) in BEHAVIOUR_FILES.items():
        df, tasks = _read_raw(raw / name, _ID_COLUMNS["behaviour"])
        records += _row_records(raw / name, df, tasks, domain, metric, _BEHAVIOUR_LABELS)
    results = results_frame(records)
    logger.info("converted %d values from %d files in %s", len(results), len(RAW_FILES), raw)
    return results, _models_table(results)


def write_paper_tables(raw_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Convert ``raw_dir`` and write :data:`RESULTS_FILE` and :data:`MODELS_FILE` to ``out_dir``.

    Everything is converted and validated in memory first, then each file is written
    atomically, so a bad raw folder leaves ``out_dir`` untouched.

    Returns
    -------
    list of Path
        The written files.
    """
    results, models = build_paper_tables(raw_dir)
    out = Path(out_dir)
    return [write_results(results, out / RESULTS_FILE), write_models(models, out / MODELS_FILE)]
