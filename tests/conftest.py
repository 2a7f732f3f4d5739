"""Shared fixtures and automatic skipping of hardware/package-dependent markers."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "kd_generalization"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _slurm_unavailable() -> str | None:
    """Why the tests marked ``slurm`` cannot run here (None: a cluster answers)."""
    if shutil.which("sbatch") is None:
        return "no SLURM here (sbatch not found): start one with scripts/slurm-local.sh start"
    if importlib.util.find_spec("submitit") is None:
        return "submitit is not installed (pip install -e '.[slurm]')"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "the SLURM cluster does not answer (sinfo timed out): scripts/slurm-local.sh status"
    states = proc.stdout.split()  # a suffix such as "-" (planned) is a flag; "*" is "not responding"
    if proc.returncode or not {"idle", "mixed", "allocated"} & {s.rstrip("-~#!%$@^") for s in states}:
        said = (proc.stderr.strip() or " ".join(states) or "no nodes").splitlines()[0]
        return f"the SLURM cluster does not answer ({said}): scripts/slurm-local.sh start"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = {
        "slow": None if config.getoption("--runslow") else "slow test: use --runslow",
        "vllm": None if importlib.util.find_spec("vllm") else "vLLM is not installed",
        "browser": None if shutil.which("chromium") else "Debian chromium is not installed",
    }
    need_gpu = any("gpu" in item.keywords for item in items)
    reasons["gpu"] = None if (not need_gpu or _cuda_available()) else "no CUDA GPU"
    if any("slurm" in item.keywords for item in items):
        reasons["slurm"] = _slurm_unavailable()
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The paper's released results and test sets (``../shared/data/kd_generalization``)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str]]:
    """Run a command app's ``main`` (``kdanalysis.cli.main`` or ``runners.cli.main``) on ``args``
    as its command line: returns (exit code, stdout + stderr)."""

    def run(main: Callable[[], object], *args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["kdanalysis", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run
