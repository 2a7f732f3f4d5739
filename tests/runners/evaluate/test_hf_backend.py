"""HF backend on tiny random toy models: batched == per-item greedy, order, OOM back-off,
stop strings, seeded sampling, log-likelihoods."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from kdanalysis.errors import RunFailedError
from runners.evaluate.backend import GenerationRequest, LoglikelihoodRequest, multiple_choice
from runners.evaluate.decoding import DecodingConfig, decoding_preset
from runners.evaluate.hf_backend import HFBackend, hf_generation_config, length_sorted_order
from runners.evaluate.prompts import format_prompt
from runners.toy import build_model, make_arithmetic_task

GREEDY = DecodingConfig(max_new_tokens=8)


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    """Real-format prompts of very different lengths (lots of left padding in a batch)."""
    items = make_arithmetic_task(4, seed=3, difficulty=2)
    texts = [format_prompt(it["instruction"], it["input"]) for it in items]
    return texts + ["2 + 2 =", "Q: " + "x " * 30]


def _greedy_one_by_one(model: Any, tokenizer: Any, prompts: list[str], decoding: DecodingConfig) -> list:
    single = HFBackend(model, tokenizer, batch_size=1)
    return [single.generate([GenerationRequest(p, decoding)])[0] for p in prompts]


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_batched_greedy_equals_per_item(family: str, tokenizer: Any, prompts: list[str]) -> None:
    model = build_model(family, "tiny", seed=1)
    batched = HFBackend(model, tokenizer, batch_size=4).generate(
        [GenerationRequest(p, GREEDY) for p in prompts]
    )
    alone = _greedy_one_by_one(model, tokenizer, prompts, GREEDY)
    assert batched == alone
    assert all(1 <= r.n_tokens[0] <= GREEDY.max_new_tokens for r in batched)


def test_batched_greedy_equals_plain_generate(model: Any, tokenizer: Any, prompts: list[str]) -> None:
    """Against transformers' own generate on the unpadded prompt (the published per-question loop)."""
    backend = HFBackend(model, tokenizer, batch_size=8)
    results = backend.generate([GenerationRequest(p, GREEDY) for p in prompts[:4]])
    for prompt, res in zip(prompts[:4], results, strict=True):
        ids = tokenizer(prompt, return_tensors="pt")
        out = model.generate(
            **ids, do_sample=False, max_new_tokens=GREEDY.max_new_tokens, pad_token_id=tokenizer.pad_token_id
        )
        new = out[0, ids["input_ids"].shape[1] :]
        assert res.text == tokenizer.decode(new, skip_special_tokens=True)


def test_length_sorted_order_and_restored_order(model: Any, tokenizer: Any, prompts: list[str]) -> None:
    assert length_sorted_order([3, 9, 1, 9]) == [1, 3, 0, 2]
    backend = HFBackend(model, tokenizer, batch_size=3)
    forward = backend.generate(
        [GenerationRequest(p, GREEDY, request_id=str(i)) for i, p in enumerate(prompts)]
    )
    backward = backend.generate([GenerationRequest(p, GREEDY) for p in reversed(prompts)])
    assert forward == backward[::-1]


