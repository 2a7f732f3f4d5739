"""Tiny offline models, tokenizer and synthetic tasks for tests and the CPU demo.

- :func:`build_tokenizer` — byte-level BPE tokenizer built offline (:mod:`runners.toy.tokenizer`);
- :func:`build_model`, :func:`save_toy_model`, :func:`toy_config` — random-init Qwen2/Llama
  causal LMs of sizes ``tiny``, ``small``, ``teacher`` (:mod:`runners.toy.model`);
- :func:`make_arithmetic_task`, :func:`make_choice_task`, :func:`write_task_json` — synthetic
  tasks in the published test-set JSON format (:mod:`runners.toy.tasks`).

torch and transformers are imported only when a tokenizer or model is built.
"""

from runners.toy.model import FAMILIES, SIZES, build_model, save_toy_model, toy_config
from runners.toy.tasks import ITEM_KEYS, make_arithmetic_task, make_choice_task, write_task_json
from runners.toy.tokenizer import build_tokenizer

__all__ = [
    "FAMILIES",
    "ITEM_KEYS",
    "SIZES",
    "build_model",
    "build_tokenizer",
    "make_arithmetic_task",
    "make_choice_task",
    "save_toy_model",
    "toy_config",
    "write_task_json",
]
