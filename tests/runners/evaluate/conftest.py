"""Evaluation fixtures: the toy tokenizer and a tiny random Qwen2 model, built once per module."""

from __future__ import annotations

from typing import Any

import pytest

from runners.toy import build_model, build_tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer()


@pytest.fixture(scope="module")
def model() -> Any:
    return build_model("qwen2", "tiny", seed=1)
