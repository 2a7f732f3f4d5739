"""``kdanalysis collect --from lm-eval``: lm-evaluation-harness output into the results contract.

The fixture (tests/fixtures/lm_eval) holds files lm-eval 0.4.13 wrote; the last test runs
lm-eval itself (offline, CPU, toy models) and imports what it writes (skipped without
lm_eval, the ``dev`` extra).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kdanalysis import cli
from kdanalysis.errors import ConfigError, KDAnalysisError
from kdanalysis.importers import import_lm_eval, read_study_map
from kdanalysis.results import read_items, read_results

FIXTURE = Path(__file__).parent / "fixtures" / "lm_eval"


def _run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["kdanalysis", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return int(exit_info.value.code or 0)


def _samples(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _check_against_files(directory: Path, results: pd.DataFrame, items: pd.DataFrame) -> int:
    """Every score, stderr and n of lm-eval's results files and every sample of the primary
    metric appear in the imported tables; returns the number of samples checked."""
    checked = 0
    for path in sorted(directory.rglob("results_*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        run = results[results["source"] == path.relative_to(directory).as_posix()]
        (run_id,) = run["run_id"].unique()
        date_id = path.stem.removeprefix("results_")
        for task, scores in data["results"].items():
            primary = (
                "acc,none"
                if "acc,none" in scores
                else next(k for k in scores if k.startswith("exact_match,"))
            )
            keys = [k for k in scores if "," in k and "_stderr" not in k]
            assert len(run[run["task"] == task]) == len(keys)
            for key in keys:
                row = run[
                    (run["task"] == task)
                    & (run["metric"] == ("accuracy" if key == primary else f"accuracy@{key}"))
                ]
                assert len(row) == 1, (task, key)
                assert row["value"].iloc[0] == pytest.approx(100 * scores[key])
                assert row["stderr"].iloc[0] == pytest.approx(100 * scores[key.replace(",", "_stderr,")])
                assert row["n"].iloc[0] == data["n-samples"][task]["effective"]
            metric, filt = primary.split(",")
            samples = [
                s for s in _samples(path.with_name(f"samples_{task}_{date_id}.jsonl")) if s["filter"] == filt
            ]
            got = items[(items["run_id"] == run_id) & (items["task"] == task)].set_index("item_id")
            assert sorted(got.index) == sorted(str(s["doc_id"]) for s in samples)
            for sample in samples:
                item = got.loc[str(sample["doc_id"])]
                assert bool(item["correct"]) == (sample[metric] == 1.0)
                assert item["prompt_hash"] == sample["prompt_hash"]
                assert item["gold"] == sample["target"]
                if metric == "acc":
                    lls = [float(r[0]) for r in sample["filtered_resps"]]
                    assert item["pred"] == str(lls.index(max(lls)))
                else:
                    assert item["pred"] == sample["filtered_resps"][0]
                    assert item["output"] == sample["resps"][0][0]
                checked += 1
    return checked


@pytest.fixture
def lm_dir(tmp_path: Path) -> Path:
    target = tmp_path / "lm_eval"
    shutil.copytree(FIXTURE, target)
    return target


def _results_file(directory: Path, run: str) -> Path:
    return next(directory.glob(f"*{run}/results_*.json"))


def _samples_file(directory: Path, run: str, task: str) -> Path:
    return next(directory.glob(f"*{run}/samples_{task}_*.jsonl"))


def test_import_holds_every_score_and_sample_of_the_files(lm_dir: Path) -> None:
    results, items = import_lm_eval(lm_dir)
    assert _check_against_files(lm_dir, results, items) == 2 * 3 * 6
    assert set(results["metric"]) == {
        "accuracy",
        "accuracy@acc_norm,none",
        "accuracy@exact_match,flexible-extract",
    }


def test_map_fields_reach_the_results(lm_dir: Path) -> None:
    results, _ = import_lm_eval(lm_dir, lm_dir / "study.yaml")
    cells = results.drop_duplicates("run_id").set_index("run_id")
    assert cells.loc[
        "tiny-fkl", ["student", "teacher", "method", "teacher_kind", "temperature", "seed"]
    ].tolist() == [
        "toy-tiny",
        "toy-teacher",
        "fkl",
        "task_aware",
        1.0,
        1,
    ]
    assert cells.loc["tiny-sft", ["teacher", "method", "teacher_kind"]].tolist() == ["none", "sft", "none"]
    assert pd.isna(cells.loc["tiny-sft", "temperature"])
    assert set(results["study"]) == {"toy_lm_eval"} and set(results["domain"]) == {"toy"}


def test_map_chooses_the_primary_metric_task_id_and_domain(lm_dir: Path) -> None:
    study = yaml.safe_load((lm_dir / "study.yaml").read_text())
    study["tasks"] = {
        "toy_arith": {"task": "arith", "domain": "math", "metric": "exact_match,flexible-extract"}
    }
    (lm_dir / "study.yaml").write_text(yaml.safe_dump(study))
    results, items = import_lm_eval(lm_dir)
    arith = results[results["task"] == "arith"]
    assert set(arith["domain"]) == {"math"}
    assert set(arith["metric"]) == {"accuracy", "accuracy@exact_match,strict-match"}
    path = _samples_file(lm_dir, "tiny-sft", "toy_arith")
    flexible = {
        str(s["doc_id"]): s["exact_match"] == 1.0 for s in _samples(path) if s["filter"] == "flexible-extract"
    }
    got = items[(items["run_id"] == "tiny-sft") & (items["task"] == "arith")]
    assert dict(zip(got["item_id"], got["correct"], strict=True)) == flexible


def test_runs_matched_by_folder_glob(lm_dir: Path) -> None:
    study = yaml.safe_load((lm_dir / "study.yaml").read_text())
    for name, run in study["runs"].items():
        del run["model"]
        run["folder"] = f"*{name}"
    (lm_dir / "study.yaml").write_text(yaml.safe_dump(study))
    results, _ = import_lm_eval(lm_dir)
    assert sorted(results["run_id"].unique()) == ["tiny-fkl", "tiny-sft"]


def test_cli_collects_and_reports_with_the_paired_section(
    lm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    code = _run_cli(
        monkeypatch,
        "collect",
        "--from",
        "lm-eval",
        str(lm_dir),
        "--map",
        str(lm_dir / "study.yaml"),
        "--out",
        str(out),
    )
    assert code == 0
    results, items = read_results(out / "results.parquet"), read_items(out / "items.parquet")
    assert _check_against_files(lm_dir, results, items) == 36
    report = tmp_path / "report"
    code = _run_cli(
        monkeypatch, "report", str(out / "results.parquet"), "--out", str(report), "--format", "html"
    )
    assert code == 0
    paired = pd.read_csv(report / "tables" / "paired_items.csv")
    assert sorted(paired["task"]) == ["toy_arith", "toy_choice2", "toy_choice4"]
    assert set(paired["kd_run"]) == {"tiny-fkl"} and set(paired["sft_run"]) == {"tiny-sft"}
    choice4 = paired[paired["task"] == "toy_choice4"].iloc[0]
    kd, sft = (
        items[(items["run_id"] == r) & (items["task"] == "toy_choice4")] for r in ("tiny-fkl", "tiny-sft")
    )
    merged = kd.merge(sft, on="item_id")
    assert choice4["n_discordant"] == int((merged["correct_x"] != merged["correct_y"]).sum())
    assert "Per-item paired tests" in (report / "report.html").read_text(encoding="utf-8")


def _damage_truncated(directory: Path) -> None:
    path = _results_file(directory, "tiny-fkl")
    path.write_text(path.read_text()[:500])


def _damage_doc_id(directory: Path) -> None:
    path = _samples_file(directory, "tiny-sft", "toy_choice4")
    samples = _samples(path)
    samples[1]["doc_id"] = samples[0]["doc_id"]
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))


def _damage_missing_item(directory: Path) -> None:
    path = _samples_file(directory, "tiny-sft", "toy_choice2")
    path.write_text("".join(json.dumps(s) + "\n" for s in _samples(path)[1:]))


def _damage_score(directory: Path) -> None:
    path = _samples_file(directory, "tiny-fkl", "toy_choice4")
    samples = _samples(path)
    samples[0]["acc"] = 1.0 - samples[0]["acc"]
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))


def _damage_other_documents(directory: Path) -> None:
    path = _samples_file(directory, "tiny-fkl", "toy_choice2")
    samples = _samples(path)
    samples[2]["doc_hash"] = "0" * 64
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))


def _damage_same_cell(directory: Path) -> None:
    study = yaml.safe_load((directory / "study.yaml").read_text())
    study["runs"]["tiny-fkl"] = {
        "model": study["runs"]["tiny-fkl"]["model"],
        "student": "toy-tiny",
        "method": "sft",
        "seed": 1,
    }
    (directory / "study.yaml").write_text(yaml.safe_dump(study))


def _damage_unmapped(directory: Path) -> None:
    study = yaml.safe_load((directory / "study.yaml").read_text())
    del study["runs"]["tiny-fkl"]
    (directory / "study.yaml").write_text(yaml.safe_dump(study))


def _damage_no_results(directory: Path) -> None:
    for path in directory.rglob("results_*.json"):
        path.unlink()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_damage_no_results, "no lm-evaluation-harness results file"),
        (_damage_truncated, "not valid JSON"),
        (_damage_doc_id, "doc ids do not match the results: doc_id repeated"),
        (_damage_missing_item, "doc ids do not match the results: 5 items"),
        (_damage_score, "doc ids do not match the results: mean acc,none"),
        (_damage_other_documents, "doc ids do not match across runs"),
        (_damage_same_cell, "claim the same"),
        (_damage_unmapped, "not in the study map"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    lm_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    damage: object,
    expected: str,
) -> None:
    damage(lm_dir)  # type: ignore[operator]
    out = tmp_path / "out"
    code = _run_cli(monkeypatch, "collect", "--from", "lm-eval", str(lm_dir), "--out", str(out))
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert expected in err
    assert not out.exists()


def test_bad_input_names_the_culprit(lm_dir: Path) -> None:
    _damage_unmapped(lm_dir)
    with pytest.raises(KDAnalysisError, match="tiny-fkl/results_"):
        import_lm_eval(lm_dir)
    shutil.copy(FIXTURE / "study.yaml", lm_dir / "study.yaml")
    _damage_truncated(lm_dir)
    with pytest.raises(KDAnalysisError, match="tiny-fkl/results_.*line 1"):
        import_lm_eval(lm_dir)


def test_cli_refuses_map_without_lm_eval_and_unknown_sources(
    lm_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_cli(monkeypatch, "collect", str(lm_dir), "--map", str(lm_dir / "study.yaml")) != 0
    assert "--map is read only with --from lm-eval" in capsys.readouterr().err
    assert _run_cli(monkeypatch, "collect", "--from", "helm", str(lm_dir)) != 0
    assert "allowed: runs, lm-eval" in capsys.readouterr().err


def test_missing_map_names_the_models_found(lm_dir: Path) -> None:
    (lm_dir / "study.yaml").unlink()
    with pytest.raises(KDAnalysisError, match="no study map.*/tmp/kdfix/models/tiny-fkl"):
        import_lm_eval(lm_dir)


def test_real_lm_eval_run_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lm-eval itself (offline, CPU) on two toy models and three local tasks, then the import."""
    pytest.importorskip("lm_eval")
    pytest.importorskip("torch")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from runners.toy.lm_eval_study import write_toy_lm_eval_study

    lm_dir = write_toy_lm_eval_study(tmp_path / "study", runs=("tiny-sft", "tiny-fkl"), n_items=4)
    results, items = import_lm_eval(lm_dir)
    assert _check_against_files(lm_dir, results, items) == 2 * 3 * 4
    assert sorted(results["run_id"].unique()) == ["tiny-fkl", "tiny-sft"]


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        (
            {"model": "m", "student": "s", "method": "kd2"},
            "runs.a.method: unknown method 'kd2'; allowed: base, sft",
        ),
        ({"model": "m", "folder": "f", "student": "s", "method": "sft"}, "exactly one of 'model'"),
        ({"student": "s", "method": "sft"}, "exactly one of 'model'"),
        (
            {"model": "m", "student": "s", "method": "fkl", "teacher": "t", "teacher_kind": "none"},
            "exactly when",
        ),
        ({"model": "m", "student": "s", "method": "sft", "temprature": 2}, "runs.a.temprature: unknown key"),
    ],
)
def test_bad_map_is_one_config_error_naming_the_file(tmp_path: Path, run: dict, expected: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"runs": {"a": run}}))
    with pytest.raises(ConfigError, match=re.escape(expected)) as info:
        read_study_map(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
