"""The bundled paper results reproduce every raw number and rebuild identically."""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kdanalysis as kd
from kdanalysis.datasets.kd_generalization import (
    RAW_FILES,
    TASK_IDS,
    TEST_SET_SIZES,
    build_paper_tables,
    parse_method_label,
    write_paper_tables,
)
from kdanalysis.errors import SchemaError
from kdanalysis.results import RESULT_COLUMNS, read_models, read_results
from kdanalysis.tasks import STUDY_TAG, bundled_tasks

REPO = Path(__file__).resolve().parents[2]
ID_COLUMNS = {"Teacher", "Student", "Method", "Pair"}


@pytest.fixture(scope="module")
def bundled() -> pd.DataFrame:
    return kd.load_paper_results()


@pytest.fixture(scope="module")
def raw_dir(shared_data: Path) -> Path:
    return shared_data / "results"


def test_bundled_table_follows_contract(bundled: pd.DataFrame) -> None:
    assert tuple(bundled.columns) == RESULT_COLUMNS
    assert len(bundled) == 2064
    assert set(bundled["study"]) == {"kd_generalization"}
    assert set(bundled["seed"]) == {6}
    assert set(bundled["source"]) == set(RAW_FILES)


@pytest.mark.parametrize("name", RAW_FILES)
def test_every_raw_number_is_reproduced(bundled: pd.DataFrame, raw_dir: Path, name: str) -> None:
    raw = pd.read_csv(raw_dir / name)
    tasks = [c for c in raw.columns if c not in ID_COLUMNS]
    rows = bundled[bundled["source"] == name]
    assert len(rows) == raw.shape[0] * len(tasks)
    by_cell = rows.set_index(["run_id", "task"])
    for idx, raw_row in raw.iterrows():
        for col in tasks:
            got = by_cell.loc[(f"{name}#{idx}", TASK_IDS[col])]
            assert got["value"] == raw_row[col], (name, idx, col)
            assert got["student"] == raw_row["Student"]
            assert got["method_label"] == raw_row["Method"]
            teacher = raw_row["Teacher"]
            assert got["teacher"] == ("none" if teacher == "-" else teacher.split("_")[0])


def test_row_counts_per_metric_and_method(bundled: pd.DataFrame) -> None:
    counts = bundled.groupby(["metric", "method", "teacher_kind"]).size().to_dict()
    # accuracy: 4 files x 7/9 task columns; 16 base and 16 sft rows (incl. teachers' own SFT)
    assert counts[("accuracy", "base", "none")] == 8 * 7 + 8 * 9
    assert counts[("accuracy", "sft", "none")] == 8 * 7 + 8 * 9
    assert counts[("accuracy", "fkl", "base")] == 5 * 7 + 5 * 9
    # 11 pairs in each EM/BLEU file, one SFT and one KD row each
    assert counts[("agreement", "kd", "task_aware")] == 11 * 6 + 11 * 8
    assert counts[("bleu", "sft", "task_aware")] == 11 * 6


def test_mapping_spot_checks(bundled: pd.DataFrame) -> None:
    ckpt = bundled[bundled["run_id"] == "math_results_main.csv#10"]
    assert set(ckpt["teacher"]) == {"Qwen2.5-3B"} and set(ckpt["method"]) == {"fkl"}
    assert set(ckpt["temperature"]) == {1.0} and set(ckpt["teacher_kind"]) == {"task_aware"}
    base_teacher = bundled[bundled["method_label"] == "student_KD_base_teacher_temp_1.0"]
    assert set(base_teacher["teacher_kind"]) == {"base"} and set(base_teacher["method"]) == {"fkl"}
    em = bundled[(bundled["source"] == "EM1_cs.csv") & (bundled["method_label"] == "SFT")]
    assert set(em["method"]) == {"sft"} and "none" not in set(em["teacher"])
    assert set(em["task"]) == set(bundled_tasks().ids(domain="commonsense", tag=STUDY_TAG))
    assert bundled.loc[bundled["task"] == "average", "n"].isna().all()
    assert (bundled.loc[bundled["task"] == "hellaswag", "n"] == 10042).all()


def test_test_set_sizes_match_shipped_test_sets(shared_data: Path) -> None:
    shipped = sorted(p.name for p in (shared_data / "testsets").glob("*.json"))
    study = [bundled_tasks()[t] for t in bundled_tasks().ids(tag=STUDY_TAG)]
    assert len(study) == 14 and set(TEST_SET_SIZES) == {s.id for s in study}
    # 13 of the 14 test files are in the release: all but HellaSwag's (its note says where to get it)
    assert sorted(s.file_name for s in study if s.id != "hellaswag") == shipped
    for spec in study:
        if spec.file_name in shipped:
            items = json.loads((shared_data / "testsets" / spec.file_name).read_text())
            assert len(items) == TEST_SET_SIZES[spec.id] == spec.test_size, spec.id


