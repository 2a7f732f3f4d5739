"""The results contract: one tidy long table, one row per measured value.

Every producer (the bundled paper results, ``runners.evaluate``, ``kdanalysis collect``)
writes this table and every consumer (``kdanalysis.stats``, ``kdanalysis.studies``,
plots, reports) reads it. :func:`validate_results` runs on every read and write.

Results table columns (in this order)
-------------------------------------
study : str
    Name of the study the row belongs to (``"kd_generalization"`` for the paper).
domain : str
    Task domain, e.g. ``"math"`` or ``"commonsense"``.
task : str
    Lower-case task id (``"gsm8k"``, ``"arc_e"``, ...); ``"average"`` is the per-domain
    mean reported by the source.
student : str
    The evaluated model (for teacher SFT rows, the teacher itself).
teacher : str
    Teacher model, or ``"none"`` for rows without a teacher (``base``, plain ``sft``).
method : str
    One of :data:`METHODS`.
teacher_kind : str
    One of :data:`TEACHER_KINDS` (``"none"`` exactly when ``teacher == "none"``).
temperature : float
    KD temperature tau; NaN where not applicable (base, sft, unspecified KD).
teacher_noise : float
    Std of the Gaussian noise added to teacher logits (0.0 = none).
seed : int
    Training/evaluation seed. The paper's rows carry its published training seed, 6.
metric : str
    One of :data:`METRICS`, optionally followed by ``@<variant>`` for a producer's variant of
    it (e.g. ``accuracy@acc_norm,none``: lm-evaluation-harness's ``acc_norm``); the studies
    read the bare ids only.
value : float
    The measured value, in the unit of :data:`METRICS` (percent for accuracy,
    agreement and BLEU; nats for KL).
n : Int64 (nullable)
    Number of items behind the value (NA when unknown, e.g. for averages).
ci_low, ci_high : float
    Confidence interval of ``value`` in the same unit (NaN when not computed).
run_id : str
    Identifier of the run (folder or cell id) or of the source row.
source : str
    File the row was read from or run folder that produced it.
method_label : str
    The producer's own label for the method (e.g. the paper's ``student_RevKD_temp_2.0``);
    ``""`` if none.

Optional column: ``stderr`` (float), the standard error of ``value`` in its unit as the
producer reported it (e.g. lm-evaluation-harness's ``acc_stderr``), NaN when unknown.

The key of a row is :data:`KEY_COLUMNS`; two rows with the same key are duplicates.
``temperature`` may be NaN in a key (NaN equals NaN for that check); other key columns
must never be null.

Models table columns
--------------------
model : str, family : str, params_b : float (billions), vocab_size : Int64, role : str
(``student``, ``teacher`` or ``both``).

Per-item table columns
----------------------
run_id, task, item_id (str), prompt_hash (str), output (str), pred (str, ``""`` if nothing
was extracted), gold (str), correct (bool), n_tokens (Int64).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdanalysis.errors import SchemaError
from kdanalysis.io import atomic_write_bytes, atomic_write_many

__all__ = [
    "RESULT_COLUMNS",
    "KEY_COLUMNS",
    "MODEL_COLUMNS",
    "ITEM_COLUMNS",
    "METHODS",
    "KD_METHODS",
    "METRICS",
    "TEACHER_KINDS",
    "NO_TEACHER",
    "results_frame",
    "validate_results",
    "validate_models",
    "validate_items",
    "read_results",
    "write_results",
    "read_models",
    "write_models",
    "read_items",
    "write_items",
    "write_results_and_items",
    "check_choice",
]

#: Method ids and what they mean.
METHODS: dict[str, str] = {
    "base": "zero-shot base checkpoint, no training",
    "sft": "supervised fine-tuning with cross-entropy",
    "fkl": "token-level forward KL(p_T||p_S) on ground-truth sequences (the paper's 'SeqKD')",
    "rkl": "token-level reverse KL(p_S||p_T) (the paper's 'RevKD')",
    "gkd": "on-policy generalized JSD (the paper's 'GKD')",
    "seqkd": "sequence-level KD: training on teacher-generated outputs",
    "tvd": "token-level total variation distance",
    "jsd": "token-level generalized Jensen-Shannon divergence",
    "skl": "token-level skew forward KL",
    "srkl": "token-level skew reverse KL",
    "kd": "KD with an unspecified loss (the paper's EM/BLEU files label every KD student 'KD')",
}
#: Methods that involve a teacher.
KD_METHODS: frozenset[str] = frozenset(METHODS) - {"base", "sft"}

#: Metric ids and their units.
METRICS: dict[str, str] = {
    "accuracy": "percent of items answered correctly (0-100)",
    "agreement": "percent of items whose extracted answer equals the teacher's (0-100; paper's EM1)",
    "agreement2": "the paper's undocumented EM2 variant of agreement (0-100)",
    "bleu": "sacreBLEU of student vs teacher rationales (0-100; paper's BLEU)",
    "bleu2": "the paper's undocumented BLEU2 variant (0-100)",
    "kl": "mean token-level KL(teacher||student) on teacher outputs, nats per token",
}

#: Teacher kinds.
TEACHER_KINDS: dict[str, str] = {
    "task_aware": "teacher fine-tuned (SFT) on the task's training data",
    "base": "un-tuned base checkpoint used as teacher",
    "none": "no teacher (base or SFT rows)",
}
NO_TEACHER = "none"

KEY_COLUMNS: tuple[str, ...] = (
    "study",
    "domain",
    "task",
    "student",
    "teacher",
    "method",
    "teacher_kind",
    "temperature",
    "teacher_noise",
    "seed",
    "metric",
)
RESULT_COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS,
    "value",
    "n",
    "ci_low",
    "ci_high",
    "run_id",
    "source",
    "method_label",
)
_STR_COLS = (
    "study",
    "domain",
    "task",
    "student",
    "teacher",
    "method",
    "teacher_kind",
    "metric",
    "run_id",
    "source",
    "method_label",
)
_FLOAT_COLS = ("temperature", "teacher_noise", "value", "ci_low", "ci_high")
_REQUIRED = ("study", "domain", "task", "student", "method", "metric", "value")
_DEFAULTS: dict[str, Any] = {
    "teacher": NO_TEACHER,
    "teacher_kind": None,
    "temperature": np.nan,
    "teacher_noise": 0.0,
    "seed": 0,
    "n": pd.NA,
    "ci_low": np.nan,
    "ci_high": np.nan,
    "run_id": "",
    "source": "",
    "method_label": "",
}

MODEL_COLUMNS: tuple[str, ...] = ("model", "family", "params_b", "vocab_size", "role")
ITEM_COLUMNS: tuple[str, ...] = (
    "run_id",
    "task",
    "item_id",
    "prompt_hash",
    "output",
    "pred",
    "gold",
    "correct",
    "n_tokens",
)
_ROLES = ("student", "teacher", "both")
_MAX_SHOWN = 5


def check_choice(kind: str, value: str, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise listing the allowed ids.

    Parameters
    ----------
    kind : str
        What is being checked (``"method"``, ``"task"``...), used in the message.
    value : str
        The id given by the user.
    allowed : iterable of str
        The valid ids.

    Raises
    ------
    SchemaError
        If ``value`` is not allowed.
    """
    allowed = list(allowed)
    if value not in allowed:
        raise SchemaError(f"unknown {kind} {value!r}; allowed: {', '.join(map(str, allowed))}")
    return value


