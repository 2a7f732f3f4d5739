"""The training loop, top to bottom: models → data → optimiser → steps → checkpoints.

:func:`train` is written to be read in order (in the spirit of nanoGPT's ``train.py``):

1. devices and precision (``accelerate.Accelerator``; on one CPU process it changes nothing),
2. the student (+ LoRA adapters or full fine-tuning) and the teacher signal (live frozen
   model or offline cache; tokenizers must match),
3. data (validation split, ``seqkd``: the teacher's outputs replace the targets),
4. AdamW + linear warm-up/decay, restored from the latest checkpoint if there is one,
5. the step loop: gradient accumulation over micro-batches, clipping, logging,
   periodic validation (keeping the best weights) and atomic checkpoints,
6. the final weights (best or last) in ``model/`` with the tokenizer.

Multi-GPU: launch with ``accelerate launch -m runners.distill CONFIG.yaml``. Each
process takes every ``world_size``-th example of each global batch; gradients are
all-reduced by DDP on the last micro-batch of a step only; process 0 writes files.
Process r takes the r-th contiguous share of each global batch, so with the same
``micro_batch_size`` a run on N processes sees the same micro-batches as on one (equal
results up to floating-point summation order).
The single-process path is the same code (``Accelerator`` is then a no-op wrapper).
The multi-GPU path has not been run in CI (no GPUs there).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdanalysis.errors import ConfigError
from kdanalysis.io import atomic_write_json, atomic_write_text, read_json
from runners.distill.cache import TeacherCache
from runners.distill.config import TOKEN_KD_METHODS, DistillConfig
from runners.distill.data import Example, encode_pairs, epoch_batches, load_items, split_items
from runners.distill.methods import LossOutput, TeacherSignal, build_method, generate_teacher_outputs
from runners.distill.vocab import check_same_tokenizer

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
        That loss.
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
    record; ``kd``/``kl`` null without a teacher signal; ``tokens`` = non-padding input
    tokens of all processes). Validation records: ``step, val_loss, val_ce, val_kd,
    val_kl, best`` (token-weighted over the validation set, teacher noise off).

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
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import gather_object

    run_dir = Path(run_dir)

    # 1. devices and precision ------------------------------------------------------
    cuda = torch.cuda.is_available()
    mixed = resolve_precision(config.precision, cuda)
    # accelerate keeps one global state per process; a previous run in this process (a grid
    # worker, a test session) may have used another precision. The process group is kept.
    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=mixed, cpu=not cuda)
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    main = accelerator.is_main_process
    autocast = accelerator.autocast
    compute_dtype = _dtype(mixed)
    weights_dtype = compute_dtype if config.finetuning == "lora" else torch.float32
    micro = config.optim.micro_batch_size or max(1, config.optim.batch_size // world)
    if config.optim.batch_size % (micro * world):
        raise ConfigError(
            f"optim.batch_size={config.optim.batch_size} is not a multiple of "
            f"micro_batch_size={micro} x {world} processes"
        )
    accum = config.optim.batch_size // (micro * world)

    cache = TeacherCache.open(config.teacher_cache) if config.teacher_cache else None
    data_files = [config.data.train] + ([config.data.val_file] if config.data.val_file else [])

    # 2. student, teacher ------------------------------------------------------------
    student, tokenizer = _load_model(config.student, config.student_gguf_file, weights_dtype, device)
    if cache is not None and config.teacher is not None:  # the config guarantees a teacher with a cache
        cache.check(
            teacher=config.teacher,
            teacher_gguf_file=config.teacher_gguf_file,
            tokenizer=tokenizer,
            data=data_files,
            max_length=config.max_length,
            prompt_style=config.prompt_style,
            temperature=config.temperature,
        )
    teacher_model = None
    if config.teacher is not None and cache is None:
        teacher_model, teacher_tok = _load_model(
            config.teacher, config.teacher_gguf_file, compute_dtype, device
        )
        check_same_tokenizer(teacher_tok, tokenizer)

    # 3. data ------------------------------------------------------------------------
    items = load_items(config.data.train)
    if config.data.val_file is not None:
        train_items, val_items = items, load_items(config.data.val_file)
    else:
        train_items, val_items = split_items(items, config.data.val_size, config.seed)
    if config.data.max_train_items:
        train_items = train_items[: config.data.max_train_items]
    encode = functools.partial(
        encode_pairs,
        tokenizer,
        max_length=config.max_length,
        train_on_inputs=config.train_on_inputs,
        prompt_style=config.prompt_style,
    )
    train_pairs = encode(train_items)
    train_examples = [ex for _, ex in train_pairs]
    val_examples = [ex for _, ex in encode(val_items)]

    if config.method == "seqkd":
        with accelerator.main_process_first():
            outputs = generate_teacher_outputs(
                teacher_model,
                tokenizer,
                train_examples,
                config.generation,
                run_dir / "seqkd_outputs.jsonl",
                seed=config.seed,
                device=device,
                autocast=autocast,
            )
        seq_items = [
            {"instruction": it["instruction"], "input": it.get("input"), "output": out}
            for (it, _), out in zip(train_pairs, outputs, strict=True)
        ]
        train_examples = [ex for _, ex in encode(seq_items)]
        del teacher_model
        teacher_model = None
        if cuda:
            torch.cuda.empty_cache()

    if config.method in TOKEN_KD_METHODS | {"gkd"}:
        signal = (
            TeacherSignal(model=teacher_model, autocast=autocast)
            if cache is None
            else TeacherSignal(cache=cache)
        )
    else:
        signal = None
    method = build_method(config, signal, tokenizer)

    steps_per_epoch = len(train_examples) // config.optim.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"{len(train_examples)} training examples are fewer than "
            f"optim.batch_size={config.optim.batch_size}"
        )
    total_steps = config.optim.max_steps or config.optim.epochs * steps_per_epoch

    # 4. trainable weights, optimiser, schedule (restored when resuming) ---------------
    _seed_everything(config.seed)
    if config.finetuning == "lora":
        student = add_lora(student, config)
    else:
        student.requires_grad_(True)
    student.train()
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    scheduler = _scheduler(optimizer, config, total_steps)
    ckpts = _Checkpoints(run_dir / "checkpoints", config.keep_checkpoints)
    start_step, best_val, best_step = 0, float("inf"), None
    resume_from = ckpts.latest()
    if resume_from is None and main:  # a fresh start: weights of an earlier failed attempt are stale
        shutil.rmtree(run_dir / "best", ignore_errors=True)
    if resume_from is not None:
        state = read_json(resume_from / "state.json")
        load_trainable_state(student, resume_from / "trainable.safetensors")
        optimizer.load_state_dict(torch.load(resume_from / "optimizer.pt", weights_only=False))
        scheduler.load_state_dict(torch.load(resume_from / "scheduler.pt", weights_only=False))
        start_step, best_step = int(state["step"]), state["best_step"]
        best_val = float("inf") if state["best_val_loss"] is None else float(state["best_val_loss"])
        log.info("resuming %s from step %d", run_dir, start_step)
        if main:  # a best found after the checkpoint belongs to the lost trajectory
            for stale in (run_dir / "best").glob("step_*.safetensors"):
                if int(stale.stem.removeprefix("step_")) > start_step:
                    stale.unlink()
    student, optimizer = accelerator.prepare(student, optimizer)
    unwrapped = accelerator.unwrap_model(student)
    if resume_from is not None:
        _set_rng_state(torch.load(resume_from / f"rng_{rank}.pt", weights_only=False))
    metrics = _MetricsLog(run_dir / "metrics.jsonl", start_step, main)
    log.info(
        "%s: %d train / %d val examples, %d steps (batch %d = %d x %d micro x %d proc), %s",
        config.method,
        len(train_examples),
        len(val_examples),
        total_steps,
        config.optim.batch_size,
        accum,
        micro,
        world,
        mixed,
    )

    def micro_batches(step: int) -> list[list[Example]]:
        """This process's micro-batches of optimiser step ``step``."""
        epoch, index = divmod(step, steps_per_epoch)
        batch = epoch_batches(len(train_examples), config.optim.batch_size, config.seed, epoch)[index]
        share = len(batch) // world
        mine = batch[rank * share : (rank + 1) * share]  # contiguous: same micro-batches as one process
        return [[train_examples[i] for i in mine[m * micro : (m + 1) * micro]] for m in range(accum)]

    def validate(step: int) -> dict[str, Any]:
        """Token-weighted validation loss over all processes (teacher noise off, off-policy)."""
        student.eval()
        sums = torch.zeros(5, device=device, dtype=torch.float64)  # loss, ce, kd, kl, tokens
        with torch.no_grad():
            for start in range(rank * micro, len(val_examples), micro * world):
                out = method.loss(
                    student,
                    val_examples[start : start + micro],
                    device=device,
                    autocast=autocast,
                    noise=False,
                )
                n = out.n_tokens
                sums += torch.tensor(
                    [
                        out.loss.item() * n,
                        out.ce.item() * n,
                        (out.kd.item() if out.kd is not None else 0.0) * n,
                        (out.kl.item() if out.kl is not None else 0.0) * n,
                        n,
                    ],
                    dtype=torch.float64,
                    device=device,
                )
        student.train()
        sums = accelerator.reduce(sums, reduction="sum")
        n_tokens = max(float(sums[4]), 1.0)
        has_teacher = signal is not None
        return {
            "step": step,
            "val_loss": float(sums[0]) / n_tokens,
            "val_ce": float(sums[1]) / n_tokens,
            "val_kd": float(sums[2]) / n_tokens if has_teacher else None,
            "val_kl": float(sums[3]) / n_tokens if has_teacher else None,
        }

    def save_checkpoint(step: int) -> None:
        rng_states = gather_object([_rng_state()])  # one per process, in rank order
        if main:

            def write(folder: Path) -> None:
                from safetensors.torch import save_file

                save_file(_trainable_state(unwrapped), str(folder / "trainable.safetensors"))
                torch.save(optimizer.state_dict(), folder / "optimizer.pt")
                torch.save(scheduler.state_dict(), folder / "scheduler.pt")
                atomic_write_text(folder / "config.yaml", config.to_yaml())
                epoch, index = divmod(step, steps_per_epoch)
                atomic_write_json(
                    folder / "state.json",
                    {
                        # data position of the next batch: epoch and batch index within it
                        "step": step,
                        "total_steps": total_steps,
                        "epoch": epoch,
                        "batch_in_epoch": index,
                        "best_step": best_step,
                        "best_val_loss": None if best_step is None else best_val,
                        "world_size": world,
                    },
                )
                for r, rng in enumerate(rng_states):
                    torch.save(rng, folder / f"rng_{r}.pt")

            ckpts.save(step, write)
            for stale in (run_dir / "best").glob("step_*.safetensors"):
                if best_step is None or stale.name != _best_name(best_step):
                    stale.unlink()  # only the best of the latest checkpoint's trajectory is needed
        accelerator.wait_for_everyone()

    def maybe_keep_best(record: dict[str, Any], step: int) -> None:
        nonlocal best_val, best_step
        record["best"] = record["val_loss"] < best_val
        if record["best"]:
            best_val, best_step = record["val_loss"], step
            if main:
                from safetensors.torch import save_file

                tmp = run_dir / "best" / f".{_best_name(step)}.tmp"
                tmp.parent.mkdir(parents=True, exist_ok=True)
                save_file(_trainable_state(unwrapped), str(tmp))
                os.replace(tmp, run_dir / "best" / _best_name(step))

    # 5. the step loop ----------------------------------------------------------------
    # sums since the last record: loss, ce, kd, kl, on-policy, micro-batches, ... with a teacher, tokens
    window, window_start = torch.zeros(8, dtype=torch.float64), time.perf_counter()
    for step in range(start_step, total_steps):
        step_start, step_tokens = time.perf_counter(), 0
        for m, examples in enumerate(micro_batches(step)):
            on_policy = method.on_policy_coin(step, m, rank)
            sync = contextlib.nullcontext() if m == accum - 1 else accelerator.no_sync(student)
            with sync:
                out: LossOutput = method.loss(
                    student,
                    examples,
                    device=device,
                    autocast=autocast,
                    on_policy=on_policy,
                    generator_model=unwrapped,
                )
                accelerator.backward(out.loss / accum)
            kd = out.kd.item() if out.kd is not None else 0.0
            kl = out.kl.item() if out.kl is not None else 0.0
            parts = [out.loss.item(), out.ce.item(), kd, kl, out.on_policy, 1, out.kd is not None, 0]
            window += torch.tensor(parts, dtype=torch.float64)
            step_tokens += sum(len(ex.input_ids) for ex in examples)
        window[7] += step_tokens
        grad_norm = (
            accelerator.clip_grad_norm_(params, config.optim.max_grad_norm)
            if config.optim.max_grad_norm
            else None
        )
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1

        if done % config.log_every == 0 or done == total_steps:
            total = accelerator.reduce(window.to(device), reduction="sum").cpu().tolist()
            n_micro, n_kd = total[5], total[6]
            record = {
                "step": done,
                "epoch": step // steps_per_epoch,
                "lr": scheduler.get_last_lr()[0],
                "loss": total[0] / n_micro,
                "ce": total[1] / n_micro,
                "kd": total[2] / n_kd if n_kd else None,
                "kl": total[3] / n_kd if n_kd else None,
                "grad_norm": None if grad_norm is None else float(grad_norm),
                "tokens": int(total[7]),
                "tokens_per_s": total[7] / max(time.perf_counter() - window_start, 1e-9),
                "on_policy_frac": total[4] / n_micro if config.method == "gkd" else None,
            }
            metrics.write(record)
            window, window_start = torch.zeros_like(window), time.perf_counter()
        if val_examples and ((config.eval_every and done % config.eval_every == 0) or done == total_steps):
            record = validate(done)
            maybe_keep_best(record, done)
            metrics.write(record)
        if (config.checkpoint_every and done % config.checkpoint_every == 0) or done == total_steps:
            save_checkpoint(done)
        if main:
            for callback in callbacks:
                callback(
                    {
                        "step": done,
                        "total_steps": total_steps,
                        "loss": out.loss.item(),
                        "lr": scheduler.get_last_lr()[0],
                        "tokens_per_s": step_tokens * world / max(time.perf_counter() - step_start, 1e-9),
                    }
                )

    # 6. final weights ------------------------------------------------------------------
    model_dir = run_dir / "model"
    accelerator.wait_for_everyone()
    if main:
        if config.save_model == "best" and best_step is not None:
            load_trainable_state(unwrapped, run_dir / "best" / _best_name(best_step))
        tmp = run_dir / ".model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        unwrapped.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(model_dir, ignore_errors=True)
        os.replace(tmp, model_dir)
    accelerator.wait_for_everyone()
    accelerator.free_memory()
    return TrainResult(total_steps, best_step, None if best_step is None else best_val, model_dir)


def _best_name(step: int) -> str:
    return f"step_{step:06d}.safetensors"


def _scheduler(optimizer: torch.optim.Optimizer, config: DistillConfig, total_steps: int) -> Any:
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup = config.optim.warmup_steps
    if config.optim.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
