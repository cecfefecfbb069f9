"""One writer per directory: an advisory lock the kernel releases when its holder dies.

The first save of a `CheckpointManager` takes ``<directory>/.ckptkit.lock`` with `fcntl.flock`;
a second writer (another process, or another manager in the same process) gets
`DirectoryLockedError` naming the holder. A holder killed with SIGKILL releases the lock with its
process, so a crashed job never blocks the next run. Readers take no lock. Remote filesystems
(``gs://``, ...) have no such lock and are not locked.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable

from ckptkit.errors import DirectoryLockedError

__all__ = ["LOCK_FILE", "WriterLock"]

LOCK_FILE = ".ckptkit.lock"


class WriterLock:
    """The writer lock of one directory.

    Args:
        directory: The checkpoint directory (local).
    """

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, LOCK_FILE)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Takes the lock, or raises `DirectoryLockedError` naming who holds it."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise DirectoryLockedError(
                f"{os.path.dirname(self.path)} is being written by another checkpoint manager "
                f"({holder}); two writers would interleave files. Stop the other writer, or save "
                "to another directory (a killed writer releases the lock by itself)"
            ) from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        self._fd = fd

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        # At interpreter exit module globals may already be gone; closing the descriptor is
        # enough to release a flock.
        if self._fd is not None:
            _close(self._fd)
            self._fd = None

    def release(self) -> None:
        """Gives the lock up (also done by the kernel when the process ends)."""
        if self._fd is None:
            return
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _read_holder(fd: int) -> str:
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {owner['pid']} on {owner['host']}"
    except (ValueError, KeyError, TypeError, OSError):
        return "holder unknown"
