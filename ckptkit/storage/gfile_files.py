"""File primitives over `tf.io.gfile`, for the URLs TensorFlow reaches (``gs://``, ``ram://``).

TensorFlow is imported on the first call, never for a local path. Its errors become the
matching `OSError` here (`FileNotFoundError`, else ``EIO``), except those that say the
filesystem could not be asked (unavailable, deadline exceeded, permission denied,
unauthenticated, resource exhausted, aborted): those are `StorageUnavailableError`, never
"not there". On ``gs://`` a write is one object put, which the store makes visible whole or
not at all; on ``ram://`` and ``file://`` a temporary file and a rename. gfile has no
create-only write: `create` checks, then writes.
"""

from __future__ import annotations

import contextlib
import errno
import functools
from collections.abc import Iterator
from typing import Any

from ckptkit.errors import StorageUnavailableError
from ckptkit.storage.local_files import temp_name

__all__ = ["GfileFiles"]


class GfileFiles:
    """The `fs` primitives over `tf.io.gfile` (see `ckptkit.storage.fs` for each contract)."""

    def read_bytes(self, path: str, *, limit: int | None = None) -> bytes:
        """The bytes of the regular file `path`; `limit` refuses larger ones."""
        gfile = _tf().io.gfile
        with _as_oserror(path):
            if gfile.isdir(path):
                raise OSError(errno.EISDIR, "a directory, not a regular file", path)
            with gfile.GFile(path, "rb") as f:
                data: bytes = f.read(-1 if limit is None else limit + 1)
        return data

    def exists(self, path: str, *, follow_links: bool = False) -> bool:
        """Whether the name `path` exists; a dangling link counts unless `follow_links`."""
        return _is("exists", path)

    def isdir(self, path: str) -> bool:
        """Whether `path` is a directory; False when missing."""
        return _is("isdir", path)

    def stat(self, path: str) -> tuple[int, float]:
        """The size and modification time of the file `path`."""
        with _as_oserror(path):
            info = _tf().io.gfile.stat(path)
        return int(info.length), float(info.mtime_nsec) / 1e9

    def makedirs(self, path: str) -> None:
        """Creates the directory `path` and its parents; an existing one is fine."""
        with _as_oserror(path):
            _tf().io.gfile.makedirs(path)

    def is_regular_file(self, path: str) -> bool:
        """Whether `path` is a regular file; False when missing."""
        return _is("exists", path) and not _is("isdir", path)

    def listdir(self, directory: str) -> list[str]:
        """The names in `directory`, sorted; empty when it is not there.

        Raises:
            StorageUnavailableError: The filesystem could not be asked.
        """
        try:
            with _as_oserror(directory, "list it"):
                return sorted(n.rstrip("/") for n in _tf().io.gfile.listdir(directory))
        except StorageUnavailableError:
            raise
        except OSError:
            return []  # not there, or a file rather than a directory

    def remove(self, path: str) -> bool:
        """Removes the name `path` without following a link; False when already gone."""
        tf = _tf()
        with _as_oserror(path):
            try:
                if tf.io.gfile.isdir(path):
                    tf.io.gfile.rmtree(path)
                else:
                    tf.io.gfile.remove(path)
            except tf.errors.NotFoundError:
                return False
        return True

    def write_atomic(self, final: str, data: bytes, *, durable: bool = False) -> None:
        """Replaces `final` with `data` atomically."""
        gfile = _tf().io.gfile
        if final.lower().startswith("gs://"):  # an object store: one put, no rename
            with _as_oserror(final), gfile.GFile(final, "wb") as f:
                f.write(data)
            return
        temp = temp_name(final)
        try:
            with _as_oserror(final):
                with gfile.GFile(temp, "wb") as f:
                    f.write(data)
                gfile.rename(temp, final, overwrite=True)
        except BaseException:
            with contextlib.suppress(OSError):
                self.remove(temp)
            raise

    def create(self, path: str, data: bytes) -> None:
        """Writes the file `path` only if nothing is there."""
        if self.exists(path):
            raise FileExistsError(errno.EEXIST, "exists", path)
        self.write_atomic(path, data)

    def fsync(self, path: str) -> None:
        """Nothing: remote filesystems make their own durability promises."""


@functools.cache
def _tf() -> Any:
    """TensorFlow, imported on the first URL: local paths never need it."""
    import tensorflow as tf

    return tf


def _is(test: str, path: str) -> bool:
    """`tf.io.gfile.<test>(path)` (``exists``, ``isdir``); False where it says nothing is there.

    Raises:
        StorageUnavailableError: The filesystem could not be asked.
    """
    try:
        with _as_oserror(path, "check that it exists"):
            return bool(getattr(_tf().io.gfile, test)(path))
    except StorageUnavailableError:
        raise
    except OSError:
        return False


@functools.cache
def _unreachable() -> tuple[type[Exception], ...]:
    errors = _tf().errors
    return (
        errors.UnavailableError,
        errors.DeadlineExceededError,
        errors.PermissionDeniedError,
        errors.UnauthenticatedError,
        errors.ResourceExhaustedError,
        errors.AbortedError,
    )


@contextlib.contextmanager
def _as_oserror(path: str, operation: str = "reach it") -> Iterator[None]:
    """Turns `tf.io.gfile` errors into `FileNotFoundError`, `StorageUnavailableError` or EIO."""
    tf = _tf()
    try:
        yield
    except tf.errors.NotFoundError as e:
        raise FileNotFoundError(errno.ENOENT, e.message, path) from e
    except _unreachable() as e:
        raise StorageUnavailableError.asking(path, operation, e) from e
    except tf.errors.OpError as e:
        raise OSError(errno.EIO, e.message, path) from e
