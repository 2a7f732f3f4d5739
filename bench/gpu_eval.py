"""GPU check of the evaluation backends: one call, well under 10 minutes, no network.

Builds a random-init model from a config (default: the Qwen2.5-0.5B architecture, 151,936-row
vocabulary, bfloat16, on CUDA), the offline toy tokenizer, and the study's prompts (shipped
test sets when ``--data-dir`` exists, else the toy arithmetic task), then measures:

- the HF backend (:class:`runners.evaluate.hf_backend.HFBackend`) at each ``--batch-sizes``
  value: items/s, generated tokens/s, wall time, peak GPU memory;
- the published per-question ``generate`` loop on the first ``--loop-items`` prompts
  (the baseline), and whether the batched greedy outputs equal the loop's on them (in
  bfloat16 small numerical differences between batch shapes may flip a token);
- the vLLM backend on the same prompts, if vLLM is importable (else ``"vllm": null`` with the reason).

The last line is one JSON object. ``--cpu-smoke`` runs the same code on the CPU with the
tiny toy model and a few short generations (to check the script without a GPU).

Usage: ``python bench/gpu_eval.py [--n-items 256] [--max-new-tokens 128] [--batch-sizes 16,64]
[--loop-items 16] [--cpu-smoke]``
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from runners.evaluate.backend import Backend, GenerationRequest
from runners.evaluate.decoding import DecodingConfig
from runners.evaluate.hf_backend import HFBackend
from runners.evaluate.prompts import format_prompt
from runners.evaluate.tasks import bundled_tasks, load_items
from runners.toy import build_model, build_tokenizer, make_arithmetic_task

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "kd_generalization" / "testsets"
#: Qwen2.5-0.5B's architecture (config.json of the released checkpoint), random weights here.
QWEN25_05B = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)


def _prompts(data_dir: Path, n: int) -> tuple[list[str], str]:
    if data_dir.is_dir():
        tasks = [bundled_tasks()[t] for t in ("gsm8k", "boolq", "piqa", "svamp")]
        per_task = -(-n // len(tasks))
        pairs = [(it.instruction, it.input) for t in tasks for it in load_items(t, data_dir)[:per_task]]
        source = f"shipped test sets ({data_dir})"
    else:
        pairs = [(d["instruction"], d["input"]) for d in make_arithmetic_task(n, seed=0, difficulty=2)]
        source = "toy arithmetic task"
    return [format_prompt(instruction, inp) for instruction, inp in pairs][:n], source


def _model(smoke: bool, device: str, tokenizer: Any) -> Any:
    if smoke:
        return build_model("qwen2", "tiny", seed=0).to(device)
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(
        **QWEN25_05B,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def _timed(
    backend: Backend, prompts: list[str], decoding: DecodingConfig
) -> tuple[dict[str, Any], list[str]]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    results = backend.generate([GenerationRequest(p, decoding) for p in prompts])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    tokens = sum(r.n_tokens[0] for r in results)
    figures = {
        "wall_s": round(wall, 3),
        "items_s": round(len(prompts) / wall, 2),
        "tokens_s": round(tokens / wall, 1),
        "generated_tokens": tokens,
    }
    if torch.cuda.is_available():
        figures["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return figures, [r.text for r in results]


def _loop(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int
) -> tuple[dict[str, Any], list[str]]:
    texts = []
    start = time.perf_counter()
    for prompt in prompts:
        enc = tokenizer(prompt, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(
                **enc, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id
            )
        texts.append(tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 3), "items_s": round(len(prompts) / wall, 2)}, texts


def _vllm(model: Any, tokenizer: Any, prompts: list[str], decoding: DecodingConfig) -> dict[str, Any]:
    try:
        from runners.evaluate.vllm_backend import VLLMBackend, import_vllm

        import_vllm()
    except ImportError as exc:
        return {"available": False, "reason": str(exc).splitlines()[0]}
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        start = time.perf_counter()
        with VLLMBackend(folder, dtype="bfloat16", gpu_memory_utilization=0.5) as backend:
            load_s = time.perf_counter() - start
            figures, _ = _timed(backend, prompts, decoding)
    return {"available": True, "load_s": round(load_s, 2), **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n-items", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-sizes", default="16,64")
    parser.add_argument("--loop-items", type=int, default=16)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny toy model on the CPU, short run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.cpu_smoke:
        args.n_items, args.max_new_tokens, args.batch_sizes, args.loop_items = 8, 8, "2,4", 4
    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible; use --cpu-smoke to check the script on the CPU")

    tokenizer = build_tokenizer()
    t0 = time.perf_counter()
    model = _model(args.cpu_smoke, device, tokenizer)
    build_s = time.perf_counter() - t0
    prompts, source = _prompts(args.data_dir, args.n_items)
    decoding = DecodingConfig(max_new_tokens=args.max_new_tokens)

    hf: dict[str, Any] = {}
    batched_texts: list[str] = []
    for size in (int(s) for s in args.batch_sizes.split(",")):
        backend = HFBackend(model, tokenizer, batch_size=size)
        backend.generate([GenerationRequest(p, decoding) for p in prompts[:size]])  # warm-up
        figures, batched_texts = _timed(backend, prompts, decoding)
        hf[str(size)] = {**figures, "final_batch_size": backend.batch_size}
    loop, loop_texts = _loop(model, tokenizer, prompts[: args.loop_items], args.max_new_tokens)
    same = sum(a == b for a, b in zip(batched_texts, loop_texts, strict=False))
    result = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "model": "toy qwen2 tiny (float32)" if args.cpu_smoke else "Qwen2.5-0.5B architecture, random, bf16",
        "build_s": round(build_s, 2),
        "prompts": source,
        "n_items": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "hf": hf,
        "loop": {**loop, "n_items": len(loop_texts)},
        "speedup_vs_loop": {k: round(v["items_s"] / loop["items_s"], 2) for k, v in hf.items()},
        "loop_subset_identical_outputs": f"{same}/{len(loop_texts)}",
        "vllm": _vllm(model, tokenizer, prompts, decoding) if device == "cuda" else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
