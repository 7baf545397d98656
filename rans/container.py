"""The container: lays a header and sections out as bytes, and reads them back.

It knows nothing of coding or dtypes beyond the names it validates against;
``docs/FORMAT.md`` ("Container") is the specification. A file is::

    preamble   32 bytes: magic, version, reserved, header length, two CRC-32s
    header     UTF-8 JSON: the tensors (name, dtype, shape, split, planes)
               and the user metadata
    sections   one per raw or coded plane, in header order, each starting at
               a multiple of 8 bytes from the start of the file, the gaps
               filled with zero bytes; the file ends where the last one does.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable

from . import dtypes
from .constants import GROUP, MAX_CHUNK
from .errors import CorruptDataError, NotRansDataError, TruncatedDataError, UnsupportedVersionError

MAGIC = b"\x89RANS\r\n\x1a"
VERSION = 1
PREAMBLE = struct.Struct("<8sIIQII")
ALIGN = 8
MAX_ELEMENTS = 1 << 48
MAX_DIMS = 64


def crc32(data: bytes | memoryview) -> int:
    """CRC-32 (ISO-HDLC, as zlib computes it) of ``data``."""
    return zlib.crc32(data) & 0xFFFFFFFF


def align(offset: int) -> int:
    """The first multiple of 8 at or after ``offset``."""
    return -(-offset // ALIGN) * ALIGN


@dataclass
class Plane:
    """One plane of a tensor as the header describes it.

    ``mode`` is ``"raw"``, ``"coded"`` or ``"const"``; ``offset`` and
    ``length`` place its section in the file (``length`` 0 and no section
    for ``"const"``); ``crc`` is the section's CRC-32; ``chunk`` the chunk
    size of a coded plane; ``value`` the byte of a constant one.
    """

    mode: str
    length: int = 0
    crc: int = 0
    chunk: int = 0
    value: int = 0
    offset: int = 0

    def to_json(self) -> list:
        if self.mode == "const":
            return ["const", self.value]
        if self.mode == "raw":
            return ["raw", self.length, self.crc]
        return ["coded", self.length, self.crc, self.chunk]


@dataclass
class Entry:
    """One tensor of the header: its name, dtype, shape, split and planes."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    split: str
    planes: list[Plane] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "split": self.split,
            "planes": [p.to_json() for p in self.planes],
        }


@dataclass
class Header:
    """A parsed header: the tensors in file order, the user metadata and the data's end."""

    entries: list[Entry]
    metadata: dict[str, str]
    end: int


def layout(entries: Iterable[Entry], data_start: int) -> int:
    """Give each section its offset, in order from ``data_start``; return the end of the data."""
    offset = data_start
    for entry in entries:
        for plane in entry.planes:
            if plane.mode != "const":
                plane.offset = align(offset)
                offset = plane.offset + plane.length
    return offset


def encode_header(entries: list[Entry], metadata: dict[str, str] | None) -> bytes:
    """The preamble and JSON header for ``entries``, padded to a multiple of 8 bytes."""
    document: dict[str, Any] = {"tensors": [e.to_json() for e in entries]}
    if metadata:
        document["metadata"] = metadata
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    head = PREAMBLE.pack(MAGIC, VERSION, 0, len(text), crc32(text), 0)[:28]
    preamble = head + struct.pack("<I", crc32(head))
    blob = preamble + text
    return blob + bytes(align(len(blob)) - len(blob))


def write(out: BinaryIO, entries: list[Entry], sections: list[list[bytes]], metadata: dict[str, str] | None) -> None:
    """Write a whole file: header, then each entry's sections (one per non-constant plane)."""
    head = encode_header(entries, metadata)
    layout(entries, len(head))
    out.write(head)
    position = len(head)
    for entry, blobs in zip(entries, sections):
        coded = [p for p in entry.planes if p.mode != "const"]
        for plane, blob in zip(coded, blobs):
            out.write(bytes(plane.offset - position))
            out.write(blob)
            position = plane.offset + len(blob)


