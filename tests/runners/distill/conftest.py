"""Toy teacher/student models and training data shared by the distillation tests.

Models are written once per session (``runners.toy.save_toy_model``); every test builds
its own :class:`DistillConfig` with :func:`make_config` and its own run folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

N_ITEMS = 40


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """Toy models are far too small for intra-op threads: the thread hand-offs cost more than
    the arithmetic. One thread also fixes the summation order (the golden curves rely on it).
    Restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of a toy teacher ("small"), a toy student ("tiny") and a training file."""
    import torch

    from runners.toy import make_arithmetic_task, save_toy_model, write_task_json

    torch.set_num_threads(1)

    root = tmp_path_factory.mktemp("toy")
    teacher = save_toy_model(root / "teacher", family="qwen2", size="small", seed=1)
    student = save_toy_model(root / "student", family="qwen2", size="tiny", seed=2)
    data = write_task_json(root / "train.json", make_arithmetic_task(N_ITEMS, seed=0, difficulty=1))
    return {"teacher": Path(teacher), "student": Path(student), "data": Path(data), "root": root}


@pytest.fixture()
def make_config(toy: dict[str, Path]) -> Callable[..., Any]:
    """``make_config(method, **overrides)`` → a small, fast DistillConfig on the toy models."""
    from runners.distill.config import DistillConfig

    def build(method: str = "fkl", **overrides: Any) -> DistillConfig:
        base: dict[str, Any] = {
            "student": str(toy["student"]),
            "teacher": None if method == "sft" else str(toy["teacher"]),
            "method": method,
            "data": {"train": str(toy["data"]), "val_size": 8},
            "max_length": 96,
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
            "optim": {"lr": 3e-3, "warmup_steps": 2, "max_steps": 12, "batch_size": 8, "micro_batch_size": 4},
            "generation": {"max_new_tokens": 12, "batch_size": 16},
            "log_every": 1,
            "eval_every": 4,
            "checkpoint_every": 4,
            "seed": 6,
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        return DistillConfig(**base)

    return build


@pytest.fixture()
def loaded_models(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names passed to ``runners.models.load_causal_lm`` during the test, in call order."""
    import runners.models

    loaded: list[str] = []
    real = runners.models.load_causal_lm

    def spy(name: Any, **kwargs: Any) -> Any:
        loaded.append(str(name))
        return real(name, **kwargs)

    monkeypatch.setattr(runners.models, "load_causal_lm", spy)
    return loaded
