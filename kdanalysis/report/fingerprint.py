"""Whether a report folder is current: the fingerprint of what the report was built from.

A report depends on its input tables, on the options it was built with and on the code that
computes and renders it. :func:`report_fingerprint` hashes all three: the content of each
input file (SHA-256; a missing file counts as absent), the options, and :func:`code_version`
(the kdanalysis version, the content of its source, template and bundled-data files, and the
versions of the libraries that compute and draw the report), so an upgrade changes it too.

:func:`build_if_changed` keeps the fingerprint in ``OUT_DIR/.fingerprint.json`` with the size
and modification time of every file the build wrote, and skips the next build when the
fingerprint is the same and those files are still as recorded (a deleted, truncated or
rewritten report file means a new build). The record is removed before a build starts and
written, atomically, only once the build has put the whole report in place: a build that
fails or is killed leaves no record, so the next call builds again.

``kdanalysis run-grid`` builds its report through :func:`build_if_changed`, from the
collected tables of the grid. ``kdanalysis report`` always builds: it is asked for a report
explicitly and collects the run folders anew instead of reading collected tables (a report
it writes over a recorded one changes the recorded files, so the next ``run-grid`` builds
again).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdanalysis.errors import ConfigError
from kdanalysis.io import atomic_write_json, file_sha256, read_json

if TYPE_CHECKING:
    from kdanalysis.report.build import ReportPaths

__all__ = ["FINGERPRINT_FILE", "code_version", "report_fingerprint", "report_is_current", "build_if_changed"]

logger = logging.getLogger(__name__)

#: The record of the last complete build, inside the report folder.
FINGERPRINT_FILE = ".fingerprint.json"
#: Packages whose files (source, templates, bundled data) the report is made from.
_CODE_PACKAGES = ("kdanalysis", "kdanalysis._templates", "kdanalysis._bundled")
#: Libraries whose version can change the report's numbers or drawings.
_LIBRARIES = (
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "statsmodels",
    "patsy",
    "matplotlib",
    "seaborn",
    "jinja2",
)


def _library_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def code_version() -> str:
    """A digest of the code that builds a report: it changes with any upgrade or edit of it.

    Returns
    -------
    str
        SHA-256 (hex) of the kdanalysis version, the installed versions of numpy, pandas,
        pyarrow, scipy, statsmodels, patsy, matplotlib, seaborn and jinja2, and the name and
        content of every file of kdanalysis, its report templates and its bundled data
        (compiled ``__pycache__`` files left out).
    """
    import kdanalysis

    digest = hashlib.sha256(f"kdanalysis={kdanalysis.__version__}\n".encode())
    for name in _LIBRARIES:
        digest.update(f"{name}={_library_version(name)}\n".encode())
    for package in _CODE_PACKAGES:
        root = Path(inspect.getfile(importlib.import_module(package))).parent
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if "__pycache__" in rel.parts or not path.is_file():
                continue
            digest.update(f"{package}/{rel.as_posix()}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def report_fingerprint(inputs: Sequence[str | os.PathLike[str]], options: Mapping[str, Any]) -> str:
    """The fingerprint of a report built from ``inputs`` with ``options`` by this code.

    Parameters
    ----------
    inputs : sequence of paths
        The files the report is built from (a missing one counts as absent). Their names
        and contents count, not their folder: a moved runs folder keeps its fingerprint
        unless an option names the folder.
    options : mapping
        Everything else the report depends on (formats, title, source, ...), JSON-able
        (other values count by their ``str``).

    Returns
    -------
    str
        SHA-256 (hex).
    """
    files = [(Path(p).name, file_sha256(p) if Path(p).is_file() else "absent") for p in inputs]
    content = {"code": code_version(), "options": dict(options), "inputs": files}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _signature(path: Path) -> list[int] | None:
    """Size and modification time (ns) of ``path``; None if it is not a file."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns] if path.is_file() else None


def report_is_current(out_dir: str | os.PathLike[str], fingerprint: str) -> bool:
    """Whether ``out_dir`` holds a complete report built with this ``fingerprint``.

    True when ``OUT_DIR/.fingerprint.json`` records ``fingerprint`` and every file of
    that build still has the size and modification time recorded.
    """
    path = Path(out_dir) / FINGERPRINT_FILE
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("fingerprint") != fingerprint:
        return False
    files = record.get("files")
    if not isinstance(files, dict) or not files:
        return False
    return all(_signature(Path(out_dir) / rel) == sig for rel, sig in files.items())


def _forget(out_dir: Path) -> None:
    """Remove the record of ``out_dir`` (before a build replaces the report)."""
    try:
        (out_dir / FINGERPRINT_FILE).unlink(missing_ok=True)
    except NotADirectoryError:
        pass  # out_dir is a file: the build says so
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from exc


def build_if_changed(
    out_dir: str | os.PathLike[str], fingerprint: str, build: Callable[[], ReportPaths]
) -> ReportPaths | None:
    """Run ``build`` unless ``out_dir`` holds a current report; record the fingerprint after it.

    Parameters
    ----------
    out_dir : path
        The report folder ``build`` writes (the ``out_dir`` of the paths it returns).
    fingerprint : str
        :func:`report_fingerprint` of the report ``build`` would write.
    build : callable
        Builds the report in place and returns its paths (e.g. a call of
        :func:`kdanalysis.report.build_report`).

    Returns
    -------
    ReportPaths or None
        What ``build`` returned, or None when the report was current and nothing was built.

    Raises
    ------
    ConfigError
        If the earlier record cannot be removed from ``out_dir``; and whatever ``build``
        raises (then no record is left).
    """
    out_dir = Path(out_dir)
    if report_is_current(out_dir, fingerprint):
        logger.info("report in %s is current (fingerprint %s)", out_dir, fingerprint[:12])
        return None
    _forget(out_dir)
    paths = build()
    written = [p for p in (paths.html, paths.pdf, *paths.figures, *paths.tables) if p is not None]
    files = {p.relative_to(paths.out_dir).as_posix(): _signature(p) for p in written}
    atomic_write_json(paths.out_dir / FINGERPRINT_FILE, {"fingerprint": fingerprint, "files": files})
    return paths
