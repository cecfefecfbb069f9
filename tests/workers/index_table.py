"""Reads and writes TensorFlow's index table format, with valid block checksums, for tests.

TensorFlow checks each block's crc32c before it parses anything, so a crafted index reaches the
parts of TensorFlow that abort only when its checksums are right. `table` writes entries as a
valid table; `fix_checksums` repairs the checksums of a table whose blocks were damaged.
Written independently of `ckptkit.reading.index_file`, so the tests do not check that module with
itself.
"""

from __future__ import annotations

import struct

MAGIC = 0xDB4775248B80FB57
FOOTER = 48


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A block with a restart point at every entry (no shared key prefixes)."""
    body = bytearray()
    restarts = []
    for key, value in entries:
        restarts.append(len(body))
        body += varint(0) + varint(len(key)) + varint(len(value)) + key + value
    restarts = restarts or [0]
    body += struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))
    return bytes(body)


def table(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A whole index file: one data block, an empty metaindex, the index block, the footer."""
    out = bytearray()

    def put(contents: bytes) -> bytes:
        offset = len(out)
        out.extend(contents + b"\x00" + struct.pack("<I", masked(contents + b"\x00")))
        return varint(offset) + varint(len(contents))

    data = put(block(entries))
    meta = put(block([]))
    last = entries[-1][0] if entries else b""
    index = put(block([(last + b"\xff", data)]))
    out += (meta + index).ljust(FOOTER - 8, b"\x00") + struct.pack("<Q", MAGIC)
    return bytes(out)


def blocks(data: bytes) -> list[tuple[int, int]]:
    """``(offset, size)`` of the index block and every data block it points at."""
    at = len(data) - FOOTER
    _, at = read_varint(data, at)
    _, at = read_varint(data, at)
    offset, at = read_varint(data, at)
    size, _ = read_varint(data, at)
    found = [(offset, size)]
    for _, handle in parse_block(data[offset : offset + size]):
        data_offset, i = read_varint(handle, 0)
        data_size, _ = read_varint(handle, i)
        found.append((data_offset, data_size))
    return found


def parse_block(contents: bytes) -> list[tuple[bytes, bytes]]:
    count = struct.unpack_from("<I", contents, len(contents) - 4)[0]
    limit = len(contents) - 4 - 4 * count
    key, at, found = b"", 0, []
    while at < limit:
        shared, at = read_varint(contents, at)
        unshared, at = read_varint(contents, at)
        length, at = read_varint(contents, at)
        key = key[:shared] + contents[at : at + unshared]
        at += unshared
        found.append((key, contents[at : at + length]))
        at += length
    return found


def entries(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every ``(key, value)`` of a well-formed index, in order."""
    found = []
    for offset, size in blocks(data)[1:]:
        found.extend(parse_block(data[offset : offset + size]))
    return found


def fix_checksums(data: bytes, spans: list[tuple[int, int]]) -> bytes:
    """`data` with the trailer of each ``(offset, size)`` block recomputed (type 0 kept as is)."""
    out = bytearray(data)
    for offset, size in spans:
        end = offset + size
        if end + 5 <= len(out):
            out[end + 1 : end + 5] = struct.pack("<I", masked(bytes(out[offset : end + 1])))
    return bytes(out)
