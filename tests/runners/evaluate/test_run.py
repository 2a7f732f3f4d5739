"""run_eval end to end on a saved toy model: a slice of a shipped test set + the toy arithmetic
task; run folder files, resume after a crash, errors, and the command line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from kdanalysis.errors import ConfigError, RunFailedError
from kdanalysis.results import ITEM_COLUMNS, RESULT_COLUMNS
from kdanalysis.runfolder import read_status
from runners.evaluate.__main__ import main
from runners.evaluate.backend import Backend, GenerationRequest, GenerationResult
from runners.evaluate.config import EvalConfig, load_eval_config
from runners.evaluate.hf_backend import HFBackend
from runners.evaluate.run import run_eval
from runners.evaluate.scoring import read_run_meta
from runners.toy import make_arithmetic_task, make_choice_task, save_toy_model, write_task_json


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("toy")
    save_toy_model(folder / "model", family="qwen2", size="tiny", seed=0)
    write_task_json(folder / "arithmetic.json", make_arithmetic_task(4, seed=5, difficulty=1))
    write_task_json(folder / "choice.json", make_choice_task(3, seed=5, n_choices=3))
    return folder


@pytest.fixture(scope="module")
def backend(toy_dir: Path) -> HFBackend:
    return HFBackend.from_pretrained(str(toy_dir / "model"), batch_size=4)


def _config(toy_dir: Path, testsets: Path, **extra: Any) -> EvalConfig:
    fields: dict[str, Any] = {
        "model": str(toy_dir / "model"),
        "tasks": ["svamp", "arithmetic"],
        "custom_tasks": [
            {
                "id": "arithmetic",
                "file": str(toy_dir / "arithmetic.json"),
                "domain": "math",
                "answer_type": "number",
            }
        ],
        "data_dir": str(testsets),
        "limit": 3,
        "decoding": {"max_new_tokens": 6},
        "meta": {"study": "toy", "student": "toy-tiny", "method": "sft", "seed": 6},
        **extra,
    }
    return EvalConfig(**fields)


class _Recording(Backend):
    """Delegates to a real backend, records prompts, and fails on request."""

    name = "recording"

    def __init__(self, inner: Backend, fail_on: str | None = None) -> None:
        self.inner, self.fail_on, self.prompts = inner, fail_on, []

    def generate(
        self, requests: Sequence[GenerationRequest], *, progress: Any = None
    ) -> list[GenerationResult]:
        if self.fail_on and any(r.request_id.startswith(self.fail_on + "/") for r in requests):
            raise RuntimeError("device lost (injected)")
        self.prompts.extend(r.prompt for r in requests)
        return self.inner.generate(requests, progress=progress)

    def loglikelihood(self, requests: Any, *, progress: Any = None) -> Any:
        return self.inner.loglikelihood(requests, progress=progress)


def test_run_writes_the_run_folder(toy_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    config = _config(toy_dir, shared_data / "testsets")
    run_dir = run_eval(config, tmp_path / "run")  # loads the model itself (HF backend, float32 on CPU)
    for name in (
        "config.yaml",
        "run_meta.json",
        "environment.json",
        "status.json",
        "throughput.json",
        "items.parquet",
        "results.parquet",
        "tasks/svamp/items.parquet",
        "tasks/arithmetic/results.parquet",
    ):
        assert (run_dir / name).is_file(), name

    items = pd.read_parquet(run_dir / "items.parquet")
    assert tuple(items.columns) == ITEM_COLUMNS
    assert items["task"].tolist() == ["svamp"] * 3 + ["arithmetic"] * 3
    assert items["run_id"].unique().tolist() == ["run"] and items["n_tokens"].between(1, 6).all()
    svamp = json.loads((shared_data / "testsets" / "SVAMP.json").read_text())[:3]
    assert [float(g) for g in items.loc[items.task == "svamp", "gold"]] == [float(x["answer"]) for x in svamp]

    results = pd.read_parquet(run_dir / "results.parquet")
    assert tuple(results.columns) == RESULT_COLUMNS
    assert results[
        ["task", "domain", "metric", "n", "student", "method", "seed", "study"]
    ].values.tolist() == [
        ["svamp", "math", "accuracy", 3, "toy-tiny", "sft", 6, "toy"],
        ["arithmetic", "math", "accuracy", 3, "toy-tiny", "sft", 6, "toy"],
    ]
    expected = items.groupby("task", sort=False)["correct"].mean().mul(100).tolist()
    assert results["value"].tolist() == pytest.approx(expected)

    status = read_status(run_dir)
    assert status["state"] == "done" and status["tasks_done"] == ["svamp", "arithmetic"]
    assert status["error"] is None and status["fingerprint"] == config.fingerprint()
    throughput = json.loads((run_dir / "throughput.json").read_text())
    assert throughput["items"] == 6 and throughput["items_per_s"] > 0 and throughput["tokens_per_s"] > 0
    assert throughput["generated_tokens"] == int(items["n_tokens"].sum())
    assert set(throughput["per_task"]) == {"svamp", "arithmetic"}
    assert read_run_meta(run_dir).student == "toy-tiny"
    assert load_eval_config(run_dir / "config.yaml").fingerprint() == config.fingerprint()
    assert "packages" in json.loads((run_dir / "environment.json").read_text())


def test_crash_keeps_finished_tasks_and_rerun_skips_them(
    toy_dir: Path, shared_data: Path, tmp_path: Path, backend: HFBackend
) -> None:
    config = _config(toy_dir, shared_data / "testsets")
    crashing = _Recording(backend, fail_on="arithmetic")
    with pytest.raises(RunFailedError, match=r"run .* failed during arithmetic: RuntimeError: device lost"):
        run_eval(config, tmp_path / "run", backend=crashing)
    status = read_status(tmp_path / "run")
    assert status["state"] == "failed" and status["tasks_done"] == ["svamp"]
    assert status["tasks_pending"] == ["arithmetic"] and "device lost" in status["error"]
    assert (tmp_path / "run" / "tasks" / "svamp" / "items.parquet").is_file()

    resumed = _Recording(backend)
    run_eval(config, tmp_path / "run", backend=resumed)
    assert len(resumed.prompts) == 3 and all("has" in p for p in resumed.prompts)  # arithmetic only
    throughput = json.loads((tmp_path / "run" / "throughput.json").read_text())
    assert throughput["tasks_skipped"] == ["svamp"] and throughput["tasks_run"] == ["arithmetic"]
    assert len(pd.read_parquet(tmp_path / "run" / "items.parquet")) == 6

    again = _Recording(backend)
    run_eval(config, tmp_path / "run", backend=again)
    assert again.prompts == [] and read_status(tmp_path / "run")["state"] == "done"


def test_changed_config_in_same_folder_is_refused(
    toy_dir: Path, shared_data: Path, tmp_path: Path, backend: HFBackend
) -> None:
    run_eval(
        _config(toy_dir, shared_data / "testsets", tasks=["arithmetic"]), tmp_path / "run", backend=backend
    )
    with pytest.raises(ConfigError, match=r"different configuration \(changed: limit\)"):
        run_eval(
            _config(toy_dir, shared_data / "testsets", tasks=["arithmetic"], limit=2),
            tmp_path / "run",
            backend=backend,
        )


def test_unknown_task_lists_known_ones_before_loading(toy_dir: Path, tmp_path: Path) -> None:
    config = EvalConfig(model=str(tmp_path / "no-model"), tasks=["gsm8k", "gsm9k"])
    with pytest.raises(ConfigError, match=r"unknown task 'gsm9k'; known tasks: .*gsm8k.*boolq"):
        run_eval(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_multiple_choice_mode_on_label_task(toy_dir: Path, tmp_path: Path, backend: HFBackend) -> None:
    config = EvalConfig(
        model=str(toy_dir / "model"),
        tasks=["choice"],
        mode="multiple_choice",
        custom_tasks=[
            {
                "id": "choice",
                "file": str(toy_dir / "choice.json"),
                "domain": "commonsense",
                "answer_type": "label",
                "labels": ["answer1", "answer2", "answer3"],
            }
        ],
    )
    items = pd.read_parquet(run_eval(config, tmp_path / "run", backend=backend) / "items.parquet")
    assert (
        set(items["output"]) <= {"answer1", "answer2", "answer3"} and (items["pred"] == items["output"]).all()
    )
    with pytest.raises(ConfigError, match="numeric answers"):
        run_eval(config.model_copy(update={"tasks": ["arithmetic"]}), tmp_path / "run2", backend=backend)


def test_command_line(toy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "eval.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": str(toy_dir / "model"),
                "tasks": ["arithmetic"],
                "custom_tasks": [
                    {
                        "id": "arithmetic",
                        "file": str(toy_dir / "arithmetic.json"),
                        "domain": "math",
                        "answer_type": "number",
                    }
                ],
                "decoding": {"max_new_tokens": 4},
            }
        )
    )
    assert main([str(path), "--out", str(tmp_path / "run"), "--limit", "2", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "run")
    assert len(pd.read_parquet(tmp_path / "run" / "items.parquet")) == 2

    path.write_text("model: m\ntasks: [gsm8k]\nbatch: 3\n")
    assert main([str(path), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "batch: unknown key" in err


def test_several_samples_per_item_are_scored_as_rows(
    toy_dir: Path, tmp_path: Path, backend: HFBackend
) -> None:
    config = EvalConfig(
        model=str(toy_dir / "model"),
        tasks=["arithmetic"],
        limit=2,
        custom_tasks=[
            {
                "id": "arithmetic",
                "file": str(toy_dir / "arithmetic.json"),
                "domain": "math",
                "answer_type": "number",
            }
        ],
        decoding={"preset": "published", "n": 3, "max_new_tokens": 3, "seed": 1},
    )
    run_dir = run_eval(config, tmp_path / "run", backend=backend)
    items = pd.read_parquet(run_dir / "items.parquet")
    assert items["item_id"].tolist() == ["0#0", "0#1", "0#2", "1#0", "1#1", "1#2"]
    assert items["prompt_hash"].nunique() == 2
    results = pd.read_parquet(run_dir / "results.parquet")
    assert results["n"].tolist() == [6]
    throughput = json.loads((run_dir / "throughput.json").read_text())
    assert throughput["items"] == 2 and throughput["samples"] == 6


class _Constant(Backend):
    """Answers every prompt with the same text (no model)."""

    name = "constant"

    def __init__(self, text: str) -> None:
        self.text, self.calls = text, 0

    def generate(
        self, requests: Sequence[GenerationRequest], *, progress: Any = None
    ) -> list[GenerationResult]:
        self.calls += 1
        return [GenerationResult(texts=(self.text,), n_tokens=(3,)) for _ in requests]

    def loglikelihood(self, requests: Any, *, progress: Any = None) -> Any:
        raise NotImplementedError


def test_completed_run_is_left_as_it_is_so_a_rescore_survives_a_rerun(
    toy_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    from runners.evaluate.rescore import rescore_run

    config = _config(toy_dir, shared_data / "testsets")
    first = _Constant("The answer is 5. Check: 2 + 3 = 7")  # published: last number 7; strict: 5
    run_dir = run_eval(config, tmp_path / "run", backend=first)
    assert set(pd.read_parquet(run_dir / "items.parquet")["pred"]) == {"7"}
    rescore_run(run_dir, "strict")
    second = _Constant("unused")
    assert run_eval(config, run_dir, backend=second) == run_dir
    assert second.calls == 0
    assert set(pd.read_parquet(run_dir / "items.parquet")["pred"]) == {"5"}
    assert read_run_meta(run_dir).extractor == "strict"
