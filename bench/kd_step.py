"""Student step time: KD from cached teacher logits vs SFT, and vs KD from a live teacher.

One optimiser step = forward, loss, backward, AdamW step of a LoRA student, through the
trainer's own :class:`runners.distill.methods.Method`. The toy teacher (~1 M parameters)
is notably bigger than the student (~0.1 M), so the live teacher's forward pass is the
cost the offline cache (:mod:`runners.distill.cache`, top-k logits) removes. The three
modes run interleaved, step by step, on the same batches; the median step time is
reported.

Prints one JSON object on the last line: ``sft_step_ms``, ``kd_cached_step_ms``,
``kd_live_step_ms``, ``kd_cached_over_sft`` (goal <= 1.3), ``kd_live_over_sft``, and the
setting (parameters, k, batch, tokens).

Usage: ``python bench/kd_step.py [--steps 30] [--batch 8] [--k 64]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from runners.distill.cache import TeacherCache, build_teacher_cache
from runners.distill.config import DistillConfig
from runners.distill.data import encode_items, load_items
from runners.distill.methods import Method, TeacherSignal
from runners.distill.trainer import add_lora
from runners.models import load_causal_lm
from runners.toy import make_arithmetic_task, save_toy_model, write_task_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--k", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher_dir = save_toy_model(root / "teacher", "qwen2", "teacher", seed=1)
        student_dir = save_toy_model(root / "student", "qwen2", "small", seed=2)
        data = write_task_json(
            root / "train.json", make_arithmetic_task(args.batch * 4, seed=0, difficulty=3)
        )
        cache_dir = build_teacher_cache(
            str(teacher_dir), data, root / "cache", k=args.k, max_length=256, dtype="float32"
        )
        cfg = {"student": str(student_dir), "data": {"train": str(data), "val_size": 0}, "max_length": 256}
        configs = {
            "sft": DistillConfig(method="sft", **cfg),
            "kd_cached": DistillConfig(
                method="fkl", teacher=str(teacher_dir), teacher_cache=str(cache_dir), **cfg
            ),
            "kd_live": DistillConfig(method="fkl", teacher=str(teacher_dir), **cfg),
        }
        teacher, _ = load_causal_lm(str(teacher_dir), dtype="float32", device="cpu")
        signals = {
            "sft": None,
            "kd_cached": TeacherSignal(cache=TeacherCache.open(cache_dir)),
            "kd_live": TeacherSignal(model=teacher, autocast=contextlib.nullcontext),
        }
        runs = {}
        for mode, config in configs.items():
            student, tokenizer = load_causal_lm(str(student_dir), dtype="float32", device="cpu")
            student = add_lora(student, config)
            student.train()
            method = Method(
                config, signals[mode], pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id
            )
            opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-3)
            runs[mode] = (student, method, opt)
        examples = encode_items(
            tokenizer, load_items(data), max_length=256, train_on_inputs=False, prompt_style="published_train"
        )
        batches = [examples[i : i + args.batch] for i in range(0, len(examples), args.batch)]

        times: dict[str, list[float]] = {mode: [] for mode in runs}
        for step in range(args.warmup + args.steps):
            batch = batches[step % len(batches)]
            for mode, (student, method, opt) in runs.items():
                start = time.perf_counter()
                out = method.loss(student, batch, device=torch.device("cpu"), autocast=contextlib.nullcontext)
                out.loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if step >= args.warmup:
                    times[mode].append(time.perf_counter() - start)

    ms = {mode: 1000 * statistics.median(t) for mode, t in times.items()}
    n_params = {
        name: sum(p.numel() for p in m.parameters())
        for name, m in (("teacher", teacher), ("student", runs["sft"][0].get_base_model()))
    }
    result = {
        "sft_step_ms": round(ms["sft"], 3),
        "kd_cached_step_ms": round(ms["kd_cached"], 3),
        "kd_live_step_ms": round(ms["kd_live"], 3),
        "kd_cached_over_sft": round(ms["kd_cached"] / ms["sft"], 3),
        "kd_live_over_sft": round(ms["kd_live"] / ms["sft"], 3),
        "teacher_params": n_params["teacher"],
        "student_params": n_params["student"],
        "k": args.k,
        "batch": args.batch,
        "mean_tokens_per_sequence": round(statistics.mean(len(ex.input_ids) for ex in examples), 1),
        "steps": args.steps,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
