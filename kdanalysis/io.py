"""Small file helpers shared by the analysis and execution layers.

All writes are atomic: a temporary file in the destination folder, then ``os.replace``,
so a killed process never leaves a half-written file behind. A full disk becomes a
:class:`~kdanalysis.errors.DiskFullError` naming the path and the free space, with the
previous file left intact.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kdanalysis.errors import DiskFullError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_many",
    "atomic_write_text",
    "atomic_write_json",
    "read_json",
    "disk_full_error",
    "reporting_disk_full",
    "parquet_intact",
    "lock_held",
    "file_sha256",
]

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(path: str | os.PathLike[str], exc: OSError) -> DiskFullError | None:
    """The :class:`DiskFullError` for ``exc`` raised writing ``path``, or None if ``exc`` is another error."""
    if exc.errno not in _NO_SPACE:
        return None
    path = Path(path)
    where = next((p for p in (path, *path.parents) if p.exists()), Path.cwd())
    try:
        free = f"{shutil.disk_usage(where).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(
        errno.ENOSPC,
        f"no space left writing {path} ({free} on its filesystem); free some space and run again",
    )


@contextlib.contextmanager
def reporting_disk_full(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full disk (``ENOSPC``, ``EDQUOT``) while writing ``path`` into a :class:`DiskFullError`."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        error = disk_full_error(exc.filename or path, exc)
        if error is None:
            raise
        raise error from exc


def parquet_intact(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a whole parquet file: the ``PAR1`` magic at both ends.

    A truncated file lacks the magic at its end. A cheap check written by hand (no
    parquet reader is needed to look at 8 bytes).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(-4, os.SEEK_END)
            tail = fh.read(4)
    except OSError:
        return False
    return head == tail == b"PAR1"


def lock_held(path: str | os.PathLike[str]) -> bool | None:
    """Whether some process holds an ``fcntl.flock`` on the file ``path``.

    Returns
    -------
    bool or None
        True if a lock is held, False if none is, None if ``path`` does not exist. Other
        :class:`OSError` (e.g. no permission to open it) propagate to the caller.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path.

    The file gets the usual permissions (``0o666`` minus the umask), not the private
    ``0o600`` of the temporary file it is written through.
    """
    path = Path(path)
    os.replace(_write_temporary(path, data), path)
    return path


def atomic_write_many(files: Mapping[str | os.PathLike[str], bytes]) -> list[Path]:
    """Write several files all or none: every temporary file first, then the renames.

    A failure while writing (a full disk) leaves every previous file as it was.

    Returns
    -------
    list of Path
        The paths, in the order given.
    """
    written: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            written.append((Path(path), _write_temporary(Path(path), data)))
    except BaseException:
        for _, tmp in written:
            tmp.unlink(missing_ok=True)
        raise
    for path, tmp in written:
        os.replace(tmp, path)
    return [path for path, _ in written]


def _write_temporary(path: Path, data: bytes) -> Path:
    """``data`` in a synced temporary file beside ``path`` with the usual permissions; returns it."""
    with reporting_disk_full(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return Path(tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically and return the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file's bytes (read in blocks)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
