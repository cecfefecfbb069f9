"""Reading Keras-native files: ``.weights.h5`` and ``.keras`` (a zip holding one).

Keras 3 stores weights in HDF5 as ``layers/<layer>/vars/<i>`` and ``optimizer/vars/<i>``
datasets (the layer's own name in the ``vars`` group's ``name`` attribute). These functions
list and read those datasets with h5py, which comes with Keras (imported on first use, so
that reading TensorFlow checkpoints does not load it); no model is built and nothing is
deserialized but arrays.

A file ckptkit did not write is refused as Keras 3 refuses it, with a `FormatError` naming the
file and the dataset: soft and external links, datasets whose bytes live in other files
(external storage, virtual datasets: they could read any file, or block on a FIFO), and arrays
or ``.keras`` members that declare far more bytes than the file stores (a few KB claiming
gigabytes). A ``.keras`` member is streamed, never read whole.
"""

from __future__ import annotations

import contextlib
import math
import os
import zipfile
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from ckptkit.errors import CheckpointKeyError, CheckpointNotFoundError, FormatError

if TYPE_CHECKING:
    import h5py
    import numpy as np

__all__ = ["WEIGHTS_MEMBER", "is_keras_file", "keras_datasets", "read_keras_tensor"]

WEIGHTS_MEMBER = "model.weights.h5"
_SUFFIXES = (".weights.h5", ".keras", ".h5")


def is_keras_file(path: str) -> bool:
    """Whether `path` names a Keras-native file (by its suffix)."""
    return path.endswith(_SUFFIXES)


# Bounds on what a Keras file may claim, as Keras 3 has them (`saving_lib.safe_get_h5_dataset`,
# `_reject_zip_bomb`) but with lower floors: weights are stored uncompressed, so a member or a
# set of datasets that expands to far more than it stores is a bomb.
_MAX_EXPANSION = 1000  # HDF5 arrays: declared bytes per stored byte
_ZIP_MAX_EXPANSION = 100  # a .keras member: Keras stores them uncompressed
_FLOOR_BYTES = 64 << 20


@contextlib.contextmanager
def _open(path: str) -> Iterator[h5py.File]:
    """The weights of a Keras file, streamed (a ``.keras`` member is not read whole)."""
    import h5py

    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"no Keras file at {path}")
    try:
        if path.endswith(".keras"):
            with (
                zipfile.ZipFile(path) as archive,
                _member(path, archive) as stream,
                h5py.File(stream, "r") as weights,
            ):
                yield weights
        else:
            with h5py.File(path, "r") as weights:
                yield weights
    except (OSError, zipfile.BadZipFile) as e:
        raise FormatError(
            f"{path} is not a readable Keras file ({e}); expected a .weights.h5 (HDF5) or "
            ".keras (zip) file as model.save / model.save_weights write them"
        ) from e


def _member(path: str, archive: zipfile.ZipFile) -> IO[bytes]:
    """The weights member of the ``.keras`` archive `path`, opened as a stream."""
    if WEIGHTS_MEMBER not in archive.namelist():
        raise FormatError(
            f"{path} holds no {WEIGHTS_MEMBER} (members: {archive.namelist()[:10]}); "
            "it may be sharded or from another Keras version"
        )
    info = archive.getinfo(WEIGHTS_MEMBER)
    if info.file_size > max(_FLOOR_BYTES, _ZIP_MAX_EXPANSION * info.compress_size):
        raise FormatError(
            f"{path}: its member {WEIGHTS_MEMBER} declares {info.file_size} bytes but stores "
            f"{info.compress_size}: a decompression bomb, not a file Keras wrote; not read"
        )
    return archive.open(info)


def _stored(path: str, weights: h5py.File) -> int:
    """How many bytes the weights of the Keras file `path` take where they are stored."""
    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            return archive.getinfo(WEIGHTS_MEMBER).compress_size
    return os.path.getsize(path)