def _rows_repr(df: pd.DataFrame, mask: pd.Series, cols: Iterable[str]) -> str:
    idx = list(df.index[mask.to_numpy()])
    shown = ", ".join(map(str, idx[:_MAX_SHOWN]))
    more = f" (+{len(idx) - _MAX_SHOWN} more)" if len(idx) > _MAX_SHOWN else ""
    return f"{len(idx)} row(s) [{shown}{more}] in column(s) {', '.join(cols)}"


def _require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(
            f"{what}: missing column(s) {', '.join(missing)}; present: {', '.join(map(str, df.columns))}"
        )


def _coerce_float(df: pd.DataFrame, col: str, what: str) -> None:
    converted = pd.to_numeric(df[col], errors="coerce")
    bad = converted.isna() & df[col].notna()
    if bad.any():
        first = df.loc[bad, col].iloc[0]
        raise SchemaError(f"{what}: non-numeric value {first!r} in {_rows_repr(df, bad, [col])}")
    df[col] = converted.astype("float64")


def _coerce_int(df: pd.DataFrame, col: str, what: str, nullable: bool) -> None:
    _coerce_float(df, col, what)
    values = df[col]
    frac = values.notna() & (values != values.round())
    if frac.any():
        raise SchemaError(
            f"{what}: non-integer value {values[frac].iloc[0]!r} in {_rows_repr(df, frac, [col])}"
        )
    if not nullable and values.isna().any():
        raise SchemaError(f"{what}: missing value in {_rows_repr(df, values.isna(), [col])}")
    df[col] = values.astype("Int64") if nullable else values.astype("int64")


