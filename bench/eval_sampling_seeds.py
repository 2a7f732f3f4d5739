"""Cost of per-item seeds in the HF backend's sampling, same tiny model, same batches.

Takes the first ``--per-task`` questions of eight shipped test sets (the study's prompt, real
question lengths; as ``bench/eval_throughput.py``), a random-init toy model of ``--size``
(runners.toy, float32, CPU unless ``--device``, ``--threads`` intra-op threads: one by default,
so that other processes on a loaded machine disturb the ratio less), the ``published``
sampling protocol, and generates three ways, ``--repeats`` times in turn (the median time of
each is reported):

- ``item_seeded``: :class:`runners.evaluate.hf_backend.HFBackend` (length-sorted, left-padded
  batches of ``--batch-size``; every item sampled from its own generator through
  :class:`~runners.evaluate.hf_backend.ItemSeededSampler`);
- ``global_rng``: the same batches through :func:`runners.evaluate.hf_backend.hf_generate`
  with ``seeds=None`` (transformers' own sampling from the torch global generator, seeded
  once per batch: how the backend sampled before per-item seeds);
- ``one_by_one``: the backend with batch size 1 (the other exact way: one item per call).

The last line is one JSON object: ``n_items``, ``size``, ``batch_size``, ``max_new_tokens``,
``item_seeded_items_s``, ``global_rng_items_s``, ``one_by_one_items_s``,
``item_seeded_over_global_rng`` (throughput ratio), ``item_seeded_over_one_by_one``,
``one_by_one_identical`` (every item's sample equal at batch size 1 and ``--batch-size``),
``device``, ``torch_threads``.

Usage: ``python bench/eval_sampling_seeds.py [--data-dir DIR] [--per-task 8] [--batch-size 64]
[--max-new-tokens 64] [--size tiny] [--threads 1] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch

# the shipped questions exactly as the greedy throughput bench takes them (run as a script,
# this folder is on sys.path)
from eval_throughput import DEFAULT_DATA, TASKS, _questions

from runners.evaluate.backend import GenerationRequest
from runners.evaluate.decoding import decoding_preset
from runners.evaluate.hf_backend import HFBackend, hf_generate, length_sorted_order
from runners.toy import build_model, build_tokenizer


def _global_rng(backend: HFBackend, prompts: list[str], decoding: Any, batch_size: int) -> None:
    """The backend's batches, sampled by transformers from the global generator (one seed a batch)."""
    tok = backend.tokenizer
    ids = [tok(p)["input_ids"] for p in prompts]
    order = length_sorted_order([len(r) for r in ids])
    for pos in range(0, len(order), batch_size):
        rows = [ids[i] for i in order[pos : pos + batch_size]]
        width = max(len(r) for r in rows)
        input_ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        torch.manual_seed(decoding.seed + pos)
        with torch.inference_mode():
            hf_generate(
                backend.model,
                input_ids.to(backend.device),
                mask.to(backend.device),
                decoding,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
                tokenizer=tok,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--per-task", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="tiny", choices=["tiny", "small", "teacher"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    prompts = [p for _, p in _questions(args.data_dir, args.per_task)]
    tokenizer = build_tokenizer()
    model = build_model("qwen2", args.size, seed=0).to(args.device)
    decoding = decoding_preset("published", max_new_tokens=args.max_new_tokens, stop=("### Response:",))
    requests = [GenerationRequest(p, decoding, request_id=str(i)) for i, p in enumerate(prompts)]
    batched = HFBackend(model, tokenizer, batch_size=args.batch_size)
    single = HFBackend(model, tokenizer, batch_size=1)
    batched.generate(requests[:2])  # warm-up (kernels, caches)

    times: dict[str, list[float]] = {"item_seeded": [], "global_rng": [], "one_by_one": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        item_seeded = batched.generate(requests)
        times["item_seeded"].append(time.perf_counter() - start)
        start = time.perf_counter()
        _global_rng(batched, prompts, decoding, args.batch_size)
        times["global_rng"].append(time.perf_counter() - start)
        start = time.perf_counter()
        one_by_one = single.generate(requests)
        times["one_by_one"].append(time.perf_counter() - start)
    item_seeded_s, global_s, single_s = (statistics.median(times[k]) for k in times)

    n = len(prompts)
    figures = {
        "n_items": n,
        "size": args.size,
        "tasks": list(TASKS),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "item_seeded_s": round(item_seeded_s, 3),
        "global_rng_s": round(global_s, 3),
        "one_by_one_s": round(single_s, 3),
        "item_seeded_items_s": round(n / item_seeded_s, 3),
        "global_rng_items_s": round(n / global_s, 3),
        "one_by_one_items_s": round(n / single_s, 3),
        "item_seeded_over_global_rng": round(global_s / item_seeded_s, 3),
        "item_seeded_over_one_by_one": round(single_s / item_seeded_s, 2),
        "one_by_one_identical": item_seeded == one_by_one,
        "device": str(model.device),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
