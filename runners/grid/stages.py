"""What each kind of cell does: the bridge from a cell's resolved config to the runners.

Every function here takes ``(cell, work_dir, dep_dirs)`` — the cell, its fresh working
folder and the final folders of its dependencies — and returns its outputs (name → path
relative to ``work_dir``), which :func:`runners.grid.state.execute_cell` records in
``status.json``. Cell folders::

    prepare (toy_model)  model/                 runners.toy.save_toy_model
    prepare (toy_data)   data/train.json, data/<task>.json   runners.toy.make_arithmetic_task
                         (difficulty, max_number, operations from the grid's domain)
    prepare (smollm2)    model/                 runners.pretrained.save_smollm2
    prepare (heldout_data)  data/train.json     runners.evaluate.heldout.heldout_items
    train                run/  (run/model = LoRA adapter or full model)   runners.distill.run.run_distill
    cache                cache/ (index.json + shards, or a refused index.json)
                         runners.distill.cache.build_teacher_cache
    eval                 run/  (items.parquet, results.parquet, run_meta.json)   runners.evaluate.run.run_eval
    fidelity             results.parquet   runners.evaluate.fidelity.fidelity_rows

A model trained with LoRA is referred to by its base model plus the adapter folder
(evaluation) or by the adapter folder alone (as a teacher; :func:`runners.models.load_causal_lm`
loads the base model named in ``adapter_config.json`` and applies the adapter); a fully
fine-tuned model by its folder.

Run folders are relocatable: a runs folder moved or copied elsewhere as a whole goes on from
where it was. Every cell finds its inputs from its dependencies' folders where they are when
it runs (``dep_dirs``), never from a path an earlier cell recorded, with two exceptions that
record paths *relative* to their own folder: a LoRA adapter whose base model is a grid cell's
(``base_model_name_or_path`` is rewritten to ``../../../<base cell>/model``, relative to
the adapter folder, which the loader resolves there), and the teacher cache (its teacher's
folder relative to the cache folder, :mod:`runners.distill.cache`). A cell's folder, its
temporary folder and its dependencies' folders are all ``cells/<name>/``, so these relative
paths are the same while a cell runs and once it is published. Paths the grid file names
(a local model, a training file) stay absolute: they lie outside the runs folder. The
absolute paths in a finished run's ``config.yaml``, ``run_meta.json`` and the ``source``
column of its tables are records of where it ran, not read to find anything.

A cache cell builds with ``refuse_above`` = the tail-mass bound of the KD cells it serves
(``teacher_cache_max_tail_mass`` of ``training``, or the cell config's ``refuse_above``
when a method's own bound is looser; default :data:`runners.distill.cache.TAIL_MASS_BOUND`):
a teacher whose tail is provably too heavy stops the build early, and its KD cells read the
refused cache and use the live teacher.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kdanalysis.errors import ConfigError
from kdanalysis.io import atomic_write_json, read_json
from kdanalysis.results import write_results
from kdanalysis.runfolder import RESULTS_FILE
from kdanalysis.tasks import bundled_tasks
from runners.grid.plan import Cell

__all__ = ["run_stage", "model_path", "trained_path", "model_and_adapter"]

logger = logging.getLogger(__name__)

_TOY_TEST_SEED_OFFSET = 1000  # test items come from another generator seed than the training items


def _dep(deps: Mapping[str, Path], cid: str) -> Path:
    try:
        return deps[cid]
    except KeyError:
        raise ConfigError(f"cell input {cid} is not among the cell's dependencies") from None


def model_path(ref: Mapping[str, Any], deps: Mapping[str, Path]) -> str:
    """Path or hub id of the *base* model of a model reference."""
    if "base_cell" in ref:
        return str(_dep(deps, ref["base_cell"]) / "model")
    return str(ref["path"])


def trained_path(ref: Mapping[str, Any], deps: Mapping[str, Path]) -> str | None:
    """The trained folder of a reference (LoRA adapter or full model; None for an untrained model)."""
    if "train_cell" in ref:
        return str(_dep(deps, ref["train_cell"]) / "run" / "model")
    return None


def model_and_adapter(ref: Mapping[str, Any], deps: Mapping[str, Path]) -> tuple[str, str | None]:
    """``(model, adapter)`` to load a reference: base model + LoRA adapter, or the fully fine-tuned folder."""
    trained = trained_path(ref, deps)
    if trained is None:
        return model_path(ref, deps), None
    if (Path(trained) / "adapter_config.json").is_file():
        return model_path(ref, deps), trained
    return trained, None


def _teacher(ref: Mapping[str, Any], deps: Mapping[str, Path]) -> str:
    """A teacher as one path: its trained folder (a LoRA adapter names its base model) or the base model."""
    return trained_path(ref, deps) or model_path(ref, deps)


def _train_file(data: Mapping[str, Any], deps: Mapping[str, Path]) -> str:
    if "data_cell" in data:
        return str(_dep(deps, data["data_cell"]) / "data" / "train.json")
    if "heldout_cell" in data:
        return str(_dep(deps, data["heldout_cell"]) / "data" / "train.json")
    return str(data["train_path"])


def _prepare(cell: Cell, work: Path, deps: Mapping[str, Path]) -> dict[str, str]:
    cfg = cell.config
    if cfg["what"] == "toy_model":
        from runners.toy import save_toy_model

        save_toy_model(work / "model", family=cfg["family"], size=cfg["size"], seed=cfg["seed"])
        return {"model": "model"}
    if cfg["what"] == "smollm2":
        from runners.pretrained import save_smollm2

        save_smollm2(work / "model", keep_every=cfg["keep_every"])
        return {"model": "model"}
    if cfg["what"] == "heldout_data":
        from runners.evaluate.heldout import heldout_items
        from runners.toy import write_task_json

        items = heldout_items(cfg["tasks"], cfg["data_dir"], skip=cfg["skip"], per_task=cfg["per_task"])
        write_task_json(work / "data" / "train.json", items)
        return {"train": "data/train.json"}
    from runners.toy import make_arithmetic_task, write_task_json

    options = {
        "difficulty": cfg["difficulty"],
        "max_number": cfg["max_number"],
        "operations": cfg["operations"],
    }
    outputs = {"train": "data/train.json"}
    write_task_json(
        work / "data" / "train.json", make_arithmetic_task(cfg["n_train"], seed=cfg["seed"], **options)
    )
    for task in cfg["tasks"]:
        items = make_arithmetic_task(cfg["n_test"], seed=cfg["seed"] + _TOY_TEST_SEED_OFFSET, **options)
        write_task_json(work / "data" / f"{task}.json", items)
        outputs[task] = f"data/{task}.json"
    return outputs


def _distill_config(cell: Cell, deps: Mapping[str, Path], cache_dir: str | None) -> Any:
    from runners.distill.config import DistillConfig

    cfg = cell.config
    training = dict(cfg["training"])
    fields: dict[str, Any] = {
        **training,
        "student": model_path(cfg["student"], deps),
        "method": cfg["method"],
        "seed": cfg["seed"],
        "data": {**training.get("data", {}), "train": _train_file(cfg["data"], deps)},
        **cfg["method_params"],
    }
    if cfg["method"] != "sft":
        fields.update(
            teacher=_teacher(cfg["teacher"], deps),
            teacher_kind=cfg["teacher_kind"],
            temperature=cfg["temperature"],
            teacher_noise=cfg["teacher_noise"],
        )
        if cache_dir is not None:
            fields["teacher_cache"] = cache_dir
    return DistillConfig(**fields)


def _train(cell: Cell, work: Path, deps: Mapping[str, Path]) -> dict[str, str]:
    from runners.distill.run import run_distill

    cache_cell = cell.config.get("cache_cell")
    cache_dir = str(_dep(deps, cache_cell) / "cache") if cache_cell else None
    run_distill(_distill_config(cell, deps, cache_dir), work / "run")
    if "base_cell" in cell.config["student"]:
        _relative_adapter_base(work / "run" / "model")
    return {"run": "run", "model": "run/model"}


def _relative_adapter_base(folder: Path) -> None:
    """Name a LoRA adapter's base model (a grid cell's folder) relative to the adapter folder."""
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():  # fully fine-tuned
        return
    config = read_json(config_file)
    base = Path(config["base_model_name_or_path"])
    if base.is_absolute():  # not yet rewritten (a finished run found again returns as it was)
        config["base_model_name_or_path"] = os.path.relpath(base, folder.resolve())
        atomic_write_json(config_file, config)


def _cache(cell: Cell, work: Path, deps: Mapping[str, Path]) -> dict[str, str]:
    from runners.distill.cache import TAIL_MASS_BOUND, build_teacher_cache
    from runners.distill.config import DistillConfig

    cfg = cell.config
    training = cfg["training"]
    defaults = DistillConfig.model_fields
    options: dict[str, Any] = {
        "max_length": training.get("max_length", defaults["max_length"].default),
        "prompt_style": training.get("prompt_style", defaults["prompt_style"].default),
    }
    if cfg["top_k"] is not None:
        options["k"] = cfg["top_k"]
    bound = training.get("teacher_cache_max_tail_mass") or TAIL_MASS_BOUND
    options["refuse_above"] = cfg.get("refuse_above", bound)
    build_teacher_cache(
        _teacher(cfg["teacher"], deps), [_train_file(cfg["data"], deps)], work / "cache", **options
    )
    return {"cache": "cache/index.json"}


def _eval_config(cell: Cell, deps: Mapping[str, Path]) -> Any:
    from runners.evaluate.config import EvalConfig

    cfg = cell.config
    settings = dict(cfg["evaluation"])
    data = cfg["data"]
    model, adapter = model_and_adapter(cfg["model"], deps)
    fields: dict[str, Any] = {**settings, "model": model, "tasks": data["tasks"], "run_id": cell.id}
    if adapter is not None:
        fields["adapter"] = adapter
    if "data_cell" in data:
        folder = _dep(deps, data["data_cell"]) / "data"
        fields["custom_tasks"] = [
            {
                "id": t,
                "file": str(folder / f"{t}.json"),
                "domain": cfg["domain"],
                "answer_type": bundled_tasks()[t].answer_type,
            }
            for t in data["tasks"]
        ]
    elif "data_dir" in data:
        fields["data_dir"] = data["data_dir"]
    labels = {k: v for k, v in cfg["labels"].items() if k != "domain"}
    fields["meta"] = {**settings.get("meta", {}), **labels}
    decoding = settings.get("decoding", {})
    if isinstance(decoding, Mapping) and "seed" not in decoding:
        fields["decoding"] = {**decoding, "seed": cfg["seed"]}
    return EvalConfig(**fields)


def _eval(cell: Cell, work: Path, deps: Mapping[str, Path]) -> dict[str, str]:
    from runners.evaluate.run import run_eval

    run_eval(_eval_config(cell, deps), work / "run")
    return {"run": "run", "results": "run/results.parquet", "items": "run/items.parquet"}


def _eval_cell_config(eval_dir: Path) -> Any:
    """The EvalConfig of a finished evaluation cell, rebuilt from its ``cell.json`` with its own
    dependencies where they are now (its siblings in ``cells/``), not where it ran."""
    from kdanalysis.runfolder import CELL_FILE

    eval_cell = Cell.from_json(read_json(eval_dir / CELL_FILE))
    return _eval_config(eval_cell, {cid: eval_dir.parent / cid for cid in eval_cell.deps})


def _fidelity(cell: Cell, work: Path, deps: Mapping[str, Path]) -> dict[str, str]:
    from runners.evaluate.fidelity import fidelity_rows

    cfg = cell.config
    student_dir = _dep(deps, cfg["student_eval_cell"])
    teacher_dir = _dep(deps, cfg["teacher_eval_cell"])
    student, teacher = _eval_cell_config(student_dir), _eval_cell_config(teacher_dir)
    rows = fidelity_rows(
        student_dir / "run",
        teacher_dir / "run",
        kl=cfg["kl"],
        data_dir=student.data_dir,
        tasks=student.task_registry(),  # includes the toy tasks
        student_model=student.model,
        student_adapter=student.adapter,
        teacher_model=teacher.model,
        teacher_adapter=teacher.adapter,
    )
    write_results(rows, work / RESULTS_FILE)
    return {"results": RESULTS_FILE}


_STAGE_FUNCTIONS: dict[str, Callable[[Cell, Path, Mapping[str, Path]], dict[str, str]]] = {
    "prepare": _prepare,
    "train": _train,
    "cache": _cache,
    "eval": _eval,
    "fidelity": _fidelity,
}


def _uses_torch(cell: Cell) -> bool:
    if cell.kind == "prepare":
        return cell.config["what"] in ("toy_model", "smollm2")
    return cell.kind != "fidelity" or bool(cell.config["kl"])


def run_stage(cell: Cell, work_dir: Path, dep_dirs: Mapping[str, Path]) -> dict[str, str]:
    """Compute ``cell`` into ``work_dir`` (see the module docstring); returns its outputs.

    transformers' own progress bars (weight loading, saving) are turned off: the grid
    shows one progress display over cells, and each cell logs to its ``log.txt``. A cell
    that uses torch runs with :func:`runners.env.cpu_threads` intra-op threads (chosen from
    the cores free when it starts, or fixed by ``run-grid --threads`` / ``executor.threads``).
    """
    if not _uses_torch(cell):
        return _STAGE_FUNCTIONS[cell.kind](cell, Path(work_dir), dep_dirs)
    from transformers.utils import logging as hf_logging

    from runners.env import torch_threads

    hf_logging.disable_progress_bar()
    with torch_threads() as threads:
        logger.info("torch intra-op threads: %d", threads)
        return _STAGE_FUNCTIONS[cell.kind](cell, Path(work_dir), dep_dirs)
