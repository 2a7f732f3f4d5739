"""One distillation run in its own folder: :func:`run_distill`.

Run folder layout::

    RUN_DIR/
      config.yaml           the resolved DistillConfig (absolute paths, defaults filled in)
      env.json              runners.env.environment_snapshot()
      status.json           {"status": "running"|"done"|"failed", "error", "started_utc",
                             "finished_utc", "steps", "best_step", "best_val_loss", "method"}
      metrics.jsonl         training and validation records (see runners.distill.trainer.train)
      model/                the adapter (LoRA: adapter_config.json + adapter_model.safetensors)
                            or the full model, plus the tokenizer
      checkpoints/          step_NNNNNN/ (trainable.safetensors, optimizer.pt, scheduler.pt,
                            rng_<rank>.pt, state.json, config.yaml) and ``latest``
      best/                 step_NNNNNN.safetensors: trainable weights of the best validation step
      seqkd_outputs.jsonl   (seqkd) the teacher's response to every training prompt

A second call on the same folder resumes from the latest checkpoint (the config must
be the same) or returns at once if the run is done.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kdanalysis.errors import ConfigError, KDAnalysisError, RunFailedError
from kdanalysis.io import atomic_write_json, atomic_write_text, read_json
from runners.distill.config import DistillConfig, load_config
from runners.env import environment_snapshot

__all__ = ["STATUS_FILE", "run_distill", "read_status"]

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_status(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run folder's ``status.json`` as a dict, or None if there is none."""
    path = Path(run_dir) / STATUS_FILE
    return read_json(path) if path.is_file() else None


def run_distill(
    config: DistillConfig | Mapping[str, Any] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    callbacks: Sequence[Any] = (),
) -> Path:
    """Train one student and write its run folder (see the module docstring).

    Parameters
    ----------
    config : DistillConfig, mapping or YAML path
        The run's config; validated before anything is loaded.
    out_dir : path
        The run folder; created if needed. An unfinished run there is resumed, a
        finished one is returned unchanged.
    callbacks : sequence of callables
        Per-step callbacks passed to :func:`runners.distill.trainer.train` (progress bars).

    Returns
    -------
    Path
        The run folder.

    Raises
    ------
    ConfigError
        Invalid config, or the folder holds a run with another config.
    RunFailedError
        Training failed; ``status.json`` holds the error, checkpoints written so far are kept.
    """
    config = load_config(config)
    run_dir = Path(out_dir).expanduser().resolve()
    main = int(os.environ.get("RANK", "0")) == 0  # set by torchrun / accelerate launch
    config_file = run_dir / "config.yaml"
    if config_file.is_file():
        previous = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        if previous != config.model_dump(mode="json"):
            raise ConfigError(
                f"{run_dir} holds a run with another config; use a new folder "
                f"(differences: {_diff(previous, config.model_dump(mode='json'))})"
            )
        if (read_status(run_dir) or {}).get("status") == "done":
            log.info("run %s is already done", run_dir)
            return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)

    from runners.distill.trainer import train

    if main:
        atomic_write_text(config_file, config.to_yaml())
        atomic_write_json(run_dir / "env.json", environment_snapshot())
    started = _now()
    status: dict[str, Any] = {
        "status": "running",
        "error": None,
        "started_utc": started,
        "finished_utc": None,
        "method": config.method,
        "steps": None,
        "best_step": None,
        "best_val_loss": None,
    }

    def write_status(**changes: Any) -> None:
        status.update(changes)
        if main:
            atomic_write_json(run_dir / STATUS_FILE, status)

    write_status()
    try:
        result = train(config, run_dir, callbacks=callbacks)
    except BaseException as err:
        message = str(err) if isinstance(err, KDAnalysisError) else f"{type(err).__name__}: {err}"
        write_status(status="failed", error=message, finished_utc=_now())
        if isinstance(err, ConfigError):
            raise
        if isinstance(err, Exception):
            raise RunFailedError(f"distillation run {run_dir} failed: {message}") from err
        raise  # KeyboardInterrupt / SystemExit: recorded, then passed on
    write_status(
        status="done",
        finished_utc=_now(),
        steps=result.steps,
        best_step=result.best_step,
        best_val_loss=result.best_val_loss,
    )
    if main:
        log.info("run %s done: %d steps, model in %s", run_dir, result.steps, result.model_dir)
    return run_dir


def _diff(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        parts = [
            _diff(a.get(k), b.get(k), f"{prefix}{k}.")
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        ]
        return "; ".join(p for p in parts if p)
    return f"{prefix.rstrip('.')}: {a!r} -> {b!r}"
