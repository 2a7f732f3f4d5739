"""One evaluation interface for every inference engine (lm-eval-harness style).

A backend answers two kinds of requests:

``generate``
    :class:`GenerationRequest` (prompt + :class:`~runners.evaluate.decoding.DecodingConfig`)
    -> :class:`GenerationResult` (``n`` sampled texts and their token counts).
``loglikelihood``
    :class:`LoglikelihoodRequest` (context + continuation) -> :class:`LoglikelihoodResult`
    (summed log-probability of the continuation, and whether greedy decoding would
    have produced it token for token).

Results always come back in the order of the requests. Backends hold GPU memory;
:meth:`Backend.close` frees it, and a backend is a context manager that closes on exit.

:func:`multiple_choice` scores label tasks (``true``/``false``, ``solution1``/``solution2``, ...)
by the log-likelihood of each label after the prompt: one forward pass per label instead
of up to 256 generated tokens. It is an optional fast mode; the published protocol
generated free text and extracted the label from it.

Implementations: :class:`runners.evaluate.hf_backend.HFBackend` (the reference) and
:class:`runners.evaluate.vllm_backend.VLLMBackend`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple

from kdanalysis.errors import ConfigError
from runners.evaluate.decoding import DecodingConfig

__all__ = [
    "GenerationRequest",
    "GenerationResult",
    "LoglikelihoodRequest",
    "LoglikelihoodResult",
    "ProgressCallback",
    "Backend",
    "multiple_choice",
    "encode_loglikelihood_pair",
]

#: Called with the number of requests just finished (drives progress bars).
ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class GenerationRequest:
    """Generate a continuation of ``prompt`` with ``decoding``.

    Attributes
    ----------
    prompt : str
        The full prompt text (already formatted; the continuation is appended to it).
    decoding : DecodingConfig
        Decoding settings (greedy by default).
    request_id : str
        Caller's identifier (e.g. ``"gsm8k/17"``), kept for logging and parity checks.
    """

    prompt: str
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    request_id: str = ""


@dataclass(frozen=True)
class GenerationResult:
    """The ``n`` continuations generated for one request.

    Attributes
    ----------
    texts : tuple of str
        One text per sample (``decoding.n`` of them), stop strings removed.
    n_tokens : tuple of int
        Generated tokens per sample, counting the end-of-sequence token if one was produced.
    """

    texts: tuple[str, ...]
    n_tokens: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.n_tokens) or not self.texts:
            raise ValueError(
                f"GenerationResult needs one token count per text and at least one text; "
                f"got {len(self.texts)} text(s) and {len(self.n_tokens)} count(s)"
            )

    @property
    def text(self) -> str:
        """The first (under greedy decoding: the only) continuation."""
        return self.texts[0]


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score ``continuation`` as the text following ``context``.

    The two strings are tokenized separately and concatenated, so the boundary is
    where the caller puts it (``context`` should not end with the continuation's
    leading space).
    """

    context: str
    continuation: str


class LoglikelihoodResult(NamedTuple):
    """Log-probability (natural log, summed over continuation tokens) and greediness."""

    logprob: float
    is_greedy: bool


class Backend(ABC):
    """An inference engine behind the generate / loglikelihood interface."""

    #: Short name written into run metadata (``"hf"``, ``"vllm"``).
    name: str = ""

    @abstractmethod
    def generate(
        self, requests: Sequence[GenerationRequest], *, progress: ProgressCallback | None = None
    ) -> list[GenerationResult]:
        """Generate continuations, one :class:`GenerationResult` per request, in request order."""

    @abstractmethod
    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], *, progress: ProgressCallback | None = None
    ) -> list[LoglikelihoodResult]:
        """Score continuations, one :class:`LoglikelihoodResult` per request, in request order."""

    def close(self) -> None:  # noqa: B027 - optional hook, not every backend holds resources
        """Release the model and accelerator memory (idempotent)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def multiple_choice(
    backend: Backend,
    contexts: Sequence[str],
    choices: Sequence[Sequence[str]],
    *,
    progress: ProgressCallback | None = None,
) -> list[int]:
    """Pick, for each context, the choice with the highest log-likelihood.

    Parameters
    ----------
    backend : Backend
        Any backend implementing :meth:`Backend.loglikelihood`.
    contexts : sequence of str
        Prompts.
    choices : sequence of sequence of str
        Candidate continuations per prompt (e.g. ``("true", "false")``).
    progress : callable, optional
        Called with the number of *contexts* finished.

    Returns
    -------
    list of int
        Index of the chosen candidate per context (ties go to the first candidate).

    Raises
    ------
    ConfigError
        If the lengths differ or a context has no candidates.
    """
    if len(contexts) != len(choices):
        raise ConfigError(f"multiple_choice: {len(contexts)} contexts but {len(choices)} choice lists")
    requests: list[LoglikelihoodRequest] = []
    for i, (ctx, options) in enumerate(zip(contexts, choices, strict=True)):
        if not options:
            raise ConfigError(f"multiple_choice: context {i} has no candidate continuations")
        requests.extend(LoglikelihoodRequest(ctx, option) for option in options)
    scores = backend.loglikelihood(requests)
    picks: list[int] = []
    start = 0
    for options in choices:
        block = [s.logprob for s in scores[start : start + len(options)]]
        picks.append(max(range(len(block)), key=block.__getitem__))
        start += len(options)
    if progress is not None:
        progress(len(contexts))
    return picks


def encode_loglikelihood_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of a context and its continuation, as every backend scores them.

    The context is encoded with the tokenizer's special tokens (a BOS token where the
    model family uses one), the continuation without, and the two id lists are
    concatenated by the caller. Both backends use this function so that they score
    exactly the same token sequences.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        Any callable returning ``{"input_ids": [...]}``.
    context, continuation : str
        The two halves of a :class:`LoglikelihoodRequest`.

    Returns
    -------
    (list of int, list of int)
        Context ids and continuation ids.

    Raises
    ------
    ConfigError
        If the continuation encodes to no tokens or the context to none.
    """
    ctx = list(tokenizer(context, add_special_tokens=True)["input_ids"])
    cont = list(tokenizer(continuation, add_special_tokens=False)["input_ids"])
    if not ctx or not cont:
        raise ConfigError(
            f"loglikelihood request needs a non-empty context and continuation; got "
            f"{len(ctx)} context and {len(cont)} continuation token(s) for {continuation!r}"
        )
    return ctx, cont
