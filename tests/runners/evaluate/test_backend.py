"""Backend interface: result records, context manager, multiple-choice scoring, pair encoding."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from kdanalysis.errors import ConfigError
from runners.evaluate.backend import (
    Backend,
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    encode_loglikelihood_pair,
    multiple_choice,
)
from runners.evaluate.decoding import DecodingConfig


class _TableBackend(Backend):
    """Scores a continuation by a fixed table; records requests and closing."""

    name = "table"

    def __init__(self, scores: dict[tuple[str, str], float]) -> None:
        self.scores = scores
        self.closed = 0
        self.seen: list[LoglikelihoodRequest] = []

    def generate(self, requests, *, progress=None):  # type: ignore[no-untyped-def]
        return [GenerationResult((r.prompt[::-1],), (len(r.prompt),)) for r in requests]

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress=None):  # type: ignore[no-untyped-def]
        self.seen.extend(requests)
        return [LoglikelihoodResult(self.scores[(r.context, r.continuation)], False) for r in requests]

    def close(self) -> None:
        self.closed += 1


def test_requests_are_frozen_and_default_to_greedy() -> None:
    req = GenerationRequest("p")
    assert req.decoding == DecodingConfig() and req.decoding.is_greedy
    with pytest.raises(AttributeError):
        req.prompt = "q"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        LoglikelihoodRequest("a", "b").context = "c"  # type: ignore[misc]


def test_generation_result_checks_lengths() -> None:
    res = GenerationResult(("x", "y"), (3, 4))
    assert res.text == "x"
    with pytest.raises(ValueError, match="one token count per text"):
        GenerationResult(("x",), (1, 2))
    with pytest.raises(ValueError, match="at least one text"):
        GenerationResult((), ())


def test_loglikelihood_result_is_a_tuple() -> None:
    logprob, greedy = LoglikelihoodResult(-1.5, True)
    assert (logprob, greedy) == (-1.5, True)


def test_context_manager_closes_even_on_error() -> None:
    backend = _TableBackend({})
    with pytest.raises(KeyError):
        with backend as b:
            b.loglikelihood([LoglikelihoodRequest("c", "x")])
    assert backend.closed == 1


def test_multiple_choice_picks_highest_and_keeps_order() -> None:
    scores = {
        ("q1", "true"): -2.0,
        ("q1", "false"): -1.0,
        ("q2", "a"): -0.5,
        ("q2", "b"): -3.0,
        ("q2", "c"): -0.7,
    }
    backend = _TableBackend(scores)
    done: list[int] = []
    picks = multiple_choice(backend, ["q1", "q2"], [("true", "false"), ("a", "b", "c")], progress=done.append)
    assert picks == [1, 0]
    assert done == [2]
    assert [(r.context, r.continuation) for r in backend.seen] == list(scores)


def test_multiple_choice_rejects_bad_shapes() -> None:
    backend = _TableBackend({})
    with pytest.raises(ConfigError, match="2 contexts but 1 choice lists"):
        multiple_choice(backend, ["a", "b"], [("x",)])
    with pytest.raises(ConfigError, match="context 0 has no candidate"):
        multiple_choice(backend, ["a"], [()])


class _SpaceTokenizer:
    """Whitespace tokenizer with a BOS id 0 added when special tokens are requested."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = [len(w) for w in text.split()]
        return {"input_ids": ([0] if add_special_tokens else []) + ids}


def test_encode_loglikelihood_pair_adds_special_tokens_to_context_only() -> None:
    ctx, cont = encode_loglikelihood_pair(_SpaceTokenizer(), "ab cde", "fghi")
    assert ctx == [0, 2, 3] and cont == [4]
    with pytest.raises(ConfigError, match="non-empty context and continuation"):
        encode_loglikelihood_pair(_SpaceTokenizer(), "ab", "   ")
