"""DecodingConfig: defaults, presets, validation, stop-string truncation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kdanalysis.errors import ConfigError
from runners.evaluate.decoding import DECODING_PRESETS, DecodingConfig, decoding_preset, truncate_at_stop


def test_default_is_greedy() -> None:
    d = DecodingConfig()
    assert d.is_greedy and d.n == 1 and d.max_new_tokens == 256 and d.stop == ()


def test_published_preset_matches_paper_protocol() -> None:
    d = DecodingConfig.model_validate("published")
    got = (d.do_sample, d.temperature, d.top_p, d.top_k, d.n, d.max_new_tokens)
    assert got == (True, 1.0, 1.0, 0, 1, 256)
    assert decoding_preset("published") == d


def test_preset_with_overrides() -> None:
    d = DecodingConfig.model_validate({"preset": "published", "seed": 3, "max_new_tokens": 64})
    assert d.do_sample and d.seed == 3 and d.max_new_tokens == 64
    assert decoding_preset("published", seed=3).seed == 3


def test_unknown_preset_lists_known() -> None:
    with pytest.raises(ValidationError, match="greedy, published"):
        DecodingConfig.model_validate("nucleus")
    with pytest.raises(ConfigError, match="known presets: greedy, published"):
        decoding_preset("nucleus")
    assert set(DECODING_PRESETS) == {"greedy", "published"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 2}, "needs do_sample"),
        ({"temperature": 0.0, "do_sample": True}, "greater than 0"),
        ({"top_p": 1.5}, "less than or equal to 1"),
        ({"top_k": -1}, "greater than or equal to 0"),
        ({"max_new_tokens": 0}, "greater than or equal to 1"),
        ({"stop": [""]}, "non-empty"),
        ({"beams": 4}, "Extra inputs"),
    ],
)
def test_invalid_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        DecodingConfig(**kwargs)


def test_frozen_and_hashable() -> None:
    d = DecodingConfig(stop=["\n\n"])
    with pytest.raises(ValidationError):
        d.n = 3  # type: ignore[misc]
    assert hash(d) == hash(DecodingConfig(stop=("\n\n",)))


@pytest.mark.parametrize(
    "text, stop, expected",
    [
        ("answer is 4\n\n### Instruction: more", ("### Instruction",), "answer is 4\n\n"),
        ("a STOP b END c", ("END", "STOP"), "a "),
        ("no stop here", ("###",), "no stop here"),
        ("anything", (), "anything"),
    ],
)
def test_truncate_at_stop(text: str, stop: tuple[str, ...], expected: str) -> None:
    assert truncate_at_stop(text, stop) == expected
