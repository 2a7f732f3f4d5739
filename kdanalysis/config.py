"""Reading user configuration files: one place for YAML mapping files and pydantic errors.

The config models themselves live beside what they configure (``runners.distill.config``,
``runners.evaluate.config``, ``runners.grid.spec``); they share these helpers so that every
bad file gives the same kind of one-line :class:`~kdanalysis.errors.ConfigError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kdanalysis.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = ["read_yaml_mapping", "validation_error_message"]


def read_yaml_mapping(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """Read a YAML (or JSON) file that must hold a mapping of fields.

    Parameters
    ----------
    path : path-like
        The file.
    what : str
        What the file configures, for messages (e.g. ``"evaluation config"``).

    Returns
    -------
    dict
        The parsed mapping.

    Raises
    ------
    ConfigError
        ``cannot read <what> <path>: <reason>`` for a missing/unreadable file,
        ``<path>:<line>:<col>: not valid YAML: <problem>`` for a syntax error, and
        ``<path>: expected a mapping of <what> fields, got <type>`` otherwise.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"cannot read {what} {path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {what} fields, got {type(data).__name__}")
    return data


def validation_error_message(exc: ValidationError, prefix: str) -> str:
    """All problems of a pydantic error on one line: ``prefix: loc: message (got value); ...``.

    An extra field (``extra="forbid"``) reads ``loc: unknown key``.
    """
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown key")
            continue
        got = f" (got {err['input']!r})" if err["type"] != "missing" and "input" in err else ""
        parts.append(f"{loc}: {str(err['msg']).removeprefix('Value error, ')}{got}")
    return f"{prefix}: " + "; ".join(parts)
