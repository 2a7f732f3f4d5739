"""A runs folder moved elsewhere goes on from where it was: its KD cells find the teacher cache and
the LoRA teacher's base model at the new place, and rescore/collect work there, with the results of
an unmoved run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kdanalysis.io import read_json
from kdanalysis.results import read_results
from runners.distill.cache import TeacherCache
from runners.evaluate.rescore import rescore_run
from runners.grid.plan import build_plan
from runners.grid.runner import run_grid
from runners.grid.spec import load_grid

pytest.importorskip("torch")
pytest.importorskip("transformers")

#: Stages computed after the move: everything that reads the teacher cache or the trained teacher.
AFTER_MOVE = ("kd", "kd_eval", "kd_fidelity")


def _grid(tmp_path: Path) -> Path:
    """The tests' small toy grid, with a bound that lets the fkl cell read its top-64 cache (the
    random toy teacher has most of its mass outside any top-64, and the cache would be refused),
    and the fidelity KL (its cells load both evaluated models and rebuild the prompts)."""
    data = yaml.safe_load((Path(__file__).parent / "small_grid.yaml").read_text(encoding="utf-8"))
    data["training"]["teacher_cache_max_tail_mass"] = 1.0
    data["fidelity_kl"] = True  # the fidelity cells load the models and rebuild the prompts too
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(data, sort_keys=False))
    return grid


def _table(path: Path) -> pd.DataFrame:
    # `source` records where each row was computed (it differs by design)
    frame = read_results(path).drop(columns="source")
    return frame.sort_values(["run_id", "task", "metric"]).reset_index(drop=True)


def test_a_moved_runs_folder_runs_its_kd_cells_from_the_new_place(tmp_path: Path) -> None:
    grid = _grid(tmp_path)
    plan = build_plan(load_grid(grid), root=grid.parent)
    old, new = tmp_path / "old" / "runs", tmp_path / "elsewhere" / "deeper" / "runs"
    assert run_grid(plan, old).counts == {"done": 16}
    reference = _table(old / "results.parquet")
    cells = {c.stage: c.id for c in plan}
    cache, teacher_sft = cells["teacher_cache"], cells["teacher_sft"]
    index = read_json(old / "cells" / cache / "cache" / "index.json")
    assert index["fingerprint"]["teacher_from_cache"] == f"../../{teacher_sft}/run/model"
    adapter = read_json(old / "cells" / teacher_sft / "run" / "model" / "adapter_config.json")
    base = plan.cells[teacher_sft].config["student"]["base_cell"]
    assert adapter["base_model_name_or_path"] == f"../../../{base}/model"

    # the cells up to the cache stay; the KD cells and what follows them are computed after the move
    for cell in plan:
        if cell.stage in AFTER_MOVE:
            shutil.rmtree(old / "cells" / cell.id)
    (old / "results.parquet").unlink()
    new.parent.mkdir(parents=True)
    shutil.move(old, new)
    result = run_grid(plan, new)
    assert result.counts == {"done": 16}, result.failed
    assert sorted(result.computed) == sorted(c.id for c in plan if c.stage in AFTER_MOVE)
    pd.testing.assert_frame_equal(_table(new / "results.parquet"), reference)

    # the fkl cell read the cache (the teacher was never loaded), the rkl cell loaded the LoRA teacher
    kd = {c.config["method"]: c.id for c in plan if c.stage == "kd"}
    fkl_log = (new / "cells" / kd["fkl"] / "log.txt").read_text()
    rkl_log = (new / "cells" / kd["rkl"] / "log.txt").read_text()
    assert "not using teacher cache" not in fkl_log and f"cells/{teacher_sft}/run/model" not in fkl_log
    assert f"adapter: {new / 'cells' / teacher_sft / 'run' / 'model'}" in rkl_log
    assert TeacherCache.open(new / "cells" / cache / "cache").key.teacher_here == str(
        (new / "cells" / teacher_sft / "run" / "model").resolve()
    )

    # rescore of an evaluation computed before the move (its recorded paths are gone)
    teacher_eval = new / "cells" / cells["teacher_eval"] / "run"
    assert str(old) in json.dumps(read_json(teacher_eval / "run_meta.json"))
    _, rescored = rescore_run(teacher_eval, "published", out=tmp_path / "rescored.parquet")
    accuracy = reference[(reference["run_id"] == cells["teacher_eval"]) & (reference["metric"] == "accuracy")]
    assert rescored.loc[rescored["metric"] == "accuracy", "value"].tolist() == accuracy["value"].tolist()
