"""Parity of the vLLM backend with the HF reference backend on one model.

Generates greedy answers to the first ``--limit`` questions of each ``--tasks`` test set with
both backends (same model, same dtype, same prompts), scores them with the published
extractor, and scores the label tasks' candidate labels by log-likelihood with both.
Where vLLM is not installed it prints ``{"vllm_available": false, ...}`` and exits 0.

Default model: a random toy Qwen2 model saved to a temporary folder (float32), so the
comparison needs no network; pass ``--model`` for a real checkpoint (and ``--adapter``).

The last line is one JSON object: ``vllm_available``, ``model``, ``dtype``, ``n_items``,
``identical_output_rate`` (fraction of items with the same generated text),
``identical_prediction_rate`` (same extracted answer), ``accuracy_hf`` / ``accuracy_vllm``
(percent per task), ``max_accuracy_diff``, ``loglikelihood_max_abs_diff`` (nats, over all
label candidates), ``choice_agreement`` (same multiple-choice pick), ``hf_items_s``, ``vllm_items_s``.

Usage: ``python bench/parity_hf_vllm.py [--model DIR_OR_HUB_ID] [--tasks gsm8k,boolq]
[--limit 50] [--max-new-tokens 128] [--dtype float32]``
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from runners.evaluate.backend import Backend, GenerationRequest, LoglikelihoodRequest
from runners.evaluate.decoding import DecodingConfig
from runners.evaluate.extract import answers_match, extract_answer
from runners.evaluate.prompts import format_prompt
from runners.evaluate.tasks import TaskItem, bundled_tasks, load_items
from runners.evaluate.vllm_backend import VLLM_INSTALL_HINT

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "kd_generalization" / "testsets"


def _vllm_missing() -> str | None:
    from kdanalysis.errors import BackendUnavailableError
    from runners.evaluate.vllm_backend import import_vllm

    try:
        import_vllm()
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def _answers(backend: Backend, prompts: list[str], decoding: DecodingConfig) -> tuple[list[str], float]:
    start = time.perf_counter()
    results = backend.generate([GenerationRequest(p, decoding) for p in prompts])
    return [r.text for r in results], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="hub id or folder (default: a saved toy model)")
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--tasks", default="gsm8k,svamp,boolq,piqa")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    missing = _vllm_missing()
    if missing is not None:
        print(
            json.dumps(
                {"vllm_available": False, "reason": missing.splitlines()[0], "install": VLLM_INSTALL_HINT}
            )
        )
        return

    from runners.evaluate.hf_backend import HFBackend
    from runners.evaluate.vllm_backend import VLLMBackend
    from runners.toy import save_toy_model

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(save_toy_model(Path(tmp) / "toy", family="qwen2", size="tiny", seed=0))
        tasks = [bundled_tasks()[t] for t in args.tasks.split(",")]
        work: list[tuple[str, TaskItem, str]] = [
            (spec.id, item, format_prompt(item.instruction, item.input))
            for spec in tasks
            for item in load_items(spec, args.data_dir)[: args.limit]
        ]
        prompts = [p for _, _, p in work]
        decoding = DecodingConfig(max_new_tokens=args.max_new_tokens)
        scored = [
            (p, label)
            for spec in tasks
            if spec.answer_type != "number"
            for (tid, _, p) in work
            if tid == spec.id
            for label in spec.labels
        ]
        ll_requests = [LoglikelihoodRequest(p, label) for p, label in scored]

        with HFBackend.from_pretrained(model, adapter=args.adapter, dtype=args.dtype) as hf:
            hf_texts, hf_s = _answers(hf, prompts, decoding)
            hf_ll = hf.loglikelihood(ll_requests)
        with VLLMBackend(model, adapter=args.adapter, dtype=args.dtype) as vllm:
            vllm_texts, vllm_s = _answers(vllm, prompts, decoding)
            vllm_ll = vllm.loglikelihood(ll_requests)

    accuracy: dict[str, dict[str, float]] = {"hf": {}, "vllm": {}}
    same_pred = 0
    for name, texts in (("hf", hf_texts), ("vllm", vllm_texts)):
        for spec in tasks:
            rows = [(item, t) for (tid, item, _), t in zip(work, texts, strict=True) if tid == spec.id]
            hits = sum(answers_match(spec, extract_answer(t, spec), item.gold) for item, t in rows)
            accuracy[name][spec.id] = 100 * hits / len(rows)
    for (tid, _, _), a, b in zip(work, hf_texts, vllm_texts, strict=True):
        same_pred += extract_answer(a, bundled_tasks()[tid]) == extract_answer(b, bundled_tasks()[tid])
    picks_same, start = 0, 0
    n_choice = 0
    for spec in tasks:
        if spec.answer_type == "number":
            continue
        k = len(spec.labels)
        for _ in [w for w in work if w[0] == spec.id]:
            h = [r.logprob for r in hf_ll[start : start + k]]
            v = [r.logprob for r in vllm_ll[start : start + k]]
            picks_same += h.index(max(h)) == v.index(max(v))
            n_choice += 1
            start += k
    print(
        json.dumps(
            {
                "vllm_available": True,
                "model": args.model or "toy qwen2 tiny",
                "dtype": args.dtype,
                "n_items": len(prompts),
                "identical_output_rate": sum(a == b for a, b in zip(hf_texts, vllm_texts, strict=True))
                / len(prompts),
                "identical_prediction_rate": same_pred / len(prompts),
                "accuracy_hf": accuracy["hf"],
                "accuracy_vllm": accuracy["vllm"],
                "max_accuracy_diff": max(
                    abs(accuracy["hf"][t] - accuracy["vllm"][t]) for t in accuracy["hf"]
                ),
                "loglikelihood_max_abs_diff": max(
                    (abs(a.logprob - b.logprob) for a, b in zip(hf_ll, vllm_ll, strict=True)), default=None
                ),
                "choice_agreement": picks_same / n_choice if n_choice else None,
                "hf_items_s": len(prompts) / hf_s,
                "vllm_items_s": len(prompts) / vllm_s,
            }
        )
    )


if __name__ == "__main__":
    main()
