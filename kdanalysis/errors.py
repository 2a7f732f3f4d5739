"""Exception hierarchy of kdanalysis.

Every error a user can cause derives from :class:`KDAnalysisError`; the CLI turns
it into one line on stderr and a non-zero exit code (``--debug`` shows the
traceback).
"""

from __future__ import annotations

__all__ = [
    "KDAnalysisError",
    "ConfigError",
    "SchemaError",
    "BackendUnavailableError",
    "RunFailedError",
    "RunFolderError",
    "DiskFullError",
]


class KDAnalysisError(Exception):
    """Base class of all errors raised on purpose by kdanalysis and runners."""


class ConfigError(KDAnalysisError, ValueError):
    """A user file or argument is invalid (unknown key, bad value, impossible combination)."""


class SchemaError(KDAnalysisError, ValueError):
    """A table does not follow the results contract (columns, types, keys)."""


class BackendUnavailableError(KDAnalysisError, ImportError):
    """An optional backend (torch, vLLM, WeasyPrint, submitit, ...) is not installed."""


class RunFailedError(KDAnalysisError, RuntimeError):
    """A training, evaluation or grid cell failed; the message names the run folder."""


class RunFolderError(KDAnalysisError, ValueError):
    """A run folder's files are damaged or not in the run-folder contract (names the file)."""


class DiskFullError(KDAnalysisError, OSError):
    """A file could not be written for lack of space; the message names the path and the free space."""
