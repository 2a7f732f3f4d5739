"""Real SFT → KD runs on toy models: run folder, falling losses, LoRA/full, seqkd, gkd."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kdanalysis.errors import ConfigError, RunFailedError
from kdanalysis.runfolder import read_status
from runners.distill.run import run_distill


def _records(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss" in r], [r for r in rows if "val_loss" in r]


def _falls(values: list[float]) -> bool:
    k = max(2, len(values) // 4)
    return sum(values[-k:]) / k < sum(values[:k]) / k


def test_sft_lora_run_folder(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = run_distill(make_config("sft"), tmp_path / "run")
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "environment.json",
        "status.json",
        "metrics.jsonl",
        "model",
        "checkpoints",
        "best",
    }
    status = read_status(run)
    assert status["state"] == "done" and status["steps"] == 12 and status["error"] is None
    assert status["best_step"] in (4, 8, 12)
    assert (run / "model" / "adapter_config.json").is_file()
    assert (run / "model" / "tokenizer_config.json").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["method"] == "sft"
    assert "packages" in json.loads((run / "environment.json").read_text())
    train, val = _records(run)
    assert [r["step"] for r in train] == list(range(1, 13))
    assert [r["step"] for r in val] == [4, 8, 12]
    assert all(r["kd"] is None and r["kl"] is None and r["tokens_per_s"] > 0 for r in train)
    assert train[0]["lr"] < train[1]["lr"]  # warm-up
    assert _falls([r["loss"] for r in train])
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_000008", "step_000012"]
    # a finished run is returned unchanged; another config in the same folder is refused
    mtime = (run / "metrics.jsonl").stat().st_mtime
    assert run_distill(make_config("sft"), run) == run
    assert (run / "metrics.jsonl").stat().st_mtime == mtime
    with pytest.raises(ConfigError, match="another config.*seed"):
        run_distill(make_config("sft", seed=7), run)


@pytest.mark.parametrize("method", ["fkl", "rkl", "jsd", "gkd"])
def test_kd_loss_and_kl_to_teacher_fall(make_config, tmp_path: Path, method: str) -> None:  # type: ignore[no-untyped-def]
    extra = {"gkd_lambda": 0.5} if method == "gkd" else {}
    run = run_distill(make_config(method, **extra), tmp_path / method)
    train, val = _records(run)
    assert all(r["kd"] is not None and r["kl"] is not None for r in train)
    assert _falls([r["loss"] for r in train]), [r["loss"] for r in train]
    assert _falls([r["kl"] for r in train]), [r["kl"] for r in train]
    assert val[-1]["val_kl"] < val[0]["val_kl"] or val[0]["best"]
    if method == "gkd":
        fractions = [r["on_policy_frac"] for r in train]
        assert 0 < sum(fractions) < len(fractions)  # some batches on-policy, some not


def test_full_finetuning_saves_the_model(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    run = run_distill(make_config("fkl", finetuning="full", optim={"lr": 1e-3}), tmp_path / "full")
    assert (run / "model" / "config.json").is_file() and not (run / "model" / "adapter_config.json").exists()
    train, _ = _records(run)
    assert _falls([r["loss"] for r in train])
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    assert model.config.hidden_size == 32


def test_seqkd_trains_on_teacher_outputs(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = run_distill(make_config("seqkd", generation={"do_sample": False}), tmp_path / "seqkd")
    outputs = [json.loads(line) for line in (run / "seqkd_outputs.jsonl").read_text().splitlines()]
    assert [o["index"] for o in outputs] == list(range(len(outputs)))
    assert len(outputs) == 40 - 8  # every training item (40 items, 8 held out)
    train, _ = _records(run)
    assert all(r["kd"] is None for r in train)
    assert _falls([r["loss"] for r in train])


def test_failure_is_recorded_and_raised(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def explode(record: dict[str, Any]) -> None:
        if record["step"] == 5:
            raise RuntimeError("simulated crash")

    with pytest.raises(RunFailedError, match="failed: RuntimeError: simulated crash"):
        run_distill(make_config("sft"), tmp_path / "run", callbacks=[explode])
    status = read_status(tmp_path / "run")
    assert status["state"] == "failed" and "simulated crash" in status["error"]
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text().strip() == "step_000004"


def test_bf16_autocast_on_cpu(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # also checks that a run may change precision after others ran in the same process
    run = run_distill(make_config("fkl", precision="bf16", optim={"max_steps": 4}), tmp_path / "bf16")
    train, _ = _records(run)
    assert read_status(run)["state"] == "done"
    assert all(r["loss"] == r["loss"] and r["loss"] > 0 for r in train)  # finite, not NaN
