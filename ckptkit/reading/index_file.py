"""TensorFlow's checkpoint index (``<prefix>.index``), checked before anything reads through it.

TensorFlow's index reader trusts the file: an entry that is not a protobuf message, a shape
with a negative or overflowing dimension, or an unknown dtype fails a C++ ``CHECK`` and aborts
the whole process (SIGABRT). ckptkit reads indexes with its own reader (`bundle`), which
refuses all of that as it parses; `checked_bundle` adds what needs the data files (every
entry's bytes lie inside its shard) and keeps the last few parses, so that one process checks,
inspects and restores a checkpoint with one parse. TensorFlow still opens the checked index
where ckptkit hands it over (restores, and reads on ``gs://`` / ``ram://``).
"""

from __future__ import annotations

import os

from ckptkit.errors import CorruptCheckpointError, StorageUnavailableError
from ckptkit.reading.bundle import Bundle
from ckptkit.reading.table import Damage as _Damage
from ckptkit.storage import fs

__all__ = ["check_index", "checked_bundle"]

# path -> ((size, mtime_ns, inode), its parsed index, where each shard's values end) of indexes
# found sound; the last few, as one process reads the same checkpoint several times in a row
_CHECKED: dict[str, tuple[tuple[int, int, int], Bundle, dict[int, tuple[int, str]]]] = {}
_KEEP = 8


def check_index(path: str) -> int:
    """Checks the index file `path` (see `checked_bundle`); returns its number of data shards.

    Raises:
        CorruptCheckpointError: As `checked_bundle`.
    """
    return checked_bundle(path).num_shards


def checked_bundle(path: str) -> Bundle:
    """The parsed index file `path`, checked before anything reads values through it.

    Besides what TensorFlow's reader would abort on, every entry's claimed number of values
    must fit the bytes it claims, and those bytes must lie inside its data file: TensorFlow
    allocates the claimed values before it compares sizes (24 bytes a string: a 236-byte index
    claiming two billion strings kills the process), so what is allocated stays bounded by the
    files' sizes. A local index unchanged since its last check is not parsed again.

    Raises:
        CorruptCheckpointError: It cannot be read, is not a regular file, or holds something
            TensorFlow's reader would abort on or over-allocate for; the message names the file
            and the fault.
    """
    identity = _identity(path)
    known = _CHECKED.get(path)
    if identity is not None and known is not None and known[0] == identity:
        _, bundle, ends = known
    else:
        try:
            bundle, ends = _check(path.removesuffix(".index"), fs.read_bytes(path))
        except StorageUnavailableError:
            raise
        except OSError as e:
            raise CorruptCheckpointError(
                f"cannot read checkpoint index {path}: {e.strerror or e}; restore an earlier "
                "checkpoint"
            ) from e
        except _Damage as e:
            raise _damaged(path, str(e)) from None
        if identity is not None:
            if len(_CHECKED) >= _KEEP:
                _CHECKED.pop(next(iter(_CHECKED)))
            _CHECKED[path] = (identity, bundle, ends)
    _check_shard_sizes(path.removesuffix(".index"), bundle.num_shards, ends)
    return bundle


def _damaged(path: str, fault: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f"checkpoint index {path} is truncated, damaged or not a TensorFlow checkpoint: "
        f"{fault}. Restore an earlier checkpoint"
    )


def _check_shard_sizes(prefix: str, shards: int, ends: dict[int, tuple[int, str]]) -> None:
    """Raises when an entry's bytes lie past the end of its data file.

    Checked on every call: the data file may change without the index. A missing data file is
    left to the callers, which report it as missing.
    """
    for shard, (end, key) in ends.items():
        data = f"{prefix}.data-{shard:05d}-of-{shards:05d}"
        try:
            size = fs.stat(data).size
        except StorageUnavailableError:
            raise
        except OSError:
            continue
        if end > size:
            raise _damaged(
                prefix + ".index",
                f"the value of {key[:80]!r} ends at byte {end} of {os.path.basename(data)}, "
                f"which has {size} bytes",
            )


def _identity(path: str) -> tuple[int, int, int] | None:
    if fs.is_remote(path):
        return None
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_size, info.st_mtime_ns, info.st_ino


def _check(prefix: str, data: bytes) -> tuple[Bundle, dict[int, tuple[int, str]]]:
    """The parsed index, and where the values of each shard end (with the key that ends last)."""
    bundle = Bundle(prefix, data)  # checks every entry as it reads it
    ends: dict[int, tuple[int, str]] = {}
    for entry in bundle.stored():
        end = entry.offset + entry.size
        if end > ends.get(entry.shard, (0, ""))[0]:
            ends[entry.shard] = (end, entry.key)
    return bundle, ends
