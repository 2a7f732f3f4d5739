"""Backend fixes: vLLM LoRA rank, replica GPUs and supervision, per-item seeds; HF token counts
when the pad token is the EOS token. vLLM itself is not needed (stand-ins for its module and
for the replica processes)."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing as mp
import os
import signal
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from kdanalysis.errors import ConfigError, RunFailedError
from runners.evaluate.backend import GenerationRequest
from runners.evaluate.decoding import DecodingConfig, decoding_preset, item_seed
from runners.evaluate.vllm_backend import (
    VLLM_LORA_RANKS,
    VLLMBackend,
    engine_kwargs,
    max_lora_rank,
    replica_devices,
    run_replicas,
    sampling_params_kwargs,
)

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
FORK = "fork" in mp.get_all_start_methods()

# --- LoRA rank -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rank", "allowed"),
    [(1, 1), (2, 8), (8, 8), (9, 16), (64, 64), (100, 128), (300, 320), (321, 512), (512, 512)],
)
def test_lora_rank_rounds_up_to_an_allowed_value(rank: int, allowed: int) -> None:
    assert max_lora_rank(rank) == allowed
    assert allowed in VLLM_LORA_RANKS


def test_lora_rank_above_512_or_invalid_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"LoRA rank 513 is above .*512.*allowed: 1, 8, 16, 32, 64, 128, 256, 320, 512"
    ):
        max_lora_rank(513)
    with pytest.raises(ConfigError, match="positive integer"):
        max_lora_rank(0)


def test_engine_kwargs_pass_the_rounded_rank(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 12}))
    assert engine_kwargs("m", adapter=str(tmp_path))["max_lora_rank"] == 16


# --- replica GPUs ---------------------------------------------------------------------------------


def test_replica_devices_are_taken_from_the_parents_visible_devices() -> None:
    assert replica_devices(2, 2, "4,5,6,7") == ["4,5", "6,7"]
    assert replica_devices(3, 1, "2, 5,7,9") == ["2", "5", "7"]  # a SLURM allocation, one spare
    assert replica_devices(2, 1, "GPU-aa,GPU-bb") == ["GPU-aa", "GPU-bb"]
    assert replica_devices(2, 2, None) == ["0,1", "2,3"]  # unset: all devices, from 0


def test_replica_devices_refuse_too_few_gpus() -> None:
    with pytest.raises(ConfigError, match=r"needs 4 GPUs, but CUDA_VISIBLE_DEVICES='3,4,5' lists 3"):
        replica_devices(2, 2, "3,4,5")
    with pytest.raises(ConfigError, match="lists 0"):
        replica_devices(1, 1, "")


# --- per-item seeds -------------------------------------------------------------------------------


def test_item_seeds_are_stable_distinct_and_in_range() -> None:
    seeds = [item_seed(7, f"gsm8k/{i}") for i in range(2000)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)
    assert item_seed(7, "gsm8k/0") == seeds[0] != item_seed(8, "gsm8k/0")
    assert item_seed(7, "gsm8k/0") == 8999951345427331307  # pinned: the same in every process and release


def test_sampling_params_seed_per_item() -> None:
    sample = decoding_preset("published", seed=7)
    assert sampling_params_kwargs(sample)["seed"] == 7
    assert sampling_params_kwargs(sample, item_key="gsm8k/3")["seed"] == item_seed(7, "gsm8k/3")


class _Params:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class _Completion:
    def __init__(self, text: str) -> None:
        self.text, self.token_ids = text, [1]


class _Engine:
    """vllm.LLM's documented generate() contract (outputs in input order), recording its calls."""

    instances: list[_Engine] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs, self.params = kwargs, []
        _Engine.instances.append(self)

    def generate(
        self, prompts: list, sampling_params: Any = None, lora_request: Any = None, use_tqdm: bool = True
    ):  # type: ignore[no-untyped-def]
        self.params.extend(sampling_params)
        return [types.SimpleNamespace(outputs=[_Completion(p)]) for p in prompts]


