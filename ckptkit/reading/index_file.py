"""TensorFlow's checkpoint index (``<prefix>.index``), checked in Python before TensorFlow reads it.

TensorFlow's index reader trusts the file: an entry that is not a protobuf message, a shape
with a negative or overflowing dimension, or an unknown dtype fails a C++ ``CHECK`` and aborts
the whole process (SIGABRT), whatever Python code called it. So every index goes through
`check_index` first, which walks the file the way TensorFlow's reader does and raises
`CorruptCheckpointError` for anything it would abort on (and for anything TensorFlow's own
writer never produces).

The format is LevelDB's table: data blocks of prefix-compressed ``key -> value`` entries with a
restart array, an index block pointing at the data blocks, and a 48-byte footer. The first key
is ``""`` with a `BundleHeaderProto`; every other value is a `BundleEntryProto`. TensorFlow
checks each block's crc32c itself (a mismatch is an ordinary error there), so it is not
recomputed here.
"""

from __future__ import annotations

import os

from google.protobuf.message import DecodeError
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf.tensor_bundle_pb2 import BundleEntryProto, BundleHeaderProto

from ckptkit.errors import CorruptCheckpointError, StorageUnavailableError
from ckptkit.reading.table import Damage as _Damage
from ckptkit.reading.table import entries as _table
from ckptkit.storage import fs

__all__ = ["check_index"]

_MAX_DIMS = 254  # TensorShape's limit
_MAX_SHARDS = 99_999  # shard file names have five digits
# Dtypes a checkpoint can hold: every real DataType, none of the "_REF" ones (> 100).
_DTYPES = frozenset(v for v in types_pb2.DataType.values() if 0 < v < 100) - {types_pb2.DT_RESOURCE}
# Bytes a value of each fixed-size dtype takes in a data file: TensorFlow writes the buffer.
_ITEMSIZE = {
    getattr(types_pb2, f"DT_{name}"): size
    for names, size in (
        ("UINT8 INT8 BOOL QINT8 QUINT8 FLOAT8_E5M2 FLOAT8_E4M3FN FLOAT8_E4M3FNUZ "
         "FLOAT8_E4M3B11FNUZ FLOAT8_E5M2FNUZ", 1),
        ("INT16 UINT16 QINT16 QUINT16 BFLOAT16 HALF", 2),
        ("FLOAT INT32 UINT32 QINT32", 4),
        ("DOUBLE INT64 UINT64 COMPLEX64", 8),
        ("COMPLEX128", 16),
    )
    for name in names.split()
    if hasattr(types_pb2, f"DT_{name}")  # older TensorFlow lacks the newer float8s
}  # fmt: skip
# Strings and variants: a length of at least one byte per value. Sub-byte types: packed at most
# four to a byte.
_PACKED = 4
# path -> ((size, mtime_ns, inode), shard count, where each shard's values end) of indexes found
# sound
_CHECKED: dict[str, tuple[tuple[int, int, int], int, dict[int, tuple[int, bytes]]]] = {}


def check_index(path: str) -> int:
    """Checks the index file `path` before TensorFlow opens it.

    Besides what TensorFlow would abort on, every entry's claimed number of values must fit the
    bytes it claims, and those bytes must lie inside its data file: TensorFlow allocates the
    claimed values before it compares sizes (24 bytes a string: a 236-byte index claiming two
    billion strings kills the process), so what is allocated stays bounded by the files' sizes.

    Returns:
        The number of data shards its header names.

    Raises:
        CorruptCheckpointError: It cannot be read, is not a regular file, or holds something
            TensorFlow's reader would abort on or over-allocate for; the message names the file
            and the fault.
    """
    identity = _identity(path)
    known = _CHECKED.get(path)
    if identity is not None and known is not None and known[0] == identity:
        _, shards, ends = known
    else:
        try:
            shards, ends = _check(fs.read_bytes(path))
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
            if len(_CHECKED) > 1024:
                _CHECKED.clear()
            _CHECKED[path] = (identity, shards, ends)
    _check_shard_sizes(path.removesuffix(".index"), shards, ends)
    return shards


def _damaged(path: str, fault: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f"checkpoint index {path} is truncated, damaged or not a TensorFlow checkpoint: "
        f"{fault}. Restore an earlier checkpoint"
    )


