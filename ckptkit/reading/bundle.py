"""A TensorFlow checkpoint (tensor bundle) read in plain Python: no TensorFlow, no generated code.

The ``.index`` file is a table (`table`) whose ``""`` key holds a ``BundleHeaderProto`` and
every other key a ``BundleEntryProto``: dtype, shape, shard, offset, size, masked crc32c and,
for a partitioned variable, its slices. The ``.data-NNNNN-of-NNNNN`` shards hold the values:
fixed-size types as their little-endian buffer; strings as varint64 lengths, a masked crc32c
of the lengths (each as 4 little-endian bytes, 8 past 2**32 - 1), then the bytes.
``_CHECKPOINTABLE_OBJECT_GRAPH`` holds a serialized ``TrackableObjectGraph``. The messages are
parsed by protobuf from declarations of ckptkit's own (`bundle_protos`); the parts of a
partitioned variable are found under the keys `slice_keys` encodes.

Every value is checked against the entry's crc32c, as TensorFlow's reader checks it; every
count, length and offset against the bytes it lies in, so a crafted file gets `Damage`, never
a huge allocation, a hang or a crash.
"""

from __future__ import annotations

import functools
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import google_crc32c

from ckptkit.reading.bundle_protos import EntryProto, HeaderProto, ObjectGraphProto, parse
from ckptkit.reading.slice_keys import slice_key
from ckptkit.reading.table import Damage, entries, varint

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DTYPES",
    "OBJECT_GRAPH_KEY",
    "Bundle",
    "BundleReader",
    "Entry",
    "GraphNode",
    "numpy_type",
    "parse_object_graph",
]

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_DT_STRING, _DT_VARIANT, _DT_RESOURCE = 7, 21, 20

# TensorFlow's DataType enum: the name TensorFlow gives each, and the bytes a value takes in a
# checkpoint (0: strings, and types numpy has no type for, whose values are listed, not read).
DTYPES: dict[int, tuple[str, int]] = {
    1: ("float32", 4),
    2: ("float64", 8),
    3: ("int32", 4),
    4: ("uint8", 1),
    5: ("int16", 2),
    6: ("int8", 1),
    7: ("string", 0),
    8: ("complex64", 8),
    9: ("int64", 8),
    10: ("bool", 1),
    11: ("qint8", 0),
    12: ("quint8", 0),
    13: ("qint32", 0),
    14: ("bfloat16", 2),
    15: ("qint16", 0),
    16: ("quint16", 0),
    17: ("uint16", 2),
    18: ("complex128", 16),
    19: ("float16", 2),
    20: ("resource", 0),
    21: ("variant", 0),
    22: ("uint32", 4),
    23: ("uint64", 8),
    24: ("float8_e5m2", 1),
    25: ("float8_e4m3fn", 1),
    26: ("float8_e4m3fnuz", 1),
    27: ("float8_e4m3b11fnuz", 1),
    28: ("float8_e5m2fnuz", 1),
    29: ("int4", 1),
    30: ("uint4", 1),
    31: ("int2", 0),
    32: ("uint2", 0),
    33: ("float4_e2m1fn", 0),
}
# Types numpy lacks, from ml_dtypes: imported on first use, as its import takes half a second.
_ML_DTYPES = {
    "bfloat16",
    "float8_e5m2",
    "float8_e4m3fn",
    "float8_e4m3fnuz",
    "float8_e4m3b11fnuz",
    "float8_e5m2fnuz",
    "int4",
    "uint4",
}


@functools.cache
def numpy_type(dtype: int) -> np.dtype[Any] | None:
    """The numpy type of values of TensorFlow dtype number `dtype`; None where there is none."""
    import numpy as np

    name, itemsize = DTYPES[dtype]
    if dtype == _DT_STRING:
        return np.dtype(object)
    if not itemsize:
        return None
    found: np.dtype[Any]
    if name in _ML_DTYPES:
        import ml_dtypes

        found = np.dtype(getattr(ml_dtypes, name))
    else:
        found = np.dtype(name).newbyteorder("<")
    return found


