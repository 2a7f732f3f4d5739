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
   :func:`sampling_params_kwargs` (DecodingConfig -> SamplingParams keywords, with the
   per-request seed :func:`~runners.evaluate.decoding.item_seed`), :func:`max_lora_rank` (adapter rank -> an
   allowed ``max_lora_rank``), :func:`replica_devices` (GPU groups of the replicas),
   :func:`parse_generation_output` (``RequestOutput`` -> :class:`GenerationResult`) and
   :func:`parse_prompt_logprobs` (``RequestOutput.prompt_logprobs`` -> log-likelihood);
   replica supervision (:func:`run_replicas`) is tested with stand-in worker processes
   that succeed, fail, die from ``SIGKILL`` or hang. Not verified: that vLLM accepts the
   keywords of the release in use, that its ``seed`` makes a request's samples
   reproducible across batch compositions, and that terminating a replica also ends the
   worker processes vLLM itself starts for ``tensor_parallel_size`` > 1.
   ``bench/parity_hf_vllm.py`` compares this backend with the HF reference wherever
   vLLM is installed.

Parallelism
-----------
``tensor_parallel_size`` shards one engine over several GPUs (vLLM's own option).
``data_parallel_size`` > 1 starts that many independent engine replicas in spawned
processes, each on its own group of ``tensor_parallel_size`` GPUs, gives each a
round-robin share of the requests and puts the results back in request order. The
groups are taken, in order, from the parent's ``CUDA_VISIBLE_DEVICES`` (the GPUs a SLURM
job was given; all GPUs ``0, 1, …`` when it is unset) and set as the replica's
``CUDA_VISIBLE_DEVICES``. The parent waits on every replica's pipe *and* its process
sentinel: a replica that raises, or dies without answering (e.g. killed by the
out-of-memory killer), is reported at once as :class:`RunFailedError` naming the
replica and its exit code or signal, and the other replicas are terminated; an optional
``replica_timeout_s`` (an evaluation config's ``vllm.replica_timeout_s``) bounds the wait
for replicas that hang.

Seeds
-----
Each request is sampled with its own seed :func:`~runners.evaluate.decoding.item_seed` (``decoding.seed``, the
request's ``request_id`` — or its prompt when the id is empty): different items draw
independent samples, and an item draws the same samples whatever else is in the batch,
in whichever replica, and for every model evaluated with the same seed (common random
numbers for paired comparisons). The HF backend seeds each request with the same seed,
but its random stream is torch's, not vLLM's (see its module docstring), so sampled outputs
of the two backends are not expected to match.

Token counts: ``n_tokens`` is ``len(CompletionOutput.token_ids)``; vLLM includes the
end-of-sequence token there, as the HF backend counts it.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
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
from runners.evaluate.decoding import DecodingConfig, item_seed

__all__ = [
    "VLLM_INSTALL_HINT",
    "import_vllm",
    "sampling_params_kwargs",
    "loglikelihood_params_kwargs",
    "parse_generation_output",
    "parse_prompt_logprobs",
    "lora_rank",
    "VLLM_LORA_RANKS",
    "max_lora_rank",
    "replica_devices",
    "run_replicas",
    "engine_kwargs",
    "VLLMBackend",
]

logger = logging.getLogger(__name__)

VLLM_INSTALL_HINT = "pip install 'kdanalysis[vllm]'"
#: The values vLLM accepts for ``max_lora_rank``.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


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


def sampling_params_kwargs(decoding: DecodingConfig, *, item_key: str | None = None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` equivalent to ``decoding``.

    Greedy decoding maps to ``temperature=0`` (vLLM's greedy mode); top-k "disabled"
    maps to ``top_k=-1``, which every vLLM release accepts. Stop strings are removed from
    the output text (``include_stop_str_in_output=False``), as the HF backend does.

    Parameters
    ----------
    decoding : DecodingConfig
        Decoding settings.
    item_key : str or None
        The request's item key: the seed becomes
        :func:`~runners.evaluate.decoding.item_seed` of ``decoding.seed`` and
        the key. ``None``: ``decoding.seed`` itself.

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
        "seed": decoding.seed if item_key is None else item_seed(decoding.seed, item_key),
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


def max_lora_rank(rank: int) -> int:
    """The smallest value vLLM accepts as ``max_lora_rank`` that holds a LoRA of rank ``rank``.

    Raises
    ------
    ConfigError
        If ``rank`` is not a positive integer or exceeds the largest allowed value.
    """
    if not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"LoRA rank must be a positive integer, got {rank!r}")
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ConfigError(
        f"LoRA rank {rank} is above the largest max_lora_rank vLLM accepts ({VLLM_LORA_RANKS[-1]}; "
        f"allowed: {', '.join(map(str, VLLM_LORA_RANKS))}); merge the adapter into the model "
        "or use backend: hf"
    )


def replica_devices(data_parallel_size: int, tensor_parallel_size: int, visible: str | None) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` of each data-parallel replica.

    Replica ``r`` gets entries ``r·tp … r·tp + tp − 1`` of the parent's visible devices.

    Parameters
    ----------
    data_parallel_size, tensor_parallel_size : int
        Replicas, and GPUs per replica.
    visible : str or None
        The parent's ``CUDA_VISIBLE_DEVICES`` (comma-separated indices or UUIDs, e.g. the
        GPUs SLURM allocated); ``None`` (unset): the devices ``0, 1, …``.

    Returns
    -------
    list of str
        One comma-separated device list per replica.

    Raises
    ------
    ConfigError
        If ``visible`` lists fewer than ``data_parallel_size × tensor_parallel_size`` devices.
    """
    needed = data_parallel_size * tensor_parallel_size
    if visible is None:
        devices = [str(i) for i in range(needed)]
    else:
        devices = [d.strip() for d in visible.split(",") if d.strip()]
        if len(devices) < needed:
            raise ConfigError(
                f"data_parallel_size {data_parallel_size} x tensor_parallel_size {tensor_parallel_size} "
                f"needs {needed} GPUs, but CUDA_VISIBLE_DEVICES={visible!r} lists {len(devices)}"
            )
    tp = tensor_parallel_size
    return [",".join(devices[r * tp : (r + 1) * tp]) for r in range(data_parallel_size)]


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
        kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank(lora_rank(adapter)))
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


def _replica_job(
    devices: str, llm_kwargs: dict[str, Any], adapter: str | None, job: dict[str, Any]
) -> list[Any]:
    """One replica's work: its GPUs, its engine, its shard of the requests."""
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    return _run_engine(llm_kwargs, adapter, job)


def _replica_entry(target: Callable[..., Any], args: tuple[Any, ...], conn: Connection) -> None:
    """Body of a replica process: send ``("ok", target(*args))`` or ``("error", message)``."""
    try:
        conn.send(("ok", target(*args)))
    except Exception as exc:  # reported to the parent, which raises it with the replica named
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
        hint = " (the out-of-memory killer sends SIGKILL)" if -exitcode == signal.SIGKILL else ""
        return f"was killed by signal {name}{hint}, exit code {exitcode}"
    return f"exited with code {exitcode} without sending its results"


def run_replicas(
    target: Callable[..., Any],
    jobs: Sequence[tuple[Any, ...]],
    *,
    start_method: str = "spawn",
    timeout_s: float | None = None,
) -> list[Any]:
    """Run ``target(*job)`` for every job in its own process and return the results in job order.

    The parent waits on each replica's pipe and on its process sentinel at once, so a
    replica that raises, or ends without answering (killed by a signal, or ``os._exit``),
    is seen as soon as it happens; the remaining replicas are then terminated
    (``SIGTERM``, then ``SIGKILL`` after 10 s) and :class:`RunFailedError` names the replica.

    Parameters
    ----------
    target : callable
        Called in the child as ``target(*job)``; with ``start_method="spawn"`` it must be
        importable (a module-level function) and its result picklable.
    jobs : sequence of tuple
        Arguments of each replica (replica ``r`` runs ``jobs[r]``).
    start_method : str
        ``multiprocessing`` start method (``"spawn"`` for CUDA).
    timeout_s : float or None
        Longest wait for all results; ``None``: no limit while the replicas live.

    Raises
    ------
    RunFailedError
        A replica raised (its error message), died (its exit code or signal) or the
        timeout passed (the replicas still running).
    """
    ctx = mp.get_context(start_method)
    procs, conns = [], []
    for job in jobs:
        receiver, sender = ctx.Pipe(duplex=False)
        # not a daemon: vLLM starts its own engine and worker processes inside a replica
        proc = ctx.Process(target=_replica_entry, args=(target, tuple(job), sender))
        proc.start()
        sender.close()  # the parent keeps no write end: a dead replica's pipe reads as EOF
        procs.append(proc)
        conns.append(receiver)
    results: dict[int, Any] = {}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while len(results) < len(procs):
            pending = [r for r in range(len(procs)) if r not in results]
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            handles = [conns[r] for r in pending] + [procs[r].sentinel for r in pending]
            ready = set(wait(handles, timeout=left))
            if not ready:
                raise RunFailedError(
                    f"vLLM data-parallel replica(s) {pending} gave no result within {timeout_s} s"
                )
            for rank in pending:
                # a replica's result is in its pipe before it can exit; an ended replica with an
                # empty pipe died (its pipe may stay open in processes it started: no EOF then)
                has_data = conns[rank] in ready or conns[rank].poll()
                if not has_data and procs[rank].sentinel not in ready:
                    continue
                try:
                    if not has_data:
                        raise EOFError
                    status, value = conns[rank].recv()
                except EOFError:
                    procs[rank].join(timeout=5)
                    reason = _exit_reason(procs[rank].exitcode)
                    raise RunFailedError(f"vLLM data-parallel replica {rank} {reason}") from None
                if status == "error":
                    raise RunFailedError(f"vLLM data-parallel replica {rank} failed: {value}")
                results[rank] = value
    finally:
        for proc in procs:
            if proc.is_alive() and len(results) < len(procs):
                proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in conns:
            conn.close()
    return [results[r] for r in range(len(procs))]


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
        GPUs per engine and number of engine replicas (GPUs taken from the parent's
        ``CUDA_VISIBLE_DEVICES``, see the module docstring).
    enable_prefix_caching : bool
        Reuse the KV cache of shared prompt prefixes (all prompts share the Alpaca preamble).
    gpu_memory_utilization : float
        Fraction of GPU memory vLLM may take.
    max_model_len : int, optional
        Context length limit passed to vLLM.
    replica_timeout_s : float, optional
        With ``data_parallel_size`` > 1: longest wait for the replicas of one call
        (``None``: no limit while they live; a dead replica is reported at once anyway).
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
        replica_timeout_s: float | None = None,
    ) -> None:
        if data_parallel_size < 1 or tensor_parallel_size < 1:
            raise ConfigError(
                f"tensor_parallel_size and data_parallel_size must be >= 1, "
                f"got {tensor_parallel_size} and {data_parallel_size}"
            )
        self._vllm = import_vllm()
        self._adapter = adapter
        self._dp = data_parallel_size
        self._replica_timeout_s = replica_timeout_s
        self._devices = (
            replica_devices(data_parallel_size, tensor_parallel_size, os.environ.get("CUDA_VISIBLE_DEVICES"))
            if data_parallel_size > 1
            else []
        )
        self._llm_kwargs = engine_kwargs(
            model,
            adapter=adapter,
            gguf_file=gguf_file,
            dtype=dtype,
            seed=seed,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=enable_prefix_caching,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
        )
        self._llm: Any = self._vllm.LLM(**self._llm_kwargs) if data_parallel_size == 1 else None

    def generate(
        self, requests: Sequence[GenerationRequest], *, progress: ProgressCallback | None = None
    ) -> list[GenerationResult]:
        """Generate all requests in one ``LLM.generate`` call (per replica)."""
        job = {
            "kind": "generate",
            "prompts": [r.prompt for r in requests],
            "params": [
                sampling_params_kwargs(r.decoding, item_key=r.request_id or r.prompt) for r in requests
            ],
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
        jobs = [
            (devices, self._llm_kwargs, self._adapter, _shard(job, rank, self._dp))
            for rank, devices in enumerate(self._devices)
        ]
        merged: list[Any] = [None] * n
        for rank, results in enumerate(run_replicas(_replica_job, jobs, timeout_s=self._replica_timeout_s)):
            merged[rank :: self._dp] = results
        return merged


def _shard(job: dict[str, Any], rank: int, size: int) -> dict[str, Any]:
    return {k: (v[rank::size] if isinstance(v, list) else v) for k, v in job.items()}
