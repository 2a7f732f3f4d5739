"""Teacher-student fidelity of a student run against its teacher's run on the same items.

Three metrics per task, written as rows of the results contract:

``agreement`` (percent)
    Share of items whose extracted student answer matches the teacher's, with the same
    rule as correctness (:func:`runners.evaluate.extract.answers_match`: numbers within
    0.001, labels/letters identical). An item where either side extracted nothing never
    agrees. ``n`` = items; the interval is the 95 % Wilson interval.
``bleu`` (0-100)
    sacreBLEU corpus BLEU (default 13a tokenisation, exponential smoothing) of the
    student's outputs, hypotheses, against the teacher's outputs as the single
    reference stream: ``sacrebleu.corpus_bleu(student, [teacher]).score``. Computed for
    every task; the paper's fidelity analysis uses it for math only (on commonsense the
    outputs are one-line label sentences).
``kl`` (nats per token, optional)
    Token-level KL(p_teacher || p_student) on the teacher's own outputs, both models
    teacher-forced on ``prompt + teacher output``: the per-position KL summed over the
    vocabulary, averaged over all response tokens of the task. Needs both models
    (``runners.models.load_causal_lm``) and the test sets (to rebuild the prompts, whose
    hashes must match the saved ``prompt_hash``). When the two models' output layers
    differ in size (padded vocabularies, e.g. Qwen2.5-7B/14B vs 0.5B), both
    distributions are restricted to the common first ``V`` ids and renormalised.

Rows carry the student run's key columns; ``teacher`` is the teacher run's ``student``
(the teacher model) and ``run_id`` is ``"<student run_id>|<teacher run_id>"``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pandas as pd
import sacrebleu
from statsmodels.stats.proportion import proportion_confint

from kdanalysis.errors import BackendUnavailableError, ConfigError
from kdanalysis.results import NO_TEACHER, read_items, results_frame, validate_items, write_results
from runners.evaluate.config import read_run_tasks
from runners.evaluate.extract import answers_match
from runners.evaluate.prompts import PromptStyle, format_prompt, prompt_hash
from runners.evaluate.scoring import CI_LEVEL, ITEMS_FILE, RunMeta, read_run_meta
from runners.evaluate.tasks import TaskRegistry, load_items

__all__ = ["join_runs", "fidelity_frame", "fidelity_rows", "teacher_forced_kl"]

logger = logging.getLogger(__name__)
_SHOWN = 3


def join_runs(student_items: pd.DataFrame, teacher_items: pd.DataFrame) -> pd.DataFrame:
    """Pair the items of a student run and a teacher run on ``(task, item_id)``.

    Returns
    -------
    pandas.DataFrame
        Columns task, item_id, prompt_hash, gold, pred_student, pred_teacher,
        output_student, output_teacher; sorted by (task, item_id).

    Raises
    ------
    ConfigError
        If the two runs do not cover the same items (with the counts and a few examples
        of each side's extra items), or a paired item has a different prompt or gold answer.
    """
    s = validate_items(student_items, what="student items")
    t = validate_items(teacher_items, what="teacher items")
    keys = ["task", "item_id"]
    merged = s.merge(t, on=keys, how="outer", suffixes=("_student", "_teacher"), indicator=True)
    only_s = merged[merged["_merge"] == "left_only"]
    only_t = merged[merged["_merge"] == "right_only"]
    if len(only_s) or len(only_t):

        def examples(df: pd.DataFrame) -> str:
            pairs = [f"{a}/{b}" for a, b in zip(df["task"], df["item_id"], strict=True)][:_SHOWN]
            return ", ".join(pairs) + (" ..." if len(df) > _SHOWN else "")

        raise ConfigError(
            f"student and teacher runs cover different items: student {len(s)}, teacher {len(t)}, "
            f"common {len(merged) - len(only_s) - len(only_t)}; only in student: {len(only_s)} "
            f"[{examples(only_s)}]; only in teacher: {len(only_t)} [{examples(only_t)}]"
        )
    for column in ("prompt_hash", "gold"):
        differ = merged[f"{column}_student"] != merged[f"{column}_teacher"]
        if differ.any():
            first = merged[differ].iloc[0]
            raise ConfigError(
                f"student and teacher runs differ in {column} on {int(differ.sum())} item(s), "
                f"first {first['task']}/{first['item_id']}: the runs did not see the same questions"
            )
    return pd.DataFrame(
        {
            "task": merged["task"],
            "item_id": merged["item_id"],
            "prompt_hash": merged["prompt_hash_student"],
            "gold": merged["gold_student"],
            "pred_student": merged["pred_student"],
            "pred_teacher": merged["pred_teacher"],
            "output_student": merged["output_student"],
            "output_teacher": merged["output_teacher"],
        }
    )


def _row_keys(student: RunMeta, teacher: RunMeta) -> dict[str, Any]:
    if student.teacher not in (NO_TEACHER, teacher.student):
        logger.warning(
            "student run %s was distilled from %s but is compared with a run of %s",
            student.run_id,
            student.teacher,
            teacher.student,
        )
    if student.teacher == NO_TEACHER:
        kind = "base" if teacher.method == "base" else "task_aware"
    else:
        kind = cast(str, student.teacher_kind)
    return {
        **student.key_columns(),
        "teacher": teacher.student,
        "teacher_kind": kind,
        "run_id": f"{student.run_id}|{teacher.run_id}",
    }


def fidelity_frame(
    student_items: pd.DataFrame,
    teacher_items: pd.DataFrame,
    student_meta: RunMeta,
    teacher_meta: RunMeta,
    *,
    tasks: TaskRegistry,
    kl_by_task: dict[str, tuple[float, int]] | None = None,
) -> pd.DataFrame:
    """Agreement and BLEU rows (plus given KL values) from two per-item tables.

    Parameters
    ----------
    student_items, teacher_items : pandas.DataFrame
        Per-item tables of the two runs (same items).
    student_meta, teacher_meta : RunMeta
        Identities of the two runs.
    tasks : TaskRegistry
        Specs of the runs' tasks (answer comparison and domain).
    kl_by_task : dict, optional
        ``{task: (kl_nats_per_token, n_items)}`` from :func:`teacher_forced_kl`.

    Returns
    -------
    pandas.DataFrame
        Results rows (:data:`kdanalysis.results.RESULT_COLUMNS`), per task: ``agreement``
        (percent, Wilson CI), ``bleu`` (0-100), and ``kl`` where given.
    """
    joined = join_runs(student_items, teacher_items)
    keys = _row_keys(student_meta, teacher_meta)
    records = []
    for task_id, group in joined.groupby("task", sort=False):
        spec = tasks[str(task_id)]
        n = len(group)
        agree = sum(
            answers_match(spec, a, b)
            for a, b in zip(group["pred_student"], group["pred_teacher"], strict=True)
        )
        low, high = proportion_confint(agree, n, alpha=1 - CI_LEVEL, method="wilson")
        bleu = sacrebleu.corpus_bleu(list(group["output_student"]), [list(group["output_teacher"])])
        base = {**keys, "domain": spec.domain, "task": spec.id, "n": n}
        records.append(
            {
                **base,
                "metric": "agreement",
                "value": 100.0 * agree / n,
                "ci_low": 100 * low,
                "ci_high": 100 * high,
            }
        )
        records.append({**base, "metric": "bleu", "value": bleu.score})
        if kl_by_task and spec.id in kl_by_task:
            records.append({**base, "metric": "kl", "value": kl_by_task[spec.id][0]})
    return results_frame(records)


def teacher_forced_kl(
    student_model: Any,
    teacher_model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    responses: Sequence[str],
    *,
    batch_size: int = 4,
    max_length: int | None = None,
) -> list[tuple[float, int]]:
    """Per-item summed KL(teacher || student) over the response tokens, teacher-forced.

    Each sequence is ``tokenizer(prompt)`` followed by ``tokenizer(response,
    add_special_tokens=False)`` (the token boundary of generation), cut at ``max_length``
    tokens. The logits at position ``j - 1`` give the distributions of response token
    ``j``; ``KL = sum_v p_T(v) (log p_T(v) - log p_S(v))`` via
    ``torch.nn.functional.kl_div(log_target=True)``, over the first
    ``min(V_student, V_teacher)`` ids.

    Returns
    -------
    list of (float, int)
        Per item: the KL summed over its response tokens (nats) and the number of
        response tokens (0 for an empty response).
    """
    import torch
    import torch.nn.functional as F

    if len(prompts) != len(responses):
        raise ConfigError(f"teacher_forced_kl: {len(prompts)} prompts for {len(responses)} responses")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(student_model.parameters()).device
    teacher_device = next(teacher_model.parameters()).device
    sequences: list[tuple[list[int], int]] = []
    for prompt, response in zip(prompts, responses, strict=True):
        prompt_ids = list(tokenizer(prompt)["input_ids"])
        response_ids = list(tokenizer(response, add_special_tokens=False)["input_ids"]) if response else []
        sequences.append(((prompt_ids + response_ids)[: max_length or None], len(prompt_ids)))
    # only sequences with at least one response token after the first position are scored
    scored = [i for i, (ids, n_prompt) in enumerate(sequences) if len(ids) > max(n_prompt, 1)]
    results: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    with torch.no_grad():
        for start in range(0, len(scored), batch_size):
            rows = scored[start : start + batch_size]
            width = max(len(sequences[i][0]) for i in rows)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            target = torch.zeros((len(rows), width - 1), dtype=torch.bool)
            for row, index in enumerate(rows):
                ids, n_prompt = sequences[index]
                input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                attention[row, : len(ids)] = 1
                target[row, max(n_prompt, 1) - 1 : len(ids) - 1] = True
            s_logits = student_model(
                input_ids=input_ids.to(device), attention_mask=attention.to(device)
            ).logits
            t_logits = teacher_model(
                input_ids=input_ids.to(teacher_device), attention_mask=attention.to(teacher_device)
            ).logits
            vocab = min(s_logits.shape[-1], t_logits.shape[-1])
            log_s = F.log_softmax(s_logits[:, :-1, :vocab].float().cpu(), dim=-1)
            log_t = F.log_softmax(t_logits[:, :-1, :vocab].float().cpu(), dim=-1)
            per_token = F.kl_div(log_s, log_t, log_target=True, reduction="none").sum(-1)
            per_token = per_token.masked_fill(~target, 0.0)
            for row, index in enumerate(rows):
                results[index] = (float(per_token[row].sum()), int(target[row].sum()))
    return results


def _load_model(meta: RunMeta, name_or_path: str | None, adapter: str | None, device: str | None) -> Any:
    name = name_or_path or meta.model
    if not name:
        raise ConfigError(
            f"run {meta.run_id}: no model recorded in run_meta.json; pass the model name or path for KL"
        )
    try:
        from runners.models import load_causal_lm
    except ImportError as exc:
        raise BackendUnavailableError(
            f"KL needs torch and transformers ({exc}); install the 'train' extra"
        ) from exc
    return load_causal_lm(
        name, device=device, adapter=adapter if adapter is not None else (meta.adapter or None)
    )


def _kl_by_task(
    joined: pd.DataFrame,
    teacher_meta: RunMeta,
    tasks: TaskRegistry,
    data_dir: str | Path | None,
    models: tuple[Any, Any, Any],
    batch_size: int,
    max_length: int | None,
) -> dict[str, tuple[float, int]]:
    student_model, teacher_model, tokenizer = models
    style = cast(PromptStyle, teacher_meta.prompt_style)
    out: dict[str, tuple[float, int]] = {}
    for task_id, group in joined.groupby("task", sort=False):
        by_id = {it.item_id: it for it in load_items(tasks[str(task_id)], data_dir)}
        prompts = []
        for item_id, saved_hash in zip(group["item_id"], group["prompt_hash"], strict=True):
            if item_id not in by_id:
                raise ConfigError(f"{task_id}: item {item_id} of the runs is not in the test set")
            item = by_id[item_id]
            prompt = format_prompt(item.instruction, item.input, style=style)
            if prompt_hash(prompt) != saved_hash:
                raise ConfigError(
                    f"{task_id}/{item_id}: the rebuilt prompt (style {style!r}) does not match the run's "
                    "prompt_hash; the runs used other prompts or another test-set file"
                )
            prompts.append(prompt)
        per_item = teacher_forced_kl(
            student_model,
            teacher_model,
            tokenizer,
            prompts,
            list(group["output_teacher"]),
            batch_size=batch_size,
            max_length=max_length,
        )
        tokens = sum(n for _, n in per_item)
        if tokens == 0:
            logger.warning("%s: the teacher's outputs have no tokens; KL skipped", task_id)
            continue
        out[str(task_id)] = (sum(kl for kl, _ in per_item) / tokens, len(group))
    return out


def fidelity_rows(
    student_run_dir: str | Path,
    teacher_run_dir: str | Path,
    *,
    kl: bool = False,
    data_dir: str | Path | None = None,
    tasks: TaskRegistry | None = None,
    student_model: str | None = None,
    teacher_model: str | None = None,
    student_adapter: str | None = None,
    teacher_adapter: str | None = None,
    device: str | None = None,
    batch_size: int = 4,
    max_length: int | None = None,
    out: str | Path | None = None,
) -> pd.DataFrame:
    """Fidelity of a student run to its teacher run, as results rows.

    Parameters
    ----------
    student_run_dir, teacher_run_dir : str or Path
        Run folders with ``items.parquet`` and ``run_meta.json``.
    kl : bool
        Also compute KL(teacher || student) on the teacher's outputs (loads both models).
    data_dir : str or Path, optional
        Test-set folder, needed with ``kl`` to rebuild the prompts.
    tasks : TaskRegistry, optional
        Specs of the runs' tasks; default: the student run's
        (:func:`runners.evaluate.config.read_run_tasks`).
    student_model, teacher_model : str, optional
        Model names/paths for KL; default to the runs' ``run_meta.model``.
    student_adapter, teacher_adapter : str, optional
        LoRA adapters; default to the runs' ``run_meta.adapter``.
    device : str, optional
        Device for both models (``load_causal_lm`` default when None).
    batch_size, max_length : int
        Teacher-forcing batch size and sequence cut-off (tokens).
    out : str or Path, optional
        Also write the rows here (``.parquet`` or ``.csv``).

    Returns
    -------
    pandas.DataFrame
        Results rows per task: ``agreement``, ``bleu`` and, with ``kl``, ``kl`` (see the
        module docstring for definitions and units).

    Raises
    ------
    ConfigError
        Mismatched item sets (with counts), missing run metadata, missing model names.
    BackendUnavailableError
        ``kl=True`` without torch/transformers.
    """
    s_meta, t_meta = read_run_meta(student_run_dir), read_run_meta(teacher_run_dir)
    s_items = read_items(Path(student_run_dir) / ITEMS_FILE)
    t_items = read_items(Path(teacher_run_dir) / ITEMS_FILE)
    tasks = read_run_tasks(student_run_dir) if tasks is None else tasks
    kl_by_task = None
    if kl:
        joined = join_runs(s_items, t_items)
        s_model, s_tok = _load_model(s_meta, student_model, student_adapter, device)
        t_model, t_tok = _load_model(t_meta, teacher_model, teacher_adapter, device)
        if s_tok.get_vocab() != t_tok.get_vocab():
            raise ConfigError(
                f"student {s_meta.student} and teacher {t_meta.student} use different tokenizers; "
                "token-level KL needs a shared vocabulary"
            )
        models = (s_model, t_model, t_tok)
        kl_by_task = _kl_by_task(joined, t_meta, tasks, data_dir, models, batch_size, max_length)
    rows = fidelity_frame(s_items, t_items, s_meta, t_meta, tasks=tasks, kl_by_task=kl_by_task)
    if out is not None:
        write_results(rows, out)
    return rows
