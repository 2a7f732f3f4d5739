"""Checkpoints: round trip, and a killed run resumes to the same weights as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from kdanalysis.errors import RunFailedError
from kdanalysis.runfolder import read_status
from runners.distill.run import run_distill


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step_{step:06d}" / "trainable.safetensors"))


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _train_losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def test_crash_and_resume_equals_uninterrupted(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # gkd + LoRA dropout + teacher noise: every RNG consumer (sampling, dropout, noise) is exercised
    config = make_config("gkd", teacher_noise=0.5, lora={"dropout": 0.1}, optim={"max_steps": 8})
    whole = run_distill(config, tmp_path / "whole")

    def crash(record: dict[str, Any]) -> None:
        if record["step"] == 6:  # after the checkpoint of step 4
            raise RuntimeError("killed")

    with pytest.raises(RunFailedError):
        run_distill(config, tmp_path / "resumed", callbacks=[crash])
    assert read_status(tmp_path / "resumed")["state"] == "failed"
    resumed = run_distill(config, tmp_path / "resumed")
    assert read_status(resumed)["state"] == "done"
    _assert_same(_weights(whole, 8), _weights(resumed, 8))
    _assert_same(
        load_file(str(whole / "model" / "adapter_model.safetensors")),
        load_file(str(resumed / "model" / "adapter_model.safetensors")),
    )
    assert _train_losses(resumed) == _train_losses(whole)  # steps 5-6 were dropped and redone once


def test_checkpoint_round_trip(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from peft import PeftModel

    from runners.distill.trainer import add_lora, load_trainable_state
    from runners.models import load_causal_lm

    config = make_config("sft", optim={"max_steps": 4})
    run = run_distill(config, tmp_path / "run")
    ckpt = run / "checkpoints" / "step_000004"
    state = json.loads((ckpt / "state.json").read_text())
    # 32 training items / batch 8: step 4 ends epoch 0, the next batch is epoch 1's first
    assert state["step"] == 4 and state["epoch"] == 1 and state["batch_in_epoch"] == 0
    assert {p.name for p in ckpt.iterdir()} == {
        "trainable.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "rng_0.pt",
        "state.json",
        "config.yaml",
    }
    saved = _weights(run, 4)
    model, _ = load_causal_lm(config.student, dtype="float32", device="cpu")
    model = add_lora(model, config)
    load_trainable_state(model, ckpt / "trainable.safetensors")
    reloaded = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    _assert_same(saved, reloaded)
    optimizer = torch.load(ckpt / "optimizer.pt", weights_only=False)
    assert optimizer["state"] and all(s["step"] == 4 for s in optimizer["state"].values())
    # the final adapter loads with peft and carries the trained (best = last here) weights
    base, _ = load_causal_lm(config.student, dtype="float32", device="cpu")
    adapted = PeftModel.from_pretrained(base, run / "model")
    lora = {n: p for n, p in adapted.named_parameters() if "lora_" in n}
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in lora.items() if "lora_B" in n)


@pytest.mark.slow  # a fresh interpreter (torch + transformers imports) and 3 x 40 steps
def test_kill_9_and_resume(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = make_config(
        "fkl", optim={"max_steps": 40}, checkpoint_every=2, eval_every=10, lora={"dropout": 0.1}
    )
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runners.distill", str(path), "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    latest = killed / "checkpoints" / "latest"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip() >= "step_000004":
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_status(killed)["state"] == "running"  # killed mid-run, nothing recorded
    stopped_at = int(latest.read_text().strip().removeprefix("step_"))
    assert stopped_at < 40
    run_distill(config, killed)
    whole = run_distill(config, tmp_path / "whole")
    _assert_same(_weights(whole, 40), _weights(killed, 40))
