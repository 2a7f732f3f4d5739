"""On-policy (``gkd``) and teacher (``seqkd``) generation: stop strings and generation settings.

A real toy LM whose logits are replaced so that its sample is a fixed text which runs on into
a new ``### Instruction:`` / ``### Response:`` turn (what untuned base models do): the sample
provably contains the published prompt style's stop string. The continuation must stop and be
cut exactly where the evaluation cuts (:func:`runners.evaluate.prompts.response_text`), end with
EOS, and a checkpoint's own ``generation_config`` must not change the samples.
"""

from __future__ import annotations

import contextlib
import types
from typing import Any

import pytest
import torch

from runners.distill.config import DistillConfig, GenerationConfig
from runners.distill.data import IGNORE_INDEX, Example, encode_items
from runners.distill.methods import Method, TeacherSignal, generate_teacher_outputs, sample_continuations
from runners.evaluate.decoding import truncate_at_stop, truncate_ids_at_stop
from runners.evaluate.prompts import STOP_STRINGS, response_text
from runners.toy import build_model, build_tokenizer, make_arithmetic_task

CPU = torch.device("cpu")
#: A sample that answers, then writes a new turn of its own.
RUN_ON = "The answer is 5.\n\n### Instruction: What is 2 + 9?\n\n### Response: The answer is 11."
STOP = STOP_STRINGS["published"]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer()


@pytest.fixture(scope="module")
def examples(tokenizer: Any) -> list[Example]:
    items = make_arithmetic_task(3, seed=2, difficulty=1)
    return encode_items(tokenizer, items, max_length=200, train_on_inputs=False, prompt_style="published")


def _scripted_lm(script: list[int], prompt_width: int, eos_id: int) -> Any:
    """A real toy qwen2 LM (cache, masks, ``generate``'s stopping are transformers' own) whose
    k-th generated token is ``script[k]`` with probability 1, then EOS."""
    model = build_model("qwen2", "tiny", seed=1)
    forward = model.forward

    def scripted(*args: Any, **kwargs: Any) -> Any:
        out = forward(*args, **kwargs)
        step = kwargs["attention_mask"].shape[1] - prompt_width
        target = script[step] if step < len(script) else eos_id
        logits = torch.full_like(out.logits, -1e4)
        logits[:, -1, target] = 1e4
        out.logits = logits
        return out

    model.forward = scripted
    return model


def _sample(model: Any, examples: list[Example], tokenizer: Any, stop: tuple[str, ...]) -> list[Example]:
    return sample_continuations(
        model,
        examples,
        GenerationConfig(max_new_tokens=80),
        tokenizer=tokenizer,
        stop=stop,
        pad_id=tokenizer.pad_token_id,
        eos_id=tokenizer.eos_token_id,
        max_length=400,
        train_on_inputs=False,
        device=CPU,
        autocast=contextlib.nullcontext,
    )


def test_a_sample_that_runs_into_a_new_turn_is_cut_where_evaluation_cuts(
    tokenizer: Any, examples: list[Example]
) -> None:
    eos = tokenizer.eos_token_id
    script = tokenizer(RUN_ON, add_special_tokens=False)["input_ids"]
    width = max(ex.prompt_len for ex in examples)
    model = _scripted_lm(script, width, eos)
    free = _sample(model, examples, tokenizer, stop=())
    stopped = _sample(model, examples, tokenizer, stop=STOP)
    expected_text = response_text(RUN_ON)
    assert expected_text == "The answer is 5.\n\n### Instruction: What is 2 + 9?\n\n"
    for old, ran_on, new in zip(examples, free, stopped, strict=True):
        assert tokenizer.decode(ran_on.input_ids[old.prompt_len :], skip_special_tokens=True) == RUN_ON
        cont = new.input_ids[new.prompt_len :]
        assert new.input_ids[: new.prompt_len] == old.prompt_ids
        assert cont[-1] == eos and eos not in cont[:-1]  # ends with EOS, like a sample the model ended
        assert tokenizer.decode(cont, skip_special_tokens=True) == expected_text
        assert new.labels == (IGNORE_INDEX,) * old.prompt_len + cont


