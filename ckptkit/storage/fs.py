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

Each transport keeps this contract in a module of its own, with its own error translation:
local paths use `os` directly, without importing TensorFlow, so `ckptkit ls` starts fast
(`local_files`); ``gs://``, ``ram://`` and ``file://`` URLs go through `tf.io.gfile`
(`gfile_files`), and other URLs through fsspec (`fsspec_files`). `files_for` is where the
choice is made (by `routes`). Neither URL kind has links or special files, and their errors
come back as `OSError`. On object stores (``gs://``, fsspec URLs) a write is a single object
put, never a rename: an object appears whole or not at all, and a rename there is a copy and
a delete.
"""

from __future__ import annotations

import atexit
import errno
import functools
import os
import re
import shutil
import tempfile
from typing import NamedTuple, Protocol

from ckptkit.storage import routes
from ckptkit.storage.fsspec_files import ABSENT, ChangedError, FsspecFiles
from ckptkit.storage.gfile_files import GfileFiles
from ckptkit.storage.local_files import LocalFiles

__all__ = [
    "ABSENT",
    "ChangedError",
    "Files",
    "Stat",
    "create",
    "exists",
    "files_for",
    "fsync",
    "is_regular_file",
    "is_remote",
    "isdir",
    "listdir",
    "makedirs",
    "read_bytes",
    "read_tagged",
    "remove",
    "staged",
    "stat",
    "tf_path",
    "write_atomic",
    "write_tagged",
]


class Stat(NamedTuple):
    """What `stat` tells of a file."""

    size: int
    mtime: float


class Files(Protocol):
    """The primitives one transport offers; the module functions below say each contract."""

    def read_bytes(self, path: str, *, limit: int | None = None) -> bytes:
        """The bytes of the regular file `path`; `limit` refuses larger ones."""
        ...

    def exists(self, path: str, *, follow_links: bool = False) -> bool:
        """Whether the name `path` exists; a dangling link counts unless `follow_links`."""
        ...

    def isdir(self, path: str) -> bool:
        """Whether `path` is a directory; False when missing."""
        ...

    def stat(self, path: str) -> tuple[int, float]:
        """The size and modification time of the file `path`."""
        ...

    def makedirs(self, path: str) -> None:
        """Creates the directory `path` and its parents; an existing one is fine."""
        ...

    def is_regular_file(self, path: str) -> bool:
        """Whether `path` is a regular file; False when missing."""
        ...

    def listdir(self, directory: str) -> list[str]:
        """The names in `directory`, sorted; empty when it cannot be listed."""
        ...

    def remove(self, path: str) -> bool:
        """Removes the name `path` without following a link; False when already gone."""
        ...

    def write_atomic(self, final: str, data: bytes, *, durable: bool = False) -> None:
        """Replaces `final` with `data` atomically."""
        ...

    def create(self, path: str, data: bytes) -> None:
        """Writes the file `path` only if nothing is there."""
        ...

    def fsync(self, path: str) -> None:
        """Flushes `path` to stable storage."""
        ...


_FSSPEC = FsspecFiles()
_TRANSPORTS: dict[routes.Transport, Files] = {
    "local": LocalFiles(),
    "gfile": GfileFiles(),
    "fsspec": _FSSPEC,
}


def files_for(path: str) -> Files:
    """The transport that reaches `path`: local, `tf.io.gfile` or fsspec (see `routes`)."""
    return _TRANSPORTS[routes.transport(path)]


def is_remote(path: str) -> bool:
    """Whether `path` is a URL rather than a local path."""
    return "://" in path


def staged(path: str) -> bool:
    """Whether `path` is reached through fsspec, which TensorFlow cannot read or write."""
    return routes.transport(path) == "fsspec"


def read_bytes(path: str, *, limit: int | None = None) -> bytes:
    """The bytes of the regular file `path` (a link to one is followed for reading).

    Args:
        path: The file.
        limit: Refuse files larger than this many bytes (small records such as manifests).

    Raises:
        FileNotFoundError: Nothing is there.
        OSError: It is not a regular file, is larger than `limit`, or cannot be read.
    """
    data = files_for(path).read_bytes(path, limit=limit)
    if limit is not None and len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
    return data


def exists(path: str, *, follow_links: bool = False) -> bool:
    """Whether the name `path` exists; a dangling link counts unless `follow_links`."""
    return files_for(path).exists(path, follow_links=follow_links)


def isdir(path: str) -> bool:
    """Whether `path` is a directory (or a link to one); False when missing."""
    return files_for(path).isdir(path)


def stat(path: str) -> Stat:
    """The size and modification time of the file `path` (a link is followed).

    Raises:
        OSError: It is missing or cannot be read.
    """
    return Stat(*files_for(path).stat(path))


def regular_size(path: str) -> int:
    """The size of the regular file `path` (a link is followed); one request on fsspec.

    Raises:
        FileNotFoundError: Nothing is there.
        IsADirectoryError: Something other than a regular file is (a folder, a FIFO, a
            dangling link).
        OSError: It cannot be read.
    """
    if staged(path):  # fsspec's stat answers all three at once
        return stat(path).size
    if not exists(path):
        raise FileNotFoundError(errno.ENOENT, "missing", path)
    if not is_regular_file(path):
        raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
    return stat(path).size


def makedirs(path: str) -> None:
    """Creates the directory `path` and its parents; an existing one is fine.

    Raises:
        OSError: It cannot be created (a file in the way, permissions, a full disk).
    """
    files_for(path).makedirs(path)


def is_regular_file(path: str) -> bool:
    """Whether `path` is a regular file (or a link to one); False when missing."""
    return files_for(path).is_regular_file(path)


def listdir(directory: str) -> list[str]:
    """The names in `directory`, sorted; empty when it does not exist or cannot be listed."""
    return files_for(directory).listdir(directory)


def remove(path: str) -> bool:
    """Removes the name `path` without following a link; False when it was already gone.

    A real directory is removed with its contents (`shutil.rmtree` does not follow links
    inside it); anything else, a symbolic link included, is unlinked as a name.

    Raises:
        OSError: It exists and could not be removed.
    """
    return files_for(path).remove(path)


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
    files_for(final).write_atomic(final, data, durable=durable)


def read_tagged(path: str, *, limit: int | None = None) -> tuple[bytes, str | None]:
    """The bytes of `path`, and the tag of that version where the store has tags (S3's ETag).

    The tag is what `write_tagged` fences a later write with; None where there is none (local
    paths, which the writer lock fences, and `tf.io.gfile`).

    Raises:
        FileNotFoundError: Nothing is there.
        OSError: As for `read_bytes`.
    """
    if not staged(path):
        return read_bytes(path, limit=limit), None
    data, tag = _FSSPEC.read_tagged(path, limit=limit)
    if limit is not None and len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
    return data, tag


def write_tagged(
    path: str, data: bytes, expect: str | None, *, durable: bool = False
) -> str | None:
    """Replaces `path` with `data` only if it is still the version read (a fenced write).

    Args:
        path: The file or object.
        data: The new bytes.
        expect: The tag `read_tagged` gave, `ABSENT` when it found nothing, None to write
            unconditionally (as `write_atomic`, which is all local paths and gfile get).
        durable: As for `write_atomic`.

    Returns:
        The new version's tag, or None.

    Raises:
        ChangedError: Another writer wrote or removed it since it was read.
    """
    if staged(path):
        return _FSSPEC.write_tagged(path, data, expect)
    write_atomic(path, data, durable=durable)
    return None


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
    files_for(path).create(path, data)


def fsync(path: str) -> None:
    """Flushes a local file or directory to stable storage; remote filesystems are skipped."""
    files_for(path).fsync(path)


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
