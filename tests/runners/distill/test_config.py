"""DistillConfig: every bad config is ONE ConfigError raised before any model is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from kdanalysis.errors import ConfigError
from runners.distill.config import TRAIN_METHODS, DistillConfig, load_config


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.json"
    path.write_text('[{"instruction": "1+1?", "output": "2"}]', encoding="utf-8")
    return path


def _cfg(data_file: Path, **kw: Any) -> dict[str, Any]:
    return {
        "student": "org/student",
        "teacher": "org/teacher",
        "method": "fkl",
        "data": {"train": str(data_file)},
        **kw,
    }


def test_defaults_follow_the_paper(data_file: Path) -> None:
    cfg = DistillConfig(**_cfg(data_file))
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (8, 16.0, 0.05)
    assert set(cfg.lora.target_modules) == {"q_proj", "k_proj", "v_proj", "up_proj", "down_proj"}
    assert (cfg.optim.lr, cfg.optim.batch_size, cfg.optim.warmup_steps) == (3e-4, 16, 100)
    assert (cfg.alpha, cfg.beta, cfg.gkd_lambda, cfg.max_length, cfg.seed) == (1.0, 0.5, 0.5, 256, 6)
    assert cfg.data.val_size == 500
    assert cfg.teacher_kind == "task_aware"
    assert DistillConfig(**_cfg(data_file, teacher=None, method="sft")).teacher_kind == "none"


def test_resolved_yaml_round_trips(data_file: Path, tmp_path: Path) -> None:
    cfg = DistillConfig(**_cfg(data_file, method="jsd", beta=0.3, teacher_kind="base"))
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    assert load_config(path) == cfg
    assert DistillConfig.from_yaml(path).data.train == data_file.resolve()


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"learning_rate": 1e-4}, "learning_rate: unknown key"),
        ({"optim": {"lr": 1e-4, "momentum": 0.9}}, "optim.momentum: unknown key"),
        ({"method": "gkd", "teacher": None}, "needs a teacher"),
        ({"method": "fkl", "teacher": None}, "needs a teacher"),
        ({"method": "sft"}, "remove teacher"),
        ({"method": "sft", "teacher": None, "teacher_noise": 0.5}, "teacher_noise"),
        ({"method": "sft", "teacher": None, "temperature": 2.0}, "temperature"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
        ({"teacher_noise": -0.1}, "teacher_noise"),
        ({"method": "kd"}, "unknown method 'kd'"),
        ({"method": "base"}, "unknown method 'base'"),
        ({"method": "gkd", "alpha": 0.5}, "alpha must be 1"),
        ({"method": "seqkd", "teacher_noise": 1.0}, "teacher_noise must be 0"),
        ({"teacher_kind": "none"}, "teacher_kind"),
        ({"student": "/no/such/model"}, "local model path not found"),
        ({"teacher": "./no/such/teacher"}, "local model path not found"),
        ({"teacher_cache": "/no/such/cache"}, "teacher cache not found"),
        ({"optim": {"batch_size": 16, "micro_batch_size": 5}}, "not a multiple"),
        ({"precision": "fp8"}, "precision"),
    ],
)
def test_bad_config_is_one_config_error(data_file: Path, overrides: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match="invalid distillation config") as info:
        DistillConfig(**_cfg(data_file, **overrides))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_data_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.train: data file not found: .*nope.json"):
        DistillConfig(student="org/s", method="sft", data={"train": str(tmp_path / "nope.json")})


def test_seqkd_and_gkd_refuse_an_offline_cache(data_file: Path, tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "index.json").write_text("{}", encoding="utf-8")
    for method in ("seqkd", "gkd"):
        with pytest.raises(ConfigError, match="needs the live teacher"):
            DistillConfig(**_cfg(data_file, method=method, teacher_cache=str(tmp_path / "cache")))


def test_every_trainable_method_validates(data_file: Path) -> None:
    for method in TRAIN_METHODS:
        teacher = None if method == "sft" else "org/teacher"
        assert DistillConfig(**_cfg(data_file, method=method, teacher=teacher)).method == method


def test_yaml_file_errors(tmp_path: Path, data_file: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read distillation config .*missing.yaml: file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping of distillation config fields"):
        load_config(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump(_cfg(data_file, epochz=3)), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown.yaml: .*epochz: unknown key"):
        load_config(unknown)


def test_bad_config_fails_before_any_model_is_loaded(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runners.models
    from runners.distill.run import run_distill

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was loaded for an invalid config")

    monkeypatch.setattr(runners.models, "load_causal_lm", forbidden)
    for bad in (
        _cfg(data_file, method="gkd", teacher=None),
        _cfg(data_file, bogus=1),
        _cfg(data_file, teacher="/missing/teacher"),
    ):
        with pytest.raises(ConfigError):
            run_distill(bad, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_cli_reports_one_line_and_exit_2(tmp_path: Path, data_file: Path) -> None:
    from runners.distill.__main__ import app

    path = tmp_path / "gkd.yaml"
    path.write_text(yaml.safe_dump(_cfg(data_file, method="gkd", teacher=None)), encoding="utf-8")
    result = CliRunner().invoke(app, [str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "method 'gkd' needs a teacher" in result.output
    assert not (tmp_path / "run").exists()


def test_token_kd_methods_are_the_loss_aliases_and_each_is_a_loss() -> None:
    """One list of token-level KD methods: the keys of ``LOSS_ALIASES``, each a loss of ``kd_loss``."""
    import torch

    from runners.distill.config import LOSS_ALIASES, TOKEN_KD_METHODS
    from runners.distill.losses import LOSSES, kd_loss

    assert TOKEN_KD_METHODS == frozenset(LOSS_ALIASES) == {"fkl", "rkl", "jsd", "tvd", "skl", "srkl"}
    assert set(LOSS_ALIASES.values()) == set(LOSSES)
    logits = torch.randn(1, 3, 5)
    for method in TOKEN_KD_METHODS:
        assert torch.isfinite(kd_loss(method, logits, logits + 0.1))
