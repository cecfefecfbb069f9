"""Reading Keras-native files: ``.weights.h5`` and ``.keras`` (a zip holding one).

Keras 3 stores weights in HDF5 as ``layers/<layer>/vars/<i>`` and ``optimizer/vars/<i>``
datasets (the layer's own name in the ``vars`` group's ``name`` attribute). These functions
list and read those datasets with h5py, which comes with Keras; no model is built and nothing
is deserialized but arrays.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from ckptkit.errors import CheckpointKeyError, CheckpointNotFoundError, FormatError

__all__ = ["WEIGHTS_MEMBER", "is_keras_file", "keras_datasets", "read_keras_tensor"]

WEIGHTS_MEMBER = "model.weights.h5"
_SUFFIXES = (".weights.h5", ".keras", ".h5")


def is_keras_file(path: str) -> bool:
    """Whether `path` names a Keras-native file (by its suffix)."""
    return path.endswith(_SUFFIXES)


@contextlib.contextmanager
def _open(path: str) -> Iterator[h5py.File]:
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"no Keras file at {path}")
    try:
        if path.endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                if WEIGHTS_MEMBER not in archive.namelist():
                    raise FormatError(
                        f"{path} holds no {WEIGHTS_MEMBER} (members: {archive.namelist()}); "
                        "it may be sharded or from another Keras version"
                    )
                data = io.BytesIO(archive.read(WEIGHTS_MEMBER))
            with h5py.File(data, "r") as weights:
                yield weights
        else:
            with h5py.File(path, "r") as weights:
                yield weights
    except (OSError, zipfile.BadZipFile) as e:
        raise FormatError(
            f"{path} is not a readable Keras file ({e}); expected a .weights.h5 (HDF5) or "
            ".keras (zip) file as model.save / model.save_weights write them"
        ) from e


def keras_datasets(path: str) -> list[tuple[str, tuple[int, ...], str, int]]:
    """Every weight array in a Keras file: (key, shape, dtype name, bytes), sorted by key.

    Raises:
        CheckpointNotFoundError: No file at `path`.
        FormatError: Not an HDF5 / Keras zip file.
    """
    found: list[tuple[str, tuple[int, ...], str, int]] = []

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            found.append((name, tuple(item.shape), np.dtype(item.dtype).name, int(item.nbytes)))

    with _open(path) as weights:
        weights.visititems(visit)
    return sorted(found)


def read_keras_tensor(path: str, key: str) -> np.ndarray[Any, Any]:
    """The values of the dataset `key` (e.g. ``layers/dense/vars/0``) in a Keras file.

    Raises:
        CheckpointKeyError: No such dataset; the message lists a few that exist.
    """
    with _open(path) as weights:
        item = weights.get(key)
        if not isinstance(item, h5py.Dataset):
            keys = [k for k, *_ in keras_datasets(path)]
            raise CheckpointKeyError(
                f"{path} has no weight {key!r}; it has {len(keys)}, e.g. {keys[:5]}"
            )
        return np.asarray(item[()])
