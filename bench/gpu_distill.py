"""GPU check of the distillation trainer: 50 KD steps of a ~100M-parameter student.

Runs offline on a lent GPU within one <= 10-minute call: random-init Qwen2 configs
(student ~100 M parameters, teacher ~300 M, Qwen2.5's 151,936-row vocabulary), the toy
tokenizer grown with filler tokens to Qwen2.5's 151,665 tokens (so the KD loss spans a
real-size vocabulary; the text itself uses the toy tokens), the synthetic arithmetic
task, bf16 autocast, full fine-tuning, all through
:func:`runners.distill.run.run_distill` (the production path). Side by side in the same
run: the same number of SFT steps (baseline step time) and KD steps from the offline
top-k teacher cache.

Asserts that the KD loss and the KL to the teacher fall (mean of the last 5 logged steps
below the first 5) and prints one JSON object on the last line: tokens/s and step time
of each mode, ``kd_live_over_sft``, ``kd_cached_over_sft`` (step-time ratios), first/last
loss and KL, wall time and peak GPU memory (GiB) of each run, parameter counts, device.

Usage::

    python bench/gpu_distill.py                 # on a GPU (bf16)
    python bench/gpu_distill.py --cpu-smoke     # tiny sizes, a few steps, on CPU (checks the script)
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

#: Tokenizer sizes: Qwen2.5's 151,665 tokens on GPU, the toy tokenizer alone on CPU.
TOKENS = {"gpu": 151_665, "cpu": None}
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "gpu": {
        "student": dict(
            hidden_size=512,
            num_hidden_layers=8,
            num_attention_heads=8,
            num_key_value_heads=2,
            intermediate_size=1536,
            tie_word_embeddings=True,
            vocab_size=151936,
        ),
        "teacher": dict(
            hidden_size=1024,
            num_hidden_layers=12,
            num_attention_heads=16,
            num_key_value_heads=4,
            intermediate_size=3072,
            tie_word_embeddings=True,
            vocab_size=151936,
        ),
    },
    "cpu": {
        "student": dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            tie_word_embeddings=True,
            vocab_size=2048,
        ),
        "teacher": dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            tie_word_embeddings=True,
            vocab_size=2048,
        ),
    },
}


def build_bench_tokenizer(n_tokens: int | None) -> Any:
    """The toy tokenizer, grown with filler tokens ``<xN>`` to ``n_tokens`` (None: as is)."""
    from runners.toy import build_tokenizer

    tokenizer = build_tokenizer()
    if n_tokens is not None and n_tokens > len(tokenizer):
        tokenizer.add_tokens([f"<x{i}>" for i in range(n_tokens - len(tokenizer))])
    return tokenizer


def save_random_qwen2(path: Path, arch: dict[str, Any], seed: int, tokenizer: Any) -> tuple[Path, int]:
    """Save a random-init Qwen2 model with ``tokenizer``; return the folder and parameter count."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **arch,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, n_params


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Training records (not validation) of a run's metrics.jsonl."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes and few steps on CPU")
    parser.add_argument("--steps", type=int, default=None, help="KD steps (default 50; 8 with --cpu-smoke)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from runners.distill.cache import build_teacher_cache
    from runners.distill.config import DistillConfig
    from runners.distill.run import run_distill
    from runners.toy import make_arithmetic_task, write_task_json

    cuda = torch.cuda.is_available() and not args.cpu_smoke
    if not cuda and not args.cpu_smoke:
        raise SystemExit("no CUDA GPU: run with --cpu-smoke to check the script on CPU")
    mode = "gpu" if cuda else "cpu"
    sizes = SIZES[mode]
    steps = args.steps or (50 if cuda else 8)
    batch, micro = (16, 8) if cuda else (4, 2)

    results: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "steps": steps}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tokenizer = build_bench_tokenizer(TOKENS[mode])
        results["tokenizer_tokens"] = len(tokenizer)
        student_dir, results["student_params"] = save_random_qwen2(
            root / "student", sizes["student"], seed=2, tokenizer=tokenizer
        )
        teacher_dir, results["teacher_params"] = save_random_qwen2(
            root / "teacher", sizes["teacher"], seed=1, tokenizer=tokenizer
        )
        data = write_task_json(
            root / "train.json", make_arithmetic_task(batch * steps + 16, seed=0, difficulty=3)
        )
        common: dict[str, Any] = {
            "student": str(student_dir),
            "data": {"train": str(data), "val_size": 16},
            "max_length": 256,
            "finetuning": "full",
            "precision": "bf16" if cuda else "fp32",
            "seed": 6,
            "optim": {
                "lr": 1e-3 if cuda else 3e-3,
                "warmup_steps": 5,
                "max_steps": steps,
                "batch_size": batch,
                "micro_batch_size": micro,
            },
            "log_every": 1,
            "eval_every": 0,
            "checkpoint_every": 0,
        }

        def timed_run(name: str, config: DistillConfig) -> Path:
            """Run one config; record its wall time and peak GPU memory."""
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            run_dir = run_distill(config, root / name)
            results[f"{name}_wall_s"] = round(time.perf_counter() - start, 1)
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
            results[f"{name}_peak_memory_gib"] = None if peak is None else round(peak, 2)
            return run_dir

        kd_dir = timed_run("kd_live", DistillConfig(method="fkl", teacher=str(teacher_dir), **common))

        start = time.perf_counter()
        cache = build_teacher_cache(
            str(teacher_dir), data, root / "cache", k=64, max_length=256, dtype="bfloat16", batch_size=16
        )
        results["cache_build_s"] = round(time.perf_counter() - start, 1)
        cached_dir = timed_run(
            "kd_cached",
            DistillConfig(method="fkl", teacher=str(teacher_dir), teacher_cache=str(cache), **common),
        )
        sft_dir = timed_run("sft", DistillConfig(method="sft", **common))

        runs = {
            "kd_live": read_metrics(kd_dir),
            "kd_cached": read_metrics(cached_dir),
            "sft": read_metrics(sft_dir),
        }
        for name, records in runs.items():
            timed = records[2:]  # skip warm-up (allocation, autotuning)
            results[f"{name}_tokens_per_s"] = round(statistics.median(r["tokens_per_s"] for r in timed), 1)
        for name in ("kd_live", "kd_cached"):
            results[f"{name}_over_sft"] = round(
                results["sft_tokens_per_s"] / results[f"{name}_tokens_per_s"], 3
            )
        kd = runs["kd_live"]
        first, last = kd[:5], kd[-5:]
        for key in ("loss", "kl"):
            results[f"kd_{key}_first5"] = round(statistics.mean(r[key] for r in first), 4)
            results[f"kd_{key}_last5"] = round(statistics.mean(r[key] for r in last), 4)
        results["loss_falls"] = results["kd_loss_last5"] < results["kd_loss_first5"]
        results["kl_falls"] = results["kd_kl_last5"] < results["kd_kl_first5"]
    print(json.dumps(results))
    if not (results["loss_falls"] and results["kl_falls"]):
        raise SystemExit("KD loss / KL to the teacher did not fall")


if __name__ == "__main__":
    main()