def test_oom_back_off_halves_batch_and_keeps_results(
    model: Any, tokenizer: Any, prompts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _greedy_one_by_one(model, tokenizer, prompts, GREEDY)
    real_generate = model.generate
    sizes: list[int] = []

    def flaky_generate(*args: Any, **kwargs: Any) -> Any:
        sizes.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", flaky_generate)
    backend = HFBackend(model, tokenizer, batch_size=8)
    done: list[int] = []
    got = backend.generate([GenerationRequest(p, GREEDY) for p in prompts], progress=done.append)
    assert got == expected
    assert backend.batch_size == 3 and sizes[:2] == [6, 3]
    assert sum(done) == len(prompts) and max(done) == 3


def test_oom_on_single_item_fails_clearly(
    model: Any, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always_oom(*args: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(model, "generate", always_oom)
    with pytest.raises(RunFailedError, match="out of memory on a single item .* batch size 1"):
        HFBackend(model, tokenizer, batch_size=4).generate([GenerationRequest("1 + 1 =", GREEDY)] * 3)


def test_stop_strings_cut_the_text(model: Any, tokenizer: Any, prompts: list[str]) -> None:
    backend = HFBackend(model, tokenizer, batch_size=4)
    free = backend.generate([GenerationRequest(p, GREEDY) for p in prompts[:4]])
    # stop at a piece of the first answer: it must end right before it; other texts end at
    # their own first occurrence (if any)
    text = free[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert stop, f"greedy text too short: {text!r}"
    stopped = backend.generate(
        [GenerationRequest(p, GREEDY.model_copy(update={"stop": (stop,)})) for p in prompts[:4]]
    )
    for before, after in zip(free, stopped, strict=True):
        cut = before.text.find(stop)
        assert after.text == (before.text if cut < 0 else before.text[:cut])
        assert stop not in after.text and after.n_tokens[0] <= before.n_tokens[0]
    assert stopped[0].n_tokens[0] < free[0].n_tokens[0] or free[0].n_tokens[0] == GREEDY.max_new_tokens


def test_seeded_sampling_is_reproducible(model: Any, tokenizer: Any, prompts: list[str]) -> None:
    backend = HFBackend(model, tokenizer, batch_size=4)
    sample = decoding_preset("published", max_new_tokens=6, n=2, seed=11)
    first = backend.generate([GenerationRequest(p, sample) for p in prompts[:5]])
    again = backend.generate([GenerationRequest(p, sample) for p in prompts[:5]])
    other = backend.generate(
        [GenerationRequest(p, sample.model_copy(update={"seed": 12})) for p in prompts[:5]]
    )
    assert first == again
    assert first != other
    assert all(len(r.texts) == 2 and len(r.n_tokens) == 2 for r in first)


def test_mixed_decodings_in_one_call(model: Any, tokenizer: Any, prompts: list[str]) -> None:
    backend = HFBackend(model, tokenizer, batch_size=4)
    sample = decoding_preset("published", max_new_tokens=6, seed=0)
    mixed = [GenerationRequest(p, GREEDY if i % 2 else sample) for i, p in enumerate(prompts[:6])]
    got = backend.generate(mixed)
    greedy_only = backend.generate([r for r in mixed if r.decoding == GREEDY])
    assert [got[i] for i in range(1, 6, 2)] == greedy_only


def _manual_loglikelihood(model: Any, tokenizer: Any, context: str, continuation: str) -> float:
    ctx = tokenizer(context)["input_ids"]
    cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits.float(), -1)[0]
    return float(sum(logprobs[len(ctx) - 1 + i, t] for i, t in enumerate(cont)))


def test_loglikelihood_matches_manual_and_is_batch_invariant(
    model: Any, tokenizer: Any, prompts: list[str]
) -> None:
    requests = [
        LoglikelihoodRequest(p, c) for p in prompts[:4] for c in ("true", " solution2", "The answer is 7")
    ]
    batched = HFBackend(model, tokenizer, batch_size=6).loglikelihood(requests)
    alone = HFBackend(model, tokenizer, batch_size=1).loglikelihood(requests)
    for req, b, a in zip(requests, batched, alone, strict=True):
        assert b.logprob == pytest.approx(a.logprob, abs=1e-4) and b.is_greedy == a.is_greedy
        assert b.logprob == pytest.approx(
            _manual_loglikelihood(model, tokenizer, req.context, req.continuation), abs=1e-4
        )
        assert b.logprob < 0


def test_greedy_continuation_is_greedy_and_wins_multiple_choice(model: Any, tokenizer: Any) -> None:
    context = "Omar has 4 coins."
    ids = tokenizer(context, return_tensors="pt")
    with torch.no_grad():
        top2 = model(**ids).logits[0, -1].topk(2).indices.tolist()
    best, second = (tokenizer.decode([t]) for t in top2)
    backend = HFBackend(model, tokenizer, batch_size=2)
    # score the raw token ids' texts; keep the check to tokens that re-encode to themselves
    if tokenizer(best, add_special_tokens=False)["input_ids"] == [top2[0]]:
        assert backend.loglikelihood([LoglikelihoodRequest(context, best)])[0].is_greedy
        assert multiple_choice(backend, [context], [(second, best)]) == [1]


def test_generation_config_is_explicit() -> None:
    published = hf_generation_config(decoding_preset("published"), eos_token_id=2, pad_token_id=0)
    assert (published.do_sample, published.temperature, published.top_p, published.top_k) == (
        True,
        1.0,
        1.0,
        0,
    )
    assert published.max_new_tokens == 256 and published.repetition_penalty == 1.0 and published.use_cache
    greedy = hf_generation_config(DecodingConfig(stop=("###",)), eos_token_id=[2, 5], pad_token_id=0)
    assert greedy.do_sample is False and greedy.stop_strings == ["###"] and greedy.eos_token_id == [2, 5]


def test_close_releases_model(model: Any, tokenizer: Any) -> None:
    with HFBackend(model, tokenizer) as backend:
        assert backend.device.type == "cpu"
    assert backend.model is None
    backend.close()  # idempotent
