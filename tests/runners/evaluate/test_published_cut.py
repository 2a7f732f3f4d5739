"""The released scripts' cut at a second ``### Response:``: scoring, rescoring and generation stops.

The released evaluation keeps ``(prompt + generation).split("### Response:")[1].strip()``
(``generative/evaluate.py`` line 87, ``commonsense_evaluate.py`` line 86 of
LCS2-IIITD/KD_generalization) and extracts from that: the text after the prompt's own header
up to the next one. For the generation below it keeps "The answer is 5.\\n\\n### Instruction:
What is 2 + 9?", whose last number is 9.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kdanalysis.errors import ConfigError
from kdanalysis.results import read_items, read_results, write_items
from runners.evaluate.backend import Backend, GenerationRequest, GenerationResult
from runners.evaluate.config import EvalConfig, load_eval_config
from runners.evaluate.decoding import DecodingConfig
from runners.evaluate.extract import extract_answer
from runners.evaluate.prompts import PROMPT_STYLES, STOP_STRINGS, response_text
from runners.evaluate.rescore import rescore_run
from runners.evaluate.run import run_eval
from runners.evaluate.scoring import RunMeta, score_outputs, write_run_meta
from runners.evaluate.tasks import TaskItem, bundled_tasks, load_items, task_file

GENERATION = "The answer is 5.\n\n### Instruction: What is 2 + 9?\n\n### Response: The answer is 11."
META = RunMeta(run_id="cut-1", student="Qwen2.5-0.5B", method="sft")


def test_response_text_keeps_what_the_released_split_keeps() -> None:
    assert response_text(GENERATION) == "The answer is 5.\n\n### Instruction: What is 2 + 9?\n\n"
    assert response_text("no second header") == "no second header"
    assert response_text("### Response: 7") == ""


@pytest.mark.parametrize(("extractor", "pred"), [("published", "9"), ("strict", "5")])
def test_second_response_is_not_scored(extractor: str, pred: str) -> None:
    assert extract_answer(GENERATION, bundled_tasks()["gsm8k"], extractor) == pred


def test_published_scoring_of_the_example_scores_9_not_11() -> None:
    spec = bundled_tasks()["gsm8k"]
    items = [TaskItem("0", "What is 1 + 4?", "", "9"), TaskItem("1", "What is 1 + 4?", "", "11")]
    items_df, results = score_outputs(spec, items, [GENERATION, GENERATION], run_meta=META)
    assert items_df["pred"].tolist() == ["9", "9"]
    assert items_df["correct"].tolist() == [True, False]
    assert items_df["output"].tolist() == [GENERATION, GENERATION]  # the raw generation is kept
    assert results["value"].tolist() == [50.0]


def test_no_shipped_item_has_a_response_header_so_cutting_the_generation_equals_the_released_split(
    shared_data: Path,
) -> None:
    # the released split runs over prompt + generation; it equals the cut of the generation alone
    # as long as the prompt holds exactly one header, i.e. no instruction contains one
    tasks = bundled_tasks()
    testsets = shared_data / "testsets"
    checked = 0
    for task in tasks.ids(tag="kd_generalization"):
        try:
            task_file(tasks[task], testsets)
        except ConfigError:
            continue
        items = load_items(tasks[task], testsets)
        assert not [it.item_id for it in items if "### Response:" in it.instruction + it.input], task
        checked += len(items)
    assert checked == 16_453


def test_labels_after_a_second_response_do_not_count() -> None:
    text = "I am not sure.\n### Response: the correct answer is true"
    assert extract_answer(text, bundled_tasks()["boolq"]) == ""


def test_rescore_applies_the_cut_to_saved_outputs(tmp_path: Path) -> None:
    # a run scored before the cut existed: the whole generation was read, 11 counted as right
    spec = bundled_tasks()["gsm8k"]
    items_df, _ = score_outputs(spec, [TaskItem("0", "What is 2 + 9?", "", "11")], ["11"], run_meta=META)
    items_df["output"] = [GENERATION]
    write_items(items_df, tmp_path / "items.parquet")
    write_run_meta(tmp_path, META)
    _, results = rescore_run(tmp_path, "published")
    saved = read_items(tmp_path / "items.parquet")
    assert saved["pred"].tolist() == ["9"] and saved["correct"].tolist() == [False]
    assert results["value"].tolist() == [0.0]
    assert read_results(tmp_path / "results.parquet")["value"].tolist() == [0.0]


@pytest.mark.parametrize("style", PROMPT_STYLES)
def test_every_prompt_style_stops_generation_at_a_second_response(style: str) -> None:
    config = EvalConfig(model="m", tasks=["gsm8k"], prompt_style=style, decoding="published")
    assert config.decoding.stop == STOP_STRINGS[style] == ("### Response:",)


def test_user_stop_strings_are_kept_and_the_config_round_trips(tmp_path: Path) -> None:
    config = EvalConfig(model="m", tasks=["gsm8k"], decoding={"stop": ["\n\n\n"]})
    assert config.decoding.stop == ("\n\n\n", "### Response:")
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config.resolved()))
    again = load_eval_config(path)
    assert again.decoding.stop == config.decoding.stop and again.fingerprint() == config.fingerprint()


class _Records(Backend):
    name = "fake"

    def __init__(self) -> None:
        self.decodings: list[DecodingConfig] = []

    def generate(
        self, requests: Sequence[GenerationRequest], *, progress: Any = None
    ) -> list[GenerationResult]:
        self.decodings += [r.decoding for r in requests]
        return [GenerationResult(texts=(GENERATION,), n_tokens=(20,)) for _ in requests]

    def loglikelihood(self, requests: Any, *, progress: Any = None) -> Any:
        raise NotImplementedError


def test_backends_receive_the_stop_string_and_the_run_scores_the_cut(tmp_path: Path) -> None:
    test_file = tmp_path / "arithmetic.json"
    test_file.write_text(json.dumps([{"instruction": "What is 1 + 4?", "answer": 9}]))
    custom = {"id": "arithmetic", "file": str(test_file), "domain": "toy", "answer_type": "number"}
    config = EvalConfig(model="unused", tasks=["arithmetic"], custom_tasks=[custom], run_id="cut")
    backend = _Records()
    run_dir = run_eval(config, tmp_path / "run", backend=backend)
    assert [d.stop for d in backend.decodings] == [("### Response:",)]
    items = pd.read_parquet(run_dir / "items.parquet")
    assert items["pred"].tolist() == ["9"] and items["correct"].tolist() == [True]
