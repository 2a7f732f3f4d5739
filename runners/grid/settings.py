"""Checks of a grid's pass-through settings (``training``, ``teacher_training``, ``evaluation``).

The grid passes these mappings to the runners' configs of every cell; they are checked
against :class:`~runners.distill.config.DistillConfig` and
:class:`~runners.evaluate.config.EvalConfig` when the grid is planned, so that a typo
fails before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from kdanalysis.errors import ConfigError
from runners.distill.config import DistillConfig
from runners.evaluate.config import EvalConfig

__all__ = ["SET_BY_GRID", "check_settings"]

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
    :class:`~runners.evaluate.config.EvalConfig` when each cell starts.
    ``teacher_training`` (overrides of ``training`` for teacher SFT) is checked like ``training``.

    Raises
    ------
    ConfigError
        Naming the key path (``training.optim.lrr: unknown OptimConfig field; known: ...``).
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