_MAX_DIMS = 254  # TensorShape's limit
_MAX_SHARDS = 99_999  # shard file names have five digits
_MASK_DELTA = 0xA282EAD8
_CHUNK = 1 << 20  # bytes read and checksummed at a time: they stay in the cache (4 MiB: slower)


@dataclass(frozen=True)
class Entry:
    """One stored tensor, as its ``BundleEntryProto`` says.

    Attributes:
        key: Its checkpoint key.
        dtype: TensorFlow's DataType number (`DTYPES` names it).
        shape: Its dimensions.
        shard: Which data file holds it.
        offset: Where its bytes start there.
        size: How many bytes it takes.
        crc32c: The masked crc32c of those bytes.
        slices: For a partitioned variable, its parts: each part's ``(start, length)`` in every
            dimension and the entry that stores it (under a key of its own); empty otherwise.
    """

    key: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int
    slices: tuple[tuple[tuple[tuple[int, int], ...], Entry], ...] = ()

    @property
    def dtype_name(self) -> str:
        """TensorFlow's name of its dtype (``float32``, ``bfloat16``, ``string``...)."""
        return DTYPES[self.dtype][0]


@dataclass(frozen=True)
class GraphNode:
    """One object of a ``TrackableObjectGraph``.

    Attributes:
        children: ``(local_name, node_id)`` edges.
        attributes: ``(name, full_name, checkpoint_key)`` of its saved values.
        slots: ``(original variable node id, slot node id)`` of optimizer slots.
    """

    children: tuple[tuple[str, int], ...]
    attributes: tuple[tuple[str, str, str], ...]
    slots: tuple[tuple[int, int], ...]


