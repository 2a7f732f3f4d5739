"""vLLM backend: every prompt of every task in one ``LLM.generate`` call.

.. warning::
   This module is **not verified against a real vLLM installation**: vLLM cannot run on
   the project's machines. The engine calls follow vLLM's documented offline API
   (``vllm.LLM(model, tokenizer, dtype, seed, tensor_parallel_size, enable_prefix_caching,
   enable_lora, max_lora_rank, gpu_memory_utilization, max_model_len)``,
   ``LLM.generate(prompts, sampling_params, lora_request=..., use_tqdm=...)``,
   ``vllm.SamplingParams(n, temperature, top_p, top_k, seed, max_tokens, stop,
   prompt_logprobs, detokenize)`` and ``vllm.lora.request.LoRARequest(lora_name,
   lora_int_id, lora_path)``). What can be checked without vLLM is kept in pure
   functions with unit tests against objects carrying the documented attributes:
   :func:`sampling_params_kwargs` (DecodingConfig -> SamplingParams keywords),
   :func:`parse_generation_output` (``RequestOutput`` -> :class:`GenerationResult`) and
   :func:`parse_prompt_logprobs` (``RequestOutput.prompt_logprobs`` -> log-likelihood).
   ``bench/parity_hf_vllm.py`` compares this backend with the HF reference wherever
   vLLM is installed.

Parallelism
-----------
``tensor_parallel_size`` shards one engine over several GPUs (vLLM's own option).
``data_parallel_size`` > 1 starts that many independent engine replicas in spawned
processes, each on its own group of ``tensor_parallel_size`` GPUs (set through
``CUDA_VISIBLE_DEVICES``), gives each a round-robin share of the requests and puts the
results back in request order.

Token counts: ``n_tokens`` is ``len(CompletionOutput.token_ids)``; vLLM includes the
end-of-sequence token there, as the HF backend counts it.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdanalysis.errors import BackendUnavailableError, ConfigError, RunFailedError
from runners.evaluate.backend import (
    Backend,
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    ProgressCallback,
    encode_loglikelihood_pair,
)
from runners.evaluate.decoding import DecodingConfig

__all__ = [
    "VLLM_INSTALL_HINT",
    "import_vllm",
    "sampling_params_kwargs",
    "loglikelihood_params_kwargs",
    "parse_generation_output",
    "parse_prompt_logprobs",
    "lora_rank",
    "engine_kwargs",
    "VLLMBackend",
]

logger = logging.getLogger(__name__)

VLLM_INSTALL_HINT = "pip install 'kdanalysis[vllm]'"


def import_vllm() -> Any:
    """Import and return the ``vllm`` module.

    Raises
    ------
    BackendUnavailableError
        If vLLM is not installed; the message gives the install command.
    """
    try:
        import vllm
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the vLLM backend needs vLLM, which is not installed ({exc}); "
            f"install it with: {VLLM_INSTALL_HINT}  (or use backend: hf)"
        ) from exc
    return vllm


def sampling_params_kwargs(decoding: DecodingConfig) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` equivalent to ``decoding``.

    Greedy decoding maps to ``temperature=0`` (vLLM's greedy mode); top-k "disabled"
    maps to ``top_k=-1``, which every vLLM release accepts. Stop strings are removed from
    the output text (``include_stop_str_in_output=False``), as the HF backend does.

    Returns
    -------
    dict
        Keys: n, temperature, top_p, top_k, seed, max_tokens, stop, include_stop_str_in_output.
    """
    return {
        "n": decoding.n,
        "temperature": decoding.temperature if decoding.do_sample else 0.0,
        "top_p": decoding.top_p if decoding.do_sample else 1.0,
        "top_k": decoding.top_k if (decoding.do_sample and decoding.top_k > 0) else -1,
        "seed": decoding.seed,
        "max_tokens": decoding.max_new_tokens,
        "stop": list(decoding.stop),
        "include_stop_str_in_output": False,
    }


def loglikelihood_params_kwargs() -> dict[str, Any]:
    """``SamplingParams`` keywords for scoring a prompt: its own log-probabilities, one dummy token.

    ``prompt_logprobs=1`` returns, for every prompt position, the log-probability of the
    actual token plus the most likely one (enough to tell whether it was the greedy choice).
    """
    return {"temperature": 0.0, "max_tokens": 1, "prompt_logprobs": 1, "detokenize": False}


def parse_generation_output(output: Any) -> GenerationResult:
    """Turn one ``vllm.RequestOutput`` into a :class:`GenerationResult`.

    Parameters
    ----------
    output : RequestOutput
        Needs ``outputs``: a list of ``CompletionOutput`` with ``text`` and ``token_ids``.
    """
    completions = list(output.outputs)
    return GenerationResult(
        texts=tuple(c.text for c in completions),
        n_tokens=tuple(len(c.token_ids) for c in completions),
    )