def read_header(buf: memoryview) -> Header:
    """Parse and validate the preamble and header of a file held in ``buf``.

    Checks everything that can be checked without reading the sections:
    magic, version, CRC-32s, the JSON's structure and types, dtype and split
    names, shapes, plane modes and lengths, that the sections fit the file
    exactly and that the padding between them is zero.
    """
    if len(buf) < len(MAGIC) or bytes(buf[: len(MAGIC)]) != MAGIC:
        raise NotRansDataError("not a rans file: the magic bytes are missing")
    if len(buf) < PREAMBLE.size:
        raise TruncatedDataError(f"file of {len(buf)} bytes ends inside the {PREAMBLE.size}-byte preamble", field="preamble")
    _, version, reserved, header_length, header_crc, preamble_crc = PREAMBLE.unpack_from(buf)
    preamble_ok = crc32(buf[:28]) == preamble_crc
    if version != VERSION:
        if preamble_ok:
            raise UnsupportedVersionError(f"format version {version} is not supported; this reader knows version {VERSION}")
        raise CorruptDataError(f"preamble checksum mismatch (its version field reads {version})", field="preamble")
    if not preamble_ok:
        raise CorruptDataError("preamble checksum mismatch", field="preamble")
    if reserved != 0:
        raise CorruptDataError("reserved preamble field is not zero", field="preamble")
    if header_length > len(buf) - PREAMBLE.size:
        raise TruncatedDataError(
            f"header of {header_length} bytes does not fit a file of {len(buf)} bytes", field="header"
        )
    text = buf[PREAMBLE.size : PREAMBLE.size + header_length]
    if crc32(text) != header_crc:
        raise CorruptDataError("header checksum mismatch", field="header")
    try:
        document = json.loads(bytes(text).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CorruptDataError(f"header is not valid UTF-8 JSON: {e}", field="header") from None
    entries, metadata = _parse_document(document)
    data_start = align(PREAMBLE.size + header_length)
    end = layout(entries, data_start)
    if end > len(buf):
        raise TruncatedDataError(f"sections end at byte {end}, the file at {len(buf)}", field="sections")
    if end < len(buf):
        raise CorruptDataError(f"{len(buf) - end} bytes follow the last section", field="sections")
    _check_padding(buf, PREAMBLE.size + header_length, entries, end)
    return Header(entries, metadata, end)


def _check_padding(buf: memoryview, position: int, entries: list[Entry], end: int) -> None:
    """Every byte between the header and the sections, and between sections, must be zero."""
    for entry in entries:
        for plane in entry.planes:
            if plane.mode != "const":
                if any(buf[position : plane.offset]):
                    raise CorruptDataError("padding before a section is not zero", tensor=entry.name, field="padding")
                position = plane.offset + plane.length
    if any(buf[position:end]):
        raise CorruptDataError("padding after the header is not zero", field="padding")


def _fail(message: str, tensor: str | None = None, field: str = "header") -> CorruptDataError:
    return CorruptDataError(message, tensor=tensor, field=field)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_document(document: Any) -> tuple[list[Entry], dict[str, str]]:
    if not isinstance(document, dict) or "tensors" not in document:
        raise _fail("header must be a JSON object with a 'tensors' list")
    unknown = set(document) - {"tensors", "metadata"}
    if unknown:
        raise _fail(f"header has unknown keys {sorted(unknown)}")
    metadata = document.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise _fail("metadata must map strings to strings", field="metadata")
    tensors = document["tensors"]
    if not isinstance(tensors, list):
        raise _fail("'tensors' must be a list")
    entries = [_parse_entry(t, i) for i, t in enumerate(tensors)]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise _fail("tensor name appears twice", tensor=duplicate, field="name")
    return entries, metadata


def _parse_entry(t: Any, index: int) -> Entry:
    if not isinstance(t, dict) or not isinstance(t.get("name"), str):
        raise _fail(f"tensor #{index} must be an object with a string 'name'")
    name = t["name"]
    if set(t) != {"name", "dtype", "shape", "split", "planes"}:
        raise _fail(f"keys must be name, dtype, shape, split, planes; found {sorted(t)}", tensor=name)
    dtype, shape, split, planes = t["dtype"], t["shape"], t["split"], t["planes"]
    if dtype not in dtypes.DTYPES:
        raise _fail(f"unknown dtype {dtype!r}", tensor=name, field="dtype")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(d) and d >= 0 for d in shape):
        raise _fail(f"shape must be a list of at most {MAX_DIMS} non-negative integers", tensor=name, field="shape")
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        raise _fail(f"shape {shape} has {n} elements, more than 2**48", tensor=name, field="shape")
    if split not in dtypes.splits_of(dtype):
        raise _fail(f"split {split!r} is not defined for {dtype}", tensor=name, field="split")
    count = dtypes.plane_count(dtype, split)
    if not isinstance(planes, list) or len(planes) != count:
        raise _fail(f"split {split!r} of {dtype} has {count} planes", tensor=name, field="planes")
    symbols = dtypes.plane_length(dtype, split, n)
    entry = Entry(name, dtype, tuple(shape), split)
    for j, p in enumerate(planes):
        entry.planes.append(_parse_plane(p, symbols, name, f"planes[{j}]"))
    return entry


def _parse_plane(p: Any, symbols: int, name: str, where: str) -> Plane:
    if not isinstance(p, list) or not p or p[0] not in ("raw", "coded", "const"):
        raise _fail("a plane must be a list starting with 'raw', 'coded' or 'const'", tensor=name, field=where)
    mode = p[0]
    if mode == "const":
        if len(p) != 2 or not _is_int(p[1]) or not 0 <= p[1] <= 255:
            raise _fail("a const plane is ['const', byte]", tensor=name, field=where)
        return Plane("const", value=p[1])
    arity = 3 if mode == "raw" else 4
    if len(p) != arity or not all(_is_int(v) for v in p[1:]):
        shape = "['raw', length, crc32]" if mode == "raw" else "['coded', length, crc32, chunk]"
        raise _fail(f"a {mode} plane is {shape}", tensor=name, field=where)
    length, crc = p[1], p[2]
    if not 0 <= crc <= 0xFFFFFFFF:
        raise _fail("crc32 out of range", tensor=name, field=where)
    if mode == "raw":
        if length != symbols:
            raise _fail(f"raw plane of {length} bytes; the shape needs {symbols}", tensor=name, field=where)
        return Plane("raw", length=length, crc=crc)
    chunk = p[3]
    if not (GROUP <= chunk <= MAX_CHUNK and chunk % GROUP == 0):
        raise _fail(f"chunk size {chunk} is not a multiple of {GROUP} from {GROUP} to {MAX_CHUNK}", tensor=name, field=where)
    if symbols == 0:
        raise _fail("a coded plane must have symbols", tensor=name, field=where)
    n_chunks = -(-symbols // chunk)
    if length < 1 + 132 * n_chunks:
        raise _fail(f"coded plane of {length} bytes cannot hold {n_chunks} chunks", tensor=name, field=where)
    return Plane("coded", length=length, crc=crc, chunk=chunk)
