"""Processes and folders a killed ``report`` would otherwise leave behind.

The figure workers (:class:`kdanalysis.report.render.FigureDrawer`) are children of a
fork server that stays as long as they do, and they wait for work on pipes they hold
both ends of: a ``kill -9`` of the report would leave them (and the fork server) idle
forever. :func:`exit_with`, run in each worker, ends the worker when the report process
ends (a thread waiting on a Linux pidfd, or polling where there is none). A folder being
built is marked by a ``flock``'ed file (:class:`BuildMark`); :func:`remove_stale` removes
the folders whose mark nobody holds.
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from kdanalysis.io import lock_held

__all__ = ["exit_with", "BuildMark", "remove_stale"]

#: A folder without a mark is left alone this long (its builder may be about to create the mark).
_UNMARKED_GRACE_S = 60.0
_MARK = ".building.lock"


def _wait_for_exit(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (OSError, AttributeError):  # no pidfd here: poll
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            time.sleep(1.0)
    select.select([fd], [], [])
    os._exit(1)


def exit_with(pid: int) -> None:
    """End this process as soon as process ``pid`` ends (a daemon thread watches it)."""
    threading.Thread(target=_wait_for_exit, args=(pid,), daemon=True, name=f"exit-with-{pid}").start()


class BuildMark:
    """``flock`` held on ``folder/.building.lock`` while the folder is being built (a context manager).

    The kernel drops the lock when the process dies, so :func:`remove_stale` can tell a
    folder under construction from the leftover of a killed build. The mark file is
    removed on exit.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / _MARK
        self._fd: int | None = None

    def __enter__(self) -> BuildMark:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def release(self) -> None:
        """Remove the mark and drop the lock (before the folder's entries are moved elsewhere)."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def __exit__(self, *exc: object) -> None:
        self.release()


def _abandoned(folder: Path) -> bool:
    try:
        held = lock_held(folder / _MARK)
    except OSError:
        return False
    if held is not None:
        return not held
    try:
        return time.time() - folder.stat().st_mtime > _UNMARKED_GRACE_S
    except OSError:
        return False


def remove_stale(folders: Iterable[Path]) -> list[Path]:
    """Remove the folders among ``folders`` that no live process is building; return them."""
    removed = []
    for folder in folders:
        if folder.is_dir() and _abandoned(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
