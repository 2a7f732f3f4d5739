"""The training loop, top to bottom: models → data → optimiser → steps → checkpoints.

:func:`train` is written to be read in order (in the spirit of nanoGPT's ``train.py``), one
named step after the other:

1. ``_set_up_devices``: devices and precision (``accelerate.Accelerator``; on one CPU
   process it changes nothing) and the split of a batch into micro-batches,
2. ``_load_models``: the student and the teacher signal (live frozen model or offline
   cache, checked against the run's :class:`~runners.distill.cache.CacheKey`; tokenizers
   must match),
3. ``_load_data``: the validation split, ``seqkd``: the teacher's outputs replace the
   targets; the number of steps is :func:`runners.distill.schedule.total_steps`,
4. ``_make_trainable`` (LoRA adapters or full fine-tuning), AdamW + linear warm-up/decay,
   ``_restore`` from the latest checkpoint if there is one,
5. the step loop, written out in :func:`train`: gradient accumulation over
   ``_micro_batches`` (weighted by ``_accumulation_weight``: token-weighted by default,
   see below), clipping, logging (running sums in ``_LossSums``), periodic ``_validate``
   (``_save_best`` keeps the best weights) and atomic ``_save_checkpoint``,
6. ``_save_final``: the final weights (best or last) in ``model/`` with the tokenizer.

Gradient accumulation (``grad_accum``). ``tokens`` (default, as TRL and HF Trainer with
``num_items_in_batch``): micro-batch m's token-mean loss is back-propagated times
``n_m * world / N``, ``n_m`` its target tokens and ``N`` those of the whole global batch (all
processes; DDP averages over processes), so a step's gradient is that of the loss summed
over all its target tokens divided by their number: the gradient of one big batch. ``N`` is
known from the data before the step; when ``gkd`` samples change the counts, the gradients
are multiplied by ``N / N_actual`` (``N_actual`` all-reduced) before clipping.
``micro_batches`` (the released code's HF Trainer): each micro-batch's own mean times
``1 / accum``, so micro-batches count equally whatever their lengths.

Multi-GPU: launch with ``accelerate launch -m runners.distill CONFIG.yaml``. Process r
takes the r-th contiguous share of each global batch, so with the same
``micro_batch_size`` a run on N processes sees the same micro-batches as on one (equal
results up to floating-point summation order); gradients are all-reduced by DDP on the
last micro-batch of a step only; process 0 writes files. The single-process path is the
same code (``Accelerator`` is then a no-op wrapper). The multi-GPU path has not been run
in CI (no GPUs there).

Resume: a checkpoint holds the trainable weights, optimiser, scheduler, RNG states
(python, numpy, torch, CUDA; one file per process) and the step. The data order is a
pure function of ``(seed, epoch)`` and the ``gkd`` coin of ``(seed, step, micro-batch)``,
so the step number is the whole data position: a killed run resumed from step k ends
with the same weights as an uninterrupted one (bit-identical on CPU; tested).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdanalysis.errors import ConfigError
from kdanalysis.io import atomic_write_json, atomic_write_text, read_json
from runners.distill.cache import CacheKey, TeacherCache
from runners.distill.config import TOKEN_KD_METHODS, DistillConfig
from runners.distill.data import IGNORE_INDEX, Example, encode_pairs, epoch_batches, load_items, split_items
from runners.distill.methods import LossOutput, TeacherSignal, build_method, generate_teacher_outputs
from runners.distill.schedule import steps_per_epoch, total_steps
from runners.distill.vocab import check_same_tokenizer
from runners.evaluate.prompts import STOP_STRINGS

__all__ = ["TrainResult", "StepCallback", "train", "resolve_precision", "add_lora", "load_trainable_state"]

log = logging.getLogger(__name__)

#: Called by process 0 after every optimiser step with that step's record (see :func:`train`).
StepCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    steps : int
        Optimiser steps done (the run's total).
    best_step : int or None
        Step with the lowest validation loss (None without validation).
    best_val_loss : float or None
        That step's validation value (``val_loss``, or ``val_ce`` with ``select_best_on: ce``).
    model_dir : Path
        Folder with the saved adapter or model and the tokenizer.
    """

    steps: int
    best_step: int | None
    best_val_loss: float | None
    model_dir: Path


