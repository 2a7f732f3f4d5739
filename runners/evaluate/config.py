"""EvalConfig: one evaluation run (the object a grid cell builds), validated before any model load.

YAML example (``python -m runners.evaluate eval.yaml --out runs/qwen05_sft``)::

    model: Qwen/Qwen2.5-0.5B
    adapter: runs/qwen05_sft/adapter        # optional peft LoRA adapter
    tasks: [gsm8k, svamp, boolq]
    data_dir: ../shared/data/kd_generalization/testsets
    limit: 200                               # first 200 items of each task (optional)
    backend: hf                              # or vllm
    batch_size: 32
    decoding: published                      # or greedy (default), or a mapping
    meta: {student: Qwen2.5-0.5B, method: sft, seed: 6, study: kd_generalization}

Fields are documented on :class:`EvalConfig`; unknown keys are errors.
:func:`load_eval_config` reads a YAML/JSON file and turns every validation problem
into one :class:`~kdanalysis.errors.ConfigError` naming the file and the fields.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kdanalysis.config import read_yaml_mapping, validation_error_message
from kdanalysis.errors import ConfigError
from kdanalysis.runfolder import CONFIG_FILE
from runners.evaluate.decoding import DecodingConfig, with_stop
from runners.evaluate.prompts import STOP_STRINGS
from runners.evaluate.tasks import TaskRegistry, TaskSpec, bundled_tasks, json_task

__all__ = [
    "EvalConfig",
    "CustomTaskConfig",
    "RunMetaConfig",
    "VLLMOptions",
    "load_eval_config",
    "read_run_tasks",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomTaskConfig(_Strict):
    """A task defined by one test-set JSON file in the published format.

    Added to the run's :meth:`EvalConfig.task_registry` (replacing a table task of the same
    id, as a grid's synthetic ``arithmetic`` does), so its ``id`` can be listed in
    :attr:`EvalConfig.tasks`; kept in the run folder's ``config.yaml``, so re-scoring the
    run finds it again.
    """

    id: str
    file: Path
    domain: str
    answer_type: Literal["number", "choice_letter", "label"]
    labels: tuple[str, ...] = ()


class VLLMOptions(_Strict):
    """Engine options used only when ``backend: vllm`` (:class:`~runners.evaluate.vllm_backend.VLLMBackend`).

    Attributes
    ----------
    tensor_parallel_size, data_parallel_size : int
        GPUs per engine and number of engine replicas (>= 1).
    enable_prefix_caching : bool
        Reuse the KV cache of shared prompt prefixes.
    gpu_memory_utilization : float
        Fraction of GPU memory vLLM may take, in (0, 1].
    max_model_len : int or None
        Context length limit passed to vLLM.
    replica_timeout_s : float or None
        With ``data_parallel_size`` > 1: the longest wait, in seconds (> 0, finite), for the
        replicas of one call before the run fails with ``RunFailedError``; ``None``: no
        limit while they live (a dead replica is reported at once anyway). It does not change
        the outputs, so it is left out of :meth:`EvalConfig.fingerprint` (a run may be
        resumed with another limit).
    """

    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1)
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_model_len: int | None = Field(None, ge=1)
    replica_timeout_s: float | None = Field(None, gt=0, allow_inf_nan=False)


class RunMetaConfig(_Strict):
    """Identity of the run, copied into every results row (see ``runners.evaluate.scoring.RunMeta``).

    ``student`` defaults to the last path component of :attr:`EvalConfig.model`;
    ``teacher_kind`` to ``"none"`` without a teacher and ``"task_aware"`` with one.
    """

    study: str = "kdanalysis"
    student: str | None = None
    teacher: str = "none"
    method: str = "base"
    teacher_kind: str | None = None
    temperature: float | None = None
    teacher_noise: float = 0.0
    seed: int = 0
    method_label: str = ""


class EvalConfig(_Strict):
    """Everything one evaluation run needs.

    Attributes
    ----------
    model : str
        Hub id or local directory of the checkpoint.
    adapter : str or None
        Directory of a peft LoRA adapter applied on top of ``model``.
    gguf_file : str or None
        GGUF file inside ``model`` to load instead of safetensors.
    dtype : str
        ``"auto"`` (bfloat16 on GPU, float32 on CPU), ``"bfloat16"``, ``"float16"`` or ``"float32"``.
    device : str or None
        HF backend device (``"cuda"``, ``"cpu"``, ``"cuda:1"``); ``None`` = CUDA when available.
    tasks : list of str
        Task ids (of the task table ``data/tasks.yaml`` or listed in ``custom_tasks``),
        evaluated in this order; no duplicates.
    custom_tasks : list of CustomTaskConfig
        Extra tasks from JSON files (e.g. the toy arithmetic task).
    data_dir : Path or None
        Folder of the published test-set files (needed by tasks whose file is relative).
    limit : int or None
        Evaluate only the first ``limit`` items of every task.
    backend : {"hf", "vllm"}
    batch_size : int
        Starting batch size of the HF backend (halved automatically on out-of-memory).
    vllm : VLLMOptions
        Engine options of the vLLM backend.
    mode : {"generate", "multiple_choice"}
        ``generate`` (the published protocol): free generation + answer extraction.
        ``multiple_choice``: pick the label with the highest log-likelihood (label and
        choice-letter tasks only; a fast, non-published alternative).
    decoding : DecodingConfig
        Decoding settings, or a preset name (``greedy``, ``published``); the prompt style's
        stop strings (:data:`runners.evaluate.prompts.STOP_STRINGS`: a second
        ``### Response:``) are added to ``stop``, so generation ends where scoring cuts.
    prompt_style : str
        Prompt template (:data:`runners.evaluate.prompts.PROMPT_STYLES`).
    extractor : str
        Answer extractor (``published`` or ``strict``).
    run_id : str or None
        Identifier written into every row; ``None`` = the run folder's name.
    meta : RunMetaConfig
        Study, student, teacher, method, teacher_kind, temperature, teacher_noise, seed, method_label.
    """

    model: str
    adapter: str | None = None
    gguf_file: str | None = None
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    device: str | None = None
    tasks: list[str] = Field(min_length=1)
    custom_tasks: list[CustomTaskConfig] = Field(default_factory=list)
    data_dir: Path | None = None
    limit: int | None = Field(None, ge=1)
    backend: Literal["hf", "vllm"] = "hf"
    batch_size: int = Field(16, ge=1)
    vllm: VLLMOptions = Field(default_factory=VLLMOptions)
    mode: Literal["generate", "multiple_choice"] = "generate"
    decoding: DecodingConfig = Field(default_factory=DecodingConfig)
    prompt_style: Literal["published", "published_train", "alpaca"] = "published"
    extractor: Literal["published", "strict"] = "published"
    run_id: str | None = None
    meta: RunMetaConfig = Field(default_factory=RunMetaConfig)

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks: list[str]) -> list[str]:
        seen = {t for t in tasks if tasks.count(t) > 1}
        if seen:
            raise ValueError(f"duplicate task id(s): {', '.join(sorted(seen))}")
        return tasks

    @model_validator(mode="after")
    def _check_combination(self) -> EvalConfig:
        if self.mode == "multiple_choice" and not self.decoding.is_greedy:
            raise ValueError(
                "mode 'multiple_choice' scores labels by log-likelihood; decoding must stay greedy"
            )
        if self.meta.temperature is not None and not (
            math.isfinite(self.meta.temperature) and self.meta.temperature > 0
        ):
            raise ValueError(f"meta.temperature must be > 0, got {self.meta.temperature}")
        self.decoding = with_stop(self.decoding, STOP_STRINGS[self.prompt_style])
        return self

    @property
    def student(self) -> str:
        """The student name of the results rows (``meta.student`` or the model's last path part)."""
        return self.meta.student or Path(self.model.rstrip("/")).name

    def task_registry(self) -> TaskRegistry:
        """The tasks this run knows: the task table plus :attr:`custom_tasks` (which replace
        table tasks of the same id)."""
        custom = [
            json_task(c.file, domain=c.domain, answer_type=c.answer_type, labels=c.labels, id=c.id)
            for c in self.custom_tasks
        ]
        return bundled_tasks().with_tasks(*custom, replace=True)

    def task_specs(self) -> list[TaskSpec]:
        """Specs of :attr:`tasks`, in order.

        Raises
        ------
        ConfigError
            For an id that neither the task table nor ``custom_tasks`` defines (the message
            lists the known ones).
        """
        registry = self.task_registry()
        return [registry[task_id] for task_id in self.tasks]

    def resolved(self) -> dict[str, Any]:
        """The full configuration with every default filled in, JSON-ready."""
        return json.loads(self.model_dump_json())

    def fingerprint(self) -> str:
        """SHA-256 (16 hex chars) of the resolved configuration, ``run_id`` excluded.

        Two configs with the same fingerprint produce the same outputs; a run folder
        refuses to resume under a different one. ``vllm.replica_timeout_s`` is excluded too
        (a wait limit, not an output setting). A sampling configuration also records its
        seeding scheme (each item drawn from its own :func:`~runners.evaluate.decoding.item_seed`
        generator): a run sampled under the earlier per-batch seeding never resumes under it.
        """
        data = self.resolved()
        data.pop("run_id")
        data["vllm"].pop("replica_timeout_s")
        if not self.decoding.is_greedy:
            data["sampling_seeds"] = "per item"
        blob = json.dumps(data, sort_keys=True).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]


def load_eval_config(path: str | Path, **overrides: Any) -> EvalConfig:
    """Read an :class:`EvalConfig` from a YAML (or JSON) file.

    Parameters
    ----------
    path : str or Path
        The file.
    **overrides
        Top-level fields replacing the file's values (e.g. ``limit=10``).

    Raises
    ------
    ConfigError
        If the file is missing or unreadable, or any field is invalid (all problems are
        listed, each with the field path).
    """
    path = Path(path)
    data = read_yaml_mapping(path, "evaluation config")
    data.update(overrides)
    try:
        return EvalConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_error_message(exc, str(path))) from exc


def read_run_tasks(run_dir: str | Path) -> TaskRegistry:
    """The task registry a run folder was evaluated with, for re-scoring it without a model.

    That is the :meth:`EvalConfig.task_registry` of the folder's ``config.yaml`` (the task
    table plus the run's custom tasks); a folder without ``config.yaml`` (tables written by
    ``runners.evaluate.scoring.score_outputs`` directly) gets the task table.

    Raises
    ------
    ConfigError
        If ``config.yaml`` exists but is not a valid evaluation config (names the file).
    """
    path = Path(run_dir) / CONFIG_FILE
    return load_eval_config(path).task_registry() if path.is_file() else bundled_tasks()