def parse_prompt_logprobs(
    prompt_logprobs: Sequence[dict[int, Any] | None], token_ids: Sequence[int], n_context: int
) -> LoglikelihoodResult:
    """Log-likelihood of the continuation part of a scored prompt.

    Parameters
    ----------
    prompt_logprobs : sequence of (dict or None)
        ``RequestOutput.prompt_logprobs``: per prompt position, a mapping token id ->
        ``Logprob`` (with a ``.logprob`` attribute) or a float; ``None`` at position 0.
    token_ids : sequence of int
        The scored ids (context followed by continuation).
    n_context : int
        Number of context ids (>= 1).

    Returns
    -------
    LoglikelihoodResult
        Sum of the continuation tokens' log-probabilities, and whether each continuation
        token was the most likely one at its position.
    """
    if len(prompt_logprobs) != len(token_ids):
        raise ValueError(f"{len(prompt_logprobs)} prompt logprob entries for {len(token_ids)} tokens")
    total = 0.0
    greedy = True
    for pos in range(n_context, len(token_ids)):
        entry = prompt_logprobs[pos]
        if entry is None:
            raise ValueError(f"no prompt logprobs at continuation position {pos}")
        values = {tok: float(getattr(lp, "logprob", lp)) for tok, lp in entry.items()}
        token = token_ids[pos]
        total += values[token]
        greedy = greedy and max(values, key=values.__getitem__) == token
    return LoglikelihoodResult(total, greedy)


def lora_rank(adapter: str | os.PathLike[str]) -> int:
    """Rank ``r`` of a saved peft LoRA adapter (from its ``adapter_config.json``).

    Raises
    ------
    ConfigError
        If the file is missing or has no integer ``r``.
    """
    path = Path(adapter) / "adapter_config.json"
    try:
        rank = json.loads(path.read_text(encoding="utf-8"))["r"]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the LoRA rank 'r' from {path}: {exc}") from exc
    if not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"{path}: field 'r' must be a positive integer, got {rank!r}")
    return rank