@pytest.fixture
def stand_in_vllm(monkeypatch: pytest.MonkeyPatch) -> type[_Engine]:
    vllm = types.ModuleType("vllm")
    vllm.LLM = _Engine  # type: ignore[attr-defined]
    vllm.SamplingParams = _Params  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    _Engine.instances = []
    return _Engine


def test_every_request_gets_its_own_seed(stand_in_vllm: type[_Engine]) -> None:
    sample = decoding_preset("published", seed=5)
    backend = VLLMBackend("base-model")
    requests = [
        GenerationRequest("same prompt", sample, request_id="task/1"),
        GenerationRequest("same prompt", sample, request_id="task/2"),
        GenerationRequest("other prompt", sample),
    ]
    backend.generate(requests)
    seeds = [p.kwargs["seed"] for p in stand_in_vllm.instances[0].params]
    assert seeds == [item_seed(5, "task/1"), item_seed(5, "task/2"), item_seed(5, "other prompt")]
    assert len(set(seeds)) == 3


def test_the_configured_replica_timeout_reaches_the_replica_supervisor(
    stand_in_vllm: type[_Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vllm.replica_timeout_s`` of an EvalConfig goes through ``make_backend`` to ``run_replicas``."""
    from runners.evaluate import vllm_backend
    from runners.evaluate.backend import GenerationResult
    from runners.evaluate.config import EvalConfig
    from runners.evaluate.run import make_backend

    seen: list[float | None] = []

    def supervisor(target: Any, jobs: list[tuple], *, timeout_s: float | None = None) -> list:
        seen.append(timeout_s)
        return [[GenerationResult((p,), (1,)) for p in job[3]["prompts"]] for job in jobs]

    monkeypatch.setattr(vllm_backend, "run_replicas", supervisor)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    for timeout in (12.5, None):
        vllm_options = {"data_parallel_size": 2, "replica_timeout_s": timeout}
        config = EvalConfig(model="base-model", tasks=["gsm8k"], backend="vllm", vllm=vllm_options)
        requests = [GenerationRequest(p, config.decoding) for p in ("a", "b", "c")]
        results = make_backend(config).generate(requests)
        assert [r.texts for r in results] == [("a",), ("b",), ("c",)]
    assert seen == [12.5, None]


# --- replica supervision ----------------------------------------------------------------------


def _square(x: int) -> int:
    return x * x


def _fail(message: str) -> None:
    raise ValueError(message)


def _sleep_then(action: str, seconds: float, pid_file: str = "") -> None:
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    if action == "sigkill":  # what the out-of-memory killer does
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "exit":
        os._exit(3)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _run(target: Any, jobs: list[tuple], **kwargs: Any) -> list:
    return run_replicas(target, jobs, start_method="fork", **kwargs)


pytestmark_fork = pytest.mark.skipif(not FORK, reason="stand-in replicas are forked")


@pytestmark_fork
def test_replica_results_come_back_in_job_order() -> None:
    assert _run(_square, [(3,), (4,), (5,)]) == [9, 16, 25]


@pytestmark_fork
def test_a_replica_error_names_the_replica() -> None:
    with pytest.raises(RunFailedError, match="replica 1 failed: ValueError: boom"):
        _run(lambda i: _square(i) if i == 0 else _fail("boom"), [(0,), (1,)])


@pytestmark_fork
@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("sigkill", r"replica 1 was killed by signal SIGKILL \(the out-of-memory.*exit code -9"),
        ("exit", "replica 1 exited with code 3"),
    ],
)
def test_a_dead_replica_is_reported_at_once_and_the_others_are_stopped(
    action: str, message: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "survivor.pid"
    jobs = [("sleep", 120.0, str(pid_file)), (action, 0.5)]
    start = time.monotonic()
    with pytest.raises(RunFailedError, match=message):
        _run(_sleep_then, jobs)
    assert time.monotonic() - start < 30  # not the 120 s of the surviving replica
    assert not _pid_alive(int(pid_file.read_text()))


@pytestmark_fork
def test_hanging_replicas_hit_the_timeout() -> None:
    start = time.monotonic()
    with pytest.raises(RunFailedError, match=r"replica\(s\) \[0, 1\] gave no result within 0.5 s"):
        _run(_sleep_then, [("sleep", 120.0), ("sleep", 120.0)], timeout_s=0.5)
    assert time.monotonic() - start < 30


@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed here: the replicas would start real engines")
def test_data_parallel_backend_uses_the_visible_gpus_and_surfaces_replica_errors(
    stand_in_vllm: type[_Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spawned replicas do not see the parent's stand-in vLLM: each fails to import it, which must
    come back as an error naming the replica (the real spawn path, start to finish)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,2,3,9")
    backend = VLLMBackend("base-model", data_parallel_size=2, tensor_parallel_size=2)
    assert backend._devices == ["6,2", "3,9"]
    with pytest.raises(RunFailedError, match=r"replica [01] failed: BackendUnavailableError: .*vLLM"):
        backend.generate([GenerationRequest("a", DecodingConfig()), GenerationRequest("b", DecodingConfig())])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,2,3")
    with pytest.raises(ConfigError, match="needs 4 GPUs"):
        VLLMBackend("base-model", data_parallel_size=2, tensor_parallel_size=2)


# --- HF token counts when pad = EOS ------------------------------------------------------------


def _scripted_model(tokenizer: Any, successor: dict[int, int]) -> Any:
    """A toy causal LM whose greedy next token id is ``successor[last token id]`` (EOS by default).

    The real model runs (cache, masks, ``generate``'s stopping and padding are transformers'
    own); only its output logits are replaced.
    """
    import torch

    from runners.toy import build_model

    model = build_model("qwen2", "tiny", seed=1)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    table = torch.full((len(tokenizer),), tokenizer.eos_token_id, dtype=torch.long)
    for token, nxt in successor.items():
        table[token] = nxt
    forward = model.forward

    def scripted(*args: Any, **kwargs: Any) -> Any:
        out = forward(*args, **kwargs)
        last = kwargs["input_ids"][:, -out.logits.shape[1] :]
        out.logits = torch.full_like(out.logits, -1e4).scatter_(-1, table[last].unsqueeze(-1), 1e4)
        return out

    model.forward = scripted
    return model


def test_hf_token_counts_do_not_include_padding_when_pad_is_eos() -> None:
    """Rows finished by a stop string or by EOS are padded with the pad (= EOS) token while a
    longer row goes on; the counts must equal those of each item generated alone (no padding)."""
    import torch

    from runners.evaluate.hf_backend import HFBackend
    from runners.toy import build_tokenizer

    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    ids = tokenizer.convert_tokens_to_ids
    chains = {str(d): str((d + 1) % 10) for d in range(10)} | {chr(c): chr(c + 1) for c in range(68, 90)}
    prompts = ["x A", "x x x B", "x x C"]
    last = [tokenizer(p)["input_ids"][-1] for p in prompts]
    # "x A" -> D E F (stop string "F"), "x x x B" -> 1 2 3 ... (to the limit), "x x C" -> # EOS
    successor = {ids(a): ids(b) for a, b in chains.items()} | dict(
        zip(last, ids(["D", "1", "#"]), strict=True)
    )
    model = _scripted_model(tokenizer, successor)
    stopping = DecodingConfig(max_new_tokens=8, stop=("F",))
    batched = HFBackend(model, tokenizer, batch_size=3).generate(
        [GenerationRequest(p, stopping) for p in prompts]
    )
    alone = [
        HFBackend(model, tokenizer, batch_size=1).generate([GenerationRequest(p, stopping)])[0]
        for p in prompts
    ]
    assert [r.n_tokens for r in alone] == [(3,), (8,), (2,)]  # D E F | 1..8 | # EOS
    assert [r.n_tokens for r in batched] == [(3,), (8,), (2,)]
    assert [r.texts for r in batched] == [r.texts for r in alone]
    assert "F" not in batched[0].text and batched[1].text == "12345678"
