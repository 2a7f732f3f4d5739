"""Data encoding: prompt masking (train_on_inputs), truncation, batches, resumable order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdanalysis.errors import ConfigError
from runners.distill.data import (
    IGNORE_INDEX,
    collate,
    collate_prompts,
    encode_item,
    encode_items,
    epoch_batches,
    load_items,
    split_items,
)
from runners.evaluate.prompts import format_prompt

ITEM = {
    "instruction": "Tom has 3 apples and buys 2 more. How many?",
    "input": "",
    "output": "3 + 2 = 5. The answer is 5.",
    "answer": "5",
}


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    from runners.toy import build_tokenizer

    return build_tokenizer()


def test_prompt_tokens_are_masked_unless_train_on_inputs(tokenizer) -> None:  # type: ignore[no-untyped-def]
    masked = encode_item(tokenizer, ITEM, max_length=512, train_on_inputs=False, prompt_style="alpaca")
    full = encode_item(tokenizer, ITEM, max_length=512, train_on_inputs=True, prompt_style="alpaca")
    prompt_ids = tokenizer(format_prompt(ITEM["instruction"], style="alpaca"))["input_ids"]
    assert masked.input_ids == full.input_ids
    assert list(masked.prompt_ids) == prompt_ids
    assert masked.labels[: masked.prompt_len] == (IGNORE_INDEX,) * masked.prompt_len
    assert masked.labels[masked.prompt_len :] == masked.input_ids[masked.prompt_len :]
    assert full.labels == full.input_ids
    assert masked.input_ids[-1] == tokenizer.eos_token_id
    response = tokenizer.decode(masked.input_ids[masked.prompt_len :], skip_special_tokens=True)
    assert response == ITEM["output"]


def test_truncation_and_items_without_targets(tokenizer) -> None:  # type: ignore[no-untyped-def]
    ex = encode_item(tokenizer, ITEM, max_length=50, train_on_inputs=False, prompt_style="alpaca")
    assert len(ex.input_ids) == len(ex.labels) == 50
    assert ex.input_ids[-1] != tokenizer.eos_token_id  # cut before the end
    too_long = {**ITEM, "instruction": "word " * 300}
    kept = encode_items(
        tokenizer, [ITEM, too_long], max_length=50, train_on_inputs=False, prompt_style="alpaca"
    )
    assert len(kept) == 1


def test_collate_pads_right_and_prompts_left(tokenizer) -> None:  # type: ignore[no-untyped-def]
    a = encode_item(tokenizer, ITEM, max_length=512, train_on_inputs=False, prompt_style="alpaca")
    b = encode_item(
        tokenizer, {**ITEM, "output": "5"}, max_length=512, train_on_inputs=False, prompt_style="alpaca"
    )
    batch = collate([a, b], tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, len(a.input_ids))
    assert batch["attention_mask"][1].sum() == len(b.input_ids)
    assert (batch["labels"][1, len(b.input_ids) :] == IGNORE_INDEX).all()
    prompts = collate_prompts([a, b], tokenizer.pad_token_id)
    assert prompts["input_ids"][0, -1] == a.prompt_ids[-1]  # left padding: prompts end together


def test_epoch_batches_are_a_seeded_permutation() -> None:
    b1 = epoch_batches(50, 8, seed=6, epoch=0)
    assert b1 == epoch_batches(50, 8, seed=6, epoch=0)
    assert b1 != epoch_batches(50, 8, seed=6, epoch=1)
    assert len(b1) == 6 and all(len(b) == 8 for b in b1)
    flat = [i for b in b1 for i in b]
    assert len(set(flat)) == 48


def test_split_is_seeded_and_disjoint() -> None:
    items = [{"instruction": str(i), "output": str(i)} for i in range(20)]
    train, val = split_items(items, 5, seed=6)
    assert len(val) == 5 and len(train) == 15
    assert split_items(items, 5, seed=6) == (train, val)
    assert not {it["instruction"] for it in val} & {it["instruction"] for it in train}
    with pytest.raises(ConfigError, match="leaves no training items"):
        split_items(items, 20, seed=6)


def test_load_items_names_the_bad_item(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c"}]), encoding="utf-8")
    with pytest.raises(ConfigError, match="item 1 lacks a string 'output'"):
        load_items(path)
    path.write_text('{"instruction": "a"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a JSON list"):
        load_items(path)
