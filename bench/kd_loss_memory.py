"""Peak memory and time of the chunked KD loss against the dense computation (CPU).

Setting: student and teacher logits of shape ``[4, 256, 151936]`` (Qwen2.5's vocabulary,
float32 as a CPU model produces them), every token counted, forward KL at τ=1 (``--loss``
chooses another), forward + backward.

How memory is measured: each variant runs in a fresh Python subprocess. The subprocess
builds the inputs (student logits with ``requires_grad``, teacher logits, mask), runs the
loss forward + backward once as a warm-up, frees the gradient, then resets the kernel's
peak-RSS mark (``echo 5 > /proc/self/clear_refs``, which resets ``VmHWM``), records the
current RSS (``VmRSS``: inputs + allocator state), runs forward + backward again and reads
the peak (``VmHWM``) from ``/proc/self/status``. The figure is the peak RSS *above* the
inputs' footprint, so it includes everything the loss allocates — intermediates and the
gradient of the student logits (a ``tokens × V`` tensor both variants must produce).
Where ``/proc/self/clear_refs`` is unavailable, the warm-up is skipped and
``resource.getrusage(...).ru_maxrss`` gives the peak instead.

Prints one JSON object on the last line: ``dense_peak_mb``, ``chunked_peak_mb``, ``ratio``
(chunked / dense; goal <= 0.25), ``dense_s``, ``chunked_s`` (seconds of the measured
forward + backward), ``time_ratio`` (chunked / dense), ``loss_abs_diff`` (the two values
agree), and the setting.

Run: ``python bench/kd_loss_memory.py [--batch 4 --length 256 --vocab 151936 --loss fkl]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in {_STATUS}")


def _reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def measure(variant: str, batch: int, length: int, vocab: int, loss: str, seed: int) -> dict:
    """Run one variant in this process and return its peak memory above the inputs and its time."""
    import torch

    from runners.distill.losses import kd_loss

    gen = torch.Generator().manual_seed(seed)
    student = torch.empty(batch, length, vocab).normal_(generator=gen).requires_grad_()
    teacher = torch.empty(batch, length, vocab).normal_(generator=gen)
    mask = torch.ones(batch, length, dtype=torch.bool)
    chunked = variant == "chunked"

    def step() -> float:
        value = kd_loss(loss, student, teacher, mask, chunked=chunked)
        value.backward()
        return value.item()

    can_reset = _CLEAR_REFS.exists()
    if can_reset:
        step()
        student.grad = None
        can_reset = _reset_peak()
    before_kb = _status_kb("VmRSS")
    start = time.perf_counter()
    value = step()
    seconds = time.perf_counter() - start
    if can_reset:
        peak_kb = _status_kb("VmHWM")
        method = "VmHWM after clear_refs"
    else:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        method = "ru_maxrss"
    return {"peak_mb": (peak_kb - before_kb) / 1024, "seconds": seconds, "loss": value, "method": method}


def _run_child(variant: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--batch",
        str(args.batch),
        "--length",
        str(args.length),
        "--vocab",
        str(args.vocab),
        "--loss",
        args.loss,
        "--seed",
        str(args.seed),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--loss", default="fkl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["dense", "chunked"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.batch, args.length, args.vocab, args.loss, args.seed)))
        return
    dense = _run_child("dense", args)
    chunked = _run_child("chunked", args)
    print(
        json.dumps(
            {
                "dense_peak_mb": round(dense["peak_mb"], 1),
                "chunked_peak_mb": round(chunked["peak_mb"], 1),
                "ratio": round(chunked["peak_mb"] / dense["peak_mb"], 4),
                "dense_s": round(dense["seconds"], 3),
                "chunked_s": round(chunked["seconds"], 3),
                "time_ratio": round(chunked["seconds"] / dense["seconds"], 3),
                "loss_abs_diff": abs(dense["loss"] - chunked["loss"]),
                "logits_mb": round(args.batch * args.length * args.vocab * 4 / 2**20, 1),
                "shape": [args.batch, args.length, args.vocab],
                "loss": args.loss,
                "dtype": "float32",
                "device": "cpu",
                "memory_method": chunked["method"],
            }
        )
    )


if __name__ == "__main__":
    main()
