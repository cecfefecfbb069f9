"""The keys TensorFlow stores the parts of a partitioned variable under, in plain Python.

A partitioned variable (a v1 ``Saver`` with a partitioner) has an entry of its own that lists
its slices, and each slice's values under a key encoded with TensorFlow's OrderedCode
(``tensorflow/core/util/saved_tensor_slice_util.cc``), which sorts before every plain name.
"""

from __future__ import annotations

__all__ = ["slice_key"]


def slice_key(name: str, extents: list[tuple[int, int]]) -> bytes:
    """The key a part of partitioned variable `name` is stored under.

    TensorFlow's ``EncodeTensorNameSlice``: OrderedCode's 0, `name`, the rank, then each
    extent's start and length (-1: the whole dimension).
    """
    escaped = name.encode().replace(b"\xff", b"\xff\x00").replace(b"\0", b"\0\xff")
    key = b"\0" + escaped + b"\0\x01" + _increasing(len(extents))
    for start, length in extents:
        key += _signed_increasing(start) + _signed_increasing(length)
    return key


def _increasing(value: int) -> bytes:
    """OrderedCode's ``WriteNumIncreasing``: a length byte, then the big-endian bytes."""
    body = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return bytes([len(body)]) + body


def _signed_increasing(value: int) -> bytes:
    """OrderedCode's ``WriteSignedNumIncreasing``.

    The length in leading one bits, then the value's two's-complement bytes.
    """
    length = (~value if value < 0 else value).bit_length() // 7 + 1  # 1 to 10 bytes
    body = bytearray((value & ((1 << 80) - 1)).to_bytes(10, "big")[-length:])
    ones = ((1 << length) - 1) << (16 - length)  # `length` leading one bits over two bytes
    body[0] ^= ones >> 8
    if length > 1:
        body[1] ^= ones & 0xFF
    return bytes(body)
