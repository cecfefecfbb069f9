r"""File primitives that are safe in a directory ckptkit does not trust.

Every other module reads, writes, lists and deletes through these, so three rules hold
everywhere:

- Reads take regular files only, opened without blocking: a FIFO, a device or a directory in
  place of a manifest or state file is an error, never a hang.
- Deletion never follows a link: a symbolic link is removed as a name, its target is left
  alone, and only real directories (TensorFlow's ``*_temp`` folders) are removed recursively.
- Names are matched by listing the directory, never by a glob pattern, so ``[``, ``*``, ``?``
  and ``\`` in a directory name are ordinary characters. TensorFlow's checkpoint readers do
  glob the paths they are given; `tf_path` gives them a glob-free alias.

Local paths use `os` directly, without importing TensorFlow (so `ckptkit ls` starts fast).
``gs://``, ``ram://`` and ``file://`` URLs go through `tf.io.gfile`, and other URLs through
fsspec (`fsspec_files`); see `routes`. Neither has links or special files, and their errors
come back as `OSError`. On object stores (``gs://``, fsspec URLs) a write is a single object
put, never a rename: an object appears whole or not at all, and a rename there is a copy and
a delete.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from stat import S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFMT, S_IFSOCK, S_ISDIR, S_ISREG
from typing import Any, NamedTuple

from ckptkit.storage import fsspec_files, routes

__all__ = [
    "Stat",
    "create",
    "exists",
    "fsync",
    "is_regular_file",
    "is_remote",
    "isdir",
    "listdir",
    "makedirs",
    "read_bytes",
    "remove",
    "staged",
    "stat",
    "tf_path",
    "write_atomic",
]

_KINDS = {
    S_IFDIR: "a directory",
    S_IFIFO: "a FIFO",
    S_IFCHR: "a character device",
    S_IFBLK: "a block device",
    S_IFSOCK: "a socket",
}


class Stat(NamedTuple):
    """What `stat` tells of a file."""

    size: int
    mtime: float


@functools.cache
def _tf() -> Any:
    """TensorFlow, imported on the first URL: local paths never need it here."""
    import tensorflow as tf

    return tf


def is_remote(path: str) -> bool:
    """Whether `path` is a URL rather than a local path."""
    return "://" in path


def staged(path: str) -> bool:
    """Whether `path` is reached through fsspec, which TensorFlow cannot read or write."""
    return routes.transport(path) == "fsspec"


@contextlib.contextmanager
def _as_oserror(path: str) -> Iterator[None]:
    """Turns `tf.io.gfile` errors into the matching `OSError` (FileNotFoundError, ...)."""
    tf = _tf()
    try:
        yield
    except tf.errors.NotFoundError as e:
        raise FileNotFoundError(errno.ENOENT, e.message, path) from e
    except tf.errors.PermissionDeniedError as e:
        raise PermissionError(errno.EACCES, e.message, path) from e
    except tf.errors.OpError as e:
        raise OSError(errno.EIO, e.message, path) from e


def _not_regular(path: str, mode: int) -> OSError:
    kind = _KINDS.get(S_IFMT(mode), "not a regular file")
    return OSError(errno.EINVAL, f"{kind}, not a regular file", path)


def read_bytes(path: str, *, limit: int | None = None) -> bytes:
    """The bytes of the regular file `path` (a link to one is followed for reading).

    Args:
        path: The file.
        limit: Refuse files larger than this many bytes (small records such as manifests).

    Raises:
        FileNotFoundError: Nothing is there.
        OSError: It is not a regular file, is larger than `limit`, or cannot be read.
    """
    data: bytes
    if staged(path):
        data = fsspec_files.read_bytes(path, limit=limit)
    elif is_remote(path):
        gfile = _tf().io.gfile
        with _as_oserror(path):
            if gfile.isdir(path):
                raise OSError(errno.EISDIR, "a directory, not a regular file", path)
            with gfile.GFile(path, "rb") as f:
                data = f.read(-1 if limit is None else limit + 1)
    else:
        _no_nul(path)
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if not S_ISREG(info.st_mode):
                raise _not_regular(path, info.st_mode)
            if limit is not None and info.st_size > limit:
                raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read()
        finally:
            os.close(fd)
    if limit is not None and len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
    return data


def _remote_is(test: str, path: str) -> bool:
    """`tf.io.gfile.<test>(path)` (``exists``, ``isdir``), False where the filesystem errs."""
    tf = _tf()
    try:
        return bool(getattr(tf.io.gfile, test)(path))
    except tf.errors.OpError:
        return False


def exists(path: str, *, follow_links: bool = False) -> bool:
    """Whether the name `path` exists; a dangling link counts unless `follow_links`."""
    if staged(path):
        return fsspec_files.exists(path)
    if is_remote(path):
        return _remote_is("exists", path)
    try:
        os.stat(path) if follow_links else os.lstat(path)
    except (OSError, ValueError):
        return False
    return True


def isdir(path: str) -> bool:
    """Whether `path` is a directory (or a link to one); False when missing."""
    if staged(path):
        return fsspec_files.isdir(path)
    if is_remote(path):
        return _remote_is("isdir", path)
    try:
        return os.path.isdir(path)
    except ValueError:
        return False


def stat(path: str) -> Stat:
    """The size and modification time of the file `path` (a link is followed).

    Raises:
        OSError: It is missing or cannot be read.
    """
    if staged(path):
        return Stat(*fsspec_files.stat(path))
    if is_remote(path):
        with _as_oserror(path):
            info = _tf().io.gfile.stat(path)
        return Stat(int(info.length), float(info.mtime_nsec) / 1e9)
    _no_nul(path)
    found = os.stat(path)
    return Stat(found.st_size, found.st_mtime_ns / 1e9)


def makedirs(path: str) -> None:
    """Creates the directory `path` and its parents; an existing one is fine.

    Raises:
        OSError: It cannot be created (a file in the way, permissions, a full disk).
    """
    if staged(path):
        fsspec_files.makedirs(path)
        return
    if is_remote(path):
        with _as_oserror(path):
            _tf().io.gfile.makedirs(path)
        return
    _no_nul(path)
    os.makedirs(path, exist_ok=True)


def is_regular_file(path: str) -> bool:
    """Whether `path` is a regular file (or a link to one); False when missing."""
    if staged(path):
        return fsspec_files.exists(path) and not fsspec_files.isdir(path)
    if is_remote(path):
        return _remote_is("exists", path) and not _remote_is("isdir", path)
    try:
        return S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def listdir(directory: str) -> list[str]:
    """The names in `directory`, sorted; empty when it does not exist or cannot be listed."""
    if staged(directory):
        return fsspec_files.listdir(directory)
    if is_remote(directory):
        tf = _tf()
        try:
            return sorted(n.rstrip("/") for n in tf.io.gfile.listdir(directory))
        except tf.errors.OpError:
            return []
    try:
        return sorted(os.listdir(directory))
    except (OSError, ValueError):
        return []


def remove(path: str) -> bool:
    """Removes the name `path` without following a link; False when it was already gone.

    A real directory is removed with its contents (`shutil.rmtree` does not follow links
    inside it); anything else, a symbolic link included, is unlinked as a name.

    Raises:
        OSError: It exists and could not be removed.
    """
    if staged(path):
        return fsspec_files.remove(path)
    if is_remote(path):
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
    try:
        if S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _temp_name(final: str) -> str:
    """A unique temporary name beside `final` (``<final>.tmp-<hex>``), for atomic writes."""
    return f"{final}.tmp-{uuid.uuid4().hex}"


def write_atomic(final: str, data: bytes, *, durable: bool = False) -> None:
    """Replaces `final` with `data` atomically.

    On an object store (``gs://``, fsspec URLs): one object put, which the store makes
    visible whole or not at all (a rename there would be a copy and a delete). Elsewhere
    (local paths, ``ram://``, ``file://``): a temporary file, then a rename; with `durable`,
    the file and its directory are fsync'ed; on failure the temporary file is removed and
    `final` is as it was.

    Raises:
        OSError: Writing failed (ENOSPC for a full disk, a network error, ...).
    """
    if staged(final):
        fsspec_files.write(final, data)
        return
    if final.lower().startswith("gs://"):
        with _as_oserror(final), _tf().io.gfile.GFile(final, "wb") as f:
            f.write(data)
        return
    temp = _temp_name(final)
    try:
        if is_remote(final):
            gfile = _tf().io.gfile
            with _as_oserror(final):
                with gfile.GFile(temp, "wb") as f:
                    f.write(data)
                gfile.rename(temp, final, overwrite=True)
            return
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
            remove(temp)
        raise
    if durable:
        fsync(os.path.dirname(final) or ".")


def create(path: str, data: bytes) -> None:
    """Writes the file `path` only if nothing is there.

    Atomic locally (``O_EXCL``) and on fsspec stores with conditional writes (S3's
    ``If-None-Match: *``). `tf.io.gfile` offers no such write, so on ``gs://`` and ``ram://``
    this checks, then writes: two writers starting within one request of each other can both
    succeed.

    Raises:
        FileExistsError: Something is at `path`.
        OSError: Writing failed.
    """
    if staged(path):
        fsspec_files.create(path, data)
        return
    if is_remote(path):
        if exists(path):
            raise FileExistsError(errno.EEXIST, "exists", path)
        write_atomic(path, data)
        return
    _no_nul(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def fsync(path: str) -> None:
    """Flushes a local file or directory to stable storage; remote filesystems are skipped."""
    if is_remote(path):
        return  # Remote filesystems make their own durability promises.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _no_nul(path: str) -> None:
    if "\x00" in path:
        raise FileNotFoundError(errno.ENOENT, "a path cannot contain a NUL byte", path)


_GLOB_RE = re.compile(r"[*?\[\]\\]")
_ALIASES: dict[str, str] = {}  # real directory -> glob-free link to it, for this process


def tf_path(path: str) -> str:
    """`path` as TensorFlow's checkpoint readers can take it.

    Those readers look a checkpoint up with a glob pattern (``<prefix>.index``), so a
    directory named ``runs/exp[lr=0.1]`` matches nothing there. For such a local path this
    returns the same file through a link with a plain name in a private temporary folder,
    kept for the life of the process (a deferred restore reads the files later); any other
    path is returned as it is.
    """
    directory, name = os.path.split(path)
    if is_remote(path) or not _GLOB_RE.search(directory) or _GLOB_RE.search(name):
        return path
    real = os.path.realpath(directory)
    alias = _ALIASES.get(real)
    if alias is None:
        alias = os.path.join(_alias_root(), str(len(_ALIASES)))
        os.symlink(real, alias)
        _ALIASES[real] = alias
    return os.path.join(alias, name)


@functools.cache
def _alias_root() -> str:
    root = tempfile.mkdtemp(prefix="ckptkit-paths-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root
