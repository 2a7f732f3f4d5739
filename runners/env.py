"""Environment snapshot written into every run folder (reproducibility)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import sys
from typing import Any

from kdanalysis.runfolder import now_utc

__all__ = ["environment_snapshot"]

_PACKAGES = (
    "kdanalysis",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "tokenizers",
    "vllm",
    "numpy",
    "pandas",
    "sacrebleu",
)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_snapshot() -> dict[str, Any]:
    """Return versions, platform and device facts as a JSON-ready dict.

    Torch is imported only if it is already installed; CUDA facts are included when a
    GPU is visible.
    """
    snap: dict[str, Any] = {
        "time_utc": now_utc(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "packages": {p: v for p in _PACKAGES if (v := _version(p)) is not None},
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if "torch" in snap["packages"]:
        import torch

        snap["torch_threads"] = torch.get_num_threads()
        snap["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            snap["cuda_version"] = torch.version.cuda
            snap["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return snap
