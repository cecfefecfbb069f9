"""File primitives on the local filesystem, safe in a directory ckptkit does not trust.

Reads take regular files only, opened without blocking (a FIFO, a device or a directory in
place of a manifest is an error, never a hang); deletion never follows a link; a temporary
file and a rename make a write atomic. No TensorFlow is imported here, so `ckptkit ls` starts
fast.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from stat import S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFMT, S_IFSOCK, S_ISDIR, S_ISREG

__all__ = ["LocalFiles", "temp_name"]

_KINDS = {
    S_IFDIR: "a directory",
    S_IFIFO: "a FIFO",
    S_IFCHR: "a character device",
    S_IFBLK: "a block device",
    S_IFSOCK: "a socket",
}


class LocalFiles:
    """The `fs` primitives over `os` (see `ckptkit.storage.fs` for each one's contract)."""

    def read_bytes(self, path: str, *, limit: int | None = None) -> bytes:
        """The bytes of the regular file `path`; `limit` refuses larger ones."""
        _no_nul(path)
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if not S_ISREG(info.st_mode):
                kind = _KINDS.get(S_IFMT(info.st_mode), "not a regular file")
                raise OSError(errno.EINVAL, f"{kind}, not a regular file", path)
            if limit is not None and info.st_size > limit:
                raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read()
        finally:
            os.close(fd)

    def exists(self, path: str, *, follow_links: bool = False) -> bool:
        """Whether the name `path` exists; a dangling link counts unless `follow_links`."""
        try:
            os.stat(path) if follow_links else os.lstat(path)
        except (OSError, ValueError):
            return False
        return True

    def isdir(self, path: str) -> bool:
        """Whether `path` is a directory; False when missing."""
        try:
            return os.path.isdir(path)
        except ValueError:
            return False

    def stat(self, path: str) -> tuple[int, float]:
        """The size and modification time of the file `path`."""
        _no_nul(path)
        found = os.stat(path)
        return found.st_size, found.st_mtime_ns / 1e9

    def makedirs(self, path: str) -> None:
        """Creates the directory `path` and its parents; an existing one is fine."""
        _no_nul(path)
        os.makedirs(path, exist_ok=True)

    def is_regular_file(self, path: str) -> bool:
        """Whether `path` is a regular file; False when missing."""
        try:
            return S_ISREG(os.stat(path).st_mode)
        except (OSError, ValueError):
            return False

    def listdir(self, directory: str) -> list[str]:
        """The names in `directory`, sorted; empty when it cannot be listed."""
        try:
            return sorted(os.listdir(directory))
        except (OSError, ValueError):
            return []

    def remove(self, path: str) -> bool:
        """Removes the name `path` without following a link; False when already gone."""
        try:
            if S_ISDIR(os.lstat(path).st_mode):
                shutil.rmtree(path)  # does not follow links inside it
            else:
                os.unlink(path)  # a symbolic link goes as a name; its target stays
        except FileNotFoundError:
            return False
        return True

    def write_atomic(self, final: str, data: bytes, *, durable: bool = False) -> None:
        """Replaces `final` with `data` atomically."""
        temp = temp_name(final)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(temp, flags, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.replace(temp, final)
            except IsADirectoryError as e:
                raise IsADirectoryError(
                    errno.EISDIR, "a directory is in the way of this file; remove it", final
                ) from e
        except BaseException:
            with contextlib.suppress(OSError):
                self.remove(temp)
            raise
        if durable:
            self.fsync(os.path.dirname(final) or ".")

    def create(self, path: str, data: bytes) -> None:
        """Writes the file `path` only if nothing is there."""
        _no_nul(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def fsync(self, path: str) -> None:
        """Flushes `path` to stable storage."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_name(final: str) -> str:
    """A unique temporary name beside `final` (``<final>.tmp-<hex>``), for atomic writes."""
    return f"{final}.tmp-{uuid.uuid4().hex}"


def _no_nul(path: str) -> None:
    if "\x00" in path:
        raise FileNotFoundError(errno.ENOENT, "a path cannot contain a NUL byte", path)