def _check_shard_sizes(prefix: str, shards: int, ends: dict[int, tuple[int, bytes]]) -> None:
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
                f"the value of {_show(key)} ends at byte {end} of {os.path.basename(data)}, "
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


def _check(data: bytes) -> tuple[int, dict[int, tuple[int, bytes]]]:
    """The shard count, and where the values of each shard end (with the key that ends last)."""
    entries = _table(data)
    first = next(entries, None)
    if first is None or first[0] != b"":
        raise _Damage("it has no header entry")
    header = BundleHeaderProto()
    fault = _parse(header, first[1])
    if fault:
        raise _Damage(f"the header {fault}")
    shards = int(header.num_shards)
    if not 1 <= shards <= _MAX_SHARDS:
        raise _Damage(f"the header names {shards} data shards")
    entry = BundleEntryProto()
    previous = b""
    ends: dict[int, tuple[int, bytes]] = {}
    for key, value in entries:  # hot loop: one pass per tensor, messages built only on faults
        if key <= previous:
            raise _Damage(f"key {_show(key)} is out of order")
        try:
            key.decode()  # TensorFlow's Python reader decodes every key
        except UnicodeDecodeError:
            raise _Damage(f"key {_show(key)} is not UTF-8") from None
        previous = key
        fault = _parse(entry, value) or _entry_fault(entry, shards)
        if fault:
            raise _Damage(f"the entry of {_show(key)} {fault}")
        end = entry.offset + entry.size
        if end > ends.get(entry.shard_id, (0, b""))[0]:
            ends[entry.shard_id] = (end, key)
    return shards, ends


def _entry_fault(entry: BundleEntryProto, shards: int) -> str:
    """What in `entry` TensorFlow would abort on ("" when nothing)."""
    dtype, shape, shard = entry.dtype, entry.shape, entry.shard_id
    if dtype not in _DTYPES:
        return f"has dtype {dtype}, which no checkpoint holds"
    if shape.unknown_rank or len(shape.dim) > _MAX_DIMS:
        return "has no valid rank"
    sizes = [d.size for d in shape.dim]
    elements = 1
    for size in sizes:  # TensorFlow multiplies in this order and aborts on any overflow
        elements *= size
        if size < 0 or elements >= 1 << 63:
            return f"has an invalid shape {sizes[:8]}"
    if not 0 <= shard < shards or entry.offset < 0 or entry.size < 0:
        return (
            f"points at shard {shard}, offset {entry.offset}, size {entry.size} "
            f"(the header names {shards} shards)"
        )
    if entry.slices:
        return _slice_fault(entry, sizes)
    return _size_fault(dtype, elements, entry.size)


def _size_fault(dtype: int, elements: int, size: int) -> str:
    """Whether `elements` values of `dtype` cannot be what `size` bytes hold ("" when they can)."""
    itemsize = _ITEMSIZE.get(dtype)
    if itemsize is not None:
        if size == elements * itemsize:
            return ""
        need = f"{elements * itemsize} bytes"
    elif dtype in (types_pb2.DT_STRING, types_pb2.DT_VARIANT):
        if size >= elements:
            return ""
        need = "at least a byte a value"
    elif size * _PACKED >= elements:
        return ""
    else:
        need = f"at least {-(-elements // _PACKED)} bytes"
    return f"claims {elements} values in {size} bytes (they need {need})"


def _slice_fault(entry: BundleEntryProto, sizes: list[int]) -> str:
    for piece in entry.slices:
        if len(piece.extent) > len(sizes):
            return "has a slice of higher rank than its shape"
        for extent, size in zip(piece.extent, sizes, strict=False):
            length = extent.length if extent.HasField("length") else size - extent.start
            if extent.start < 0 or length < 0 or extent.start + length > size:
                return f"has a slice outside its shape {sizes}"
    return ""


def _parse(message: BundleEntryProto | BundleHeaderProto, value: bytes) -> str:
    """Parses `value` into `message`; what is wrong ("" when it parsed)."""
    try:
        message.ParseFromString(value)
    except (DecodeError, RecursionError, ValueError) as e:
        return f"is not a valid record ({e})"
    return ""


def _show(key: bytes) -> str:
    return repr(key.decode("utf-8", "replace")[:80])
