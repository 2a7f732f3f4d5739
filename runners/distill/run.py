"""One distillation run in its own folder: :func:`run_distill`.

Run folder layout::

    RUN_DIR/
      config.yaml           the resolved DistillConfig (absolute paths, defaults filled in)
      environment.json      runners.env.environment_snapshot()
      status.json           kdanalysis.runfolder: {"state": "running"|"done"|"failed", "error",
                            "started_utc", "finished_utc"} plus "steps", "best_step",
                            "best_val_loss", "method"
      metrics.jsonl         training and validation records (see runners.distill.trainer.train)
      model/                the adapter (LoRA: adapter_config.json + adapter_model.safetensors)
                            or the full model, plus the tokenizer
      checkpoints/          step_NNNNNN/ (trainable.safetensors, optimizer.pt, scheduler.pt,
                            rng_<rank>.pt, state.json, config.yaml) and ``latest``
      best/                 step_NNNNNN.safetensors: trainable weights of the best validation step
      seqkd_outputs.jsonl   (seqkd) the teacher's response to every training prompt

A second call on the same folder resumes from the latest checkpoint (the config must
be the same) or returns at once if the run is done. File names and the status are those
of :mod:`kdanalysis.runfolder` (a run folder of an earlier version, with
``{"status": "done"}``, is still recognised as done).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from kdanalysis.errors import ConfigError, KDAnalysisError, RunFailedError
from kdanalysis.io import atomic_write_json, atomic_write_text
from kdanalysis.runfolder import CONFIG_FILE, ENV_FILE, RunState, is_done, now_utc, write_status
from runners.distill.config import DistillConfig, load_config
from runners.env import environment_snapshot

__all__ = ["run_distill"]

log = logging.getLogger(__name__)


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
    config_file = run_dir / CONFIG_FILE
    if config_file.is_file():
        previous = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        if previous != config.model_dump(mode="json"):
            raise ConfigError(
                f"{run_dir} holds a run with another config; use a new folder "
                f"(differences: {_diff(previous, config.model_dump(mode='json'))})"
            )
        if is_done(run_dir):
            log.info("run %s is already done", run_dir)
            return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)

    from runners.distill.trainer import train

    if main:
        atomic_write_text(config_file, config.to_yaml())
        atomic_write_json(run_dir / ENV_FILE, environment_snapshot())
    status: dict[str, Any] = {
        "state": RunState.RUNNING,
        "error": None,
        "started_utc": now_utc(),
        "finished_utc": None,
        "method": config.method,
        "steps": None,
        "best_step": None,
        "best_val_loss": None,
    }

    def record(**changes: Any) -> None:
        status.update(changes)
        if main:
            write_status(run_dir, status)

    record()
    try:
        result = train(config, run_dir, callbacks=callbacks)
    except BaseException as err:
        message = str(err) if isinstance(err, KDAnalysisError) else f"{type(err).__name__}: {err}"
        record(state=RunState.FAILED, error=message, finished_utc=now_utc())
        if isinstance(err, ConfigError):
            raise
        if isinstance(err, Exception):
            raise RunFailedError(f"distillation run {run_dir} failed: {message}") from err
        raise  # KeyboardInterrupt / SystemExit: recorded, then passed on
    record(
        state=RunState.DONE,
        finished_utc=now_utc(),
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