class Bundle:
    """The index of checkpoint `prefix`, read and checked; values read on demand.

    Args:
        prefix: The checkpoint prefix, on a local path (its ``.index`` and data files).
        index: The index file's bytes, when already read.

    Raises:
        Damage: The index is not a sound tensor-bundle index.
    """

    def __init__(self, prefix: str, index: bytes | None = None) -> None:
        self.prefix = prefix
        if index is None:
            with open(f"{prefix}.index", "rb") as file:
                index = file.read()
        walk = entries(index)
        first = next(walk, None)
        if first is None or first[0] != b"":
            raise Damage("it has no header entry")
        header = parse(HeaderProto, first[1], "the header")
        self.num_shards: int = header.num_shards
        if not 1 <= self.num_shards <= _MAX_SHARDS:
            raise Damage(f"the header names {self.num_shards} data shards")
        if header.endianness != 0:
            raise Damage("the header says big-endian, which no TensorFlow writer produces here")
        self.entries: dict[str, Entry] = {}
        # The parts of partitioned variables, under keys that sort first: b"\0", the variable's
        # name and the part's extents (`slice_key`); parsed when their variable names them.
        self._parts: dict[bytes, bytes] = {}
        previous = b""
        for raw_key, value in walk:
            if raw_key <= previous:
                raise Damage(f"key {_show(raw_key)} is out of order")
            previous = raw_key
            if raw_key.startswith(b"\0"):
                self._parts[raw_key] = value
                continue
            try:
                key = raw_key.decode()
            except UnicodeDecodeError:
                raise Damage(f"key {_show(raw_key)} is not UTF-8") from None
            self.entries[key] = self._entry(key, value)

    def _entry(self, key: str, value: bytes, *, part: bool = False) -> Entry:
        proto = parse(EntryProto, value, f"the entry of {key!r}")
        dtype = proto.dtype
        if dtype not in DTYPES or dtype == _DT_RESOURCE:
            raise Damage(f"the entry of {key!r} has dtype {dtype}, which no checkpoint holds")
        shape = _shape(proto.shape, key)
        shard, offset, size = proto.shard_id, proto.offset, proto.size
        if not 0 <= shard < self.num_shards or offset < 0 or size < 0:
            raise Damage(
                f"the entry of {key!r} points at shard {shard}, offset {offset}, size {size}"
            )
        entry = Entry(key, dtype, shape, shard, offset, size, proto.crc32c)
        if proto.slices:
            if part:
                raise Damage(f"the slice {key} is itself partitioned")
            return replace(entry, slices=self._slices(entry, proto.slices))
        _check_size(entry)
        return entry

    def _slices(
        self, entry: Entry, protos: Any
    ) -> tuple[tuple[tuple[tuple[int, int], ...], Entry], ...]:
        """The parts of partitioned variable `entry`, each found, parsed and checked."""
        parts = []
        for proto in protos:
            extents = [  # a length of -1: the whole dimension
                (e.start, e.length if e.HasField("length") else -1) for e in proto.extent
            ]
            if len(extents) != len(entry.shape):
                raise Damage(f"the entry of {entry.key!r} has a slice of another rank")
            box = []
            for (start, length), size in zip(extents, entry.shape, strict=True):
                end = size if length == -1 else start + length
                if not 0 <= start <= end <= size:
                    raise Damage(
                        f"the entry of {entry.key!r} has a slice outside its shape "
                        f"{list(entry.shape)}"
                    )
                box.append((start, end - start))
            name = f"{entry.key}[{','.join(f'{s}:{s + n}' for s, n in box)}]"
            value = self._parts.get(slice_key(entry.key, extents))
            if value is None:
                raise Damage(f"the slice {name} is not stored")
            part = self._entry(name, value, part=True)
            if part.dtype != entry.dtype or part.shape != tuple(n for _, n in box):
                raise Damage(f"the slice {name} is stored as {part.dtype_name} {list(part.shape)}")
            parts.append((tuple(box), part))
        if sum(math.prod(part.shape) for _, part in parts) != math.prod(entry.shape):
            raise Damage(f"the slices of {entry.key!r} do not add up to its shape")
        return tuple(parts)

    def shard_path(self, shard: int) -> str:
        """The data file of `shard`."""
        return f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}"

    def stored(self) -> Iterator[Entry]:
        """Every stored value's entry: the parts of a partitioned variable instead of it."""
        for entry in self.entries.values():
            if entry.slices:
                yield from (part for _, part in entry.slices)
            else:
                yield entry

    def read(self, key: str) -> np.ndarray[Any, Any]:
        """The value of `key` (a partitioned variable assembled), checked against its crc32c.

        Raises:
            KeyError: No such key.
            Damage: Its bytes are missing, short, or fail the checksum; or its slices overlap.
            NotImplementedError: A dtype numpy has no type for.
        """
        import numpy as np

        entry = self.entries[key]
        value_type = numpy_type(entry.dtype)
        if value_type is None:
            raise NotImplementedError(f"{key!r} is of dtype {entry.dtype_name}")
        if not entry.slices:
            return self._read(entry, value_type)
        # The parts' values add up to the whole (checked when parsed), so both arrays stay
        # bounded by the data files' sizes.
        value: np.ndarray[Any, Any] = np.empty(entry.shape, value_type)
        covered = np.zeros(entry.shape, bool)
        for box, part in entry.slices:
            where = tuple(slice(start, start + length) for start, length in box)
            if covered[where].any():
                raise Damage(f"its index gives {key!r} overlapping slices")
            covered[where] = True
            value[where] = self._read(part, value_type)
        return value

    def _read(self, entry: Entry, value_type: np.dtype[Any]) -> np.ndarray[Any, Any]:
        import numpy as np

        value: np.ndarray[Any, Any]
        if entry.dtype == _DT_STRING:
            value = np.empty(math.prod(entry.shape), value_type)
            value[:] = _strings(entry, self._bytes(entry))
            return value.reshape(entry.shape)
        value = np.empty(entry.shape, value_type)
        buffer = value.reshape(-1).view(np.uint8).data  # the array's own bytes
        at, crc = 0, 0
        for chunk in self._chunks(entry, _CHUNK):  # summed and copied while in the cache
            crc = google_crc32c.extend(crc, chunk)
            buffer[at : at + len(chunk)] = chunk
            at += len(chunk)
        if _mask(crc) != entry.crc32c:
            raise Damage(f"the value of {entry.key!r} fails its crc32c check")
        return value

    def _bytes(self, entry: Entry) -> bytes:
        return b"".join(self._chunks(entry, max(entry.size, 1)))  # one read, no copy

    def _chunks(self, entry: Entry, size: int) -> Iterator[bytes]:
        """The stored bytes of `entry`, `size` at a time.

        Raises:
            Damage: Its data file cannot be read, or ends before them.
        """
        path = self.shard_path(entry.shard)
        done = 0
        try:
            with open(path, "rb") as file:
                file.seek(entry.offset)
                while done < entry.size:
                    chunk = file.read(min(size, entry.size - done))
                    if not chunk:
                        break
                    done += len(chunk)
                    yield chunk
        except OSError as e:
            raise Damage(f"cannot read {os.path.basename(path)}: {e.strerror or e}") from None
        if done != entry.size:
            raise Damage(
                f"the value of {entry.key!r} ends at byte {entry.offset + entry.size} of "
                f"{os.path.basename(path)}, which has {entry.offset + done} bytes"
            )

    def check(self, key: str) -> None:
        """Checks the stored bytes of `key` against their crc32c, without building its value.

        What a full verify needs: each MiB is read into the bytes the checksum takes, one
        copy, as TensorFlow's reader makes (`read` copies each MiB once more, into the
        value). Values of any dtype are checked, numpy type or not.

        Raises:
            KeyError: No such key.
            Damage: Its bytes are missing, short, or fail the checksum; or its slices overlap.
        """
        entry = self.entries[key]
        if entry.slices:  # assembled, for the overlap check
            self.read(key)
            return
        if entry.dtype == _DT_STRING:
            _strings(entry, self._bytes(entry))
            return
        crc = 0
        for chunk in self._chunks(entry, _CHUNK):
            crc = google_crc32c.extend(crc, chunk)
        if _mask(crc) != entry.crc32c:
            raise Damage(f"the value of {entry.key!r} fails its crc32c check")

    def object_graph(self) -> list[GraphNode] | None:
        """The checkpoint's object graph; None for a name-based checkpoint (it has none)."""
        if OBJECT_GRAPH_KEY not in self.entries:
            return None
        return parse_object_graph(self.read_string(OBJECT_GRAPH_KEY))

    def read_string(self, key: str) -> bytes:
        """The value of string scalar `key`, checked, without numpy (listing needs none).

        Raises:
            KeyError: No such key.
            Damage: It is not one string, or its bytes are damaged.
        """
        entry = self.entries[key]
        if entry.dtype != _DT_STRING or entry.shape != ():
            raise Damage(f"the record {key!r} is not one string")
        return _strings(entry, self._bytes(entry))[0]