def test_models_table() -> None:
    models = kd.load_paper_models().set_index("model")
    assert models.loc["Qwen2.5-0.5B", "vocab_size"] == 151936
    assert models.loc["Qwen2.5-14B", "vocab_size"] == 152064
    assert models.loc["Llama-3.2-1B", "family"] == "llama3"
    assert models.loc["Qwen2.5-7B", "role"] == "both"
    assert models.loc["Llama-3.1-8B", "role"] == "teacher"
    assert models.loc["Qwen2.5-1.5B", "role"] == "student"
    assert models["params_b"].to_dict()["Qwen2.5-1.5B"] == 1.5


def test_script_rebuilds_identical_files(raw_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "convert_paper_results.py"),
            str(raw_dir),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(
        read_results(tmp_path / "paper_results.parquet"),
        read_results(REPO / "data" / "paper_results.parquet"),
    )
    assert (tmp_path / "paper_models.csv").read_bytes() == (REPO / "data" / "paper_models.csv").read_bytes()
    pd.testing.assert_frame_equal(read_models(tmp_path / "paper_models.csv"), kd.load_paper_models())


@pytest.mark.parametrize(
    "label, expected",
    [
        ("BaseModel", ("base", "none", np.nan)),
        ("SFT", ("sft", "none", np.nan)),
        ("student_KD_temp_2.0", ("fkl", "task_aware", 2.0)),
        ("student_KD_base_teacher_temp_1.0", ("fkl", "base", 1.0)),
        ("student_RevKD_temp_5.0", ("rkl", "task_aware", 5.0)),
        ("student_GKD_temp_1.0", ("gkd", "task_aware", 1.0)),
    ],
)
def test_parse_method_label(label: str, expected: tuple[str, str, float]) -> None:
    method, kind, tau = parse_method_label(label)
    assert (method, kind) == expected[:2]
    assert tau == expected[2] or (np.isnan(tau) and np.isnan(expected[2]))


def test_unknown_method_label_names_allowed_patterns() -> None:
    with pytest.raises(SchemaError, match="student_TVD_temp_1.0.*expected BaseModel, SFT"):
        parse_method_label("student_TVD_temp_1.0")


# --- bad input: nothing half-written -------------------------------------------------------


def _copy_raw(raw_dir: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in RAW_FILES:
        shutil.copy(raw_dir / name, dest / name)
    return dest


def test_missing_raw_file_names_it_and_writes_nothing(raw_dir: Path, tmp_path: Path) -> None:
    raw = _copy_raw(raw_dir, tmp_path / "raw")
    (raw / "EM2_cs.csv").unlink()
    out = tmp_path / "out"
    with pytest.raises(SchemaError, match="missing raw file.*EM2_cs.csv"):
        write_paper_tables(raw, out)
    assert not out.exists()


def test_bad_raw_file_leaves_existing_output_untouched(raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_paper_tables(raw_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    raw = _copy_raw(raw_dir, tmp_path / "raw")
    text = (raw / "BLEU.csv").read_text().replace(",KD,", ",Distilled,", 1)
    (raw / "BLEU.csv").write_text(text)
    with pytest.raises(SchemaError, match=r"BLEU.csv, data row 1: unknown Method 'Distilled'"):
        write_paper_tables(raw, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_non_numeric_cell_is_rejected(raw_dir: Path, tmp_path: Path) -> None:
    raw = _copy_raw(raw_dir, tmp_path / "raw")
    text = (raw / "llama_math_results.csv").read_text().replace(",2.12,", ",n/a,", 1)
    (raw / "llama_math_results.csv").write_text(text)
    with pytest.raises(SchemaError, match="llama_math_results.csv: non-numeric.*column gsm8k, data row"):
        build_paper_tables(raw)


def test_script_reports_error_in_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = runpy.run_path(str(REPO / "scripts" / "convert_paper_results.py"))
    code = script["main"]([str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"error: raw results folder not found: {tmp_path / 'nowhere'}"
    ]
    assert not (tmp_path / "out").exists()


def test_csv_that_is_not_a_results_table_gives_one_schema_error(raw_dir: Path) -> None:
    with pytest.raises(SchemaError, match="math_results_main.csv: results: missing column") as info:
        read_results(raw_dir / "math_results_main.csv")
    assert "\n" not in str(info.value)
