"""Gradient accumulation: token-weighted (default) equals one big batch; the released weighting does not.

Two micro-batches of 4 toy examples with different numbers of target tokens, against one
micro-batch of the same 8 examples: with ``grad_accum: tokens`` every step's gradient norm,
loss and the final weights agree to float tolerance; with ``micro_batches`` (each
micro-batch's mean / 2, the HF Trainer the released code uses) the gradient differs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from runners.distill.trainer import train


def _run(make_config: Callable[..., Any], run_dir: Path, micro: int, **overrides: Any) -> dict[str, Any]:
    config = make_config(
        "fkl",
        optim={"max_steps": 3, "batch_size": 8, "micro_batch_size": micro, "max_grad_norm": 1e6},
        eval_every=0,
        checkpoint_every=0,
        save_model="last",
        **overrides,
    )
    run_dir.mkdir()
    train(config, run_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    (weights,) = (run_dir / "model").glob("*.safetensors")
    return {"rows": [r for r in rows if "loss" in r], "weights": load_file(str(weights))}


@pytest.fixture(scope="module")
def one_big_batch(toy: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from runners.distill.config import DistillConfig

    def make_config(method: str, **overrides: Any) -> DistillConfig:
        return DistillConfig(
            student=str(toy["student"]),
            teacher=str(toy["teacher"]),
            method=method,
            data={"train": str(toy["data"]), "val_size": 8},
            max_length=96,
            lora={"r": 8, "alpha": 16, "dropout": 0.0},
            seed=6,
            log_every=1,
            **{"optim": {"lr": 3e-3, "warmup_steps": 2, **overrides.pop("optim")}, **overrides},
        )

    return {"make": make_config, "run": _run(make_config, tmp_path_factory.mktemp("big") / "run", micro=8)}


def test_token_weighted_accumulation_equals_one_big_batch(
    one_big_batch: dict[str, Any], tmp_path: Path
) -> None:
    big = one_big_batch["run"]
    accum = _run(one_big_batch["make"], tmp_path / "accum", micro=4)
    assert [r["step"] for r in accum["rows"]] == [1, 2, 3]
    for got, want in zip(accum["rows"], big["rows"], strict=True):
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-5)
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
        assert got["tokens"] == want["tokens"]
    for name, value in big["weights"].items():
        torch.testing.assert_close(accum["weights"][name], value, rtol=1e-4, atol=1e-6)


def test_released_micro_batch_weighting_differs_from_one_big_batch(
    one_big_batch: dict[str, Any], tmp_path: Path
) -> None:
    big = one_big_batch["run"]
    accum = _run(one_big_batch["make"], tmp_path / "accum", micro=4, grad_accum="micro_batches")
    first, want = accum["rows"][0], big["rows"][0]
    # the same examples, but micro-batches of different token counts weigh equally
    assert abs(first["grad_norm"] / want["grad_norm"] - 1) > 1e-4
    assert abs(first["loss"] / want["loss"] - 1) > 5e-6
