"""Checks of a grid's pass-through settings (``training``, ``teacher_training``, ``evaluation``).

The grid passes these mappings to the runners' configs of every cell; they are checked
against :class:`~runners.distill.config.DistillConfig` and
:class:`~runners.evaluate.config.EvalConfig` when the grid is planned, keys and values
(with a placeholder model and training file standing in for what each cell sets), so
that a typo or an impossible value (``max_steps: -5``) fails before anything runs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from kdanalysis.config import validation_error_message
from kdanalysis.errors import ConfigError
from runners.distill.config import DistillConfig
from runners.evaluate.config import EvalConfig

__all__ = ["SET_BY_GRID", "check_settings", "check_method_params"]

#: Runner-config fields the grid sets per cell (not allowed in ``training``/``evaluation``).
SET_BY_GRID: dict[str, frozenset[str]] = {
    "training": frozenset(
        {
            "student",
            "teacher",
            "teacher_kind",
            "method",
            "temperature",
            "teacher_noise",
            "seed",
            "teacher_cache",
            "data.train",
        }
    ),
    "evaluation": frozenset({"model", "adapter", "tasks", "custom_tasks", "data_dir", "run_id", "meta"}),
}
#: Stands in for the models a cell sets when its settings are checked (a hub id: never loaded).
_PLACEHOLDER_MODEL = "placeholder/model"


def _unknown_key(settings: Mapping[str, Any], model: type[BaseModel], where: str, section: str) -> str | None:
    for key, value in settings.items():
        path = f"{where}.{key}"
        if path.split(".", 1)[1] in SET_BY_GRID[section]:
            return f"{path}: set by the grid for each cell; remove it"
        field = model.model_fields.get(key)
        if field is None:
            return f"{path}: unknown {model.__name__} field; known: {', '.join(model.model_fields)}"
        sub = field.annotation
        if (
            isinstance(value, Mapping)
            and "preset" not in value
            and isinstance(sub, type)
            and issubclass(sub, BaseModel)
        ):
            problem = _unknown_key(value, sub, path, section)
            if problem:
                return problem
    return None


def check_settings(
    training: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    teacher_training: Mapping[str, Any] | None = None,
) -> None:
    """Check the grid's pass-through settings against the runners' configs before anything runs.

    Unknown keys (at any depth) and keys the grid sets per cell are refused; values are
    validated by :class:`~runners.distill.config.DistillConfig` /
    :class:`~runners.evaluate.config.EvalConfig` here, with placeholders for the fields
    each cell sets (``teacher_training`` over ``training``, top-level keys replaced).
    ``teacher_training`` (overrides of ``training`` for teacher SFT) is checked like ``training``.

    Raises
    ------
    ConfigError
        Naming the key path (``training.optim.lrr: unknown OptimConfig field; known: ...``,
        ``training: optim.max_steps: Input should be greater than or equal to 1 (got -5)``).
    """
    checks = (
        ("training", "training", training, DistillConfig),
        ("teacher_training", "training", teacher_training or {}, DistillConfig),
        ("evaluation", "evaluation", evaluation, EvalConfig),
    )
    for where, section, settings, model in checks:
        problem = _unknown_key(settings, model, where, section)
        if problem:
            raise ConfigError(problem)
    _check_values(training, evaluation, teacher_training or {})


def _check(where: str, build: Callable[[], object]) -> None:
    """Run ``build`` (a config constructor); its validation error becomes one line naming ``where``."""
    try:
        build()
    except ValidationError as exc:
        raise ConfigError(validation_error_message(exc, where)) from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _distill(fields: Mapping[str, Any], train_file: str, **per_cell: Any) -> DistillConfig:
    data = fields.get("data", {})
    data = {**data, "train": train_file} if isinstance(data, Mapping) else data
    return DistillConfig(
        **{**fields, "student": _PLACEHOLDER_MODEL, "method": "sft", **per_cell, "data": data}
    )


def _check_values(
    training: Mapping[str, Any], evaluation: Mapping[str, Any], teacher_training: Mapping[str, Any]
) -> None:
    with tempfile.NamedTemporaryFile(suffix=".json") as placeholder:
        _check("training", lambda: _distill(training, placeholder.name))
        _check("teacher_training", lambda: _distill({**training, **teacher_training}, placeholder.name))
    _check(
        "evaluation",
        lambda: EvalConfig(
            **{**evaluation, "model": _PLACEHOLDER_MODEL, "tasks": ["gsm8k"], "run_id": "check"}
        ),
    )


def check_method_params(method: str, params: Mapping[str, Any], temperature: float) -> None:
    """Check a KD method's extra DistillConfig fields (``methods[].params`` of the grid) by value.

    Raises
    ------
    ConfigError
        Naming the method and the field (``methods.jsd: beta: Input should be less than or equal to 1``).
    """
    with tempfile.NamedTemporaryFile(suffix=".json") as placeholder:
        _check(
            f"methods.{method}",
            lambda: _distill(
                params, placeholder.name, method=method, teacher=_PLACEHOLDER_MODEL, temperature=temperature
            ),
        )
