"""Vocabulary checks and logit alignment with toy tokenizers (Qwen2.5-style padded vocabularies)."""

from __future__ import annotations

import json

import pytest

from kdanalysis.errors import ConfigError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from runners.distill.losses import TopKTeacher, forward_kl  # noqa: E402
from runners.distill.vocab import align_logits, check_same_tokenizer, tokenizer_differences  # noqa: E402
from runners.toy import build_tokenizer, save_toy_model  # noqa: E402


def _named(tok, name: str):
    tok.name_or_path = name
    return tok


def test_same_toy_tokenizer_is_accepted_and_returns_its_size(tmp_path) -> None:
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(save_toy_model(tmp_path / "t", "qwen2", "tiny"))
    assert tokenizer_differences(build_tokenizer(), saved) == []
    left = build_tokenizer(padding_side="left")
    assert check_same_tokenizer(build_tokenizer(), left) == len(build_tokenizer())


def test_added_token_is_refused_naming_both() -> None:
    student = _named(build_tokenizer(), "toy-student")
    student.add_tokens(["<extra_token>"])
    with pytest.raises(ConfigError, match="toy-teacher.*toy-student.*only in the student.*<extra_token>"):
        check_same_tokenizer(_named(build_tokenizer(), "toy-teacher"), student)


def test_same_size_but_permuted_ids_is_refused() -> None:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    teacher = build_tokenizer()
    spec = json.loads(teacher.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    first, second = "a", "b"
    vocab[first], vocab[second] = vocab[second], vocab[first]
    student = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    assert len(student) == len(teacher)
    with pytest.raises(ConfigError, match="2 tokens with different ids"):
        check_same_tokenizer(teacher, student)


def test_different_special_tokens_or_pre_tokenizer_are_refused() -> None:
    from tokenizers import pre_tokenizers

    student = build_tokenizer()
    student.eos_token = "<s>"
    assert any("eos_token" in d for d in tokenizer_differences(build_tokenizer(), student))
    other = build_tokenizer()
    other.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    assert tokenizer_differences(build_tokenizer(), other) == ["different pre-tokenizer"]
    padded = build_tokenizer()
    padded.pad_token = "</s>"
    assert tokenizer_differences(build_tokenizer(), padded) == []


def test_align_slices_padded_rows_like_qwen25() -> None:
    student = torch.randn(2, 3, 151_936)
    teacher = torch.randn(2, 3, 152_064)
    s, t = align_logits(student, teacher)
    assert s.shape == t.shape == (2, 3, 151_936)
    assert s.data_ptr() == student.data_ptr() and t.data_ptr() == teacher.data_ptr()  # views
    s, t = align_logits(student, teacher, 151_665)
    assert s.shape[-1] == t.shape[-1] == 151_665
    assert torch.equal(t, teacher[..., :151_665])
    with pytest.raises(ConfigError, match="152000"):
        align_logits(student, teacher, 152_000)


def test_aligned_padded_teacher_gives_the_loss_of_the_shared_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    shared = torch.randn(2, 4, 40, generator=gen)
    student = torch.cat([torch.randn(2, 4, 40, generator=gen), torch.full((2, 4, 8), -1e4)], -1)
    teacher = torch.cat([shared, torch.randn(2, 4, 24, generator=gen)], -1)
    s, t = align_logits(student, teacher, 40)
    assert torch.allclose(forward_kl(s, t), forward_kl(student[..., :40], shared))


def test_align_with_top_k_teacher_checks_token_ids() -> None:
    student = torch.randn(1, 2, 50)
    ok = TopKTeacher.from_logits(torch.randn(1, 2, 50), k=4)
    s, t = align_logits(student, ok)
    assert s.shape == student.shape and t is ok
    bad = TopKTeacher(torch.zeros(1, 2, 1), torch.full((1, 2, 1), 60))
    with pytest.raises(ConfigError, match="token id 60"):
        align_logits(student, bad)
