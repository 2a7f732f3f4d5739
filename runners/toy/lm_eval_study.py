"""A toy KD study evaluated by lm-evaluation-harness, offline on CPU, for tests and demos.

:func:`write_toy_lm_eval_study` saves four toy models (two students, each by SFT and by
KD: random-init models standing for them) as Hugging Face folders, writes three lm-eval
tasks as local YAML files over local JSON data (``dataset_path: json`` with
``dataset_kwargs.data_files``: no hub), runs lm-evaluation-harness on every model with
``log_samples`` and writes the study mapping file ``study.yaml`` that
``kdanalysis collect --from lm-eval`` reads.

lm-eval runs in this process (:func:`run_lm_eval`): ``lm_eval.simple_evaluate`` with an
``EvaluationTracker``, saved exactly as its command line does (``lm_eval --model hf
--model_args pretrained=MODEL --tasks ... --include_path TASKS --log_samples --output_path
OUT``; the task index holds only the local tasks), so the files are lm-eval's own. Needs
``lm_eval`` (the ``dev`` extra), torch and transformers; set ``HF_DATASETS_OFFLINE=1`` and
``HF_HUB_OFFLINE=1`` to be sure nothing is fetched.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from runners.toy.model import save_toy_model
from runners.toy.tasks import make_arithmetic_task, make_choice_task

__all__ = [
    "TOY_LM_EVAL_RUNS",
    "TOY_LM_EVAL_TASKS",
    "run_lm_eval",
    "write_lm_eval_tasks",
    "write_toy_lm_eval_study",
]

#: The three toy tasks: two multiple-choice (acc, acc_norm) and one generative (exact_match, two filters).
TOY_LM_EVAL_TASKS: tuple[str, ...] = ("toy_choice4", "toy_choice2", "toy_arith")

#: Runs of the toy study (two students, each by SFT and by forward-KL KD from one teacher):
#: model size and seed, and the study cell written to ``study.yaml``.
TOY_LM_EVAL_RUNS: dict[str, dict[str, Any]] = {
    "tiny-sft": {"size": "tiny", "seed": 11, "cell": {"student": "toy-tiny", "method": "sft"}},
    "tiny-fkl": {
        "size": "tiny",
        "seed": 12,
        "cell": {"student": "toy-tiny", "teacher": "toy-teacher", "method": "fkl", "temperature": 1.0},
    },
    "small-sft": {"size": "small", "seed": 13, "cell": {"student": "toy-small", "method": "sft"}},
    "small-fkl": {
        "size": "small",
        "seed": 14,
        "cell": {"student": "toy-small", "teacher": "toy-teacher", "method": "fkl", "temperature": 1.0},
    },
}

_CHOICE_PREFIX = "Please choose the correct answer to the question: "
_CHOICE_METRICS = [
    {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
    {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
]


def _choice_docs(n: int, seed: int, n_choices: int) -> list[dict[str, Any]]:
    """The toy choice task's questions; the choices are the numbers (so they differ per item)."""
    return [
        {
            "question": item["instruction"].split("\n\n")[0].removeprefix(_CHOICE_PREFIX),
            "choices": re.findall(r"Answer\d+: (\d+)", item["instruction"]),
            "label": int(item["answer"].removeprefix("answer")) - 1,
        }
        for item in make_choice_task(n, seed=seed, n_choices=n_choices)
    ]


def _arith_docs(n: int, seed: int) -> list[dict[str, Any]]:
    return [
        {"question": item["instruction"], "answer": str(int(float(item["answer"])))}
        for item in make_arithmetic_task(n, seed=seed)
    ]


