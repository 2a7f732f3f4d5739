"""The configuration of one distillation run (:class:`DistillConfig`).

One object describes one trained student: the same object a grid cell builds, the
same object ``python -m runners.distill CONFIG.yaml`` reads from YAML, and the object
written back (resolved, absolute paths) into the run folder as ``config.yaml``.

Every check a user file can fail is done here, before any model is loaded, and any
failure is raised as ONE :class:`kdanalysis.errors.ConfigError` naming the field and
value: unknown keys (``extra="forbid"`` everywhere), out-of-range numbers, missing
local model/data paths, and impossible combinations (a KD method without a teacher,
``sft`` with teacher-only options, an offline teacher cache with an on-line method, ...).

Loss of a KD run: ``alpha * KD + (1 - alpha) * CE`` (the paper: ``alpha = 1``).

YAML example (all other fields keep their defaults)::

    student: Qwen/Qwen2.5-0.5B
    teacher: /models/qwen2.5-3b-math-sft
    method: rkl
    temperature: 2.0
    data: {train: data/math_10k.json, val_size: 500}
    optim: {epochs: 4, batch_size: 16, micro_batch_size: 4}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kdanalysis.config import read_yaml_mapping, validation_error_message
from kdanalysis.errors import ConfigError
from kdanalysis.results import METHODS, NO_TEACHER, TEACHER_KINDS
from runners.evaluate.prompts import PROMPT_STYLES, PromptStyle
from runners.models import looks_like_local_path

__all__ = [
    "TRAIN_METHODS",
    "LOSS_ALIASES",
    "TOKEN_KD_METHODS",
    "DataConfig",
    "LoraConfig",
    "OptimConfig",
    "GenerationConfig",
    "DistillConfig",
    "PRESETS",
    "PUBLISHED_METHODS",
    "preset_values",
    "load_config",
]

#: Method ids a run can train (``base`` is not trained, ``kd`` is only a label in the paper's files).
TRAIN_METHODS: tuple[str, ...] = tuple(m for m in METHODS if m not in {"base", "kd"})
#: Token-level KD method ids of the results contract and the loss of
#: :data:`runners.distill.losses.LOSSES` each names (defined here, torch-free, so that planning
#: a grid does not import torch; :func:`runners.distill.losses.kd_loss` reads it).
LOSS_ALIASES: dict[str, str] = {
    "fkl": "forward_kl",
    "rkl": "reverse_kl",
    "jsd": "generalized_jsd",
    "tvd": "total_variation",
    "skl": "skew_forward_kl",
    "srkl": "skew_reverse_kl",
}
#: Token-level KD methods: a loss of :func:`runners.distill.losses.kd_loss` on ground-truth
#: sequences (the keys of :data:`LOSS_ALIASES`).
TOKEN_KD_METHODS: frozenset[str] = frozenset(LOSS_ALIASES)


#: Training presets: ``project`` (this toolkit's defaults) and ``published`` (the released
#: code's choices, LCS2-IIITD/KD_generalization; every difference in docs/published_preset.md).
PRESETS: tuple[str, ...] = ("project", "published")
#: Methods the released code trains (``sft``, ``kld`` = fkl, ``reversekld`` = rkl, ``gkd``).
PUBLISHED_METHODS: frozenset[str] = frozenset({"sft", "fkl", "rkl", "gkd"})


def preset_values(preset: str, method: str) -> dict[str, Any]:
    """The loss and data fields that ``preset`` sets for ``method``.

    ``published`` follows the released code (file:line in docs/published_preset.md):
    ``train_on_inputs`` (finetune.py:81), KD over every attention-mask position with
    the student's and teacher's logits at the same position (kd_trainer.py:262, 266, 270),
    per-sequence mean and eps = 1e-9 for fkl/rkl (kd_trainer.py:37, 45-51, 70, 77-83),
    the micro-batch token mean for gkd (kd_trainer.py:121-127), the Trainer's
    ``loss / gradient_accumulation_steps`` weighting, gkd samples decoded and
    re-tokenised (kd_trainer.py:216-221) and the best checkpoint chosen by the
    cross-entropy validation loss (kd_trainer.py:260; finetune.py:434).

    Raises
    ------
    ConfigError
        Unknown preset, or ``published`` with a method the released code does not train.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    if preset == "project":
        return {
            "train_on_inputs": False,
            "kd_positions": "targets",
            "kd_reduction": "token_mean",
            "kd_eps": 0.0,
            "grad_accum": "tokens",
            "gkd_retokenize": False,
            "select_best_on": "loss",
        }
    if method not in PUBLISHED_METHODS:
        raise ConfigError(
            f"preset 'published' follows the released code, which has no method {method!r}; "
            f"allowed: {', '.join(sorted(PUBLISHED_METHODS))}"
        )
    sequence_kd = method in ("fkl", "rkl")
    return {
        "train_on_inputs": True,
        "kd_positions": "attention",
        "kd_reduction": "sequence_mean" if sequence_kd else "token_mean",
        "kd_eps": 1e-9 if sequence_kd else 0.0,
        "grad_accum": "micro_batches",
        "gkd_retokenize": method == "gkd",
        "select_best_on": "ce",
    }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DataConfig(_Strict):
    """Training data: a JSON list of ``{instruction, input?, output, answer?}`` items.

    Attributes
    ----------
    train : Path
        The training file (the published format, e.g. Math10K / Commonsense15K).
    val_size : int
        Number of items held out of ``train`` for the validation loss (the paper: 500);
        ignored when ``val_file`` is given; 0 disables validation.
    val_file : Path or None
        A separate validation file in the same format.
    max_train_items : int or None
        Use only the first N items of ``train`` (after the validation split); for demos.
    """

    train: Path
    val_size: int = Field(500, ge=0)
    val_file: Path | None = None
    max_train_items: int | None = Field(None, ge=1)

    @field_validator("train", "val_file")
    @classmethod
    def _exists(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        path = path.expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"data file not found: {path}")
        return path


