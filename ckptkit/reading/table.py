"""TensorFlow's tensor-bundle index as a table: LevelDB's format, walked in plain Python.

Data blocks of prefix-compressed ``key -> value`` entries with a restart array, an index block
pointing at the data blocks, and a 48-byte footer ending in a magic number. TensorFlow's bundle
writer never compresses its blocks. Every offset, length and count is checked against the bytes
it lies in, so a crafted file raises `Damage`, never reads out of bounds or loops.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = ["Damage", "entries", "varint"]

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48  # two block handles padded to 40 bytes, then the 8-byte magic number
_TRAILER = 5  # a block's compression type byte and its crc32c


class Damage(Exception):
    """What is wrong with the file, for the caller's `CorruptCheckpointError` message."""


def entries(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The table's entries, in file order, as TensorFlow's iterator yields them."""
    if len(data) < _FOOTER:
        raise Damage(f"it is {len(data)} bytes, shorter than a table footer")
    footer = data[-_FOOTER:]
    if struct.unpack_from("<Q", footer, _FOOTER - 8)[0] != _MAGIC:
        raise Damage("it has no table footer (bad magic number)")
    _, _, at = _handle(footer, 0, limit=_FOOTER - 8)  # the metaindex block: unused
    offset, size, _ = _handle(footer, at, limit=_FOOTER - 8)
    for _, handle in _block_entries(_block(data, offset, size), "the index block"):
        offset, size, _ = _handle(handle, 0, limit=len(handle))
        yield from _block_entries(_block(data, offset, size), f"the data block at {offset}")


def _handle(data: bytes, at: int, *, limit: int) -> tuple[int, int, int]:
    offset, at = varint(data, at, limit, 10)
    size, at = varint(data, at, limit, 10)
    return offset, size, at


def _block(data: bytes, offset: int, size: int) -> bytes:
    if offset + size + _TRAILER > len(data) - _FOOTER:
        raise Damage(f"a block at {offset} of {size} bytes lies outside the file")
    if data[offset + size] != 0:
        # TensorFlow's bundle writer never compresses its index.
        raise Damage(f"the block at {offset} is compressed or of unknown type")
    return data[offset : offset + size]


def _block_entries(block: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise Damage(f"{what} is too short")
    count = struct.unpack_from("<I", block, len(block) - 4)[0]
    if count == 0:
        return
    if count > (len(block) - 4) // 4:
        raise Damage(f"{what} has a bad restart array")
    limit = len(block) - 4 * (count + 1)
    restarts = set(struct.unpack_from(f"<{count}I", block, limit))
    if 0 not in restarts or max(restarts) >= max(limit, 1):
        raise Damage(f"{what} has a bad restart array")
    key, at, seen = b"", 0, 0
    while at < limit:
        start = at
        if at + 3 <= limit and block[at] | block[at + 1] | block[at + 2] < 0x80:
            shared, unshared, length = block[at], block[at + 1], block[at + 2]  # as TF's fast path
            at += 3
        else:
            shared, at = varint(block, at, limit, 5)
            unshared, at = varint(block, at, limit, 5)
            length, at = varint(block, at, limit, 5)
        if limit - at < unshared + length or shared > len(key):
            raise Damage(f"{what} has a bad entry at {start}")
        if start in restarts:
            if shared:
                raise Damage(f"{what} has a bad restart point at {start}")
            seen += 1
        key = key[:shared] + block[at : at + unshared]
        at += unshared
        yield key, block[at : at + length]
        at += length
    if seen != len(restarts):
        raise Damage(f"{what} has a restart point inside an entry")


def varint(data: bytes, at: int, limit: int, most: int) -> tuple[int, int]:
    """A little-endian base-128 integer of at most `most` bytes, and where it ends."""
    value = shift = 0
    for i in range(at, min(limit, at + most)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if most == 5 and value >= 1 << 32:
                break
            return value, i + 1
        shift += 7
    raise Damage(f"bad variable-length integer at byte {at}")
