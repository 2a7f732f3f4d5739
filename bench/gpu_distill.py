"""GPU check of the distillation trainer: 50 KD steps of a ~100M-parameter student.

Runs offline on a lent GPU within one <= 10-minute call: random-init Qwen2 configs
(student ~100 M parameters, teacher ~300 M, Qwen2.5's 151,936-row vocabulary), the toy
tokenizer and the synthetic arithmetic task, bf16 autocast, full fine-tuning, all through
:func:`runners.distill.run.run_distill` (the production path). Side by side in the same
run: the same number of SFT steps (baseline step time) and KD steps from the offline
top-k teacher cache.

Asserts that the KD loss and the KL to the teacher fall (mean of the last 5 logged steps
below the first 5) and prints one JSON object on the last line: tokens/s and step time
of each mode, ``kd_live_over_sft``, ``kd_cached_over_sft``, first/last loss and KL, peak
GPU memory (GiB), parameter counts, device.

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


def save_random_qwen2(path: Path, arch: dict[str, Any], seed: int) -> tuple[Path, int]:
    """Save a random-init Qwen2 model with the toy tokenizer; return the folder and parameter count."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    from runners.toy import build_tokenizer

    tokenizer = build_tokenizer()
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
    sizes = SIZES["gpu" if cuda else "cpu"]
    steps = args.steps or (50 if cuda else 8)
    batch, micro = (16, 8) if cuda else (4, 2)

    results: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "steps": steps}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        student_dir, results["student_params"] = save_random_qwen2(root / "student", sizes["student"], seed=2)
        teacher_dir, results["teacher_params"] = save_random_qwen2(root / "teacher", sizes["teacher"], seed=1)
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
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        kd_dir = run_distill(
            DistillConfig(method="fkl", teacher=str(teacher_dir), **common), root / "kd_live"
        )
        results["kd_live_wall_s"] = round(time.perf_counter() - start, 1)
        results["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None

        start = time.perf_counter()
        cache = build_teacher_cache(
            str(teacher_dir), data, root / "cache", k=64, max_length=256, dtype="bfloat16", batch_size=16
        )
        results["cache_build_s"] = round(time.perf_counter() - start, 1)
        cached_dir = run_distill(
            DistillConfig(method="fkl", teacher=str(teacher_dir), teacher_cache=str(cache), **common),
            root / "kd_cached",
        )
        sft_dir = run_distill(DistillConfig(method="sft", **common), root / "sft")

        runs = {
            "kd_live": read_metrics(kd_dir),
            "kd_cached": read_metrics(cached_dir),
            "sft": read_metrics(sft_dir),
        }
        for mode, records in runs.items():
            timed = records[2:]  # skip warm-up (allocation, autotuning)
            results[f"{mode}_tokens_per_s"] = round(statistics.median(r["tokens_per_s"] for r in timed), 1)
        for mode in ("kd_live", "kd_cached"):
            results[f"{mode}_over_sft"] = round(
                results["sft_tokens_per_s"] / results[f"{mode}_tokens_per_s"], 3
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