def _coerce_str(df: pd.DataFrame, col: str, what: str, required: bool) -> None:
    values = df[col].astype(object)
    null = values.isna()
    if required and null.any():
        raise SchemaError(f"{what}: missing value (NaN/None) in {_rows_repr(df, null, [col])}")
    not_str = ~null & ~values.map(lambda v: isinstance(v, str))
    if not_str.any():
        raise SchemaError(
            f"{what}: non-string value {values[not_str].iloc[0]!r} in {_rows_repr(df, not_str, [col])}"
        )
    df[col] = values.where(~null, "")


def _check_allowed(df: pd.DataFrame, col: str, allowed: Iterable[str], what: str) -> None:
    allowed = list(allowed)
    bad = ~df[col].isin(allowed)
    if bad.any():
        raise SchemaError(
            f"{what}: unknown {col} {df.loc[bad, col].iloc[0]!r} in "
            f"{_rows_repr(df, bad, [col])}; allowed: {', '.join(allowed)}"
        )


#: How far a percent value may stray outside 0-100 by floating-point rounding alone.
PERCENT_SLACK = 1e-9


def _check_units(out: pd.DataFrame, bare_metric: pd.Series, what: str) -> None:
    """Values the units of :data:`METRICS` forbid: percents outside 0-100, negative ``n``,
    ``ci_low`` above ``ci_high``, and task ids that are not lower-case."""
    # float rounding of a computed percent (e.g. sacrebleu's BLEU of identical texts, 100.00000000000004)
    # is not a unit error: allow PERCENT_SLACK beyond either end
    percent = (bare_metric != "kl") & ((out["value"] < -PERCENT_SLACK) | (out["value"] > 100 + PERCENT_SLACK))
    if percent.any():
        raise SchemaError(
            f"{what}: percent value outside 0-100 ({out.loc[percent, 'value'].iloc[0]!r}) "
            f"in {_rows_repr(out, percent, ['metric', 'value'])}"
        )
    negative = (out["n"] < 0).fillna(False).astype(bool)
    if negative.any():
        raise SchemaError(f"{what}: negative item count in {_rows_repr(out, negative, ['n'])}")
    crossed = out["ci_low"] > out["ci_high"]
    if crossed.any():
        raise SchemaError(
            f"{what}: ci_low above ci_high in {_rows_repr(out, crossed, ['ci_low', 'ci_high'])}"
        )
    upper = out["task"] != out["task"].str.lower()
    if upper.any():
        raise SchemaError(
            f"{what}: task ids are lower-case, got {out.loc[upper, 'task'].iloc[0]!r} "
            f"in {_rows_repr(out, upper, ['task'])}"
        )


