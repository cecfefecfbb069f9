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
"""

from __future__ import annotations

import threading
from typing import Literal

from ckptkit.config import GFILE_SCHEMES, Storage

__all__ = ["Transport", "register", "settings", "transport"]

Transport = Literal["local", "gfile", "fsspec"]

_DEFAULT = Storage()
_ROUTES: dict[str, Storage] = {}
_GUARD = threading.Lock()


def register(directory: str, storage: Storage) -> None:
    """Uses `storage` for every path under the URL `directory` (local paths are ignored)."""
    if "://" in directory:
        with _GUARD:
            _ROUTES[directory.rstrip("/")] = storage


def settings(path: str) -> Storage:
    """The settings of the registered directory holding `path` (the innermost), or defaults."""
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
