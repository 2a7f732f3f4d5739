"""HF generation settings and seeds: nothing of a checkpoint's ``generation_config`` reaches
generation, and each request is sampled from its own seed (the same sample at any batch size,
order or company). Tiny random toy models; ``ItemSeededSampler`` against torch's multinomial."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from runners.evaluate.backend import GenerationRequest
from runners.evaluate.decoding import DecodingConfig, decoding_preset, item_seed
from runners.evaluate.hf_backend import HFBackend, ItemSeededSampler
from runners.evaluate.prompts import format_prompt
from runners.toy import build_model, make_arithmetic_task

SAMPLE = decoding_preset("published", max_new_tokens=10, seed=3)


@pytest.fixture(scope="module")
def requests() -> list[GenerationRequest]:
    """Prompts of different lengths (left padding differs with the batch), with ids."""
    items = make_arithmetic_task(5, seed=4, difficulty=2)
    prompts = [format_prompt(it["instruction"], it["input"]) for it in items] + ["2 + 2 =", "x " * 25]
    return [GenerationRequest(p, SAMPLE, request_id=f"toy/{i}") for i, p in enumerate(prompts)]


def test_an_items_sample_does_not_depend_on_batch_size_order_or_company(
    model: Any, tokenizer: Any, requests: list[GenerationRequest]
) -> None:
    alone = HFBackend(model, tokenizer, batch_size=1).generate(requests)
    batched = HFBackend(model, tokenizer, batch_size=4).generate(requests)
    backward = HFBackend(model, tokenizer, batch_size=4).generate(requests[::-1])[::-1]
    subset = HFBackend(model, tokenizer, batch_size=4).generate(requests[1::2])
    assert alone == batched == backward
    assert subset == alone[1::2]
    assert len({r.text for r in alone}) == len(alone)  # real samples, not one repeated text


def test_n_samples_per_item_are_distinct_and_batch_independent(
    model: Any, tokenizer: Any, requests: list[GenerationRequest]
) -> None:
    three = [GenerationRequest(r.prompt, SAMPLE.model_copy(update={"n": 3}), r.request_id) for r in requests]
    alone = HFBackend(model, tokenizer, batch_size=1).generate(three)
    batched = HFBackend(model, tokenizer, batch_size=3).generate(three[::-1])[::-1]
    assert alone == batched
    assert all(len(r.texts) == 3 and len(set(r.texts)) > 1 for r in alone)


def test_the_seed_is_the_items_own_and_the_global_generator_is_untouched(
    model: Any, tokenizer: Any, requests: list[GenerationRequest]
) -> None:
    backend = HFBackend(model, tokenizer, batch_size=4)
    state = torch.get_rng_state()
    first = backend.generate(requests[:3])
    assert torch.equal(torch.get_rng_state(), state)
    renamed = [GenerationRequest(r.prompt, r.decoding, r.request_id + "x") for r in requests[:3]]
    assert backend.generate(renamed) != first  # the request id is part of the seed
    no_id = [GenerationRequest(r.prompt, r.decoding) for r in requests[:3]]
    assert backend.generate(no_id) == backend.generate(no_id[::-1])[::-1]  # keyed by the prompt


def test_item_seeded_sampler_draws_like_multinomial_on_the_warped_distribution() -> None:
    scores = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 3
    decoding = decoding_preset("published", temperature=0.7, top_k=20, top_p=0.9, n=2)
    seeds = [item_seed(1, "a"), item_seed(1, "b")]
    sampler = ItemSeededSampler(decoding, seeds)
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warped = scores / 0.7
    warped = TopKLogitsWarper(20)(None, warped)
    warped = TopPLogitsWarper(0.9)(None, warped)
    probs = torch.softmax(warped, -1)
    expected = []
    for item, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(seed)
        expected.append(torch.multinomial(probs[2 * item : 2 * item + 2], 1, generator=gen))
    out = sampler(torch.zeros(4, 1, dtype=torch.long), scores.clone())
    picks = out.argmax(-1)
    assert torch.equal(picks, torch.cat(expected).squeeze(1))
    assert torch.isfinite(out).sum() == 4 and (out.max(-1).values == 0).all()
    assert TemperatureLogitsWarper(0.7)(None, scores).allclose(scores / 0.7)  # the warper we mirror
    with pytest.raises(ValueError, match="rows"):
        ItemSeededSampler(decoding, seeds)(torch.zeros(3, 1, dtype=torch.long), scores[:3])


def test_top_k_one_sampling_is_greedy(model: Any, tokenizer: Any, requests: list[GenerationRequest]) -> None:
    backend = HFBackend(model, tokenizer, batch_size=4)
    greedy = backend.generate(
        [GenerationRequest(r.prompt, DecodingConfig(max_new_tokens=10)) for r in requests]
    )
    top1 = backend.generate(
        [GenerationRequest(r.prompt, SAMPLE.model_copy(update={"top_k": 1}), r.request_id) for r in requests]
    )
    assert [r.texts for r in top1] == [r.texts for r in greedy]


#: What a real checkpoint's generation_config.json may carry; none of it may reach generation.
CHECKPOINT_SETTINGS: dict[str, Any] = {
    "do_sample": True,
    "temperature": 0.2,
    "top_k": 1,
    "top_p": 0.5,
    "repetition_penalty": 5.0,
    "no_repeat_ngram_size": 1,
    "min_new_tokens": 6,
    "max_length": 9,
    "min_p": 0.5,
}


@pytest.mark.parametrize("decoding", [SAMPLE, DecodingConfig(max_new_tokens=10)], ids=["sample", "greedy"])
def test_a_checkpoints_generation_config_does_not_leak(
    tokenizer: Any, requests: list[GenerationRequest], decoding: DecodingConfig
) -> None:
    plain = build_model("qwen2", "tiny", seed=1)
    custom = build_model("qwen2", "tiny", seed=1)
    reqs = [GenerationRequest(r.prompt, decoding, r.request_id) for r in requests]
    expected = HFBackend(plain, tokenizer, batch_size=4).generate(reqs)
    used = sorted({t for r in expected for t in tokenizer(r.text, add_special_tokens=False)["input_ids"]})
    for key, value in CHECKPOINT_SETTINGS.items():
        setattr(custom.generation_config, key, value)
    custom.generation_config.suppress_tokens = used  # settings whose only neutral value is "unset"
    custom.generation_config.bad_words_ids = [[t] for t in used]
    saved = custom.generation_config.to_dict()
    assert HFBackend(custom, tokenizer, batch_size=4).generate(reqs) == expected
    assert custom.generation_config.to_dict() == saved  # restored after the call
