"""One writer per directory: an advisory lock the kernel releases when its holder dies.

The first save of a `CheckpointManager` write-locks ``<directory>/.ckptkit.lock`` (see below);
a second writer (another process, or another manager in the same process) gets
`DirectoryLockedError` naming the holder. A holder killed with SIGKILL releases the lock with its
process, so a crashed job never blocks the next run. Readers take no lock. Remote filesystems
(``gs://``, ...) have no such lock and are not locked.

The lock file is opened without following a link and must be a regular file, so a link planted
in its place never makes ckptkit write elsewhere. It is private (mode 0600, set with `fchmod`
whatever the umask) and, on Linux, locked with an open-file-description write lock
(``F_OFD_SETLK``) rather than `flock`: a write lock needs a descriptor open for writing, so
another user who can only read the file cannot hold the directory (`flock` needs no write
access at all). Elsewhere `flock` is used. A lock is only worth something while its file
is the directory's lock file: if the directory or the file is deleted or replaced under a
running writer, another writer can lock the new one. `WriterLock.check` notices that, and the
manager calls it before every write and commit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import struct
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
        """Takes the lock, or raises `DirectoryLockedError` naming who holds it.

        Raises:
            DirectoryLockedError: Another writer holds it.
            OSError: The lock file cannot be created or opened: it is a link, a directory or
                another special file (EINVAL, ELOOP, EISDIR), read-only, or the disk is full.
        """
        if self._fd is not None:
            return
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise OSError(errno.ELOOP, "a symbolic link, not a lock file", self.path) from e
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", self.path)
            if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != 0o600:
                os.fchmod(fd, 0o600)  # private whatever the umask, or an older version, made it
            _lock(fd, fcntl.F_WRLCK)
        except BlockingIOError:
            holder, ours = _read_holder(fd)
            os.close(fd)
            directory = os.path.dirname(self.path)
            if ours:
                raise DirectoryLockedError(
                    f"{directory} is being written by another CheckpointManager in this process "
                    f"({holder}); one manager writes a directory at a time. close() the first "
                    "one (or use it) before creating another for the same directory"
                ) from None
            raise DirectoryLockedError(
                f"{directory} is being written by another checkpoint manager ({holder}); two "
                "writers would interleave files. Stop the other writer, or save to another "
                "directory (a killed writer releases the lock by itself)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner).encode(), 0)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def check(self) -> None:
        """Confirms that the held lock is still the directory's lock file.

        Raises:
            DirectoryLockedError: The directory or its lock file was deleted or replaced since
                the lock was taken, so another writer may hold the directory now.
        """
        if self._fd is None:
            return
        held = os.fstat(self._fd)
        try:
            there = os.lstat(self.path)
        except OSError:
            there = None
        if there is None or (there.st_dev, there.st_ino) != (held.st_dev, held.st_ino):
            raise DirectoryLockedError(
                f"the writer lock {self.path} was deleted or replaced while this manager held "
                "it (the directory or its lock file was removed); another writer may be "
                "committing there now, so nothing more is written. Make sure one job writes "
                "to the directory, then create a new CheckpointManager"
            )

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        # At interpreter exit module globals may already be gone; closing the descriptor is
        # enough to release a flock.
        if self._fd is not None:
            _close(self._fd)
            self._fd = None

    def release(self, *, remove: bool = False) -> None:
        """Gives the lock up (also done by the kernel when the process ends).

        Args:
            remove: Also delete the lock file, while still holding it (when it is still this
                lock's file), so a directory left with nothing else in it can be removed.
        """
        if self._fd is None:
            return
        if remove:
            with contextlib.suppress(DirectoryLockedError, OSError):
                self.check()
                os.unlink(self.path)
        _lock(self._fd, fcntl.F_UNLCK)
        os.close(self._fd)
        self._fd = None


_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None)  # Linux >= 3.15


def _lock(fd: int, kind: int) -> None:
    """Write-locks (`fcntl.F_WRLCK`) or unlocks (`fcntl.F_UNLCK`) the whole file of `fd`.

    Raises:
        BlockingIOError: Another open file description holds it.
    """
    if _OFD_SETLK is None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if kind == fcntl.F_WRLCK else fcntl.LOCK_UN)
        return
    # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks), padded.
    request = struct.pack("hhqqi4x", kind, os.SEEK_SET, 0, 0, 0)
    try:
        fcntl.fcntl(fd, _OFD_SETLK, request)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            raise BlockingIOError(e.errno, e.strerror) from None
        raise


def _read_holder(fd: int) -> tuple[str, bool]:
    """Who holds the lock, in words, and whether it is this process."""
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
        ours = owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        return f"pid {owner['pid']} on {owner['host']}", ours
    except (ValueError, KeyError, TypeError, OSError):
        return "holder unknown", False