def _refuse(path: str, name: str, item: h5py.Dataset) -> None:
    """Raises `FormatError` for what Keras 3 refuses to read: data kept outside the file."""
    if item.external:
        raise FormatError(
            f"{path}: dataset {name!r} keeps its bytes in other files "
            f"({[e[0] for e in item.external][:3]}); Keras files never do, not read"
        )
    if item.is_virtual:
        raise FormatError(
            f"{path}: dataset {name!r} is a virtual dataset (its bytes are in other files or "
            "datasets); Keras files never hold one, not read"
        )


def _links(path: str, group: h5py.Group, prefix: str) -> None:
    """Raises `FormatError` for a soft or external link among `group`'s members."""
    for name in group:
        _no_link(path, group, name, prefix)


def _no_link(path: str, group: h5py.Group, name: str, prefix: str) -> None:
    """Raises `FormatError` when `group`'s member `name` is a soft or external link."""
    import h5py

    link = group.get(name, getlink=True)
    if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
        raise FormatError(
            f"{path}: {prefix}{name!s} is a {type(link).__name__} (to another place or "
            "file); Keras files never hold links, not read"
        )


def _declared(item: h5py.Dataset) -> int:
    return math.prod(item.shape or ()) * int(item.dtype.itemsize)


def keras_datasets(path: str) -> list[tuple[str, tuple[int, ...], str, int]]:
    """Every weight array in a Keras file: (key, shape, dtype name, bytes), sorted by key.

    Raises:
        CheckpointNotFoundError: No file at `path`.
        FormatError: Not an HDF5 / Keras zip file, or one Keras 3 would refuse: links,
            external or virtual datasets, or arrays that claim far more bytes than are stored.
    """
    import h5py
    import numpy as np

    found: list[tuple[str, tuple[int, ...], str, int]] = []

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Group):
            _links(path, item, f"{name}/")
        elif isinstance(item, h5py.Dataset):
            _refuse(path, name, item)
            found.append((name, tuple(item.shape), np.dtype(item.dtype).name, _declared(item)))

    with _open(path) as weights:
        _links(path, weights, "")
        weights.visititems(visit)
        declared, stored = sum(f[3] for f in found), _stored(path, weights)
    if declared > max(_FLOOR_BYTES, _MAX_EXPANSION * stored):
        largest = max(found, key=lambda f: f[3])
        raise FormatError(
            f"{path}: its arrays declare {declared} bytes ({largest[0]!r} {largest[3]}), and "
            f"the file stores {stored}: a shape bomb, not a file Keras wrote; not read"
        )
    return sorted(found)


def read_keras_tensor(path: str, key: str) -> np.ndarray[Any, Any]:
    """The values of the dataset `key` (e.g. ``layers/dense/vars/0``) in a Keras file.

    Raises:
        CheckpointKeyError: No such dataset; the message lists a few that exist.
        FormatError: The dataset is reached through a link, keeps its bytes elsewhere, or
            claims far more bytes than it stores.
    """
    import h5py
    import numpy as np

    with _open(path) as weights:
        group: h5py.Group = weights
        parts = key.strip("/").split("/")
        for i, part in enumerate(parts):
            if not isinstance(group, h5py.Group) or part not in group:
                group = None
                break
            _no_link(path, group, part, "/".join(parts[:i]) + "/" if i else "")
            group = group[part]
        if not isinstance(group, h5py.Dataset):
            keys = [k for k, *_ in keras_datasets(path)]
            raise CheckpointKeyError(
                f"{path} has no weight {key!r}; it has {len(keys)}, e.g. {keys[:5]}"
            )
        item = group
        _refuse(path, key, item)
        declared, stored = _declared(item), item.id.get_storage_size()
        if declared > max(_FLOOR_BYTES, _MAX_EXPANSION * stored):
            raise FormatError(
                f"{path}: dataset {key!r} declares {declared} bytes and stores {stored}: a "
                "shape bomb, not a file Keras wrote; not read"
            )
        return np.asarray(item[()])