def _task_config(name: str, data: Path) -> dict[str, Any]:
    base: dict[str, Any] = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "doc_to_text": "{{question}}\nAnswer:",
    }
    if name == "toy_arith":
        return {
            **base,
            "output_type": "generate_until",
            "doc_to_target": "{{answer}}",
            "generation_kwargs": {"until": ["\n"], "max_gen_toks": 6, "do_sample": False},
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
            "filter_list": [
                {
                    "name": "strict-match",
                    "filter": [
                        {"function": "regex", "regex_pattern": r"^\s*(\d+)"},
                        {"function": "take_first"},
                    ],
                },
                {
                    "name": "flexible-extract",
                    "filter": [
                        {"function": "regex", "group_select": -1, "regex_pattern": r"(-?[0-9]+)"},
                        {"function": "take_first"},
                    ],
                },
            ],
        }
    return {
        **base,
        "output_type": "multiple_choice",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "label",
        "metric_list": _CHOICE_METRICS,
    }


def write_lm_eval_tasks(folder: str | os.PathLike[str], n_items: int = 6, seed: int = 0) -> Path:
    """Write the :data:`TOY_LM_EVAL_TASKS` as lm-eval task YAML files over local JSON-lines data.

    Parameters
    ----------
    folder : path
        Destination (created); pass it to lm-eval as ``--include_path``.
    n_items : int
        Items per task.
    seed : int
        Seed of the generated questions.

    Returns
    -------
    Path
        ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    docs = {
        "toy_choice4": _choice_docs(n_items, seed, 4),
        "toy_choice2": _choice_docs(n_items, seed + 1, 2),
        "toy_arith": _arith_docs(n_items, seed + 2),
    }
    for name in TOY_LM_EVAL_TASKS:
        data = folder / f"{name}.jsonl"
        data.write_text("".join(json.dumps(doc) + "\n" for doc in docs[name]), encoding="utf-8")
        (folder / f"{name}.yaml").write_text(
            yaml.safe_dump(_task_config(name, data.resolve())), encoding="utf-8"
        )
    return folder


def run_lm_eval(
    model_dir: str | os.PathLike[str],
    tasks_dir: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    tasks: Sequence[str] = TOY_LM_EVAL_TASKS,
    *,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Evaluate one HF model folder with lm-evaluation-harness and save its files as its CLI does.

    Returns
    -------
    dict
        lm-eval's results (without the samples); the files are under
        ``output_path/<sanitized model path>/``.
    """
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    tracker = EvaluationTracker(output_path=str(output_path))
    results = simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},dtype=float32",
        tasks=list(tasks),
        batch_size=batch_size,
        device="cpu",
        log_samples=True,
        evaluation_tracker=tracker,
        # only the local tasks: indexing lm-eval's thousands of built-in task files takes far longer
        task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),
    )
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"]:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    return results


def write_toy_lm_eval_study(
    folder: str | os.PathLike[str],
    *,
    runs: Sequence[str] = tuple(TOY_LM_EVAL_RUNS),
    tasks: Sequence[str] = TOY_LM_EVAL_TASKS,
    n_items: int = 6,
) -> Path:
    """Build the toy study under ``folder`` and evaluate it with lm-eval.

    ``folder`` receives ``models/<run>`` (HF folders), ``tasks/`` (YAML + data),
    ``lm_eval/`` (lm-eval's ``--output_path``: one sub-folder per model with
    ``results_*.json`` and ``samples_*.jsonl``) and ``lm_eval/study.yaml`` (the mapping of
    each model to its study cell, matched by model name).

    Returns
    -------
    Path
        The lm-eval output folder (``folder/lm_eval``).
    """
    folder = Path(folder)
    tasks_dir = write_lm_eval_tasks(folder / "tasks", n_items=n_items)
    out = folder / "lm_eval"
    study: dict[str, Any] = {"study": "toy_lm_eval", "domain": "toy", "runs": {}}
    for name in runs:
        spec = TOY_LM_EVAL_RUNS[name]
        model_dir = save_toy_model(folder / "models" / name, size=spec["size"], seed=spec["seed"]).resolve()
        run_lm_eval(model_dir, tasks_dir, out, tasks)
        study["runs"][name] = {"model": str(model_dir), "seed": 1, **spec["cell"]}
    (out / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    return out
