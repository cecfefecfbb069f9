"""Which way a path is reached: the local filesystem, `tf.io.gfile`, or fsspec (staged).

- A path without ``://`` is local.
- ``gs://``, ``ram://`` and ``file://`` go through `tf.io.gfile` (`config.GFILE_SCHEMES`), which
  TensorFlow reads and writes directly.
- Any other URL (``s3://``, ``az://``, ``memory://``, ...) goes through fsspec. TensorFlow
  cannot reach those, so checkpoints there are *staged*: written locally, then uploaded (see
  `tiers`).

A `CheckpointManager` registers its directory's `Storage` settings here, so that the file
primitives, the staging tier and readers in the same process (``ckptkit.inspect``, ...) use
the same transport, fsspec options and cache for every path under that directory. Without a
registration the defaults apply (fsspec's own configuration: ``AWS_*`` variables, ...).

Two managers of one process may reach the same URL with different settings (two endpoints
with a bucket of the same name, or another timeout): each runs its own calls, and the threads
it starts, inside `using` its settings, which take precedence over the registrations.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

from ckptkit.config import GFILE_SCHEMES, Storage

__all__ = ["Transport", "register", "settings", "transport", "using"]

Transport = Literal["local", "gfile", "fsspec"]

_DEFAULT = Storage()
_ROUTES: dict[str, Storage] = {}
_GUARD = threading.Lock()
_USING: ContextVar[tuple[tuple[str, Storage], ...]] = ContextVar("ckptkit_storage", default=())


def register(directory: str, storage: Storage) -> None:
    """Uses `storage` for every path under the URL `directory` (local paths are ignored)."""
    if "://" in directory:
        with _GUARD:
            _ROUTES[directory.rstrip("/")] = storage


@contextmanager
def using(directory: str, storage: Storage) -> Iterator[None]:
    """Within the block (and threads started with its context), `storage` for `directory`."""
    token = _USING.set((*_USING.get(), (directory.rstrip("/"), storage)))
    try:
        yield
    finally:
        _USING.reset(token)


def settings(path: str) -> Storage:
    """The settings for `path`: `using`'s, else the innermost registered directory's."""
    for root, storage in reversed(_USING.get()):  # the innermost block first
        if path == root or path.startswith(root + "/"):
            return storage
    with _GUARD:
        routes = list(_ROUTES.items())
    found = [
        (root, storage) for root, storage in routes if path == root or path.startswith(root + "/")
    ]
    return max(found, key=lambda item: len(item[0]))[1] if found else _DEFAULT


def transport(path: str) -> Transport:
    """How `path` is reached (see the module docstring)."""
    if "://" not in path:
        return "local"
    chosen = settings(path).transport
    if chosen != "auto":
        return chosen
    scheme = path.partition("://")[0].lower()
    return "gfile" if scheme in GFILE_SCHEMES else "fsspec"
