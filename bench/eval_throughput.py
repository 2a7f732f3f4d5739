"""Batched HF backend vs the published per-question ``generate`` loop, same tiny model.

Takes the first ``--per-task`` questions of eight shipped test sets (the study's prompt,
real question lengths), a random-init toy model (runners.toy, float32, CPU unless
``--device``), and generates under greedy decoding twice:

- ``loop``: one ``model.generate`` call per question, no padding -- what the released
  evaluation scripts do;
- ``batched``: :class:`runners.evaluate.hf_backend.HFBackend` (length-sorted, left-padded
  batches of ``--batch-size``).

The last line is one JSON object: ``n_items``, ``batch_size``, ``max_new_tokens``,
``batched_items_s``, ``loop_items_s``, ``speedup`` (batched / loop items per second),
``batched_tokens_s``, ``loop_tokens_s``, ``identical_outputs`` (every generated text equal),
``identical_predictions`` (every extracted answer equal), ``n_different_outputs``, ``device``,
``torch_threads``.

Usage: ``python bench/eval_throughput.py [--data-dir DIR] [--per-task 25] [--batch-size 64]
[--max-new-tokens 64]``
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from runners.evaluate.backend import GenerationRequest
from runners.evaluate.decoding import DecodingConfig
from runners.evaluate.extract import extract_answer
from runners.evaluate.hf_backend import HFBackend
from runners.evaluate.prompts import format_prompt
from runners.evaluate.tasks import bundled_tasks, load_items
from runners.toy import build_model, build_tokenizer

TASKS = ("gsm8k", "svamp", "multiarith", "addsub", "aqua", "boolq", "piqa", "winogrande")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "kd_generalization" / "testsets"


def _questions(data_dir: Path, per_task: int) -> list[tuple[str, str]]:
    """(task id, prompt) pairs: the first ``per_task`` items of each task in :data:`TASKS`."""
    pairs = []
    for task in TASKS:
        for item in load_items(bundled_tasks()[task], data_dir)[:per_task]:
            pairs.append((task, format_prompt(item.instruction, item.input)))
    return pairs


def _loop(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> tuple[list[str], int]:
    """The published way: one generate call per question, batch of one; (texts, generated tokens)."""
    texts, tokens = [], 0
    for prompt in prompts:
        enc = tokenizer(prompt, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(
                **enc, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id
            )
        new = out[0, enc["input_ids"].shape[1] :]
        tokens += len(new)
        texts.append(tokenizer.decode(new, skip_special_tokens=True))
    return texts, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--per-task", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    questions = _questions(args.data_dir, args.per_task)
    prompts = [p for _, p in questions]
    tokenizer = build_tokenizer()
    model = build_model("qwen2", "tiny", seed=0).to(args.device)
    decoding = DecodingConfig(max_new_tokens=args.max_new_tokens)
    backend = HFBackend(model, tokenizer, batch_size=args.batch_size)

    backend.generate([GenerationRequest(p, decoding) for p in prompts[:2]])  # warm-up (kernels, caches)
    start = time.perf_counter()
    results = backend.generate([GenerationRequest(p, decoding) for p in prompts])
    batched_s = time.perf_counter() - start
    batched = [r.text for r in results]
    batched_tokens = sum(r.n_tokens[0] for r in results)

    start = time.perf_counter()
    looped, loop_tokens = _loop(model, tokenizer, prompts, args.max_new_tokens)
    loop_s = time.perf_counter() - start

    preds_equal = all(
        extract_answer(a, bundled_tasks()[task]) == extract_answer(b, bundled_tasks()[task])
        for (task, _), a, b in zip(questions, batched, looped, strict=True)
    )
    n_diff = sum(a != b for a, b in zip(batched, looped, strict=True))
    figures = {
        "n_items": len(prompts),
        "tasks": list(TASKS),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "batched_s": round(batched_s, 3),
        "loop_s": round(loop_s, 3),
        "batched_items_s": round(len(prompts) / batched_s, 3),
        "loop_items_s": round(len(prompts) / loop_s, 3),
        "speedup": round(loop_s / batched_s, 2),
        "batched_tokens_s": round(batched_tokens / batched_s, 1),
        "loop_tokens_s": round(loop_tokens / loop_s, 1),
        "identical_outputs": n_diff == 0,
        "identical_predictions": preds_equal,
        "n_different_outputs": n_diff,
        "device": str(model.device),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