class _RecordingTeacher(torch.nn.Module):
    """A teacher that records the sequences it is given (flat logits)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.seen: list[torch.Tensor] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        self.seen.append(input_ids)
        return types.SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab))


def test_the_published_gkd_batch_is_the_prompt_and_the_evaluations_response(
    tokenizer: Any, examples: list[Example], tmp_path: Any
) -> None:
    """``Method.loss`` on-policy under the published preset (``gkd_retokenize``): the sequences
    the teacher and the student see are the prompt plus the evaluation's response text; the
    run-on turn never reaches the loss."""
    eos = tokenizer.eos_token_id
    script = tokenizer(RUN_ON, add_special_tokens=False)["input_ids"]
    student = _scripted_lm(script, max(ex.prompt_len for ex in examples), eos)
    (tmp_path / "train.json").write_text("[]")
    config = DistillConfig(
        student="org/student",
        teacher="org/teacher",
        method="gkd",
        preset="published",
        prompt_style="published",
        data={"train": str(tmp_path / "train.json"), "val_size": 0},
        generation={"max_new_tokens": 80},
        max_length=400,
    )
    teacher = _RecordingTeacher(len(tokenizer))
    signal = TeacherSignal(model=teacher, autocast=contextlib.nullcontext)
    method = Method(config, signal, tokenizer.pad_token_id, eos, tokenizer=tokenizer)
    with torch.no_grad():
        out = method.loss(
            student,
            examples,
            device=CPU,
            autocast=contextlib.nullcontext,
            on_policy=True,
            generator_model=student,
        )
    assert out.on_policy
    (seen,) = teacher.seen
    for old, row in zip(examples, seen.tolist(), strict=True):
        prompt = tokenizer.decode(old.prompt_ids, skip_special_tokens=True)
        assert tokenizer.decode(row, skip_special_tokens=True) == prompt + response_text(RUN_ON)


def test_teacher_outputs_stop_at_the_stop_strings(
    tokenizer: Any, examples: list[Example], tmp_path: Any
) -> None:
    script = tokenizer(RUN_ON, add_special_tokens=False)["input_ids"]
    model = _scripted_lm(script, max(ex.prompt_len for ex in examples), tokenizer.eos_token_id)
    outputs = generate_teacher_outputs(
        model,
        tokenizer,
        examples,
        GenerationConfig(max_new_tokens=80, batch_size=3),
        tmp_path / "out.jsonl",
        stop=STOP,
        seed=0,
        device=CPU,
        autocast=contextlib.nullcontext,
    )
    assert outputs == [response_text(RUN_ON)] * len(examples)


def test_gkd_needs_the_tokenizer(make_config: Any) -> None:
    signal = TeacherSignal(model=build_model("qwen2", "tiny", seed=1), autocast=contextlib.nullcontext)
    with pytest.raises(ValueError, match="tokenizer"):
        Method(make_config("gkd"), signal, 0, 2)


@pytest.mark.parametrize(
    ("text", "stop"),
    [
        (RUN_ON, STOP),
        ("abc\n### Response: x", STOP),
        ("x ### Response: y", STOP),  # the stop string starts inside the token " ###"
        ("a\n\n                ### Response:\n", STOP),  # the published indent before it
        ("no stop here", STOP),
        ("2 + 2 = 4 ### Instruction: 5", ("### Instruction",)),
    ],
)
def test_truncate_ids_at_stop_keeps_exactly_the_text_before_the_stop(
    tokenizer: Any, text: str, stop: tuple[str, ...]
) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    cut = truncate_ids_at_stop(ids, stop, tokenizer)
    expected = truncate_at_stop(text, stop)
    if expected == text:
        assert cut is None
    else:
        assert tokenizer.decode(cut) == expected
        kept = next(k for k in range(len(cut), -1, -1) if cut[:k] == ids[:k])
        assert tokenizer.decode(cut[kept:]) in (
            "",
            " ",
        )  # the sampled tokens are kept, at most a space is not


def test_truncate_ids_at_stop_falls_back_to_the_cut_text_when_decoding_is_not_prefix_stable() -> None:
    class Unstable:
        """Decodes a lone prefix with a leading marker (like a sentencepiece space) it drops in context."""

        def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
            text = "".join(chr(i) for i in ids)
            return text if len(ids) == 0 or len(ids) > 3 else "~" + text

        def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
            return {"input_ids": [ord(c) for c in text.lstrip("~")]}

    ids = [ord(c) for c in "ab#S"]
    assert truncate_ids_at_stop(ids, ("#S",), Unstable()) == [ord("a"), ord("b")]


#: What a real checkpoint's generation_config.json may carry; none of it may reach the samples.
CHECKPOINT_SETTINGS = {"repetition_penalty": 5.0, "top_k": 1, "no_repeat_ngram_size": 1, "max_length": 12}


@pytest.mark.parametrize("do_sample", [True, False], ids=["sample", "greedy"])
def test_a_checkpoints_generation_config_does_not_change_the_samples(
    tokenizer: Any, examples: list[Example], do_sample: bool
) -> None:
    gen = GenerationConfig(max_new_tokens=16, do_sample=do_sample)
    plain = build_model("qwen2", "tiny", seed=1)
    custom = build_model("qwen2", "tiny", seed=1)
    for key, value in CHECKPOINT_SETTINGS.items():
        setattr(custom.generation_config, key, value)
    kwargs = {
        "tokenizer": tokenizer,
        "stop": STOP,
        "pad_id": tokenizer.pad_token_id,
        "eos_id": tokenizer.eos_token_id,
        "max_length": 400,
        "train_on_inputs": False,
        "device": CPU,
        "autocast": contextlib.nullcontext,
    }
    samples = []
    for model in (plain, custom):
        torch.manual_seed(4)
        samples.append(sample_continuations(model, examples, gen, **kwargs))
    assert samples[0] == samples[1]
    assert all(len(ex.input_ids) - ex.prompt_len == 16 for ex in samples[0])  # not max_length's 12 - prompt