# --------------------------------------------------------------------------- helpers


def resolve_precision(precision: str, cuda: bool) -> str:
    """Accelerate's ``mixed_precision`` for a config value: ``auto`` → bf16/fp16 on GPU, ``no`` on CPU."""
    if precision == "auto":
        if not cuda:
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and not cuda:
        raise ConfigError("precision 'fp16' needs a CUDA GPU (use 'bf16' or 'fp32' on CPU)")
    return {"fp32": "no"}.get(precision, precision)


def _dtype(mixed_precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision, torch.float32)


def _trainable_state(model: Any) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().to("cpu", copy=True).contiguous()
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def load_trainable_state(model: Any, path: Path) -> None:
    """Load a ``trainable.safetensors`` file into the matching parameters of ``model``."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    params = dict(model.named_parameters())
    missing = [n for n in state if n not in params]
    if missing:
        raise ConfigError(f"{path} holds parameters the model lacks: {missing[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


#: What a checkpoint's ``.pt`` files may hold besides tensors and builtins: numpy's RNG state.
_CHECKPOINT_GLOBALS = [np.ndarray, np.dtype, np._core.multiarray._reconstruct, np.dtypes.UInt32DType]


def _load_pt(path: Path) -> Any:
    """``torch.load`` of a checkpoint file without running arbitrary pickled code (``weights_only``)."""
    with torch.serialization.safe_globals(_CHECKPOINT_GLOBALS):
        return torch.load(path, weights_only=True)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _load_model(
    name: str, gguf_file: str | None, dtype: torch.dtype, device: torch.device
) -> tuple[Any, Any]:
    from runners.models import DtypeName, load_causal_lm

    dtype_name: DtypeName = "float32"
    if dtype == torch.bfloat16:
        dtype_name = "bfloat16"
    elif dtype == torch.float16:
        dtype_name = "float16"
    return load_causal_lm(name, dtype=dtype_name, device=str(device), gguf_file=gguf_file)


def add_lora(model: Any, config: DistillConfig) -> Any:
    """Wrap ``model`` with peft LoRA adapters as ``config.lora`` says (only the adapters train)."""
    from peft import LoraConfig, get_peft_model

    lora = config.lora
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    absent = [m for m in lora.target_modules if m not in names]
    if absent:
        raise ConfigError(f"lora.target_modules {absent} are not modules of {config.student}")
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


class _Checkpoints:
    """Atomic checkpoint folders ``checkpoints/step_NNNNNN`` plus a ``latest`` pointer."""

    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.keep = keep

    def latest(self) -> Path | None:
        pointer = self.root / "latest"
        if not pointer.is_file():
            return None
        path = self.root / pointer.read_text(encoding="utf-8").strip()
        return path if (path / "state.json").is_file() else None

    def save(self, step: int, write: Callable[[Path], None]) -> Path:
        name = f"step_{step:06d}"
        tmp = self.root / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write(tmp)
        final = self.root / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_text(self.root / "latest", name + "\n")
        for old in sorted(self.root.glob("step_*"))[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final


class _MetricsLog:
    """``metrics.jsonl``: one JSON record per logged step or validation; on resume, records after the
    checkpoint's step are dropped (they will be written again)."""

    def __init__(self, path: Path, resume_step: int, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        if enabled and path.is_file():
            kept = [
                line
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and _record_step(line) <= resume_step
            ]
            atomic_write_text(path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")


def _record_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return 1 << 62  # a cut line: drop it


# --------------------------------------------------------------------------- the parts of a run


@dataclass(frozen=True)
class _Devices:
    """Where the run computes: the accelerator, its precision and the batch split over processes.

    ``micro`` examples per forward pass per process, ``accum`` micro-batches per optimiser
    step per process (``micro * accum * world == optim.batch_size``).
    """

    accelerator: Any
    mixed_precision: str
    micro: int
    accum: int

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def autocast(self) -> Any:
        return self.accelerator.autocast


@dataclass
class _Models:
    """The student, its tokenizer and the teacher: a live model (None with a cache or when
    no longer needed) or an offline cache."""

    student: Any
    tokenizer: Any
    teacher: Any | None
    cache: TeacherCache | None


@dataclass(frozen=True)
class _Data:
    """Encoded training and validation examples."""

    train: list[Example]
    val: list[Example]


@dataclass
class _Best:
    """The lowest validation loss so far and its step (None before the first validation)."""

    step: int | None = None
    val_loss: float = float("inf")

    def update(self, val_loss: float, step: int) -> bool:
        """Record ``val_loss`` of ``step``; whether it is the new best."""
        if val_loss < self.val_loss:
            self.val_loss, self.step = val_loss, step
            return True
        return False


@dataclass
class _LossSums:
    """Running sums of the logged loss parts over micro-batches, until a record is written.

    Each micro-batch adds its values times a weight: in training the weight it has in the
    gradient (its target tokens with ``grad_accum: tokens``, 1 with ``micro_batches``), its
    target tokens in validation (token-weighted means).

    Attributes
    ----------
    loss, ce, kd, kl : float
        Weighted sums of :class:`~runners.distill.methods.LossOutput`'s parts (``kd`` and
        ``kl`` over the micro-batches that have them).
    on_policy : float
        Number of on-policy (``gkd``) micro-batches.
    micro_batches : float
        Number of micro-batches.
    weight : float
        Sum of the weights.
    kd_weight : float
        Sum of the weights of micro-batches with a teacher signal.
    tokens : float
        Non-padding input tokens (training).
    """

    loss: float = 0.0
    ce: float = 0.0
    kd: float = 0.0
    kl: float = 0.0
    on_policy: float = 0.0
    micro_batches: float = 0.0
    weight: float = 0.0
    kd_weight: float = 0.0
    tokens: float = 0.0

    def add(self, out: LossOutput, weight: float) -> None:
        """Add one micro-batch's loss parts with ``weight``."""
        self.loss += out.loss.item() * weight
        self.ce += out.ce.item() * weight
        if out.kd is not None:
            self.kd += out.kd.item() * weight
            self.kd_weight += weight
        if out.kl is not None:
            self.kl += out.kl.item() * weight
        self.on_policy += out.on_policy
        self.micro_batches += 1
        self.weight += weight

    def reduced(self, accelerator: Any) -> _LossSums:
        """The sums over all processes (float64 all-reduce)."""
        values = torch.tensor(astuple(self), dtype=torch.float64, device=accelerator.device)
        return _LossSums(*accelerator.reduce(values, reduction="sum").cpu().tolist())

    def mean(self, part: str) -> float:
        """Weighted mean of ``loss`` or ``ce``."""
        return float(getattr(self, part)) / max(self.weight, 1.0)

    def on_policy_fraction(self) -> float:
        """Fraction of the micro-batches that were on-policy."""
        return self.on_policy / max(self.micro_batches, 1.0)

    def kd_mean(self, part: str) -> float | None:
        """Weighted mean of ``kd`` or ``kl`` over the micro-batches with a teacher (None without)."""
        return float(getattr(self, part)) / self.kd_weight if self.kd_weight else None


# --------------------------------------------------------------------------- the loop


def train(
    config: DistillConfig, run_dir: str | os.PathLike[str], callbacks: Sequence[StepCallback] = ()
) -> TrainResult:
    """Train the student of ``config`` in ``run_dir`` (resuming from its latest checkpoint).

    Files written under ``run_dir`` (process 0): ``metrics.jsonl`` (records below),
    ``checkpoints/``, ``best/step_N.safetensors`` (trainable weights of the best validation step),
    ``model/`` (final adapter or model + tokenizer), ``seqkd_outputs.jsonl`` (``seqkd``).

    ``metrics.jsonl`` training records: ``step, epoch, lr, loss, ce, kd, kl, grad_norm,
    tokens, tokens_per_s, on_policy_frac`` (means over the micro-batches since the last
    record, weighted as in the gradient: by target tokens with ``grad_accum: tokens``;
    ``kd``/``kl`` null without a teacher signal; ``tokens`` = non-padding input
    tokens of all processes). Validation records: ``step, val_loss, val_ce, val_kd,
    val_kl, best`` (token-weighted over the validation set, teacher noise off; ``best``
    compares ``val_loss``, or ``val_ce`` with ``select_best_on: ce``).

    Parameters
    ----------
    config : DistillConfig
        The validated run config.
    run_dir : path
        The run folder (created by :func:`runners.distill.run.run_distill`).
    callbacks : sequence of callables
        Called on process 0 after every optimiser step with ``{step, total_steps, loss,
        tokens_per_s, lr}`` (progress bars; an exception raised there stops the run
        like a crash would).

    Returns
    -------
    TrainResult
    """
    run_dir = Path(run_dir)

    # 1-3. devices, models, data, the loss of the method, the length of the run
    dev = _set_up_devices(config)
    models = _load_models(config, dev)
    data = _load_data(config, models, dev, run_dir)
    method = build_method(config, _teacher_signal(config, models, dev), models.tokenizer)
    per_epoch = steps_per_epoch(len(data.train), config.optim.batch_size)
    n_steps = total_steps(len(data.train), config.optim)

    # 4. trainable weights, optimiser, schedule; restored from the latest checkpoint if any
    _seed_everything(config.seed)
    student = _make_trainable(models.student, config)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    scheduler = _scheduler(optimizer, config, n_steps)
    ckpts = _Checkpoints(run_dir / "checkpoints", config.keep_checkpoints)
    resume_from = ckpts.latest()
    start_step, best = _restore(resume_from, run_dir, student, optimizer, scheduler, dev.main)
    student, optimizer = dev.accelerator.prepare(student, optimizer)
    unwrapped = dev.accelerator.unwrap_model(student)
    if resume_from is not None:
        _set_rng_state(_load_pt(resume_from / f"rng_{dev.rank}.pt"))
    metrics = _MetricsLog(run_dir / "metrics.jsonl", start_step, dev.main)
    log.info(
        "%s: %d train / %d val examples, %d steps (batch %d = %d x %d micro x %d proc), %s",
        config.method,
        len(data.train),
        len(data.val),
        n_steps,
        config.optim.batch_size,
        dev.accum,
        dev.micro,
        dev.world,
        dev.mixed_precision,
    )

    # 5. the step loop
    sums, window_start = _LossSums(), time.perf_counter()
    for step in range(start_step, n_steps):
        step_start, step_tokens, step_targets = time.perf_counter(), 0, 0
        batch = _global_batch(data.train, config, per_epoch, step)
        planned = sum(_targets(data.train[i]) for i in batch)
        for m, examples in enumerate(_micro_batches(data.train, batch, dev)):
            on_policy = method.on_policy_coin(step, m, dev.rank)
            last = m == dev.accum - 1  # DDP all-reduces the gradients on the last micro-batch only
            with contextlib.nullcontext() if last else dev.accelerator.no_sync(student):
                out = method.loss(
                    student,
                    examples,
                    device=dev.device,
                    autocast=dev.autocast,
                    on_policy=on_policy,
                    generator_model=unwrapped,
                )
                dev.accelerator.backward(out.loss * _accumulation_weight(config, out.n_tokens, planned, dev))
            sums.add(out, weight=out.n_tokens if config.grad_accum == "tokens" else 1)
            step_tokens += sum(len(ex.input_ids) for ex in examples)
            step_targets += out.n_tokens
        if config.grad_accum == "tokens" and config.method == "gkd":
            _rescale_to_sampled_tokens(params, planned, step_targets, dev)
        sums.tokens += step_tokens
        grad_norm = (
            dev.accelerator.clip_grad_norm_(params, config.optim.max_grad_norm)
            if config.optim.max_grad_norm
            else None
        )
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1

        if done % config.log_every == 0 or done == n_steps:
            total = sums.reduced(dev.accelerator)
            metrics.write(
                {
                    "step": done,
                    "epoch": step // per_epoch,
                    "lr": scheduler.get_last_lr()[0],
                    "loss": total.mean("loss"),
                    "ce": total.mean("ce"),
                    "kd": total.kd_mean("kd"),
                    "kl": total.kd_mean("kl"),
                    "grad_norm": None if grad_norm is None else float(grad_norm),
                    "tokens": int(total.tokens),
                    "tokens_per_s": total.tokens / max(time.perf_counter() - window_start, 1e-9),
                    "on_policy_frac": total.on_policy_fraction() if config.method == "gkd" else None,
                }
            )
            sums, window_start = _LossSums(), time.perf_counter()
        if data.val and ((config.eval_every and done % config.eval_every == 0) or done == n_steps):
            record = _validate(method, student, data.val, dev, done)
            record["best"] = best.update(
                record["val_ce" if config.select_best_on == "ce" else "val_loss"], done
            )
            if record["best"] and dev.main:
                _save_best(unwrapped, run_dir, done)
            metrics.write(record)
        if (config.checkpoint_every and done % config.checkpoint_every == 0) or done == n_steps:
            state = {
                # data position of the next batch: epoch and batch index within it
                "step": done,
                "total_steps": n_steps,
                "epoch": done // per_epoch,
                "batch_in_epoch": done % per_epoch,
                "best_step": best.step,
                "best_val_loss": None if best.step is None else best.val_loss,
                "world_size": dev.world,
            }
            _save_checkpoint(ckpts, state, unwrapped, optimizer, scheduler, config, dev, run_dir)
        if dev.main:
            for callback in callbacks:
                callback(
                    {
                        "step": done,
                        "total_steps": n_steps,
                        "loss": out.loss.item(),
                        "lr": scheduler.get_last_lr()[0],
                        "tokens_per_s": step_tokens * dev.world / max(time.perf_counter() - step_start, 1e-9),
                    }
                )

    # 6. final weights
    model_dir = _save_final(unwrapped, models.tokenizer, config, best, dev, run_dir)
    return TrainResult(n_steps, best.step, None if best.step is None else best.val_loss, model_dir)


# --------------------------------------------------------------------------- the steps of train


def _set_up_devices(config: DistillConfig) -> _Devices:
    """Accelerator and precision (on one CPU process it changes nothing), and the batch split."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    cuda = torch.cuda.is_available()
    mixed = resolve_precision(config.precision, cuda)
    # accelerate keeps one global state per process; a previous run in this process (a grid
    # worker, a test session) may have used another precision. The process group is kept.
    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=mixed, cpu=not cuda)
    world = accelerator.num_processes
    micro = config.optim.micro_batch_size or max(1, config.optim.batch_size // world)
    if config.optim.batch_size % (micro * world):
        raise ConfigError(
            f"optim.batch_size={config.optim.batch_size} is not a multiple of "
            f"micro_batch_size={micro} x {world} processes"
        )
    return _Devices(accelerator, mixed, micro, config.optim.batch_size // (micro * world))


def _load_models(config: DistillConfig, dev: _Devices) -> _Models:
    """The student and its tokenizer; the offline cache (checked against the run) or the live teacher."""
    compute_dtype = _dtype(dev.mixed_precision)
    weights_dtype = compute_dtype if config.finetuning == "lora" else torch.float32
    cache = TeacherCache.open(config.teacher_cache) if config.teacher_cache else None
    student, tokenizer = _load_model(config.student, config.student_gguf_file, weights_dtype, dev.device)
    if cache is not None:  # the config guarantees a teacher with a cache
        cache.check(CacheKey.for_run(config, tokenizer))
        problem = cache.bound_problem(config.method, config.temperature, config.teacher_cache_max_tail_mass)
        if problem is not None:
            log.warning("not using teacher cache %s: %s; using the live teacher", cache.root, problem)
            cache = None
    teacher = None
    if config.teacher is not None and cache is None:
        teacher, teacher_tok = _load_model(
            config.teacher, config.teacher_gguf_file, compute_dtype, dev.device
        )
        check_same_tokenizer(teacher_tok, tokenizer)
    return _Models(student, tokenizer, teacher, cache)


def _load_data(config: DistillConfig, models: _Models, dev: _Devices, run_dir: Path) -> _Data:
    """Training and validation examples; for ``seqkd`` the teacher's outputs replace the targets
    (and the teacher, needed no longer, is released)."""
    items = load_items(config.data.train)
    if config.data.val_file is not None:
        train_items, val_items = items, load_items(config.data.val_file)
    else:
        train_items, val_items = split_items(items, config.data.val_size, config.seed)
    if config.data.max_train_items:
        train_items = train_items[: config.data.max_train_items]
    encode = functools.partial(
        encode_pairs,
        models.tokenizer,
        max_length=config.max_length,
        train_on_inputs=config.train_on_inputs,
        prompt_style=config.prompt_style,
    )
    train_pairs = encode(train_items)
    train_examples = [ex for _, ex in train_pairs]
    val_examples = [ex for _, ex in encode(val_items)]
    if config.method == "seqkd":
        with dev.accelerator.main_process_first():
            outputs = generate_teacher_outputs(
                models.teacher,
                models.tokenizer,
                train_examples,
                config.generation,
                run_dir / "seqkd_outputs.jsonl",
                stop=STOP_STRINGS[config.prompt_style],
                seed=config.seed,
                device=dev.device,
                autocast=dev.autocast,
            )
        seq_items = [
            {"instruction": it["instruction"], "input": it.get("input"), "output": out}
            for (it, _), out in zip(train_pairs, outputs, strict=True)
        ]
        train_examples = [ex for _, ex in encode(seq_items)]
        models.teacher = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return _Data(train_examples, val_examples)


def _teacher_signal(config: DistillConfig, models: _Models, dev: _Devices) -> TeacherSignal | None:
    """The teacher's logits for the loss (token-level KD and ``gkd``): the cache or the live model."""
    if config.method not in TOKEN_KD_METHODS | {"gkd"}:
        return None
    if models.cache is not None:
        return TeacherSignal(cache=models.cache)
    return TeacherSignal(model=models.teacher, autocast=dev.autocast)


def _make_trainable(student: Any, config: DistillConfig) -> Any:
    """LoRA adapters (only they train) or all weights, in train mode."""
    if config.finetuning == "lora":
        student = add_lora(student, config)
    else:
        student.requires_grad_(True)
    student.train()
    return student


def _restore(
    checkpoint: Path | None, run_dir: Path, student: Any, optimizer: Any, scheduler: Any, main: bool
) -> tuple[int, _Best]:
    """Load weights, optimiser and schedule of ``checkpoint``; return its step and best so far.

    Without a checkpoint (a fresh start) best weights of an earlier failed attempt are stale
    and removed; when resuming, those found after the checkpoint belong to the lost trajectory.
    The RNG states are restored later, after ``accelerator.prepare``.
    """
    if checkpoint is None:
        if main:
            shutil.rmtree(run_dir / "best", ignore_errors=True)
        return 0, _Best()
    state = read_json(checkpoint / "state.json")
    load_trainable_state(student, checkpoint / "trainable.safetensors")
    optimizer.load_state_dict(_load_pt(checkpoint / "optimizer.pt"))
    scheduler.load_state_dict(_load_pt(checkpoint / "scheduler.pt"))
    step = int(state["step"])
    best_val = state["best_val_loss"]
    best = _Best(state["best_step"], float("inf") if best_val is None else float(best_val))
    log.info("resuming %s from step %d", run_dir, step)
    if main:
        for stale in (run_dir / "best").glob("step_*.safetensors"):
            if int(stale.stem.removeprefix("step_")) > step:
                stale.unlink()
    return step, best


def _global_batch(examples: list[Example], config: DistillConfig, per_epoch: int, step: int) -> list[int]:
    """Indices of the examples of optimiser step ``step`` (all processes)."""
    epoch, index = divmod(step, per_epoch)
    return epoch_batches(len(examples), config.optim.batch_size, config.seed, epoch)[index]


def _targets(example: Example) -> int:
    """Target tokens of an example: the labelled positions after the first (the CE and KD mask)."""
    return sum(label != IGNORE_INDEX for label in example.labels[1:])


def _micro_batches(examples: list[Example], batch: list[int], dev: _Devices) -> list[list[Example]]:
    """This process's micro-batches of a global ``batch``: its r-th contiguous share, so N
    processes see the same micro-batches as one."""
    share = len(batch) // dev.world
    mine = batch[dev.rank * share : (dev.rank + 1) * share]
    return [[examples[i] for i in mine[m * dev.micro : (m + 1) * dev.micro]] for m in range(dev.accum)]


def _accumulation_weight(config: DistillConfig, n_tokens: int, planned: int, dev: _Devices) -> float:
    """Factor of a micro-batch's mean loss in the step's gradient (see the module docstring).

    ``tokens``: ``n_tokens * world / planned`` (DDP divides the summed gradients by
    ``world``), ``micro_batches``: ``1 / accum``.
    """
    if config.grad_accum == "tokens":
        return n_tokens * dev.world / planned
    return 1.0 / dev.accum


def _rescale_to_sampled_tokens(
    params: list[torch.nn.Parameter], planned: int, actual: int, dev: _Devices
) -> None:
    """Token weighting when on-policy samples changed the step's target count: gradients times
    ``planned / actual``, ``actual`` summed over all processes."""
    total = dev.accelerator.reduce(torch.tensor(float(actual), device=dev.device), reduction="sum")
    factor = planned / float(total)
    if factor != 1.0:
        for p in params:
            if p.grad is not None:
                p.grad.mul_(factor)


def _validate(method: Any, student: Any, examples: list[Example], dev: _Devices, step: int) -> dict[str, Any]:
    """Token-weighted validation loss over all processes (teacher noise off, off-policy)."""
    sums = _LossSums()
    student.eval()
    with torch.no_grad():
        for start in range(dev.rank * dev.micro, len(examples), dev.micro * dev.world):
            out = method.loss(
                student,
                examples[start : start + dev.micro],
                device=dev.device,
                autocast=dev.autocast,
                noise=False,
            )
            sums.add(out, weight=out.n_tokens)
    student.train()
    total = sums.reduced(dev.accelerator)
    return {
        "step": step,
        "val_loss": total.mean("loss"),
        "val_ce": total.mean("ce"),
        "val_kd": total.kd_mean("kd"),
        "val_kl": total.kd_mean("kl"),
    }


def _save_best(unwrapped: Any, run_dir: Path, step: int) -> None:
    """Trainable weights of a new best validation step in ``best/`` (atomic)."""
    from safetensors.torch import save_file

    tmp = run_dir / "best" / f".{_best_name(step)}.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    save_file(_trainable_state(unwrapped), str(tmp))
    os.replace(tmp, run_dir / "best" / _best_name(step))


def _save_checkpoint(
    ckpts: _Checkpoints,
    state: dict[str, Any],
    unwrapped: Any,
    optimizer: Any,
    scheduler: Any,
    config: DistillConfig,
    dev: _Devices,
    run_dir: Path,
) -> None:
    """Checkpoint ``state["step"]`` (process 0 writes; every process's RNG state is gathered)."""
    from accelerate.utils import gather_object

    rng_states = gather_object([_rng_state()])  # one per process, in rank order
    if dev.main:

        def write(folder: Path) -> None:
            from safetensors.torch import save_file

            save_file(_trainable_state(unwrapped), str(folder / "trainable.safetensors"))
            torch.save(optimizer.state_dict(), folder / "optimizer.pt")
            torch.save(scheduler.state_dict(), folder / "scheduler.pt")
            atomic_write_text(folder / "config.yaml", config.to_yaml())
            atomic_write_json(folder / "state.json", state)
            for r, rng in enumerate(rng_states):
                torch.save(rng, folder / f"rng_{r}.pt")

        ckpts.save(state["step"], write)
        best_step = state["best_step"]
        for stale in (run_dir / "best").glob("step_*.safetensors"):
            if best_step is None or stale.name != _best_name(best_step):
                stale.unlink()  # only the best of the latest checkpoint's trajectory is needed
    dev.accelerator.wait_for_everyone()


def _save_final(
    unwrapped: Any, tokenizer: Any, config: DistillConfig, best: _Best, dev: _Devices, run_dir: Path
) -> Path:
    """The best (``save_model: best``, if validated) or last weights with the tokenizer in ``model/``."""
    model_dir = run_dir / "model"
    dev.accelerator.wait_for_everyone()
    if dev.main:
        if config.save_model == "best" and best.step is not None:
            load_trainable_state(unwrapped, run_dir / "best" / _best_name(best.step))
        tmp = run_dir / ".model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        unwrapped.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(model_dir, ignore_errors=True)
        os.replace(tmp, model_dir)
    dev.accelerator.wait_for_everyone()
    dev.accelerator.free_memory()
    return model_dir


def _best_name(step: int) -> str:
    return f"step_{step:06d}.safetensors"


def _scheduler(optimizer: torch.optim.Optimizer, config: DistillConfig, total_steps: int) -> Any:
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup = config.optim.warmup_steps
    if config.optim.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