def engine_kwargs(
    model: str,
    *,
    adapter: str | None = None,
    gguf_file: str | None = None,
    dtype: str = "auto",
    seed: int = 0,
    tensor_parallel_size: int = 1,
    enable_prefix_caching: bool = True,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for one engine.

    A GGUF checkpoint is loaded by vLLM from a local ``.gguf`` file, with the tokenizer
    taken from ``model`` (the base model directory or hub id).

    Raises
    ------
    ConfigError
        If ``gguf_file`` is given but ``model/gguf_file`` is not a local file.
    """
    kwargs: dict[str, Any] = {
        "model": model,
        "dtype": dtype,
        "seed": seed,
        "tensor_parallel_size": tensor_parallel_size,
        "enable_prefix_caching": enable_prefix_caching,
        "gpu_memory_utilization": gpu_memory_utilization,
    }
    if gguf_file is not None:
        gguf_path = Path(model) / gguf_file
        if not gguf_path.is_file():
            raise ConfigError(f"vLLM loads GGUF checkpoints from a local file; {gguf_path} does not exist")
        kwargs.update(model=str(gguf_path), tokenizer=model)
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    if adapter is not None:
        kwargs.update(enable_lora=True, max_lora_rank=lora_rank(adapter))
    return kwargs


def _run_engine(llm_kwargs: dict[str, Any], adapter: str | None, job: dict[str, Any]) -> list[Any]:
    """Run one batch of work on an engine (in this process or a spawned one)."""
    vllm = import_vllm()
    return _engine_job(vllm, vllm.LLM(**llm_kwargs), adapter, job)


def _engine_job(vllm: Any, llm: Any, adapter: str | None, job: dict[str, Any]) -> list[Any]:
    lora = None
    if adapter is not None:
        from vllm.lora.request import LoRARequest

        lora = LoRARequest(lora_name="adapter", lora_int_id=1, lora_path=str(adapter))
    if job["kind"] == "generate":
        params = [vllm.SamplingParams(**kw) for kw in job["params"]]
        outputs = llm.generate(job["prompts"], sampling_params=params, lora_request=lora, use_tqdm=False)
        return [parse_generation_output(o) for o in outputs]
    params = vllm.SamplingParams(**loglikelihood_params_kwargs())
    prompts = [{"prompt_token_ids": ids} for ids in job["token_ids"]]
    outputs = llm.generate(prompts, sampling_params=params, lora_request=lora, use_tqdm=False)
    return [
        parse_prompt_logprobs(o.prompt_logprobs, ids, n_ctx)
        for o, ids, n_ctx in zip(outputs, job["token_ids"], job["n_context"], strict=True)
    ]


def _replica_main(
    devices: str, llm_kwargs: dict[str, Any], adapter: str | None, job: dict[str, Any], queue: Any, rank: int
) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    try:
        queue.put((rank, _run_engine(llm_kwargs, adapter, job), None))
    except Exception as exc:  # reported to the parent, which raises it with the replica named
        queue.put((rank, None, f"{type(exc).__name__}: {exc}"))


class VLLMBackend(Backend):
    """vLLM engine(s) behind the :class:`Backend` interface (unverified here; see module doc).

    Parameters
    ----------
    model : str
        Hub id or local directory of the base model.
    adapter : str, optional
        Directory of a peft LoRA adapter, applied with a ``LoRARequest``.
    gguf_file : str, optional
        GGUF file name inside ``model``.
    dtype : str
        vLLM dtype (``"auto"``, ``"bfloat16"``, ...).
    seed : int
        Engine seed.
    tensor_parallel_size, data_parallel_size : int
        GPUs per engine and number of engine replicas.
    enable_prefix_caching : bool
        Reuse the KV cache of shared prompt prefixes (all prompts share the Alpaca preamble).
    gpu_memory_utilization : float
        Fraction of GPU memory vLLM may take.
    max_model_len : int, optional
        Context length limit passed to vLLM.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        adapter: str | None = None,
        gguf_file: str | None = None,
        dtype: str = "auto",
        seed: int = 0,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        enable_prefix_caching: bool = True,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
    ) -> None:
        if data_parallel_size < 1 or tensor_parallel_size < 1:
            raise ConfigError(
                f"tensor_parallel_size and data_parallel_size must be >= 1, "
                f"got {tensor_parallel_size} and {data_parallel_size}"
            )
        self._vllm = import_vllm()
        self._adapter = adapter
        self._dp = data_parallel_size
        self._tp = tensor_parallel_size
        self._llm_kwargs = engine_kwargs(
            model, adapter=adapter, gguf_file=gguf_file, dtype=dtype, seed=seed,
            tensor_parallel_size=tensor_parallel_size, enable_prefix_caching=enable_prefix_caching,
            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
        )
        self._llm: Any = self._vllm.LLM(**self._llm_kwargs) if data_parallel_size == 1 else None

    def generate(
        self, requests: Sequence[GenerationRequest], *, progress: ProgressCallback | None = None
    ) -> list[GenerationResult]:
        """Generate all requests in one ``LLM.generate`` call (per replica)."""
        job = {
            "kind": "generate",
            "prompts": [r.prompt for r in requests],
            "params": [sampling_params_kwargs(r.decoding) for r in requests],
        }
        results = self._run(job, len(requests))
        if progress is not None:
            progress(len(requests))
        return results

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], *, progress: ProgressCallback | None = None
    ) -> list[LoglikelihoodResult]:
        """Score continuations from the prompt log-probabilities of context + continuation."""
        tokenizer = self._tokenizer()
        pairs = [encode_loglikelihood_pair(tokenizer, r.context, r.continuation) for r in requests]
        job = {
            "kind": "loglikelihood",
            "token_ids": [ctx + cont for ctx, cont in pairs],
            "n_context": [len(ctx) for ctx, _ in pairs],
        }
        results = self._run(job, len(requests))
        if progress is not None:
            progress(len(requests))
        return results

    def close(self) -> None:
        """Drop the engine and empty the CUDA cache."""
        if self._llm is not None:
            self._llm = None
            import gc

            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _tokenizer(self) -> Any:
        if self._llm is not None:
            return self._llm.get_tokenizer()
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self._llm_kwargs.get("tokenizer", self._llm_kwargs["model"]))

    def _run(self, job: dict[str, Any], n: int) -> list[Any]:
        if self._llm is not None:
            return _engine_job(self._vllm, self._llm, self._adapter, job)
        shards = [_shard(job, rank, self._dp) for rank in range(self._dp)]
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        procs = []
        for rank, shard in enumerate(shards):
            devices = ",".join(str(rank * self._tp + g) for g in range(self._tp))
            proc = ctx.Process(
                target=_replica_main, args=(devices, self._llm_kwargs, self._adapter, shard, queue, rank)
            )
            proc.start()
            procs.append(proc)
        by_rank: dict[int, list[Any]] = {}
        try:
            for _ in procs:
                rank, results, error = queue.get()
                if error is not None:
                    raise RunFailedError(f"vLLM data-parallel replica {rank} failed: {error}")
                by_rank[rank] = results
        finally:
            for proc in procs:
                proc.join()
        merged: list[Any] = [None] * n
        for rank, results in by_rank.items():
            merged[rank::self._dp] = results
        return merged


def _shard(job: dict[str, Any], rank: int, size: int) -> dict[str, Any]:
    return {k: (v[rank::size] if isinstance(v, list) else v) for k, v in job.items()}
