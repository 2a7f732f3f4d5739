"""A small byte-level BPE tokenizer built offline and deterministically.

The tokenizer mirrors the structure of the Qwen2/Llama-3 tokenizers at toy scale:

- the pipeline of Qwen2's tokenizer, component for component: NFC normalisation, Qwen2's
  split regex (digits one by one, which suits arithmetic), **byte-level** encoding and
  decoding — so every (NFC) string round-trips exactly (``decode(encode(text)) == text``)
  and no character is ever unknown (the ``<unk>`` token exists for API completeness only).
  Being identical to Qwen2's pipeline matters: transformers re-creates a ``qwen2`` model
  folder's tokenizer with ``Qwen2Tokenizer``, which rebuilds that pipeline around the saved
  vocabulary and merges, so a saved toy tokenizer loads back unchanged for both families;
- BPE merges are learned with the ``tokenizers`` trainer from a fixed built-in corpus: the
  Alpaca prompts of :mod:`runners.evaluate.prompts` (all styles), the commonsense
  instruction templates and label vocabularies (``true/false``, ``solution1..2``,
  ``answer1..5``, ``ending1..4``, ``option1..2``) and the synthetic tasks of
  :mod:`runners.toy.tasks`. The same code always yields the same vocabulary (the trainer is
  deterministic for a fixed corpus); shipped test-set text outside this corpus is encoded
  with shorter pieces, down to single bytes;
- special tokens ``<pad>`` (id 0), ``<s>`` (bos, id 1), ``</s>`` (eos, id 2), ``<unk>`` (id 3);
  encoding adds **no** special tokens (append ``tokenizer.eos_token`` yourself), and there is
  no chat template.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal, cast

from kdanalysis.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "PAD_TOKEN",
    "BOS_TOKEN",
    "EOS_TOKEN",
    "UNK_TOKEN",
    "TOY_VOCAB_SIZE",
    "MODEL_MAX_LENGTH",
    "build_tokenizer",
]

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
#: Target size of the BPE vocabulary (special tokens + 256 bytes + merges).
TOY_VOCAB_SIZE = 1024
#: Longest sequence the toy models are configured for (``max_position_embeddings``).
MODEL_MAX_LENGTH = 1024

_LABEL_WORDS = (
    "true",
    "false",
    "solution1",
    "solution2",
    "answer1",
    "answer2",
    "answer3",
    "answer4",
    "answer5",
    "ending1",
    "ending2",
    "ending3",
    "ending4",
    "option1",
    "option2",
)
_COMMONSENSE_TEMPLATES = (
    "Please answer the following question with true or false, question: is it true?\n\n"
    "Answer format: true/false",
    "Please choose the correct solution to the question: how?\n\nSolution1: a\n\nSolution2: b\n\n"
    "Answer format: solution1/solution2",
    "Please choose the correct answer to the question: what?\n\nAnswer1: a Answer2: b Answer3: c "
    "Answer4: d Answer5: e\n\nAnswer format: answer1/answer2/answer3/answer4/answer5",
    "Please choose the correct ending to complete the given sentence: x\n\nEnding1: a Ending2: b "
    "Ending3: c Ending4: d\n\nAnswer format: ending1/ending2/ending3/ending4",
    "Please choose the correct answer to fill in the blank to complete the given sentence: _\n\n"
    "Option1: a Option2: b Answer format: option1/option2",
)
#: Frequent English words (so that shipped test-set text gets word-sized pieces too).
_COMMON_WORDS = """
the of and to in is was for on that with as by at from his her he she it they we you this be are
were has have had not but or an which one all their there been would will if can who more when what
so about up out into than them then its only other some time could these two may first also new
because any how most people after many where over such make did just like made each way down years
good very little long much before well should through back used water same take work our does
man day need go get because know number house school world three money help how many much every
each total left more less some buy buys bought sold sell give gave gives take took eat ate spend
spent cost costs dollars cents price pay paid store week weeks month months year hour hours minute
minutes day days per each half twice times equal equals sum difference product remaining together
friend friends mother father brother sister family children child boy girl student students teacher
class book books car cars apple apples candy cake pizza box boxes bag bags basket baskets tree trees
garden farm animal animals dog dogs cat cats bird birds fish water food milk bread egg eggs ticket
tickets game games room table chair door window city town road miles feet inches meters kilograms
question answer correct choose following solution sentence blank complete fill option ending best
explain which why what where when who whose whom would could should might must shall can cannot
""".split()
_CORPUS_ITEMS = 400
#: Qwen2's pre-tokenisation regex (transformers ``tokenization_qwen2.PRETOKENIZE_REGEX``).
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


def _corpus() -> list[str]:
    """The fixed training corpus of the BPE merges (see the module docstring)."""
    from runners.evaluate.prompts import PROMPT_STYLES, PromptStyle, format_prompt
    from runners.toy.tasks import make_arithmetic_task, make_choice_task

    texts = list(_COMMONSENSE_TEMPLATES) + [" ".join(_COMMON_WORDS)] * 4
    texts += [f"the correct answer is {label}" for label in _LABEL_WORDS]
    items = make_arithmetic_task(_CORPUS_ITEMS, seed=0, difficulty=3) + make_choice_task(_CORPUS_ITEMS // 4)
    for index, item in enumerate(items):
        style = cast(PromptStyle, PROMPT_STYLES[index % len(PROMPT_STYLES)])
        texts.append(format_prompt(item["instruction"], item["input"], style=style) + item["output"])
    return texts


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    """Train the BPE model once per process and return its serialised form."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix=""))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOY_VOCAB_SIZE,
        special_tokens=[PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer.model.continuing_subword_prefix = ""  # the trainer resets these to None (same meaning)
    tokenizer.model.end_of_word_suffix = ""
    return tokenizer.to_str()


def build_tokenizer(padding_side: Literal["right", "left"] = "right") -> PreTrainedTokenizerFast:
    """Build the toy tokenizer (offline, deterministic; see the module docstring).

    Parameters
    ----------
    padding_side : {"right", "left"}
        Side on which batches are padded (``"left"`` for batched generation).

    Returns
    -------
    transformers.PreTrainedTokenizerFast
        A fresh tokenizer object (safe to modify) with ``pad_token="<pad>"``,
        ``bos_token="<s>"``, ``eos_token="</s>"``, ``unk_token="<unk>"`` and
        ``model_max_length`` = :data:`MODEL_MAX_LENGTH`.

    Raises
    ------
    ConfigError
        If ``padding_side`` is not ``"right"`` or ``"left"``.
    """
    if padding_side not in ("right", "left"):
        raise ConfigError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side=padding_side,
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )
