"""kdanalysis: knowledge-distillation research, from GPU grids to honest statistics.

The notebook face::

    import kdanalysis as kd
    res = kd.load_paper_results()          # the published study, tidy
    gains = kd.stats.gains(res)            # KD minus SFT per unit and task
    table = kd.studies.paper_hypotheses(res)

Submodules (``stats``, ``studies``, ``plots``, ``report``) load on first access, and
nothing here imports torch, transformers or vllm.
"""

from __future__ import annotations

import importlib
from typing import Any

from kdanalysis.errors import (
    BackendUnavailableError,
    ConfigError,
    KDAnalysisError,
    RunFailedError,
    SchemaError,
)
from kdanalysis.results import read_results as load_results

__version__ = "0.1.0"

_SUBMODULES = ("stats", "studies", "plots", "report", "results", "datasets")
_LAZY_FUNCTIONS = {
    "load_paper_results": "kdanalysis.datasets",
    "load_paper_models": "kdanalysis.datasets",
}

__all__ = [
    "load_results",
    "load_paper_results",
    "load_paper_models",
    "KDAnalysisError",
    "ConfigError",
    "SchemaError",
    "BackendUnavailableError",
    "RunFailedError",
    *_SUBMODULES,
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"kdanalysis.{name}")
    if name in _LAZY_FUNCTIONS:
        return getattr(importlib.import_module(_LAZY_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'kdanalysis' has no attribute {name!r}")
