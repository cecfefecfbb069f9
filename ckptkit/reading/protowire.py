"""Protocol buffers' wire format, just enough of it to read TensorFlow's checkpoint messages.

A message is read into ``field number -> values`` (ints for varint and fixed-width fields, bytes
for length-delimited ones); the caller knows which numbers mean what. Every length is checked
against the bytes it lies in, so a crafted message raises `Damage`.
"""

from __future__ import annotations

import struct

from ckptkit.reading.table import Damage, varint

__all__ = ["integer", "message", "nested", "text"]


def message(data: bytes, what: str) -> dict[int, list[int | bytes]]:
    """The fields of a protobuf message: number -> values in order (ints, or bytes)."""
    fields: dict[int, list[int | bytes]] = {}
    at, end = 0, len(data)
    try:
        while at < end:
            tag = data[at]  # one byte for the field numbers these messages use: read inline
            if tag < 0x80:
                at += 1
            else:
                tag, at = varint(data, at, end, 10)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise Damage("field number 0")
            value: int | bytes
            if wire == 2 or wire == 0:
                if at < end and data[at] < 0x80:
                    varint_value, at = data[at], at + 1
                else:
                    varint_value, at = varint(data, at, end, 10)
                if wire == 0:
                    value = varint_value
                elif varint_value > end - at:
                    raise Damage("a length-delimited field runs past the end")
                else:
                    value, at = data[at : at + varint_value], at + varint_value
            elif wire == 1:
                if at + 8 > end:
                    raise Damage("a 64-bit field runs past the end")
                value, at = struct.unpack_from("<Q", data, at)[0], at + 8
            elif wire == 5:
                if at + 4 > end:
                    raise Damage("a 32-bit field runs past the end")
                value, at = struct.unpack_from("<I", data, at)[0], at + 4
            else:
                raise Damage(f"wire type {wire}")
            found = fields.get(number)
            if found is None:
                fields[number] = [value]
            else:
                found.append(value)
    except Damage as e:
        raise Damage(f"{what} is not a valid record ({e})") from None
    return fields


def integer(fields: dict[int, list[int | bytes]], number: int, default: int) -> int:
    """The last value of varint field `number`, as a signed 64-bit integer."""
    values = fields.get(number)
    if not values:
        return default
    value = values[-1]
    if not isinstance(value, int):
        raise Damage(f"field {number} is not an integer")
    return value - (1 << 64) if value >= 1 << 63 else value


def text(fields: dict[int, list[int | bytes]], number: int) -> str:
    """The last value of string field `number` ("" when absent)."""
    values = fields.get(number)
    if not values:
        return ""
    try:
        return nested(values[-1]).decode()
    except UnicodeDecodeError:
        raise Damage(f"field {number} is not UTF-8 text") from None


def nested(value: int | bytes) -> bytes:
    """A length-delimited value (a nested message, bytes or a string)."""
    if not isinstance(value, bytes):
        raise Damage("a message field is not length-delimited")
    return value