def parse_object_graph(data: bytes) -> list[GraphNode]:
    """The nodes of a serialized ``TrackableObjectGraph``, node 0 first.

    Raises:
        Damage: It is not one, or refers to a node it does not have.
    """
    nodes = [
        GraphNode(
            tuple((c.local_name, c.node_id) for c in node.children),
            tuple((a.name, a.full_name, a.checkpoint_key) for a in node.attributes),
            tuple(
                (s.original_variable_node_id, s.slot_variable_node_id) for s in node.slot_variables
            ),
        )
        for node in parse(ObjectGraphProto, data, "the object graph").nodes
    ]
    count = len(nodes)
    for node in nodes:
        refs = [c for _, c in node.children] + [i for pair in node.slots for i in pair]
        bad = [i for i in refs if not 0 <= i < count]
        if bad:
            raise Damage(f"the object graph refers to node {bad[0]}, and it has {count} nodes")
    return nodes


def _shape(proto: Any, key: str) -> tuple[int, ...]:
    if proto.unknown_rank or len(proto.dim) > _MAX_DIMS:
        raise Damage(f"the entry of {key!r} has no valid rank")
    sizes = tuple(d.size for d in proto.dim)
    elements = 1
    for size in sizes:
        elements *= size
        if size < 0 or elements >= 1 << 63:
            raise Damage(f"the entry of {key!r} has an invalid shape {list(sizes[:8])}")
    return sizes


