"""The zero-shot Alpaca prompt of the study, byte for byte.

The released KD_generalization code (LCS2-IIITD/KD_generalization, ``generative/``)
builds its prompts with indented triple-quoted f-strings, so the exact text carries
16-space indents and trailing spaces. Three styles are offered:

``"published"`` (default)
    The evaluation prompt of the released ``evaluate.py`` / ``commonsense_evaluate.py``:
    a trailing space after "request." (no-input form), every section line indented by
    16 spaces, empty separator lines, and the prompt ends with ``"### Response:\\n"``
    followed by 16 spaces. With an input, the preamble is the Alpaca "paired with an
    input that provides further context" sentence (no trailing space) and an
    ``### Input:`` block follows the instruction.
``"published_train"``
    The training prompt of the released ``finetune.py`` (the text the SFT/KD models
    saw before the response): two trailing spaces after "request." (one in the input
    form) and separator lines made of 16 spaces. Use it to reproduce the published
    training data exactly; the released evaluation used ``"published"``.
``"alpaca"``
    The clean Alpaca template quoted in PAPER.md, without indentation.

The ``### Input:`` block is added only when ``input`` is a non-empty string (the shipped
test sets all have ``input == ""``). Note: the released commonsense evaluation never
passed the input to the prompt; with the shipped files this makes no difference.

Every style ends with the :data:`RESPONSE_HEADER` ``"### Response:"``. The released
scripts keep only the text between the prompt's header and the next one
(``output.split("### Response:")[1].strip()`` on the decoded prompt + generation,
``generative/evaluate.py`` line 87, ``commonsense_evaluate.py`` line 86), so a model that
goes on with a new ``### Instruction:`` is scored on its first response only.
:func:`response_text` makes that cut, and :data:`STOP_STRINGS` gives each style's stop
strings, which generation uses so that it ends where the cut would.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from kdanalysis.errors import ConfigError

__all__ = [
    "PROMPT_STYLES",
    "PromptStyle",
    "RESPONSE_HEADER",
    "STOP_STRINGS",
    "format_prompt",
    "prompt_hash",
    "response_text",
]

PromptStyle = Literal["published", "published_train", "alpaca"]
PROMPT_STYLES: tuple[str, ...] = ("published", "published_train", "alpaca")

_PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
_PREAMBLE_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request."
)
_INDENT = " " * 16

#: The header that ends every prompt style and opens the model's response.
RESPONSE_HEADER = "### Response:"
#: Stop strings of generation per prompt style: a second response header ends the response.
STOP_STRINGS: dict[str, tuple[str, ...]] = {style: (RESPONSE_HEADER,) for style in PROMPT_STYLES}


def _published(instruction: str, input: str | None) -> str:
    i = _INDENT
    if input:
        return (
            f"{_PREAMBLE_INPUT}\n\n{i}### Instruction:\n{i}{instruction}\n\n"
            f"{i}### Input:\n{i}{input}\n\n{i}### Response:\n{i}"
        )
    return f"{_PREAMBLE} \n\n{i}### Instruction:\n{i}{instruction}\n\n{i}### Response:\n{i}"


def _published_train(instruction: str, input: str | None) -> str:
    i = _INDENT
    if input:
        return (
            f"{_PREAMBLE_INPUT} \n\n{i}### Instruction:\n{i}{instruction}\n{i}\n"
            f"{i}### Input:\n{i}{input}\n{i}\n{i}### Response:\n{i}"
        )
    return f"{_PREAMBLE}  \n\n{i}### Instruction:\n{i}{instruction}\n{i}\n{i}### Response:\n{i}"


def _alpaca(instruction: str, input: str | None) -> str:
    if input:
        return (
            f"{_PREAMBLE_INPUT}\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
        )
    return f"{_PREAMBLE}\n\n### Instruction:\n{instruction}\n\n### Response:\n"


_BUILDERS = {"published": _published, "published_train": _published_train, "alpaca": _alpaca}


def format_prompt(instruction: str, input: str | None = None, *, style: PromptStyle = "published") -> str:
    """Build the zero-shot prompt of one item.

    Parameters
    ----------
    instruction : str
        The item's ``instruction`` field, inserted verbatim.
    input : str or None
        The item's optional ``input`` field; an ``### Input:`` block is added only when it
        is a non-empty string.
    style : {"published", "published_train", "alpaca"}
        Which exact template to use (see the module docstring).

    Returns
    -------
    str
        The prompt; the model's response is appended directly after it.

    Raises
    ------
    ConfigError
        If ``style`` is not one of :data:`PROMPT_STYLES`.
    """
    try:
        builder = _BUILDERS[style]
    except KeyError:
        raise ConfigError(
            f"unknown prompt style {style!r}; known styles: {', '.join(PROMPT_STYLES)}"
        ) from None
    return builder(instruction, input)


def prompt_hash(prompt: str) -> str:
    """Return the first 16 hex characters of the SHA-256 of ``prompt`` (UTF-8)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def response_text(generation: str) -> str:
    """The model's response as the released scripts score it: the text before a second header.

    The released evaluation decodes prompt + generation and keeps
    ``text.split("### Response:")[1]``: everything after the prompt's own header up to the
    next :data:`RESPONSE_HEADER`, which a model writes when it goes on with a new
    instruction of its own. This function applies that cut to the generation alone.

    Parameters
    ----------
    generation : str
        The generated continuation of a prompt (without the prompt).

    Returns
    -------
    str
        ``generation`` up to (not including) its first ``"### Response:"``; unchanged when
        it has none.
    """
    return generation.split(RESPONSE_HEADER, 1)[0]
