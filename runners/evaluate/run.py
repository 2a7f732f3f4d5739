"""run_eval: evaluate one model on a list of tasks and write a run folder.

Run folder layout (``RUN_DIR``)
-------------------------------
``config.yaml``
    The resolved :class:`~runners.evaluate.config.EvalConfig` (every default filled in);
    ``python -m runners.evaluate RUN_DIR/config.yaml --out RUN_DIR`` resumes the run.
``run_meta.json``
    The run's identity (:class:`runners.evaluate.scoring.RunMeta`), read by ``kdanalysis rescore``.
``environment.json``
    :func:`runners.env.environment_snapshot` (versions, platform, device).
``status.json``
    :mod:`kdanalysis.runfolder`: ``state`` (``"running"``, ``"done"``, ``"failed"``),
    ``error`` (one line or null), ``started_utc``, ``finished_utc``; plus ``fingerprint``
    (of the config), ``tasks_done``, ``tasks_pending``.
``tasks/<task>/items.parquet``, ``tasks/<task>/results.parquet``
    Written as soon as a task finishes. A rerun into the same folder skips every task
    that has them (after checking that the config fingerprint is unchanged), so a crash
    loses only the task in progress.
``items.parquet``
    The per-item table of all tasks (:data:`kdanalysis.results.ITEM_COLUMNS`), in
    ``config.tasks`` order.
``results.parquet``
    One ``accuracy`` row per task in the results contract (Wilson 95 % interval).
``throughput.json``
    Work done by the last invocation: ``backend``, ``batch_size`` (final, after any
    out-of-memory back-off), ``load_s`` (model load), ``wall_s`` (inference only),
    ``items``, ``samples``, ``generated_tokens``, ``items_per_s``, ``tokens_per_s``,
    ``tasks_run``, ``tasks_skipped``, and ``per_task`` (items, samples, generated_tokens, wall_s).

With ``decoding.n > 1`` each sample is scored as its own row, with item id
``"<item_id>#<k>"``; the accuracy is then the mean over all samples (its interval treats
samples as independent, which they are not across one item).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kdanalysis.errors import ConfigError, KDAnalysisError, RunFailedError
from kdanalysis.io import atomic_write_json, atomic_write_text
from kdanalysis.results import read_items, read_results, validate_results, write_items, write_results
from kdanalysis.runfolder import CONFIG_FILE, ENV_FILE, RunState, now_utc, read_status, write_status
from runners.env import environment_snapshot
from runners.evaluate.backend import Backend, GenerationRequest, ProgressCallback, multiple_choice
from runners.evaluate.config import EvalConfig, load_eval_config
from runners.evaluate.prompts import format_prompt
from runners.evaluate.scoring import (
    ITEMS_FILE,
    RESULTS_FILE,
    RunMeta,
    score_outputs,
    write_run_meta,
)
from runners.evaluate.tasks import TaskItem, TaskSpec, load_items

__all__ = [
    "THROUGHPUT_FILE",
    "TASKS_DIR",
    "run_eval",
    "make_backend",
]

logger = logging.getLogger(__name__)

THROUGHPUT_FILE = "throughput.json"
TASKS_DIR = "tasks"


@dataclasses.dataclass
class _TaskWork:
    spec: TaskSpec
    items: list[TaskItem]
    prompts: list[str]


def make_backend(config: EvalConfig) -> Backend:
    """Load the model of ``config`` into the configured backend (HF or vLLM)."""
    if config.backend == "vllm":
        from runners.evaluate.vllm_backend import VLLMBackend

        opts = config.vllm
        return VLLMBackend(
            config.model,
            adapter=config.adapter,
            gguf_file=config.gguf_file,
            dtype=config.dtype,
            seed=config.decoding.seed,
            tensor_parallel_size=opts.tensor_parallel_size,
            data_parallel_size=opts.data_parallel_size,
            enable_prefix_caching=opts.enable_prefix_caching,
            gpu_memory_utilization=opts.gpu_memory_utilization,
            max_model_len=opts.max_model_len,
            replica_timeout_s=opts.replica_timeout_s,
        )
    from runners.evaluate.hf_backend import HFBackend

    return HFBackend.from_pretrained(
        config.model,
        adapter=config.adapter,
        gguf_file=config.gguf_file,
        dtype=config.dtype,
        device=config.device,
        batch_size=config.batch_size,
    )


def _prepare_tasks(config: EvalConfig) -> list[_TaskWork]:
    specs = config.task_specs()  # every unknown id fails before any file is read
    work = []
    for spec in specs:
        if config.mode == "multiple_choice" and spec.answer_type == "number":
            raise ConfigError(f"task {spec.id!r} has numeric answers; mode 'multiple_choice' needs labels")
        items = load_items(spec, config.data_dir)
        if config.limit is not None:
            items = items[: config.limit]
        prompts = [format_prompt(it.instruction, it.input, style=config.prompt_style) for it in items]
        work.append(_TaskWork(spec, items, prompts))
    return work


def _run_meta(config: EvalConfig, run_id: str, run_dir: Path) -> RunMeta:
    m = config.meta
    return RunMeta(
        run_id=run_id,
        student=config.student,
        study=m.study,
        method=m.method,
        teacher=m.teacher,
        teacher_kind=m.teacher_kind,
        temperature=m.temperature,
        teacher_noise=m.teacher_noise,
        seed=m.seed,
        model=config.model,
        adapter=config.adapter or "",
        prompt_style=config.prompt_style,
        extractor=config.extractor,
        method_label=m.method_label,
        source=str(run_dir),
    )


def _check_resume(config: EvalConfig, run_dir: Path) -> None:
    previous = run_dir / CONFIG_FILE
    if not previous.is_file():
        return
    old = load_eval_config(previous)
    if old.fingerprint() != config.fingerprint():
        before, now = old.resolved(), config.resolved()
        changed = sorted(k for k, v in now.items() if before.get(k) != v and k != "run_id")
        raise ConfigError(
            f"{run_dir} holds a run with a different configuration (changed: {', '.join(changed)}); "
            f"use a new output folder or delete {run_dir}"
        )


def _completed(run_dir: Path, config: EvalConfig) -> bool:
    """True if ``run_dir`` holds a completed run of ``config``: it is left untouched, so that
    what was done to it afterwards (e.g. ``kdanalysis rescore``) is kept."""
    status = read_status(run_dir)
    return (
        status is not None
        and status["state"] is RunState.DONE
        and status.get("fingerprint") == config.fingerprint()
    )


def _task_done(run_dir: Path, task_id: str) -> bool:
    folder = run_dir / TASKS_DIR / task_id
    return (folder / ITEMS_FILE).is_file() and (folder / RESULTS_FILE).is_file()


@contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[Any]:
    """Yield ``advance(description, n)``; draws a rich progress bar with items/s when enabled."""
    if not enabled:
        yield lambda description, n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class _ItemsPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.2f} items/s" if task.speed else "- items/s")

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _ItemsPerSecond(),
        TimeElapsedColumn(),
    ) as progress:
        bar = progress.add_task("evaluating", total=total)

        def advance(description: str, n: int) -> None:
            progress.update(bar, advance=n, description=description)

        yield advance


def _replicate(work: _TaskWork, n: int) -> tuple[list[TaskItem], list[str]]:
    if n == 1:
        return work.items, work.prompts
    items = [dataclasses.replace(it, item_id=f"{it.item_id}#{k}") for it in work.items for k in range(n)]
    prompts = [p for p in work.prompts for _ in range(n)]
    return items, prompts


def _infer(
    backend: Backend, config: EvalConfig, chunk: Sequence[_TaskWork], progress: ProgressCallback
) -> list[tuple[list[str], list[int | None]]]:
    """Outputs and token counts of every task in ``chunk`` (one backend call for all of them)."""
    if config.mode == "multiple_choice":
        contexts = [p for w in chunk for p in w.prompts]
        choices = [w.spec.labels for w in chunk for _ in w.prompts]
        picks = multiple_choice(backend, contexts, choices, progress=progress)
        flat_out: list[str] = [labels[i] for labels, i in zip(choices, picks, strict=True)]
        flat_tok: list[int | None] = [None] * len(flat_out)
    else:
        requests = [
            GenerationRequest(p, config.decoding, request_id=f"{w.spec.id}/{it.item_id}")
            for w in chunk
            for it, p in zip(w.items, w.prompts, strict=True)
        ]
        results = backend.generate(requests, progress=progress)
        flat_out = [t for r in results for t in r.texts]
        flat_tok = [c for r in results for c in r.n_tokens]
    per_task = []
    start = 0
    samples = 1 if config.mode == "multiple_choice" else config.decoding.n
    for w in chunk:
        size = len(w.items) * samples
        per_task.append((flat_out[start : start + size], flat_tok[start : start + size]))
        start += size
    return per_task


def run_eval(
    config: EvalConfig,
    out_dir: str | Path,
    *,
    backend: Backend | None = None,
    show_progress: bool = False,
) -> Path:
    """Evaluate ``config.model`` on ``config.tasks`` and write the run folder ``out_dir``.

    Parameters
    ----------
    config : EvalConfig
        The run; validated, tasks and test files are checked before any model is loaded.
    out_dir : str or Path
        Run folder (created). If it already holds this configuration, finished tasks
        are skipped; a completed run is returned as it is.
    backend : Backend, optional
        An already loaded backend to use (it is not closed); by default the configured
        backend is loaded when some task still has to run, and closed at the end.
    show_progress : bool
        Draw a rich progress bar with items/s (the command line turns it on).

    Returns
    -------
    Path
        The run folder (layout in the module docstring).

    Raises
    ------
    ConfigError
        Unknown task (the message lists the known ones), missing test file, changed
        configuration in an existing run folder, ...
    RunFailedError
        Inference or scoring failed; the message names the run folder and task, and the
        tasks finished before are kept.
    """
    run_dir = Path(out_dir)
    run_id = config.run_id or run_dir.resolve().name
    work = _prepare_tasks(config)
    meta = _run_meta(config, run_id, run_dir)
    _check_resume(config, run_dir)
    if _completed(run_dir, config):
        logger.info("%s: already completed with this configuration; nothing to do", run_dir)
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config.resolved(), sort_keys=False))
    write_run_meta(run_dir, meta)
    atomic_write_json(run_dir / ENV_FILE, environment_snapshot())

    done = [w.spec.id for w in work if _task_done(run_dir, w.spec.id)]
    pending = [w for w in work if w.spec.id not in done]
    status: dict[str, Any] = {
        "state": RunState.RUNNING,
        "fingerprint": config.fingerprint(),
        "tasks_done": list(done),
        "tasks_pending": [w.spec.id for w in pending],
        "error": None,
        "started_utc": now_utc(),
        "finished_utc": None,
    }
    write_status(run_dir, status)
    if done:
        logger.info("%s: skipping finished task(s) %s", run_dir, ", ".join(done))

    throughput: dict[str, Any] = {
        "backend": config.backend,
        "tasks_skipped": done,
        "tasks_run": [],
        "load_s": 0.0,
        "wall_s": 0.0,
        "per_task": {},
    }
    current = "model loading"
    try:
        if pending:
            throughput.update(_run_pending(config, run_dir, meta, pending, backend, show_progress, status))
        current = "merging"
        _merge(run_dir, work)
    except Exception as exc:
        status.update(
            state=RunState.FAILED,
            error=f"{type(exc).__name__}: {exc}".splitlines()[0],
            finished_utc=now_utc(),
        )
        write_status(run_dir, status)
        if isinstance(exc, KDAnalysisError):
            raise
        failed_in = status.get("current_task") or current
        raise RunFailedError(
            f"evaluation run {run_dir} failed during {failed_in}: {type(exc).__name__}: {exc}; "
            f"finished tasks ({', '.join(status['tasks_done']) or 'none'}) are kept and a rerun skips them"
        ) from exc
    status.update(state=RunState.DONE, finished_utc=now_utc(), tasks_pending=[])
    status.pop("current_task", None)
    write_status(run_dir, status)
    atomic_write_json(run_dir / THROUGHPUT_FILE, throughput)
    return run_dir


def _run_pending(
    config: EvalConfig,
    run_dir: Path,
    meta: RunMeta,
    pending: list[_TaskWork],
    backend: Backend | None,
    show_progress: bool,
    status: dict[str, Any],
) -> dict[str, Any]:
    """Run inference + scoring for the pending tasks; return the throughput fields."""
    t0 = time.perf_counter()
    owned = backend is None
    engine = make_backend(config) if backend is None else backend
    load_s = time.perf_counter() - t0
    # vLLM schedules best with everything at once; the HF backend runs (and saves) task by task.
    chunks = [pending] if config.backend == "vllm" else [[w] for w in pending]
    samples = 1 if config.mode == "multiple_choice" else config.decoding.n
    per_task: dict[str, dict[str, Any]] = {}
    wall = 0.0
    total = sum(len(w.items) for w in pending)
    with engine if owned else nullcontext(engine), _progress_bar(total, show_progress) as advance:
        for chunk in chunks:
            label = ", ".join(w.spec.id for w in chunk)
            status["current_task"] = label
            write_status(run_dir, status)
            start = time.perf_counter()
            outputs = _infer(engine, config, chunk, partial(advance, label))
            elapsed = time.perf_counter() - start
            wall += elapsed
            chunk_items = sum(len(w.items) for w in chunk)
            for w, (texts, counts) in zip(chunk, outputs, strict=True):
                items, prompts = _replicate(w, samples)
                items_df, results_df = score_outputs(
                    w.spec,
                    items,
                    texts,
                    run_meta=meta,
                    prompts=prompts,
                    n_tokens=counts if config.mode == "generate" else None,
                )
                folder = run_dir / TASKS_DIR / w.spec.id
                write_items(items_df, folder / ITEMS_FILE)
                write_results(results_df, folder / RESULTS_FILE)
                per_task[w.spec.id] = {
                    "items": len(w.items),
                    "samples": len(items),
                    "generated_tokens": int(sum(c for c in counts if c is not None)),
                    "wall_s": elapsed * len(w.items) / chunk_items,
                }
                status["tasks_done"].append(w.spec.id)
                status["tasks_pending"].remove(w.spec.id)
                write_status(run_dir, status)
    final_batch = getattr(engine, "batch_size", config.batch_size)
    n_items = sum(v["items"] for v in per_task.values())
    tokens = sum(v["generated_tokens"] for v in per_task.values())
    return {
        "batch_size": final_batch,
        "load_s": load_s,
        "wall_s": wall,
        "items": n_items,
        "samples": sum(v["samples"] for v in per_task.values()),
        "generated_tokens": tokens,
        "items_per_s": n_items / wall if wall > 0 else None,
        "tokens_per_s": tokens / wall if wall > 0 else None,
        "tasks_run": list(per_task),
        "per_task": per_task,
    }


def _merge(run_dir: Path, work: Sequence[_TaskWork]) -> None:
    folders = [run_dir / TASKS_DIR / w.spec.id for w in work]
    items = pd.concat([read_items(f / ITEMS_FILE) for f in folders], ignore_index=True)
    results = pd.concat([read_results(f / RESULTS_FILE) for f in folders], ignore_index=True)
    write_items(items, run_dir / ITEMS_FILE)
    write_results(validate_results(results), run_dir / RESULTS_FILE)
