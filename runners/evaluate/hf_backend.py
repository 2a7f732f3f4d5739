"""Hugging Face transformers backend: the reference implementation of :class:`Backend`.

Generation
    Requests are grouped by decoding settings, sorted by prompt length (longest first,
    so an out-of-memory error shows up in the first batch and padding is minimal),
    left-padded into batches and passed to ``model.generate`` with the KV cache on.
    Results are put back in request order. Position ids follow the attention mask, so
    under greedy decoding a batched answer is the answer the model gives to the
    question alone (checked by the tests and by ``bench/eval_throughput.py``).
Out of memory
    A batch that raises ``torch.OutOfMemoryError`` is retried with half the batch size
    (the smaller size is kept for the rest of the run) down to one item; only an item
    that does not fit alone raises :class:`~kdanalysis.errors.RunFailedError`.
Sampling
    Every request is sampled with its own ``torch.Generator``, seeded with
    :func:`~runners.evaluate.decoding.item_seed` of ``decoding.seed`` and the request's
    ``request_id`` (its prompt when the id is empty) — the seed the vLLM backend gives the
    same request. Its ``n`` samples draw, at every step, from that generator alone, so an
    item's samples are the same at any batch size, in any order and next to any other
    items (up to the float rounding of batched logits, which can move a draw that falls
    within about 1e-6 of a boundary of the cumulative distribution). transformers samples
    a batch with one ``torch.multinomial`` call on the global generator and applies user
    logits processors *before* its temperature/top-k/top-p warpers, so the backend runs
    ``generate`` in greedy mode with one processor (:class:`ItemSeededSampler`) that applies
    transformers' own warpers in transformers' order, draws each row's token from its
    item's generator and leaves that token as the only finite score (greedy then picks it).
    The torch global generator is neither read nor advanced. The two backends' random
    streams differ, so sampled outputs of HF and vLLM are not expected to match.
Decoding settings
    :func:`hf_generation_config` builds the complete ``GenerationConfig`` from a
    :class:`DecodingConfig`: sampling knobs are set explicitly (``top_k=0`` and
    ``repetition_penalty=1`` included), and so is every other setting of ``generate``
    that has a neutral value (``no_repeat_ngram_size=0``, ``min_new_tokens=0``, ...).
    transformers fills each setting a passed config leaves unset from the checkpoint's
    own ``generation_config`` (``generation_config.json``), and some settings (``min_p``,
    ``suppress_tokens``, ``forced_eos_token_id``, ``bad_words_ids``, ...) have no neutral
    value other than unset, so :func:`hf_generate` also replaces the model's
    ``generation_config`` by this one for the duration of the call: nothing of the
    checkpoint's reaches generation. Stop strings stop generation through transformers'
    ``stop_strings`` and are then cut from the text.
Token counts
    ``n_tokens`` counts generated tokens up to and including the first end-of-sequence
    token; ``generate`` pads the rows that finished before the longest one, and that
    padding is not counted. When the pad token *is* an end-of-sequence token (a tokenizer
    without its own pad token), a row finished by a stop string is padded with what looks
    like a generated EOS: the first EOS is counted only if the text before it contains no
    stop string (a row stops as soon as a stop string is complete, so an EOS after one is
    padding). The text test follows transformers' ``StopStringCriteria`` except for a stop
    string that starts inside the prompt, which only the criteria see.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, Literal, TypeVar

import torch

from kdanalysis.errors import RunFailedError
from runners.evaluate.backend import (
    Backend,
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    ProgressCallback,
    encode_loglikelihood_pair,
)
from runners.evaluate.decoding import DecodingConfig, item_seed, truncate_at_stop

__all__ = [
    "HFBackend",
    "ItemSeededSampler",
    "hf_generate",
    "hf_generation_config",
    "length_sorted_order",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def hf_generation_config(
    decoding: DecodingConfig, *, eos_token_id: int | list[int] | None, pad_token_id: int
) -> Any:
    """The ``transformers.GenerationConfig`` equivalent to ``decoding``, every setting explicit.

    Sampling knobs (temperature, top-p, top-k with 0 = off) are set when ``do_sample``;
    every other setting of ``generate`` that has a neutral value is set to it (no repetition
    or n-gram penalty, no minimum length, no typical/epsilon/eta truncation, one beam), so
    that this config says all of the protocol. Settings whose only neutral value is
    "unset" stay unset; :func:`hf_generate` keeps the checkpoint's values of those out.

    Parameters
    ----------
    decoding : DecodingConfig
        Backend-neutral decoding settings.
    eos_token_id : int, list of int or None
        End-of-sequence id(s) that finish a sample.
    pad_token_id : int
        Id used to pad finished samples.
    """
    from transformers import GenerationConfig

    sampling: dict[str, Any] = (
        {
            "temperature": decoding.temperature,
            "top_p": decoding.top_p,
            "top_k": decoding.top_k,
            "typical_p": 1.0,
            "epsilon_cutoff": 0.0,
            "eta_cutoff": 0.0,
        }
        if decoding.do_sample
        else {}
    )
    return GenerationConfig(
        do_sample=decoding.do_sample,
        **sampling,
        num_beams=1,
        num_return_sequences=decoding.n,
        repetition_penalty=1.0,
        encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        length_penalty=1.0,
        min_new_tokens=0,
        max_new_tokens=decoding.max_new_tokens,
        renormalize_logits=False,
        remove_invalid_values=False,
        stop_strings=list(decoding.stop) or None,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        use_cache=True,
    )


class ItemSeededSampler:
    """A transformers logits processor that samples every row from its own item's generator.

    Used with greedy ``generate`` (see the module docstring): it applies transformers'
    ``TemperatureLogitsWarper``, ``TopKLogitsWarper`` and ``TopPLogitsWarper`` (those that
    ``decoding`` turns on, in the order transformers' sampling applies them), draws one
    token per row with ``torch.multinomial`` on the softmax and the row's generator, and
    returns scores that are 0 at that token and -inf elsewhere.

    Parameters
    ----------
    decoding : DecodingConfig
        The sampling settings (``do_sample`` must be true).
    seeds : sequence of int
        One seed per item; the batch holds ``decoding.n`` consecutive rows per item, which
        draw in turn from the item's generator.
    """

    def __init__(self, decoding: DecodingConfig, seeds: Sequence[int]) -> None:
        from transformers import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        if not decoding.do_sample:
            raise ValueError("ItemSeededSampler samples; decoding.do_sample must be true")
        warpers = LogitsProcessorList()
        if decoding.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(decoding.temperature))
        if decoding.top_k:
            warpers.append(TopKLogitsWarper(top_k=decoding.top_k))
        if decoding.top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=decoding.top_p))
        self.warpers = warpers
        self.seeds = list(seeds)
        self.n = decoding.n
        self._generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        """One token per row, from its item's generator, as the only finite score of the row."""
        if scores.shape[0] != len(self.seeds) * self.n:
            raise ValueError(f"{scores.shape[0]} rows for {len(self.seeds)} items x {self.n} samples")
        if self._generators is None:
            self._generators = [
                torch.Generator(device=scores.device).manual_seed(seed) for seed in self.seeds
            ]
        probs = torch.softmax(self.warpers(input_ids, scores).float(), dim=-1)
        picks = torch.cat(
            [
                torch.multinomial(probs[i * self.n : (i + 1) * self.n], 1, generator=gen)
                for i, gen in enumerate(self._generators)
            ]
        )
        out = torch.full_like(scores, -float("inf"))
        return out.scatter_(1, picks, 0.0)


@contextlib.contextmanager
def _own_generation_config(model: Any, config: Any) -> Iterator[None]:
    """Make ``config`` the generating model's ``generation_config`` for the ``with`` block."""
    get_base = getattr(model, "get_base_model", None)  # a peft model generates with its base
    base = get_base() if callable(get_base) else model
    saved = base.generation_config
    base.generation_config = config
    try:
        yield
    finally:
        base.generation_config = saved


def hf_generate(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    decoding: DecodingConfig,
    *,
    eos_token_id: int | list[int] | None,
    pad_token_id: int,
    seeds: Sequence[int] | None = None,
    tokenizer: Any = None,
) -> torch.Tensor:
    """``model.generate`` with exactly ``decoding``: nothing of the checkpoint's generation config.

    Parameters
    ----------
    model : transformers causal LM (or peft model)
        The generating model.
    input_ids, attention_mask : Tensor
        Left-padded prompts [B, T] on the model's device.
    decoding : DecodingConfig
        The decoding settings (:func:`hf_generation_config`).
    eos_token_id, pad_token_id
        End-of-sequence id(s) and padding id.
    seeds : sequence of int or None
        With sampling: one seed per prompt, each prompt's samples drawn from its own
        generator (:class:`ItemSeededSampler`); None: transformers' own sampling from the
        torch global generator. Ignored under greedy decoding.
    tokenizer : tokenizer or None
        Needed by transformers when ``decoding.stop`` is not empty.

    Returns
    -------
    Tensor
        [B * decoding.n, T + new] ids: prompt ``b``'s samples in rows ``b * n`` to
        ``b * n + n - 1``; finished rows padded with ``pad_token_id``.
    """
    extra: dict[str, Any] = {"tokenizer": tokenizer} if decoding.stop else {}
    if decoding.do_sample and seeds is not None:
        extra["logits_processor"] = [ItemSeededSampler(decoding, seeds)]
        input_ids = input_ids.repeat_interleave(decoding.n, dim=0)
        attention_mask = attention_mask.repeat_interleave(decoding.n, dim=0)
        # greedy decoding of the sampler's one finite score per row (n rows per prompt made above)
        decoding = decoding.model_copy(update={"do_sample": False, "n": 1})
    config = hf_generation_config(decoding, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    with _own_generation_config(model, config):
        return model.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=config, **extra
        )


def length_sorted_order(lengths: Sequence[int]) -> list[int]:
    """Indices of ``lengths`` from the longest item to the shortest (ties keep input order).

    Consecutive slices of this order make batches of similar length: little padding,
    and the largest batch (the likeliest to run out of memory) comes first.
    """
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def _pad(rows: Sequence[Sequence[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        sl = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, sl] = torch.tensor(row, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


class HFBackend(Backend):
    """A transformers causal LM behind the :class:`Backend` interface.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM (optionally a peft model with a LoRA adapter), already on its device.
    tokenizer : transformers tokenizer
        Its tokenizer; a missing pad token is set to the EOS token.
    batch_size : int
        Items per batch to start with (halved on out-of-memory).
    """

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
            logger.info("tokenizer has no pad token; using EOS %r", tokenizer.eos_token)
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        self._eos = gen_eos if gen_eos is not None else tokenizer.eos_token_id
        eos_ids = self._eos if isinstance(self._eos, list) else [self._eos]
        self._eos_set = {int(e) for e in eos_ids if e is not None}

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        adapter: str | None = None,
        gguf_file: str | None = None,
        dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto",
        device: str | None = None,
        batch_size: int = 16,
    ) -> HFBackend:
        """Load a model (+ LoRA adapter) with :func:`runners.models.load_causal_lm`.

        ``dtype="auto"`` means bfloat16 on a GPU and float32 on the CPU; ``device=None``
        means CUDA when available.
        """
        from runners.models import load_causal_lm

        model, tokenizer = load_causal_lm(
            name_or_path,
            dtype=dtype,
            device=device,
            adapter=adapter,
            gguf_file=gguf_file,
        )
        return cls(model, tokenizer, batch_size=batch_size)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ generate
    def generate(
        self, requests: Sequence[GenerationRequest], *, progress: ProgressCallback | None = None
    ) -> list[GenerationResult]:
        """Generate all requests in length-sorted, left-padded batches; results in request order."""
        results: list[GenerationResult | None] = [None] * len(requests)
        groups: dict[DecodingConfig, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(req.decoding, []).append(i)
        for decoding, members in groups.items():
            ids = [self._encode_prompt(requests[i].prompt) for i in members]
            seeds = [item_seed(decoding.seed, requests[i].request_id or requests[i].prompt) for i in members]
            batch_results = self._run_batched(
                [len(r) for r in ids],
                partial(self._generate_batch, ids, seeds, decoding=decoding),
                progress,
            )
            for i, res in zip(members, batch_results, strict=True):
                results[i] = res
        return [r for r in results if r is not None]

    def _encode_prompt(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])

    def _generate_batch(
        self,
        ids: Sequence[list[int]],
        seeds: Sequence[int],
        chunk: list[int],
        offset: int,
        *,
        decoding: DecodingConfig,
    ) -> list[GenerationResult]:
        del offset  # each item is seeded on its own
        rows = [ids[i] for i in chunk]
        input_ids, mask = _pad(rows, self.tokenizer.pad_token_id, "left")
        with torch.inference_mode():
            out = hf_generate(
                self.model,
                input_ids.to(self.device),
                mask.to(self.device),
                decoding,
                eos_token_id=self._eos,
                pad_token_id=self.tokenizer.pad_token_id,
                seeds=[seeds[i] for i in chunk],
                tokenizer=self.tokenizer,
            )
        generated = out[:, input_ids.shape[1] :].tolist()
        results = []
        for r in range(len(rows)):
            samples = generated[r * decoding.n : (r + 1) * decoding.n]
            counts = tuple(self._count_tokens(s, decoding.stop) for s in samples)
            texts = tuple(
                truncate_at_stop(self.tokenizer.decode(s[:c], skip_special_tokens=True), decoding.stop)
                for s, c in zip(samples, counts, strict=True)
            )
            results.append(GenerationResult(texts, counts))
        return results

    def _count_tokens(self, tokens: list[int], stop: Sequence[str]) -> int:
        pad = self.tokenizer.pad_token_id
        for pos, tok in enumerate(tokens):
            if tok in self._eos_set:
                if tok == pad and stop:  # padding after a stop string, or a generated EOS?
                    text = self.tokenizer.decode(tokens[:pos], skip_special_tokens=True)
                    if any(s in text for s in stop):
                        return pos
                return pos + 1
        end = len(tokens)
        while end > 0 and tokens[end - 1] == pad:
            end -= 1
        return end

    # ------------------------------------------------------------- loglikelihood
    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], *, progress: ProgressCallback | None = None
    ) -> list[LoglikelihoodResult]:
        """Score continuations with one teacher-forced forward pass per batch (right padding)."""
        pairs = [encode_loglikelihood_pair(self.tokenizer, r.context, r.continuation) for r in requests]
        rows = [ctx + cont for ctx, cont in pairs]
        n_ctx = [len(ctx) for ctx, _ in pairs]
        return self._run_batched([len(r) for r in rows], partial(self._score_batch, rows, n_ctx), progress)

    def _score_batch(
        self, all_rows: Sequence[list[int]], all_ctx: Sequence[int], chunk: list[int], offset: int
    ) -> list[LoglikelihoodResult]:
        del offset  # scoring is deterministic
        rows = [all_rows[i] for i in chunk]
        ctx_lengths = [all_ctx[i] for i in chunk]
        input_ids, mask = _pad(rows, self.tokenizer.pad_token_id, "right")
        with torch.inference_mode():
            device = self.device
            logits = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        results = []
        for i, (row, c) in enumerate(zip(rows, ctx_lengths, strict=True)):
            targets = torch.tensor(row[c:], dtype=torch.long)
            step = logprobs[i, c - 1 : len(row) - 1]
            total = step.gather(1, targets[:, None]).sum().item()
            greedy = bool((step.argmax(dim=-1) == targets).all())
            results.append(LoglikelihoodResult(float(total), greedy))
        return results

    # ------------------------------------------------------------------ batching
    def _run_batched(
        self,
        lengths: Sequence[int],
        run_batch: Callable[[list[int], int], list[_T]],
        progress: ProgressCallback | None,
    ) -> list[_T]:
        """Call ``run_batch(indices, offset)`` on length-sorted batches, with out-of-memory back-off.

        ``offset`` is the batch's position in the sorted order.
        Returns the per-item results in the original order.
        """
        order = length_sorted_order(lengths)
        out: list[_T | None] = [None] * len(lengths)
        pos = 0
        while pos < len(order):
            chunk = order[pos : pos + self.batch_size]
            try:
                batch_out = run_batch(chunk, pos)
            except torch.OutOfMemoryError as exc:
                self._free_cache()
                if len(chunk) == 1:
                    raise RunFailedError(
                        f"out of memory on a single item of {lengths[chunk[0]]} tokens with batch size 1; "
                        f"use a smaller model, max_new_tokens, or a larger GPU ({exc})"
                    ) from exc
                self.batch_size = max(1, len(chunk) // 2)
                logger.warning(
                    "out of memory with batch size %d; retrying with %d", len(chunk), self.batch_size
                )
                continue
            for i, res in zip(chunk, batch_out, strict=True):
                out[i] = res
            pos += len(chunk)
            if progress is not None:
                progress(len(chunk))
        return [r for r in out if r is not None]

    def _free_cache(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the model and return its GPU memory to the allocator's pool and the driver."""
        if getattr(self, "model", None) is not None:
            self.model = None
            self._free_cache()