def _check_size(entry: Entry) -> None:
    """Whether `entry`'s claimed values can be what its bytes hold."""
    elements = math.prod(entry.shape)
    itemsize = DTYPES[entry.dtype][1]
    if entry.dtype in (_DT_STRING, _DT_VARIANT):
        fits, need = entry.size >= elements, "at least a byte a value"
    elif not itemsize:
        fits, need = entry.size * 4 >= elements, f"at least {-(-elements // 4)} bytes"
    else:
        fits, need = entry.size == elements * itemsize, f"{elements * itemsize} bytes"
    if not fits:
        raise Damage(
            f"the entry of {entry.key!r} claims {elements} values in {entry.size} bytes "
            f"(they need {need})"
        )


def _strings(entry: Entry, data: bytes) -> list[bytes]:
    """The items of a string tensor: varint64 lengths, their masked crc32c, then the bytes."""
    count = math.prod(entry.shape)
    lengths, at, crc = [], 0, 0
    for _ in range(count):
        length, at = varint(data, at, len(data), 10)
        lengths.append(length)
        # Each length as 4 little-endian bytes (8 past 2**32-1), as TensorFlow's writer sums it.
        crc = google_crc32c.extend(crc, struct.pack("<I" if length <= 0xFFFFFFFF else "<Q", length))
    if at + 4 > len(data) or sum(lengths) != len(data) - at - 4:
        raise Damage(f"the string lengths of {entry.key!r} do not add up to its bytes")
    stored = data[at : at + 4]
    if struct.unpack("<I", stored)[0] != _mask(crc):
        raise Damage(f"the string lengths of {entry.key!r} fail their crc32c check")
    crc = google_crc32c.extend(crc, stored)
    at += 4
    crc = google_crc32c.extend(crc, data[at:])
    if _mask(crc) != entry.crc32c:
        raise Damage(f"the value of {entry.key!r} fails its crc32c check")
    items = []
    for length in lengths:
        items.append(data[at : at + length])
        at += length
    return items


def _mask(crc: int) -> int:
    """TensorFlow's (LevelDB's) masked crc32c."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def _show(key: bytes) -> str:
    return repr(key.decode("utf-8", "replace")[:80])


class BundleReader:
    """`Bundle` with the methods of TensorFlow's checkpoint reader that ckptkit calls.

    What `tf.train.load_checkpoint` returns, for the reading code: key -> shape, key -> dtype
    number, and values (a string scalar as bytes, as TensorFlow gives it). A value of a dtype
    numpy has no type for (quantized, 2-bit, 4-bit float) is read by TensorFlow's own reader
    (imported then, not before).

    Args:
        bundle: The parsed index (`index_file.checked_bundle`).
    """

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle

    def get_variable_to_shape_map(self) -> dict[str, list[int]]:
        """Each key's shape."""
        return {key: list(entry.shape) for key, entry in self.bundle.entries.items()}

    def _GetVariableToDataTypeMap(self) -> dict[str, int]:
        """Each key's DataType number."""
        return {key: entry.dtype for key, entry in self.bundle.entries.items()}

    def has_tensor(self, key: str) -> bool:
        """Whether `key` is stored."""
        return key in self.bundle.entries

    def check_tensor(self, key: str) -> None:
        """Checks the stored bytes of `key` against their crc32c (`Bundle.check`).

        Raises:
            KeyError: No such key.
            ValueError: Its bytes are damaged or short (the message says how).
        """
        try:
            self.bundle.check(key)
        except Damage as e:
            raise ValueError(str(e)) from None

    def get_tensor(self, key: str) -> Any:
        """The value of `key` (bytes for a string scalar), checked against its crc32c.

        Raises:
            KeyError: No such key.
            ValueError: Its bytes are damaged or short (the message says how).
        """
        entry = self.bundle.entries[key]
        if entry.dtype == _DT_STRING and not entry.shape:  # the object graph's record
            try:
                return self.bundle.read_string(key)
            except Damage as e:
                raise ValueError(str(e)) from None
        if numpy_type(entry.dtype) is None:
            import tensorflow as tf  # dtypes numpy has no type for: TensorFlow's reader

            return tf.compat.v1.train.NewCheckpointReader(self.bundle.prefix).get_tensor(key)
        try:
            value = self.bundle.read(key)
        except Damage as e:
            raise ValueError(str(e)) from None
        return value
