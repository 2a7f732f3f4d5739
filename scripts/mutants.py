"""Apply each known wiring breakage to a copy of the code and check that a test fails.

Every mutant is one exact text replacement in a file of ``runners/``. For each, the script
copies ``runners/``, the tests that guard it and their conftests into a temporary
directory, applies the replacement there (the working tree is never touched), runs those
tests with pytest from the copy (so ``import runners`` resolves to the mutated copy) and
records which tests failed. The unmutated copy is run first and must pass.

A mutant whose text is no longer found in its file is reported as ``stale`` (the code
changed: update the mutant), a mutant no test fails as ``survived``; either makes the exit
status 1. Prints one JSON object per mutant and a summary line.

Run: ``python scripts/mutants.py [--only NAME ...]``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Tests run against every mutant.
TESTS = (
    "tests/runners/distill/test_wiring_mutants.py",
    "tests/runners/distill/test_cache_bound.py",
    "tests/runners/distill/test_on_policy_generation.py",
)


@dataclass(frozen=True)
class Mutant:
    """One deliberate breakage: replace ``old`` by ``new`` in ``path`` (relative to the repository)."""

    name: str
    path: str
    old: str
    new: str


MUTANTS = (
    Mutant(
        "chunked backward ignores the incoming gradient",
        "runners/distill/losses.py",
        "return grad.mul_(grad_output.to(grad.dtype)), None,",
        "return grad, None,",
    ),
    Mutant(
        "chunked backward squares the incoming gradient",
        "runners/distill/losses.py",
        "return grad.mul_(grad_output.to(grad.dtype)), None,",
        "return grad.mul_(grad_output.to(grad.dtype) ** 2), None,",
    ),
    Mutant(
        "KD mask off by one",
        "runners/distill/methods.py",
        "mask = labels[:, 1:] != IGNORE_INDEX",
        "mask = labels[:, :-1] != IGNORE_INDEX",
    ),
    Mutant(
        "KD logits off by one",
        "runners/distill/methods.py",
        "align_logits(student_logits[:, :-1], teacher[:, :-1],",
        "align_logits(student_logits[:, 1:], teacher[:, 1:],",
    ),
    Mutant(
        "alpha mix of KD and CE inverted",
        "runners/distill/methods.py",
        "alpha * kd + (1.0 - alpha) * ce",
        "(1.0 - alpha) * kd + alpha * ce",
    ),
    Mutant(
        "beta not passed from the config",
        "runners/distill/methods.py",
        'self.kd_params = {"beta": config.beta}',
        "self.kd_params = {}",
    ),
    Mutant(
        "skew_alpha not passed from the config",
        "runners/distill/methods.py",
        'self.kd_params = {"alpha": config.skew_alpha}',
        "self.kd_params = {}",
    ),
    Mutant(
        "on-policy continuations drop their EOS",
        "runners/distill/methods.py",
        "cut = row.index(eos_id) + 1 if eos_id in row else len(row)",
        "cut = row.index(eos_id) if eos_id in row else len(row)",
    ),
    Mutant(
        "the cache returns the τ = 1 rest mass at any τ",
        "runners/distill/cache.py",
        "rest_key = _rest_key(temperature)",
        "rest_key = _rest_key(1.0)",
    ),
    Mutant(
        "on-policy samples ignore the prompt style's stop strings",
        "runners/distill/methods.py",
        "                stop=self.stop,\n",
        "                stop=(),\n",
    ),
)


def _copy_tree(dest: Path) -> None:
    """The code and the tests a mutant run needs (no caches)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "runners", dest / "runners", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    shutil.copy2(ROOT / "tests" / "conftest.py", dest / "tests" / "conftest.py")
    for test in TESTS:
        folder = Path(test).parent
        (dest / folder).mkdir(parents=True, exist_ok=True)
        for conftest in (ROOT / folder).glob("conftest.py"):
            shutil.copy2(conftest, dest / folder / conftest.name)
        shutil.copy2(ROOT / test, dest / test)


def _pytest(copy: Path) -> tuple[int, list[str], str]:
    """Run the tests in ``copy``: exit code, failed test ids, output tail."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *TESTS, "-q", "-rf", "-p", "no:cacheprovider"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=False,
    )
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.MULTILINE)
    return proc.returncode, failed, proc.stdout[-2000:] + proc.stderr[-2000:]


def run_mutant(mutant: Mutant | None) -> dict[str, object]:
    """Run the tests on a fresh copy, mutated by ``mutant`` (``None``: unmutated baseline)."""
    with tempfile.TemporaryDirectory(prefix="kd-mutant-") as tmp:
        copy = Path(tmp)
        (copy / "tests").mkdir()
        _copy_tree(copy)
        if mutant is not None:
            target = copy / mutant.path
            text = target.read_text(encoding="utf-8")
            if text.count(mutant.old) != 1:
                return {"mutant": mutant.name, "status": "stale", "found": text.count(mutant.old)}
            target.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")
        code, failed, tail = _pytest(copy)
    name = mutant.name if mutant else "baseline (no mutant)"
    if mutant is None:
        status = "passed" if code == 0 else "baseline failed"
    else:
        status = (
            "killed" if code == 1 and failed else ("survived" if code == 0 else f"error (pytest exit {code})")
        )
    record: dict[str, object] = {"mutant": name, "status": status, "failed_tests": failed}
    if status not in ("killed", "passed"):
        record["output_tail"] = tail
    return record


def main(argv: list[str] | None = None) -> int:
    """Run the baseline and every (or every ``--only``) mutant; 0 when all are killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="mutant names to run (default: all)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only]
    if args.only is not None and len(chosen) != len(args.only):
        parser.error(f"unknown mutant name; allowed: {[m.name for m in MUTANTS]}")
    baseline = run_mutant(None)
    print(json.dumps(baseline), flush=True)
    if baseline["status"] != "passed":
        return 1
    records = []
    for mutant in chosen:
        records.append(run_mutant(mutant))
        print(json.dumps(records[-1]), flush=True)
    killed = sum(r["status"] == "killed" for r in records)
    print(json.dumps({"killed": killed, "total": len(records)}))
    return 0 if killed == len(records) else 1


if __name__ == "__main__":
    sys.exit(main())
