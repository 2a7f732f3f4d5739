"""Re-scoring a saved run folder (API and ``kdanalysis rescore``) without any model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kdanalysis.errors import ConfigError, SchemaError
from kdanalysis.results import read_items, read_results, results_frame, write_items, write_results
from kdanalysis.runfolder import RunState, write_status
from runners.cli import main
from runners.evaluate.backend import Backend, GenerationRequest, GenerationResult
from runners.evaluate.config import EvalConfig
from runners.evaluate.rescore import rescore_run
from runners.evaluate.run import run_eval
from runners.evaluate.scoring import RunMeta, read_run_meta, score_outputs, write_run_meta
from runners.evaluate.tasks import TaskItem, bundled_tasks

META = RunMeta(run_id="cell-1", student="Qwen2.5-0.5B", method="sft", seed=6)
# Outputs where the published (last number) and strict ("The answer is") extractors differ.
OUTPUTS = {
    "gsm8k": [
        "The answer is 12. Check: 3 * 4 = 12.",  # same for both
        "The answer is 7. Then add 2 more apples, 9.",  # published 9, strict 7 (gold)
        "So 5 + 5 = 10",  # published 10 (gold), strict ""
    ],
    "boolq": [
        "the correct answer is true",
        "it is not false; the correct answer is true",  # published false, strict true (gold)
        "the correct answer is false",
    ],
}
GOLD = {"gsm8k": ["12", "7", "10"], "boolq": ["true", "true", "false"]}


def _make_run(run_dir: Path) -> None:
    tables = [
        score_outputs(
            bundled_tasks()[task],
            [TaskItem(str(i), f"q{i}", "", g) for i, g in enumerate(GOLD[task])],
            outs,
            run_meta=META,
        )
        for task, outs in OUTPUTS.items()
    ]
    write_items(pd.concat([t[0] for t in tables], ignore_index=True), run_dir / "items.parquet")
    other = results_frame(
        [
            {
                "study": "kdanalysis",
                "domain": "math",
                "task": "gsm8k",
                "student": "Qwen2.5-0.5B",
                "method": "sft",
                "seed": 6,
                "metric": "bleu",
                "value": 12.5,
                "run_id": "cell-1",
            }
        ]
    )
    write_results(pd.concat([t[1] for t in tables] + [other], ignore_index=True), run_dir / "results.parquet")
    write_run_meta(run_dir, META)


def _accuracy(df: pd.DataFrame) -> dict[str, float]:
    acc = df[df["metric"] == "accuracy"]
    return dict(zip(acc["task"], acc["value"].round(4), strict=True))


def test_rescore_in_place_keeps_backups_and_other_rows(tmp_path: Path) -> None:
    _make_run(tmp_path)
    before = read_results(tmp_path / "results.parquet")
    items_df, results_df = rescore_run(tmp_path, "strict")
    assert _accuracy(before) == {"gsm8k": round(200 / 3, 4), "boolq": round(200 / 3, 4)}
    assert _accuracy(results_df) == {"gsm8k": round(200 / 3, 4), "boolq": 100.0}
    assert items_df[items_df.task == "gsm8k"]["pred"].tolist() == ["12", "7", ""]
    assert items_df[items_df.task == "boolq"]["pred"].tolist() == ["true", "true", "false"]
    assert (results_df["metric"] == "bleu").sum() == 1  # rows of other metrics survive
    on_disk = read_results(tmp_path / "results.parquet")
    assert _accuracy(on_disk) == _accuracy(results_df)
    assert _accuracy(read_results(tmp_path / "results.prev.parquet")) == _accuracy(before)
    assert read_items(tmp_path / "items.prev.parquet")["pred"].tolist()[1] == "9"
    assert read_run_meta(tmp_path).extractor == "strict"
    # and back: re-scoring with the published extractor restores the first numbers
    _, again = rescore_run(tmp_path, "published")
    assert _accuracy(again) == _accuracy(before)


def test_rescore_to_explicit_out_leaves_the_run_alone(tmp_path: Path) -> None:
    _make_run(tmp_path)
    stamp = (tmp_path / "results.parquet").stat().st_mtime_ns
    rescore_run(tmp_path, "strict", out=tmp_path / "strict.csv")
    assert _accuracy(read_results(tmp_path / "strict.csv"))["boolq"] == 100.0
    assert (tmp_path / "results.parquet").stat().st_mtime_ns == stamp
    assert not (tmp_path / "results.prev.parquet").exists()


def test_rescore_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run folder not found"):
        rescore_run(tmp_path / "missing")
    with pytest.raises(ConfigError, match="run_meta.json: run metadata not found"):
        rescore_run(tmp_path)
    write_run_meta(tmp_path, META)
    with pytest.raises(SchemaError, match="items file not found"):
        rescore_run(tmp_path)
    with pytest.raises(ConfigError, match="unknown extractor"):
        rescore_run(tmp_path, "fuzzy")


def test_rescore_refuses_a_run_that_is_not_done(tmp_path: Path) -> None:
    _make_run(tmp_path)
    write_status(tmp_path, {"state": RunState.FAILED})
    with pytest.raises(ConfigError, match="the run is failed, not done"):
        rescore_run(tmp_path, "strict")
    assert not (tmp_path / "results.prev.parquet").exists()
    write_status(tmp_path, {"state": RunState.DONE})
    _, results_df = rescore_run(tmp_path, "strict")
    assert _accuracy(results_df)["boolq"] == 100.0


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["kdanalysis", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_rescore_prints_one_line_and_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _make_run(tmp_path)
    assert (
        _cli(monkeypatch, "rescore", str(tmp_path), "--extractor", "strict", "--out", str(tmp_path / "s.csv"))
        == 0
    )
    out = capsys.readouterr().out
    assert "boolq 100.00% (n=3)" in out and "s.csv" in out
    assert _cli(monkeypatch, "rescore", str(tmp_path), "--extractor", "fuzzy") == 2
    err = capsys.readouterr().err
    assert "unknown extractor 'fuzzy'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


class _Says(Backend):
    """A backend that answers every request with one fixed text (no model)."""

    name = "says"

    def __init__(self, text: str) -> None:
        self.text = text

    def generate(
        self, requests: Sequence[GenerationRequest], *, progress: Any = None
    ) -> list[GenerationResult]:
        return [GenerationResult(texts=(self.text,), n_tokens=(3,)) for _ in requests]

    def loglikelihood(self, requests: Any, *, progress: Any = None) -> Any:
        raise NotImplementedError


def test_rescore_finds_a_runs_custom_task_in_a_fresh_process(tmp_path: Path) -> None:
    # A grid's eval cell: the synthetic task "arithmetic" (domain "toy") is a custom task of the
    # run's config. Re-scoring in another process must find it through the run folder alone.
    test_file = tmp_path / "arithmetic.json"
    test_file.write_text(
        json.dumps([{"instruction": "2+3?", "answer": 5}, {"instruction": "1+4?", "answer": 5}])
    )
    custom = {"id": "arithmetic", "file": str(test_file), "domain": "toy", "answer_type": "number"}
    config = EvalConfig(model="unused", tasks=["arithmetic"], custom_tasks=[custom], run_id="demo-cell")
    run_dir = run_eval(config, tmp_path / "run", backend=_Says("The answer is 5. Check: 2 + 3 = 7"))
    assert _accuracy(read_results(run_dir / "results.parquet")) == {
        "arithmetic": 0.0
    }  # published: last number
    code = "import sys; from runners.evaluate.rescore import rescore_run; rescore_run(sys.argv[1], 'strict')"
    done = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rescored = read_results(run_dir / "results.parquet")
    assert _accuracy(rescored) == {"arithmetic": 100.0}
    assert rescored["domain"].tolist() == ["toy"]  # the run's spec, not the task table's "arithmetic"
    assert read_items(run_dir / "items.parquet")["pred"].tolist() == ["5", "5"]