class LoraConfig(_Strict):
    """LoRA adapter settings (the paper: r=8, alpha=16, dropout 0.05 on q,k,v,up,down)."""

    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "up_proj", "down_proj")


class OptimConfig(_Strict):
    """Optimiser and schedule (AdamW, linear warm-up then linear decay to 0).

    Attributes
    ----------
    lr, weight_decay, warmup_steps, max_grad_norm
        AdamW learning rate and weight decay; warm-up length in optimiser steps;
        gradient-norm clipping (0 disables).
    epochs : int
        Passes over the training items; ignored when ``max_steps`` is set.
    max_steps : int or None
        Total optimiser steps (overrides ``epochs``).
    batch_size : int
        Effective batch: examples per optimiser step over all processes (the paper: 16).
    micro_batch_size : int or None
        Examples per forward pass per process; gradient accumulation is
        ``batch_size / (micro_batch_size * n_processes)``, so the effective batch and
        the result do not depend on the hardware. None: ``batch_size / n_processes``.
    schedule : {"linear", "constant"}
        Decay after warm-up.
    """

    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(100, ge=0)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    micro_batch_size: int | None = Field(None, ge=1)
    max_grad_norm: float = Field(1.0, ge=0)
    schedule: Literal["linear", "constant"] = "linear"

    @model_validator(mode="after")
    def _divisible(self) -> OptimConfig:
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"optim.batch_size={self.batch_size} is not a multiple of "
                f"optim.micro_batch_size={self.micro_batch_size}"
            )
        return self


class GenerationConfig(_Strict):
    """Sampling settings of the model that generates during training.

    Used by ``gkd`` (the student samples continuations of the prompt) and ``seqkd``
    (the teacher writes the training outputs). Defaults: the paper's evaluation
    sampling (temperature 1, top-p 1, no top-k); ``do_sample: false`` is greedy.
    """

    max_new_tokens: int = Field(256, ge=1)
    do_sample: bool = True
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    batch_size: int = Field(16, ge=1)


