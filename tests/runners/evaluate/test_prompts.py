"""The prompt templates reproduce the released KD_generalization code byte for byte."""

from __future__ import annotations

import pytest

from kdanalysis.errors import ConfigError
from runners.evaluate.prompts import PROMPT_STYLES, format_prompt, prompt_hash

SP16 = " " * 16
HEAD = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)


def test_published_eval_prompt_without_input_matches_release() -> None:
    expected = (
        HEAD + " \n"
        "\n" + SP16 + "### Instruction:\n" + SP16 + "What is 2+2?\n"
        "\n" + SP16 + "### Response:\n" + SP16
    )
    assert format_prompt("What is 2+2?") == expected
    assert format_prompt("What is 2+2?", "") == expected  # empty input: no Input block


def test_published_eval_prompt_with_input_has_input_block() -> None:
    prompt = format_prompt("Add.", "2 and 3")
    assert prompt.startswith("Below is an instruction that describes a task, paired with an input")
    assert prompt.endswith(
        "Add.\n\n" + SP16 + "### Input:\n" + SP16 + "2 and 3\n\n" + SP16 + "### Response:\n" + SP16
    )


def test_published_train_prompt_keeps_its_own_whitespace() -> None:
    expected = (
        HEAD
        + "  \n\n"
        + SP16
        + "### Instruction:\n"
        + SP16
        + "Q\n"
        + SP16
        + "\n"
        + SP16
        + "### Response:\n"
        + SP16
    )
    assert format_prompt("Q", style="published_train") == expected


def test_alpaca_style_is_the_paper_template() -> None:
    assert format_prompt("Q", None, style="alpaca") == (HEAD + "\n\n### Instruction:\nQ\n\n### Response:\n")


@pytest.mark.parametrize("style", PROMPT_STYLES)
def test_instruction_is_inserted_verbatim(style: str) -> None:
    text = "  Line one\nline two {braces} "
    assert text in format_prompt(text, style=style)  # type: ignore[arg-type]


def test_unknown_style_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="published_train"):
        format_prompt("Q", style="chatml")  # type: ignore[arg-type]


def test_prompt_hash_is_sha256_prefix() -> None:
    import hashlib

    assert prompt_hash("abc") == hashlib.sha256(b"abc").hexdigest()[:16]
    assert len(prompt_hash("")) == 16
