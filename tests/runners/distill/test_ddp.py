"""DDP path on CPU: 2 processes (torchrun, gloo) give the same run as one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kdanalysis.runfolder import read_status
from runners.distill.run import run_distill


@pytest.mark.slow  # two fresh interpreters (torch + transformers imports)
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_two_processes_equal_one(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # same micro-batches either way: batch 8 = 2 processes x 1 x micro 4 = 1 process x 2 x micro 4
    config = make_config("fkl", optim={"max_steps": 6, "micro_batch_size": 4}, lora={"dropout": 0.0})
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    cmd = [
        "torchrun",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29561",
        "-m",
        "runners.distill",
        str(path),
        "--out",
        str(tmp_path / "ddp"),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(tmp_path / "ddp")  # printed once
    ddp = tmp_path / "ddp"
    assert read_status(ddp)["state"] == "done"
    assert {p.name for p in (ddp / "checkpoints" / "step_000006").glob("rng_*.pt")} == {
        "rng_0.pt",
        "rng_1.pt",
    }
    one = run_distill(config, tmp_path / "one")
    a = load_file(str(ddp / "checkpoints" / "step_000006" / "trainable.safetensors"))
    b = load_file(str(one / "checkpoints" / "step_000006" / "trainable.safetensors"))
    for name in b:
        assert torch.allclose(a[name], b[name], atol=1e-6), name

    def losses(run: Path) -> list[float]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if "loss" in r]

    assert losses(ddp) == pytest.approx(losses(one), rel=1e-5)
