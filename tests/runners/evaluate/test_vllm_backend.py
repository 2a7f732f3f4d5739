"""vLLM backend without vLLM: SamplingParams mapping, output parsing with fakes, import guard."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdanalysis.errors import BackendUnavailableError, ConfigError
from runners.evaluate.decoding import DecodingConfig, decoding_preset
from runners.evaluate.vllm_backend import (
    VLLM_INSTALL_HINT,
    VLLMBackend,
    engine_kwargs,
    import_vllm,
    loglikelihood_params_kwargs,
    lora_rank,
    parse_generation_output,
    parse_prompt_logprobs,
    sampling_params_kwargs,
)

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


def test_greedy_maps_to_temperature_zero() -> None:
    kw = sampling_params_kwargs(DecodingConfig(max_new_tokens=32, stop=("\n\n",), temperature=0.7))
    assert kw == {
        "n": 1,
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": -1,
        "seed": 0,
        "max_tokens": 32,
        "stop": ["\n\n"],
        "include_stop_str_in_output": False,
    }


def test_published_protocol_mapping() -> None:
    kw = sampling_params_kwargs(decoding_preset("published", seed=7))
    assert (kw["temperature"], kw["top_p"], kw["top_k"], kw["n"], kw["max_tokens"], kw["seed"]) == (
        1.0,
        1.0,
        -1,
        1,
        256,
        7,
    )


def test_sampling_with_truncation_and_samples() -> None:
    kw = sampling_params_kwargs(DecodingConfig(do_sample=True, temperature=0.6, top_p=0.9, top_k=20, n=4))
    assert (kw["temperature"], kw["top_p"], kw["top_k"], kw["n"]) == (0.6, 0.9, 20, 4)


def test_loglikelihood_params() -> None:
    assert loglikelihood_params_kwargs() == {
        "temperature": 0.0,
        "max_tokens": 1,
        "prompt_logprobs": 1,
        "detokenize": False,
    }


@dataclass
class _Completion:  # vllm.CompletionOutput's documented attributes
    text: str
    token_ids: list[int]


@dataclass
class _RequestOutput:  # vllm.RequestOutput's documented attributes
    request_id: str
    prompt: str
    outputs: list[_Completion]


@dataclass
class _Logprob:  # vllm.sequence.Logprob
    logprob: float
    rank: int | None = None


def test_parse_generation_output_all_samples() -> None:
    out = _RequestOutput("0", "p", [_Completion("The answer is 4", [5, 6, 7, 2]), _Completion("x", [9])])
    res = parse_generation_output(out)
    assert res.texts == ("The answer is 4", "x") and res.n_tokens == (4, 1) and res.text == "The answer is 4"


def test_parse_prompt_logprobs_sums_continuation_and_checks_greedy() -> None:
    tokens = [1, 10, 11, 12]
    prompt_logprobs = [
        None,
        {10: _Logprob(-0.1)},
        {11: _Logprob(-0.5, 1), 3: _Logprob(-2.0, 2)},  # continuation token is the top one
        {12: _Logprob(-1.5, 2), 4: _Logprob(-0.3, 1)},  # another token was more likely
    ]
    res = parse_prompt_logprobs(prompt_logprobs, tokens, n_context=2)
    assert res.logprob == pytest.approx(-2.0) and res.is_greedy is False
    greedy = parse_prompt_logprobs(prompt_logprobs[:3], tokens[:3], n_context=2)
    assert greedy == (pytest.approx(-0.5), True)
    # older vLLM returned plain floats
    assert parse_prompt_logprobs([None, {7: -0.25}], [1, 7], n_context=1) == (-0.25, True)


def test_parse_prompt_logprobs_rejects_misaligned() -> None:
    with pytest.raises(ValueError, match="2 prompt logprob entries for 3 tokens"):
        parse_prompt_logprobs([None, {1: -1.0}], [0, 1, 2], n_context=1)


def test_lora_rank_and_engine_kwargs(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16}))
    assert lora_rank(tmp_path) == 8
    kw = engine_kwargs("Qwen/Qwen2.5-0.5B", adapter=str(tmp_path), tensor_parallel_size=2, max_model_len=1024)
    assert kw["enable_lora"] is True and kw["max_lora_rank"] == 8
    assert kw["tensor_parallel_size"] == 2 and kw["enable_prefix_caching"] is True
    assert kw["max_model_len"] == 1024
    assert "enable_lora" not in engine_kwargs("m")


def test_lora_rank_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="adapter_config.json"):
        lora_rank(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": "eight"}))
    with pytest.raises(ConfigError, match="positive integer"):
        lora_rank(tmp_path)


def test_gguf_needs_local_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        engine_kwargs(str(tmp_path), gguf_file="model-q4.gguf")
    (tmp_path / "model-q4.gguf").write_bytes(b"GGUF")
    kw = engine_kwargs(str(tmp_path), gguf_file="model-q4.gguf")
    assert kw["model"] == str(tmp_path / "model-q4.gguf") and kw["tokenizer"] == str(tmp_path)


@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed here")
def test_import_guard_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'kdanalysis\[vllm\]'"):
        import_vllm()
    with pytest.raises(BackendUnavailableError, match="backend: hf"):
        VLLMBackend("any-model")
    assert VLLM_INSTALL_HINT == "pip install 'kdanalysis[vllm]'"


@pytest.mark.vllm
def test_real_vllm_tiny_model_greedy(tmp_path: Path) -> None:
    """Where vLLM is installed: a saved toy model generates and scores through the engine."""
    from runners.evaluate.backend import GenerationRequest, LoglikelihoodRequest
    from runners.toy import save_toy_model

    model_dir = tmp_path / "toy"
    save_toy_model(model_dir, family="llama", size="tiny", seed=0)
    with VLLMBackend(str(model_dir), dtype="float32", gpu_memory_utilization=0.3) as backend:
        out = backend.generate([GenerationRequest("1 + 1 =", DecodingConfig(max_new_tokens=8))])
        scores = backend.loglikelihood([LoglikelihoodRequest("1 + 1 =", " 2")])
    assert len(out) == 1 and 1 <= out[0].n_tokens[0] <= 8
    assert scores[0].logprob < 0


class _FakeSamplingParams:
    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs


class _FakeLoRARequest:
    def __init__(self, lora_name: str, lora_int_id: int, lora_path: str) -> None:
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path


class _FakeTokenizer:
    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": ([1] if add_special_tokens else []) + [ord(c) for c in text]}


class _FakeLLM:
    """Stands in for vllm.LLM with its documented generate() contract (outputs in input order)."""

    instances: list[_FakeLLM] = []

    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs
        self.calls: list[dict[str, object]] = []
        _FakeLLM.instances.append(self)

    def get_tokenizer(self) -> _FakeTokenizer:
        return _FakeTokenizer()

    def generate(
        self,
        prompts: list,
        sampling_params: object = None,
        lora_request: object = None,
        use_tqdm: bool = True,
    ) -> list[_RequestOutput]:
        self.calls.append({"prompts": prompts, "params": sampling_params, "lora": lora_request})
        outputs = []
        for i, prompt in enumerate(prompts):
            if isinstance(prompt, dict):  # scoring: logprob of token t is -t/1000, top token is 0
                ids = prompt["prompt_token_ids"]
                lps = [None] + [{t: _Logprob(-t / 1000), 0: _Logprob(0.0)} for t in ids[1:]]
                out = _RequestOutput(str(i), "", [_Completion("", [0])])
                out.prompt_logprobs = lps  # type: ignore[attr-defined]
            else:
                n = sampling_params[i].kwargs["n"]  # type: ignore[index]
                out = _RequestOutput(
                    str(i), prompt, [_Completion(prompt.upper() + str(k), [7] * (k + 1)) for k in range(n)]
                )
            outputs.append(out)
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> type[_FakeLLM]:
    import types

    vllm = types.ModuleType("vllm")
    vllm.LLM = _FakeLLM  # type: ignore[attr-defined]
    vllm.SamplingParams = _FakeSamplingParams  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = _FakeLoRARequest  # type: ignore[attr-defined]
    for name, module in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, module)
    _FakeLLM.instances = []
    return _FakeLLM


def test_engine_wiring_with_a_stand_in_engine(fake_vllm: type[_FakeLLM], tmp_path: Path) -> None:
    """One generate call for all requests, per-request SamplingParams, LoRARequest, order kept."""
    from runners.evaluate.backend import GenerationRequest, LoglikelihoodRequest

    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    backend = VLLMBackend("base-model", adapter=str(tmp_path), tensor_parallel_size=2)
    engine = fake_vllm.instances[0]
    assert engine.kwargs["enable_lora"] is True and engine.kwargs["tensor_parallel_size"] == 2
    sample = decoding_preset("published", n=2, seed=4)
    done: list[int] = []
    results = backend.generate(
        [GenerationRequest("a", DecodingConfig()), GenerationRequest("b", sample)], progress=done.append
    )
    assert [r.texts for r in results] == [("A0",), ("B0", "B1")] and results[1].n_tokens == (1, 2)
    assert done == [2] and len(engine.calls) == 1
    call = engine.calls[0]
    assert call["prompts"] == ["a", "b"]
    assert [p.kwargs["temperature"] for p in call["params"]] == [0.0, 1.0]  # type: ignore[attr-defined]
    assert call["lora"].lora_path == str(tmp_path) and call["lora"].lora_int_id == 1  # type: ignore[attr-defined]

    scores = backend.loglikelihood([LoglikelihoodRequest("ab", "c"), LoglikelihoodRequest("a", "bc")])
    assert scores[0] == (pytest.approx(-ord("c") / 1000), False)
    assert scores[1].logprob == pytest.approx(-(ord("b") + ord("c")) / 1000)
    assert engine.calls[1]["params"].kwargs["prompt_logprobs"] == 1  # type: ignore[attr-defined]
    backend.close()
    assert backend._llm is None