def results_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a validated results table from dict records, filling optional columns.

    Optional columns get their defaults (``teacher="none"``, ``temperature=NaN``,
    ``teacher_noise=0``, ``seed=0``, ``n=NA``, empty ids); ``teacher_kind`` defaults to
    ``"none"`` without a teacher and ``"task_aware"`` with one.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RESULT_COLUMNS`.
    """
    rows = []
    for rec in records:
        row = {**_DEFAULTS, **dict(rec)}
        if row["teacher_kind"] is None:
            row["teacher_kind"] = "none" if row["teacher"] == NO_TEACHER else "task_aware"
        rows.append(row)
    df = (
        pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
        if rows
        else pd.DataFrame({c: pd.Series(dtype=object) for c in RESULT_COLUMNS})
    )
    return validate_results(df)


def validate_results(df: pd.DataFrame, *, what: str = "results") -> pd.DataFrame:
    """Check a results table against the contract and return a normalised copy.

    The copy has exactly :data:`RESULT_COLUMNS` in that order (extra columns are kept
    after them), canonical dtypes and a fresh ``RangeIndex``.

    Raises
    ------
    SchemaError
        Naming the column(s) and the first offending rows, for missing columns, wrong
        types, NaN in key columns, unknown method/metric/teacher_kind ids, an
        inconsistent teacher/teacher_kind pair, values the units forbid (a percent outside
        0-100, a negative ``n``, ``ci_low`` above ``ci_high``, an upper-case task id), or
        duplicate keys.
    """
    _require_columns(df, _REQUIRED, what)
    out = df.copy()
    for col, default in _DEFAULTS.items():
        if col not in out.columns:
            out[col] = default
    if out["teacher_kind"].isna().all() and len(out):
        out["teacher_kind"] = np.where(out["teacher"] == NO_TEACHER, "none", "task_aware")
    out = out.reset_index(drop=True)
    for col in _STR_COLS:
        _coerce_str(out, col, what, required=col in KEY_COLUMNS)
    for col in _FLOAT_COLS:
        _coerce_float(out, col, what)
    _coerce_int(out, "seed", what, nullable=False)
    _coerce_int(out, "n", what, nullable=True)
    for col in ("value", "teacher_noise"):
        if out[col].isna().any():
            raise SchemaError(f"{what}: missing value in {_rows_repr(out, out[col].isna(), [col])}")
    empty = pd.Series(False, index=out.index)
    for col in ("study", "domain", "task", "student", "teacher", "method", "metric"):
        empty |= out[col] == ""
    if empty.any():
        raise SchemaError(f"{what}: empty string in a key column, {_rows_repr(out, empty, KEY_COLUMNS)}")
    _check_allowed(out, "method", METHODS, what)
    bare = out["metric"].str.split("@", n=1).str[0]
    _check_allowed(out.assign(metric=bare), "metric", METRICS, what)
    if "stderr" in out.columns:
        _coerce_float(out, "stderr", what)
    _check_allowed(out, "teacher_kind", TEACHER_KINDS, what)
    inconsistent = (out["teacher"] == NO_TEACHER) != (out["teacher_kind"] == "none")
    if inconsistent.any():
        raise SchemaError(
            f"{what}: teacher_kind must be 'none' exactly when teacher is 'none': "
            f"{_rows_repr(out, inconsistent, ['teacher', 'teacher_kind'])}"
        )
    _check_units(out, bare, what)
    dup = out.duplicated(subset=list(KEY_COLUMNS), keep=False)
    if dup.any():
        raise SchemaError(
            f"{what}: duplicate key ({', '.join(KEY_COLUMNS)}): {_rows_repr(out, dup, KEY_COLUMNS)}"
        )
    extra = [c for c in out.columns if c not in RESULT_COLUMNS]
    return out[list(RESULT_COLUMNS) + extra]


def validate_models(df: pd.DataFrame, *, what: str = "models") -> pd.DataFrame:
    """Check a models table (:data:`MODEL_COLUMNS`) and return a normalised copy.

    Raises
    ------
    SchemaError
        For missing columns, empty/duplicate model names, non-positive sizes or unknown roles.
    """
    _require_columns(df, MODEL_COLUMNS, what)
    out = df.reset_index(drop=True).copy()
    for col in ("model", "family", "role"):
        _coerce_str(out, col, what, required=True)
    _coerce_float(out, "params_b", what)
    _coerce_int(out, "vocab_size", what, nullable=True)
    bad = ~(out["params_b"] > 0)
    if bad.any():
        raise SchemaError(f"{what}: params_b must be > 0, {_rows_repr(out, bad, ['params_b'])}")
    _check_allowed(out, "role", _ROLES, what)
    dup = out.duplicated(subset=["model"], keep=False)
    if dup.any():
        raise SchemaError(f"{what}: duplicate model, {_rows_repr(out, dup, ['model'])}")
    return out[list(MODEL_COLUMNS)]


def validate_items(df: pd.DataFrame, *, what: str = "items") -> pd.DataFrame:
    """Check a per-item table (:data:`ITEM_COLUMNS`) and return a normalised copy.

    Raises
    ------
    SchemaError
        For missing columns, wrong types, or a duplicate ``(run_id, task, item_id)``.
    """
    _require_columns(df, ITEM_COLUMNS, what)
    out = df.reset_index(drop=True).copy()
    for col in ("run_id", "task", "item_id", "prompt_hash", "gold"):
        _coerce_str(out, col, what, required=True)
    for col in ("output", "pred"):
        _coerce_str(out, col, what, required=False)
    if not pd.api.types.is_bool_dtype(out["correct"]):
        vals = out["correct"]
        bad = ~vals.isin([True, False, 0, 1])
        if bad.any():
            raise SchemaError(f"{what}: non-boolean value in {_rows_repr(out, bad, ['correct'])}")
        out["correct"] = vals.astype(bool)
    _coerce_int(out, "n_tokens", what, nullable=True)
    dup = out.duplicated(subset=["run_id", "task", "item_id"], keep=False)
    if dup.any():
        raise SchemaError(f"{what}: duplicate item, {_rows_repr(out, dup, ['run_id', 'task', 'item_id'])}")
    extra = [c for c in out.columns if c not in ITEM_COLUMNS]
    return out[list(ITEM_COLUMNS) + extra]


def _read_table(path: str | os.PathLike[str], what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{what} file not found: {path}")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix == ".csv":
            return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise SchemaError(f"{path}: cannot be read as a {what} table ({exc})") from exc
    raise SchemaError(f"{path}: unsupported file type {path.suffix!r}; use .parquet or .csv")


def _table_bytes(df: pd.DataFrame, path: Path) -> bytes:
    """``df`` serialised in memory as the file type of ``path``."""
    if path.suffix == ".parquet":
        buffer = io.BytesIO()
        df.to_parquet(buffer, index=False)
        return buffer.getvalue()
    if path.suffix == ".csv":
        return df.to_csv(index=False).encode("utf-8")
    raise SchemaError(f"{path}: unsupported file type {path.suffix!r}; use .parquet or .csv")


def _write_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Serialise in memory, then write atomically (:func:`kdanalysis.io.atomic_write_bytes`)."""
    return atomic_write_bytes(path, _table_bytes(df, Path(path)))


def _read_validated(path: str | os.PathLike[str], what: str, validate: Any) -> pd.DataFrame:
    df = _read_table(path, what)
    try:
        return validate(df, what=what)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from exc


def read_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a results table from ``.parquet`` or ``.csv`` and validate it.

    Raises
    ------
    SchemaError
        If the file is missing, unreadable, or not a results table (message names the file).
    """
    return _read_validated(path, "results", validate_results)


def write_results(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Validate and atomically write a results table (``.parquet`` or ``.csv``)."""
    return _write_table(validate_results(df), path)


def read_models(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a models table."""
    return _read_validated(path, "models", validate_models)


def write_models(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Validate and atomically write a models table."""
    return _write_table(validate_models(df), path)


def read_items(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a per-item table."""
    return _read_validated(path, "items", validate_items)


def write_items(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Validate and atomically write a per-item table."""
    return _write_table(validate_items(df), path)


def write_results_and_items(
    results: pd.DataFrame,
    items: pd.DataFrame,
    results_path: str | os.PathLike[str],
    items_path: str | os.PathLike[str],
) -> tuple[Path, Path]:
    """Validate and write a results table and its per-item table, both or neither.

    Both are serialised and written to temporary files before either replaces its
    previous version (:func:`kdanalysis.io.atomic_write_many`), so a failure (a full disk)
    never leaves a results table beside the items of another run.

    Raises
    ------
    SchemaError
        If either table fails its contract.
    DiskFullError
        If the disk fills up (both previous files are left as they were).
    """
    results_path, items_path = Path(results_path), Path(items_path)
    data = {
        results_path: _table_bytes(validate_results(results), results_path),
        items_path: _table_bytes(validate_items(items), items_path),
    }
    written = atomic_write_many(data)
    return written[0], written[1]