class DistillConfig(_Strict):
    """One distillation (or SFT) run.

    Attributes
    ----------
    student, teacher : str
        Hub id (``org/name``) or local folder; ``teacher`` is None for ``sft``.
    student_gguf_file, teacher_gguf_file : str or None
        GGUF file inside the hub repo/folder, passed to ``load_causal_lm``.
    teacher_kind : {"task_aware", "base", "none"}
        Label of the teacher (the base-teacher ablation is a different ``teacher``
        checkpoint plus ``teacher_kind: base``); defaults to ``task_aware`` with a
        teacher and ``none`` without.
    method : str
        One of :data:`TRAIN_METHODS`: ``sft``, ``fkl``, ``rkl``, ``jsd``, ``tvd``, ``skl``,
        ``srkl`` (token-level KD on ground-truth sequences), ``gkd`` (on-policy JSD),
        ``seqkd`` (cross-entropy on teacher-generated outputs).
    temperature : float
        KD temperature tau (> 0); losses are multiplied by tau^2.
    alpha : float
        Loss = alpha * KD + (1 - alpha) * CE, in [0, 1]; must be 1 for ``gkd``.
    beta : float
        Generalized JSD interpolation (``jsd``, ``gkd``), in [0, 1].
    skew_alpha : float
        Skew of ``skl`` / ``srkl``, in [0, 1].
    gkd_lambda : float
        Probability that a ``gkd`` batch is replaced by student generations (on-policy).
    generation : GenerationConfig
        Sampling of the generating model (``gkd``: student, ``seqkd``: teacher).
    teacher_noise : float
        Std of Gaussian noise added to the teacher logits (the noise ablation), >= 0.
    preset : {"project", "published"}
        Fills the fields below that are not given (:func:`preset_values`); under
        ``published`` a given value must equal the preset's, and the released code's
        fixed settings must hold (LoRA dropout 0.05; ``gkd``: temperature 1, beta and
        gkd_lambda 0.5).
    train_on_inputs : bool
        False: prompt tokens are masked out of every loss (only the response is learnt).
    kd_positions : {"targets", "attention"}
        Where the KD loss is taken: ``targets``, the positions whose next token has a
        label (the logits at t against the teacher's at t for token t+1); ``attention``,
        every non-padding position, the last one included (the released code).
    kd_reduction : {"token_mean", "sequence_mean"}
        KD over a micro-batch: mean over its positions, or mean over sequences of each
        sequence's mean (the released fkl/rkl).
    kd_eps : float
        Added to the teacher's probabilities (fkl) or the student's (rkl) as the released
        code does (1e-9); 0 for the exact divergence. Only fkl and rkl take it.
    grad_accum : {"tokens", "micro_batches"}
        Weighting of the micro-batches of an optimiser step: ``tokens``, by their target
        tokens (the step's loss is the sum over all its target tokens, on all processes,
        over their count: the gradient of one big batch); ``micro_batches``, each
        micro-batch's own mean times 1 / number of micro-batches (the HF Trainer the
        released code uses).
    gkd_retokenize : bool
        ``gkd``: decode the on-policy sequences (special tokens dropped) and tokenise the
        text again, as the released code does.
    select_best_on : {"loss", "ce"}
        Validation value that picks the best weights: the method's loss or the student's
        cross-entropy (the released Trainer's ``eval_loss``).
    prompt_style : str
        Template of :func:`runners.evaluate.prompts.format_prompt` (default: the
        released training prompt).
    data : DataConfig
        Training/validation files.
    max_length : int
        Token budget of prompt + response (longer examples are truncated).
    finetuning : {"lora", "full"}
        LoRA adapters (``lora`` settings) or full fine-tuning.
    optim : OptimConfig
        AdamW, schedule, batch sizes, epochs/max_steps.
    precision : {"auto", "bf16", "fp16", "fp32"}
        Autocast dtype; ``auto`` = bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU.
    seed : int
        Seeds python, numpy, torch, the data order and the on-policy coin (paper: 6).
    log_every, eval_every, checkpoint_every : int
        Intervals in optimiser steps (``eval_every``/``checkpoint_every`` 0: only at the end).
    keep_checkpoints : int
        How many of the latest checkpoints to keep.
    save_model : {"best", "last"}
        Whether ``model/`` holds the weights with the best validation loss or the last ones.
    teacher_cache : Path or None
        Offline top-k teacher-logit cache (:mod:`runners.distill.cache`) for token-level
        KD; the teacher model is then not loaded (unless the cache is out of its error
        bound, see ``teacher_cache_max_tail_mass``).
    teacher_cache_max_tail_mass : float or None
        Largest mean teacher mass outside the cache's top-k (at the run's τ) at which the
        cache is used; above it the run loads the live teacher. None:
        :data:`runners.distill.cache.TAIL_MASS_BOUND`, which keeps the cached loss within about
        1 % of the full-vocabulary loss; 1 accepts any cache of a method the cache serves.
    """

    student: str
    student_gguf_file: str | None = None
    teacher: str | None = None
    teacher_gguf_file: str | None = None
    teacher_kind: str | None = None
    method: str
    temperature: float = Field(1.0, gt=0)
    alpha: float = Field(1.0, ge=0, le=1)
    beta: float = Field(0.5, ge=0, le=1)
    skew_alpha: float = Field(0.1, ge=0, le=1)
    gkd_lambda: float = Field(0.5, ge=0, le=1)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    teacher_noise: float = Field(0.0, ge=0)
    preset: Literal["project", "published"] = "project"
    train_on_inputs: bool | None = None
    kd_positions: Literal["targets", "attention"] | None = None
    kd_reduction: Literal["token_mean", "sequence_mean"] | None = None
    kd_eps: float | None = Field(None, ge=0, lt=1e-3)
    grad_accum: Literal["tokens", "micro_batches"] | None = None
    gkd_retokenize: bool | None = None
    select_best_on: Literal["loss", "ce"] | None = None
    prompt_style: PromptStyle = "published_train"
    data: DataConfig
    max_length: int = Field(256, ge=8)
    finetuning: Literal["lora", "full"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    seed: int = 6
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(100, ge=0)
    checkpoint_every: int = Field(100, ge=0)
    keep_checkpoints: int = Field(2, ge=1)
    save_model: Literal["best", "last"] = "best"
    teacher_cache: Path | None = None
    teacher_cache_max_tail_mass: float | None = Field(None, gt=0, le=1)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(validation_error_message(err, "invalid distillation config")) from None

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        if method not in TRAIN_METHODS:
            raise ValueError(f"unknown method {method!r}; trainable methods: {', '.join(TRAIN_METHODS)}")
        return method

    @field_validator("prompt_style")
    @classmethod
    def _known_style(cls, style: str) -> str:
        if style not in PROMPT_STYLES:
            raise ValueError(f"unknown prompt_style {style!r}; known: {', '.join(PROMPT_STYLES)}")
        return style

    @field_validator("student", "teacher")
    @classmethod
    def _local_model_exists(cls, name: str | None) -> str | None:
        if name is None or not looks_like_local_path(name):
            return name
        path = Path(name).expanduser().resolve()
        if not path.exists():
            raise ValueError(f"local model path not found: {path}")
        return str(path)

    @field_validator("teacher_cache")
    @classmethod
    def _cache_exists(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        path = path.expanduser().resolve()
        if not (path / "index.json").is_file():
            raise ValueError(f"teacher cache not found (no index.json): {path}")
        return path

    @model_validator(mode="after")
    def _apply_preset(self) -> DistillConfig:
        for name, value in preset_values(self.preset, self.method).items():
            given = getattr(self, name)
            if given is None:
                object.__setattr__(self, name, value)
            elif self.preset == "published" and given != value:
                raise ValueError(
                    f"preset 'published' sets {name}={value!r} for method {self.method!r}; "
                    f"got {name}={given!r} (use preset 'project' to choose freely)"
                )
        if self.preset == "published":
            if self.finetuning == "lora" and self.lora.dropout != 0.05:
                raise ValueError(f"preset 'published' trains with LoRA dropout 0.05, got {self.lora.dropout}")
            if self.method == "gkd" and (self.temperature, self.beta, self.gkd_lambda) != (1.0, 0.5, 0.5):
                raise ValueError(
                    "preset 'published': the released gkd has temperature 1 (none is passed to its "
                    "loss), beta 0.5 and lambda 0.5"
                )
        if self.kd_eps and self.method not in ("fkl", "rkl"):
            raise ValueError(f"kd_eps applies to fkl and rkl only, not {self.method!r}")
        if self.gkd_retokenize and self.method != "gkd":
            raise ValueError(f"gkd_retokenize applies to method 'gkd' only, not {self.method!r}")
        return self

    @model_validator(mode="after")
    def _combinations(self) -> DistillConfig:
        method = self.method
        if method == "sft":
            for name in ("teacher", "teacher_gguf_file", "teacher_cache"):
                if getattr(self, name) is not None:
                    raise ValueError(f"method 'sft' trains without a teacher; remove {name}")
            if self.teacher_noise:
                raise ValueError("method 'sft' has no teacher logits to add teacher_noise to")
            if self.temperature != 1.0:
                raise ValueError(f"method 'sft' has no KD temperature (got temperature={self.temperature})")
            if self.teacher_kind not in (None, NO_TEACHER):
                raise ValueError(f"method 'sft' has no teacher; teacher_kind={self.teacher_kind!r}")
            object.__setattr__(self, "teacher_kind", NO_TEACHER)
            return self
        if self.teacher is None:
            raise ValueError(f"method {method!r} needs a teacher (set teacher: hub id or local path)")
        kind = self.teacher_kind or "task_aware"
        if kind not in TEACHER_KINDS or kind == NO_TEACHER:
            raise ValueError(f"teacher_kind={kind!r} with a teacher; allowed: task_aware, base")
        object.__setattr__(self, "teacher_kind", kind)
        if self.teacher_cache is not None and method not in TOKEN_KD_METHODS:
            raise ValueError(
                f"teacher_cache holds teacher logits of ground-truth sequences; method {method!r} "
                "needs the live teacher (remove teacher_cache)"
            )
        if method == "gkd" and self.alpha != 1.0:
            raise ValueError("method 'gkd' trains on the JSD loss alone; alpha must be 1")
        if method == "seqkd":
            if self.teacher_noise:
                raise ValueError("method 'seqkd' trains on teacher text, not logits; teacher_noise must be 0")
            if self.alpha != 1.0 or self.temperature != 1.0:
                raise ValueError(
                    "method 'seqkd' is cross-entropy on teacher outputs; alpha and temperature must be 1"
                )
        return self

    @property
    def is_kd(self) -> bool:
        """Whether the run uses a teacher."""
        return self.method != "sft"

    def to_yaml(self) -> str:
        """The resolved config as YAML (loadable by :func:`load_config`)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> DistillConfig:
        """Read a YAML file (see :func:`load_config`)."""
        return load_config(path)


def load_config(source: DistillConfig | Mapping[str, Any] | str | os.PathLike[str]) -> DistillConfig:
    """Build a validated :class:`DistillConfig` from an object, a mapping or a YAML file.

    Raises
    ------
    ConfigError
        If the file is missing or not a YAML mapping, or any field is invalid
        (the message names every offending field).
    """
    if isinstance(source, DistillConfig):
        return source
    if isinstance(source, Mapping):
        return DistillConfig(**source)
    path = Path(source)
    data = read_yaml_mapping(path, "distillation config")
    try:
        return DistillConfig(**data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
