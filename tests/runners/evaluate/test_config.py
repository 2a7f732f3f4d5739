"""EvalConfig: defaults, YAML loading, and one clear ConfigError per bad file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from kdanalysis.errors import ConfigError
from runners.evaluate.config import EvalConfig, load_eval_config
from runners.evaluate.decoding import decoding_preset


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "eval.yaml"
    path.write_text(text)
    return path


def test_minimal_config_defaults() -> None:
    cfg = EvalConfig(model="models/Qwen2.5-0.5B/", tasks=["gsm8k"])
    assert cfg.backend == "hf" and cfg.mode == "generate" and cfg.decoding.is_greedy
    assert cfg.student == "Qwen2.5-0.5B"
    assert cfg.meta.method == "base" and cfg.meta.teacher == "none"
    resolved = cfg.resolved()
    assert resolved["decoding"]["max_new_tokens"] == 256 and resolved["vllm"]["tensor_parallel_size"] == 1


def test_yaml_with_preset_and_meta(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
model: Qwen/Qwen2.5-0.5B
adapter: runs/sft/adapter
tasks: [gsm8k, boolq]
data_dir: data/testsets
limit: 20
backend: vllm
vllm: {tensor_parallel_size: 2, enable_prefix_caching: false}
decoding: {preset: published, seed: 6}
meta: {study: kd_generalization, student: Qwen2.5-0.5B, teacher: Qwen2.5-7B, method: fkl, temperature: 2.0}
""",
    )
    cfg = load_eval_config(path)
    # the prompt style's stop string is added: generation ends at a second "### Response:"
    assert cfg.decoding == decoding_preset("published", seed=6, stop=("### Response:",))
    assert cfg.vllm.tensor_parallel_size == 2 and cfg.vllm.enable_prefix_caching is False
    assert cfg.meta.temperature == 2.0 and cfg.data_dir == Path("data/testsets")
    assert load_eval_config(path, limit=3).limit == 3


def test_fingerprint_ignores_run_id_only() -> None:
    a = EvalConfig(model="m", tasks=["gsm8k"], run_id="a")
    assert a.fingerprint() == EvalConfig(model="m", tasks=["gsm8k"], run_id="b").fingerprint()
    assert a.fingerprint() != EvalConfig(model="m", tasks=["gsm8k"], limit=5).fingerprint()


@pytest.mark.parametrize(
    "body, expected",
    [
        ("model: m\ntasks: [gsm8k]\nbatchsize: 4\n", "batchsize: unknown key"),
        ("model: m\ntasks: []\n", "tasks: List should have at least 1 item"),
        ("tasks: [gsm8k]\n", "model: Field required"),
        ("model: m\ntasks: [gsm8k, gsm8k]\n", "duplicate task id(s): gsm8k"),
        ("model: m\ntasks: [gsm8k]\nbackend: tgi\n", "backend: Input should be 'hf' or 'vllm'"),
        ("model: m\ntasks: [gsm8k]\nbatch_size: 0\n", "batch_size: Input should be greater than or equal"),
        ("model: m\ntasks: [gsm8k]\ndecoding: beam\n", "unknown decoding preset 'beam'"),
        ("model: m\ntasks: [gsm8k]\ndecoding: {n: 4}\n", "n=4 samples per item needs do_sample"),
        (
            "model: m\ntasks: [boolq]\nmode: multiple_choice\ndecoding: published\n",
            "decoding must stay greedy",
        ),
        ("model: m\ntasks: [gsm8k]\nmeta: {temperature: -1}\n", "meta.temperature must be > 0"),
        ("model: m\ntasks: [gsm8k]\nvllm: {data_parallel: 2}\n", "vllm.data_parallel: unknown key"),
    ],
)
def test_bad_fields_name_file_and_field(tmp_path: Path, body: str, expected: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_eval_config(path)
    message = str(info.value)
    assert str(path) in message and expected in message


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read evaluation config"):
        load_eval_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_eval_config(_write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_eval_config(_write(tmp_path, "- just a list\n"))


def test_direct_construction_raises_validation_error() -> None:
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs"):
        EvalConfig(model="m", tasks=["gsm8k"], unknown=1)  # type: ignore[call-arg]


def test_replica_timeout_is_validated_and_left_out_of_the_fingerprint() -> None:
    base = EvalConfig(model="m", tasks=["gsm8k"], backend="vllm", vllm={"data_parallel_size": 2})
    limited = EvalConfig(
        model="m", tasks=["gsm8k"], backend="vllm", vllm={"data_parallel_size": 2, "replica_timeout_s": 90}
    )
    assert base.vllm.replica_timeout_s is None and limited.vllm.replica_timeout_s == 90.0
    assert limited.resolved()["vllm"]["replica_timeout_s"] == 90.0
    assert limited.fingerprint() == base.fingerprint()  # a wait limit, not an output setting
    for bad in (0, -5, float("inf"), float("nan"), "soon"):
        with pytest.raises(ValidationError, match="replica_timeout_s"):
            EvalConfig(model="m", tasks=["gsm8k"], vllm={"replica_timeout_s": bad})


def test_replica_timeout_from_a_yaml_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "model: m\ntasks: [gsm8k]\nbackend: vllm\nvllm: {replica_timeout_s: 0}\n")
    with pytest.raises(ConfigError, match="replica_timeout_s"):
        load_eval_config(path)
    path = _write(tmp_path, "model: m\ntasks: [gsm8k]\nbackend: vllm\nvllm: {replica_timeout_s: 600}\n")
    assert load_eval_config(path).vllm.replica_timeout_s == 600.0


def _fingerprint_of_settings(config: EvalConfig) -> str:
    """The fingerprint as it was before the seeding scheme joined it: the settings alone."""
    data = config.resolved()
    data.pop("run_id")
    data["vllm"].pop("replica_timeout_s")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def test_a_sampled_run_of_the_earlier_per_batch_seeding_does_not_resume() -> None:
    greedy = EvalConfig(model="m", tasks=["gsm8k"])
    sampled = EvalConfig(model="m", tasks=["gsm8k"], decoding={"do_sample": True, "temperature": 0.7})
    assert greedy.fingerprint() == _fingerprint_of_settings(greedy)  # greedy runs are unaffected
    assert sampled.fingerprint() != _fingerprint_of_settings(sampled)
