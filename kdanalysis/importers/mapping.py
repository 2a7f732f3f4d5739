"""The study mapping file: what each lm-evaluation-harness run is in a KD study.

lm-evaluation-harness records which model it evaluated, not what that model is in a
distillation study. A small YAML file says it, run by run::

    study: my_kd_study                 # the results' study column (default: lm_eval_import)
    domain: reasoning                  # default domain of every task (default: lm_eval)
    tasks:                             # optional, per lm-eval task name
      arc_easy: {task: arc_e, domain: commonsense, metric: "acc,none"}
      gsm8k: {domain: math, metric: "exact_match,flexible-extract"}
    runs:
      student-sft:                     # the run's name: its run_id in the tables
        model: out/qwen-0.5b-sft       # lm-eval's model name (pretrained=/peft=... value)
        student: qwen-0.5b
        method: sft
        seed: 1
      student-fkl-t2:
        folder: "kd/fkl_t2*"           # or: the results file's folder, relative to DIR (glob)
        student: qwen-0.5b
        teacher: qwen-7b
        method: fkl
        teacher_kind: task_aware
        temperature: 2.0
        seed: 1

A run is matched by ``model`` (equal to the model name lm-eval wrote: the value of the
first of ``peft=``, ``delta=``, ``pretrained=``, ``model=``, ``path=``, ``engine=`` in
``--model_args``) or by ``folder`` (a glob over the folder holding the ``results_*.json``,
relative to the imported directory), exactly one of the two. ``metric`` of a task names
the lm-eval metric and filter (``"<metric>,<filter>"``) that becomes the contract's
``accuracy``; see :mod:`kdanalysis.importers.lm_eval_files` for the default.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from kdanalysis.config import read_yaml_mapping, validation_error_message
from kdanalysis.errors import ConfigError
from kdanalysis.results import METHODS, NO_TEACHER, TEACHER_KINDS

__all__ = ["RunEntry", "StudyMap", "TaskEntry", "read_study_map"]


class TaskEntry(BaseModel):
    """How one lm-eval task enters the results contract.

    Attributes
    ----------
    task : str or None
        Contract task id (default: the lm-eval task name, lower-cased).
    domain : str or None
        Domain (default: the map's ``domain``).
    metric : str or None
        ``"<metric>,<filter>"`` key of lm-eval's results that is the task's ``accuracy``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    task: str | None = None
    domain: str | None = None
    metric: str | None = None

    @field_validator("metric")
    @classmethod
    def _metric_has_filter(cls, value: str | None) -> str | None:
        if value is not None and value.count(",") != 1:
            raise ValueError(
                "write the lm-eval metric with its filter, e.g. 'acc,none' or 'exact_match,strict-match'"
            )
        return value


class RunEntry(BaseModel):
    """One run of the study: how to recognise it and what it is.

    Attributes
    ----------
    model, folder : str or None
        Exactly one: lm-eval's model name, or a glob over the results folder.
    student, teacher, method, teacher_kind, temperature, teacher_noise, seed
        The results contract's columns of the same names (``teacher_kind`` defaults to
        ``none`` without a teacher and ``task_aware`` with one).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str | None = None
    folder: str | None = None
    student: str
    teacher: str = NO_TEACHER
    method: str
    teacher_kind: str | None = None
    temperature: float | None = None
    teacher_noise: float = 0.0
    seed: int = 0

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"unknown method {value!r}; allowed: {', '.join(METHODS)}")
        return value

    @field_validator("teacher_kind")
    @classmethod
    def _known_kind(cls, value: str | None) -> str | None:
        if value is not None and value not in TEACHER_KINDS:
            raise ValueError(f"unknown teacher_kind {value!r}; allowed: {', '.join(TEACHER_KINDS)}")
        return value

    @model_validator(mode="after")
    def _one_matcher(self) -> RunEntry:
        if (self.model is None) == (self.folder is None):
            raise ValueError("give exactly one of 'model' (lm-eval's model name) and 'folder' (a glob)")
        if self.teacher_kind is not None and (self.teacher_kind == "none") != (self.teacher == NO_TEACHER):
            raise ValueError("teacher_kind is 'none' exactly when there is no teacher")
        return self

    @property
    def kind(self) -> str:
        """``teacher_kind``, or its default."""
        if self.teacher_kind is not None:
            return self.teacher_kind
        return "none" if self.teacher == NO_TEACHER else "task_aware"


class StudyMap(BaseModel):
    """The whole mapping file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    study: str = "lm_eval_import"
    domain: str = "lm_eval"
    tasks: dict[str, TaskEntry] = {}
    runs: dict[str, RunEntry]

    @model_validator(mode="after")
    def _distinct_runs(self) -> StudyMap:
        seen: dict[tuple[object, ...], str] = {}
        for name, run in self.runs.items():
            key = (
                run.student,
                run.teacher,
                run.method,
                run.kind,
                run.temperature,
                run.teacher_noise,
                run.seed,
            )
            if key in seen:
                raise ValueError(
                    f"runs {seen[key]!r} and {name!r} claim the same (student, teacher, method, "
                    f"teacher_kind, temperature, teacher_noise, seed) = {key}"
                )
            seen[key] = name
        return self


def read_study_map(path: str | os.PathLike[str]) -> StudyMap:
    """Read and check a study mapping file.

    Raises
    ------
    ConfigError
        One line naming the file and every problem (unknown keys, methods, a run without
        or with two matchers, two runs claiming the same study cell).
    """
    data = read_yaml_mapping(Path(path), "study mapping")
    try:
        return StudyMap.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_error_message(exc, str(path))) from None
