"""Resuming never runs code pickled into a run folder's checkpoint files (``torch.load`` ``weights_only``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from kdanalysis.errors import RunFailedError
from runners.distill.run import run_distill


class _Payload:
    """Unpickling this object creates the file named by ``marker``: code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_a_pickled_payload_in_optimizer_pt_is_refused_not_run(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = make_config("sft", optim={"max_steps": 6})

    def crash(record: dict[str, Any]) -> None:
        if record["step"] == 5:  # after the checkpoint of step 4
            raise RuntimeError("killed")

    run = tmp_path / "run"
    with pytest.raises(RunFailedError):
        run_distill(config, run, callbacks=[crash])
    marker = tmp_path / "pwned"
    torch.save({"state": _Payload(marker)}, run / "checkpoints" / "step_000004" / "optimizer.pt")
    with pytest.raises(RunFailedError, match="Weights only load failed"):
        run_distill(config, run)
    assert not marker.exists()


def test_a_genuine_checkpoint_still_resumes(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = make_config("sft", optim={"max_steps": 6})

    def crash(record: dict[str, Any]) -> None:
        if record["step"] == 5:
            raise RuntimeError("killed")

    run = tmp_path / "run"
    with pytest.raises(RunFailedError):
        run_distill(config, run, callbacks=[crash])
    steps: list[int] = []
    run_distill(config, run, callbacks=[lambda record: steps.append(record["step"])])
    assert steps and min(steps) == 5  # resumed after step 4, not from step 0
