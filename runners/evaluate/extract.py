"""Answer extraction and answer comparison, selectable by name.

Both extractors read the model's *response*: the generation up to a second
``### Response:`` header (:func:`runners.evaluate.prompts.response_text`), which is all the
released scripts keep of a generation (``output.split("### Response:")[1]`` on prompt +
generation). "The answer is 5.\n\n### Instruction: What is 2 + 9?\n\n### Response: The
answer is 11." is therefore read as "The answer is 5.\n\n### Instruction: What is 2 + 9?":
9 under ``"published"`` (the last number), 5 under ``"strict"``.

``"published"`` reproduces the released KD_generalization evaluation
(``generative/evaluate.py`` and ``commonsense_evaluate.py``) rule for rule:

- number (GSM8K, SVAMP, MultiArith, SingleEq, AddSub): remove every comma, take the
  **last** match of ``-?\\d+\\.?\\d*``; nothing found = wrong (the release used ``inf``).
- choice_letter (AQuA): the **first** capital ``A``-``E`` anywhere in the stripped text,
  case-sensitive, with no word boundary (so the ``B`` of "Both" counts).
- label (commonsense): the **first** match of the label vocabulary joined by ``|``
  (``true|false``, ``solution1|solution2``, ``answer1|...|answer5``, ``ending1|...|ending4``,
  ``option1|option2``), case-sensitive (no lower-casing: "True" is not found), no word
  boundary.

``"strict"`` only trusts an explicit final statement: the **last** "the answer is ..." /
"the correct answer is ..." / "the final answer is ..." (case-insensitive); in the rest
of that sentence, the first number (commas removed; after the last ``=`` if the
statement is an equation, so "The answer is 49 - 34 = 15." gives 15), the first
stand-alone letter A-E (``C`` or ``(C)``) or the first whole-word label
(case-insensitive, returned in the vocabulary's spelling). Without such a statement the
prediction is ``""``.

Extractors never raise on model text: an empty or unparsable generation gives ``""``,
which :func:`answers_match` always scores as wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from kdanalysis.errors import ConfigError
from runners.evaluate.prompts import response_text
from runners.evaluate.tasks import TaskSpec

__all__ = [
    "EXTRACTORS",
    "NUMBER_TOLERANCE",
    "extract_answer",
    "get_extractor",
    "answers_match",
    "canonical_number",
]

#: Absolute tolerance of the published numeric comparison.
NUMBER_TOLERANCE = 0.001

_NUMBER_RE = re.compile(r"-?\d+\.?\d*")
_STATEMENT_RE = re.compile(r"\bthe\s+(?:correct\s+|final\s+)?answer\s+is\b\s*:?", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)|\n")
_STRICT_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_STRICT_LETTER_RE = re.compile(r"(?<![A-Za-z])\(?([A-E])\)?(?![A-Za-z])")

Extractor = Callable[[str, TaskSpec], str]


def canonical_number(text: str) -> str:
    """Write a number string canonically: ``"4."`` / ``"4.0"`` -> ``"4"``, ``"9.80"`` -> ``"9.8"``.

    Values that overflow a float become ``"inf"``/``"-inf"`` (never equal to a gold answer).
    """
    value = float(text)
    if math.isfinite(value) and value == int(value) and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _published(text: str, spec: TaskSpec) -> str:
    if spec.answer_type == "number":
        found = _NUMBER_RE.findall(text.replace(",", ""))
        return canonical_number(found[-1]) if found else ""
    pattern = "|".join(re.escape(label) for label in spec.labels)
    match = re.search(pattern, text.strip())
    return match.group(0) if match else ""


def _strict(text: str, spec: TaskSpec) -> str:
    statements = list(_STATEMENT_RE.finditer(text))
    if not statements:
        return ""
    tail = text[statements[-1].end() :]
    end = _SENTENCE_END_RE.search(tail)
    sentence = tail[: end.start()] if end else tail
    if spec.answer_type == "number":
        result = sentence.rsplit("=", 1)[-1]
        match = _STRICT_NUMBER_RE.search(result.replace(",", ""))
        return canonical_number(match.group(0)) if match else ""
    if spec.answer_type == "choice_letter":
        match = _STRICT_LETTER_RE.search(sentence)
        return match.group(1) if match and match.group(1) in spec.labels else ""
    by_lower = {label.lower(): label for label in spec.labels}
    pattern = r"\b(" + "|".join(re.escape(label) for label in spec.labels) + r")\b"
    match = re.search(pattern, sentence, re.IGNORECASE)
    return by_lower[match.group(1).lower()] if match else ""


_EXTRACTORS: dict[str, Extractor] = {"published": _published, "strict": _strict}
#: Names accepted by :func:`get_extractor`.
EXTRACTORS: tuple[str, ...] = tuple(_EXTRACTORS)


def get_extractor(name: str) -> Extractor:
    """Return the extractor function ``f(text, spec) -> pred`` called ``name``.

    Raises
    ------
    ConfigError
        For an unknown name, listing :data:`EXTRACTORS`.
    """
    try:
        return _EXTRACTORS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown extractor {name!r}; known extractors: {', '.join(EXTRACTORS)}") from None


def extract_answer(text: str | None, spec: TaskSpec, extractor: str = "published") -> str:
    """Extract the predicted answer from one generation.

    Parameters
    ----------
    text : str or None
        The model's generation (``None`` is treated as empty); only the text before a
        second ``### Response:`` header is read (see the module docstring).
    spec : TaskSpec
        The task (gives the answer type and label vocabulary).
    extractor : {"published", "strict"}
        Extraction rule (see the module docstring).

    Returns
    -------
    str
        The prediction: a canonical number string, a letter, a label, or ``""`` when
        nothing could be extracted.
    """
    rule = get_extractor(extractor)
    response = response_text(text or "")
    if not response:
        return ""
    return rule(response, spec)


def answers_match(spec: TaskSpec, a: str, b: str) -> bool:
    """Whether two answers of a task are the same (used for correctness and agreement).

    Numbers match when ``abs(float(a) - float(b)) <= 0.001`` (the published rule; commas
    ignored); letters and labels must be identical. An empty answer never matches.
    """
    if not a or not b:
        return False
    if spec.answer_type != "number":
        return a == b
    try:
        return abs(float(a.replace(",", "")) - float(b.replace(",", ""))) <= NUMBER_TOLERANCE
    except ValueError:
        return False
