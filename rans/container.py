"""The container: lays a header and sections out as bytes, and reads them back.

It knows nothing of coding or dtypes beyond the names it validates against;
``docs/FORMAT.md`` ("Container") is the specification. A file is::

    preamble   32 bytes: magic, version, header encoding, header length,
               two CRC-32s
    header     UTF-8 JSON, stored as it is or compressed with zlib: the
               tensors (name, dtype, shape, planes) and the user metadata
    sections   one per raw or coded plane, in header order, each starting at
               a multiple of 4 bytes from the start of the file, the gaps
               filled with zero bytes; the file ends where the last one does.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable, Iterator

from . import checksum, dtypes, hostbytes
from .errors import (
    ChecksumError,
    CorruptDataError,
    InvalidArgumentError,
    NotRansDataError,
    TruncatedDataError,
    UnsupportedVersionError,
)

MAGIC = b"\x89RANS\r\n\x1a"
VERSION = 1
PREAMBLE = struct.Struct("<8sIIQII")
ALIGN = 4
MAX_ELEMENTS = 1 << 48
MAX_DIMS = 64
PLAIN, ZLIB = 0, 1
"""Header encodings: UTF-8 JSON as it is, or a zlib stream of it."""
MAX_HEADER = 1 << 28
"""The longest header a reader inflates (256 MiB of JSON)."""
MIN_CODED = 12
"""The shortest coded section: header, a one-symbol table and its padding, one state (one chunk, no words)."""


def crc32(data: bytes | memoryview) -> int:
    """CRC-32 (ISO-HDLC, as zlib computes it) of ``data``, on every core when it is large."""
    return checksum.crc32(data)


def align(offset: int) -> int:
    """The first multiple of 4 at or after ``offset``."""
    return -(-offset // ALIGN) * ALIGN


@dataclass
class Plane:
    """One plane of a tensor as the header describes it.

    ``mode`` is ``"raw"``, ``"coded"`` or ``"const"``; ``offset`` and
    ``length`` place its section in the file (none for ``"const"``);
    ``value`` is the byte of a constant plane.
    """

    mode: str
    length: int = 0
    value: int = 0
    offset: int = 0

    def to_json(self) -> str | int:
        return self.value if self.mode == "const" else self.mode[0]


@dataclass
class Entry:
    """One tensor of the header: name, dtype, shape, planes and the CRC-32 of its sections."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    planes: list[Plane] = field(default_factory=list)
    crc: int = 0

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded tensor."""
        return self.size * dtypes.DTYPES[self.dtype].itemsize

    @property
    def split(self) -> str:
        """The split the plane count implies (``docs/FORMAT.md``, section 5)."""
        return dtypes.split_for(self.dtype, len(self.planes))

    @property
    def sections(self) -> list[Plane]:
        """The planes that have a section, in file order."""
        return [p for p in self.planes if p.mode != "const"]

    def span(self) -> tuple[int, int]:
        """First and last-plus-one byte of this tensor's sections (equal when it has none)."""
        sections = self.sections
        if not sections:
            return 0, 0
        return sections[0].offset, sections[-1].offset + sections[-1].length

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "planes": [p.to_json() for p in self.planes],
        }
        coded = [p.length for p in self.planes if p.mode == "coded"]
        if coded:
            document["coded"] = coded
        if self.sections:
            document["crc32"] = self.crc
        return document


def sections_crc(blobs: list[bytes]) -> int:
    """CRC-32 of a tensor's sections laid out as in a file: each 4-aligned, gaps zero."""
    crc = 0
    position = 0
    for blob in blobs:
        gap = align(position) - position
        crc = zlib.crc32(bytes(gap), crc)
        crc = checksum.crc32(blob, crc)
        position += gap + len(blob)
    return crc & 0xFFFFFFFF


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
        for plane in entry.sections:
            plane.offset = align(offset)
            offset = plane.offset + plane.length
    return offset


def _json(entries: list[Entry], metadata: dict[str, str] | None) -> bytes:
    """The header's JSON, without insignificant whitespace."""
    document: dict[str, Any] = {"tensors": [e.to_json() for e in entries]}
    if metadata:
        document["metadata"] = metadata
    try:
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidArgumentError(f"tensor names and metadata must be valid Unicode text: {e}") from None
    if len(text) > MAX_HEADER:
        raise InvalidArgumentError(f"the header would be {len(text)} bytes of JSON, more than {MAX_HEADER}")
    return text


def _preamble(encoding: int, stored: bytes) -> bytes:
    head = PREAMBLE.pack(MAGIC, VERSION, encoding, len(stored), crc32(stored), 0)[:28]
    return head + struct.pack("<I", crc32(head))


def encode_header(entries: list[Entry], metadata: dict[str, str] | None) -> bytes:
    """The preamble and JSON header for ``entries``, padded to a multiple of 4 bytes."""
    text = _json(entries, metadata)
    packed = zlib.compress(text, 9)
    encoding, text = (ZLIB, packed) if len(packed) < len(text) else (PLAIN, text)
    blob = _preamble(encoding, text) + text
    return blob + bytes(align(len(blob)) - len(blob))


STORED = 65535
"""The most bytes a stored deflate block holds."""


def header_room(tensors: Iterable[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str] | None) -> int:
    """Bytes that hold the preamble and header of these tensors (name, dtype, shape) once coded, whatever
    their planes: the room a writer that streams its sections leaves in front of them (``docs/FORMAT.md``,
    section 7). ``metadata`` is the final metadata or one of the same length.

    Examples
    --------
    >>> from rans import container
    >>> room = container.header_room([("w", "BF16", (4096, 4096))], None)
    >>> room % 4, 100 < room < 200
    (0, True)
    """
    entries = []
    for name, dtype, shape in tensors:
        entry = Entry(name, dtype, tuple(shape))
        widest = 10 ** len(str(max(entry.nbytes, 1))) - 1  # no section is longer than the tensor
        entry.planes = [Plane("coded", widest) for _ in range(_PLANE_COUNTS[dtype][-1])]
        entry.crc = 10**10 - 1
        entries.append(entry)
    n = len(_json(entries, metadata))
    bound = n + (n >> 12) + (n >> 14) + (n >> 25) + 13  # zlib's compressBound: deflate never takes more
    return align(PREAMBLE.size + bound + 5 + 5 + 4)  # and a flush's empty block, one stored block, the Adler-32


def encode_header_in(entries: list[Entry], metadata: dict[str, str] | None, room: int) -> bytes:
    """The preamble and zlib header for ``entries`` in exactly ``room`` bytes (a multiple of 4, from
    :func:`header_room`): the zlib stream of the JSON ends in stored blocks of spaces that fill the room
    (``docs/FORMAT.md``, section 7).

    Examples
    --------
    >>> from rans import container
    >>> e = container.Entry("w", "I8", (3,), [container.Plane("raw", 3)], 7)
    >>> head = container.encode_header_in([e], None, 200)
    >>> len(head), container.read_header(memoryview(head + b"abc")).entries[0].name
    (200, 'w')
    """
    text = _json(entries, metadata)
    deflater = zlib.compressobj(9)
    stream = deflater.compress(text) + deflater.flush(zlib.Z_SYNC_FLUSH)
    fill = room - PREAMBLE.size - len(stream) - 4
    if room % ALIGN or fill < 5:
        raise InvalidArgumentError(f"a header of {len(stream) + 9} bytes does not fill a room of {room}")
    blocks = -(-fill // (5 + STORED))
    spaces = fill - 5 * blocks
    adler = zlib.adler32(text)
    parts = [stream]
    for k in range(blocks):
        size = min(STORED, spaces - STORED * k)
        parts.append(struct.pack("<BHH", int(k == blocks - 1), size, size ^ 0xFFFF) + b" " * size)
        adler = zlib.adler32(b" " * size, adler)
    parts.append(struct.pack(">I", adler))
    stored = b"".join(parts)
    return _preamble(ZLIB, stored) + stored


def pieces(entries: list[Entry], sections: list[list[bytes]], metadata: dict[str, str] | None) -> list[bytes | memoryview]:
    """A whole file as the bytes-like pieces to write in order: header, then each entry's sections
    (one per non-constant plane), with the zero padding between them."""
    head = encode_header(entries, metadata)
    layout(entries, len(head))
    parts: list[bytes | memoryview] = [head]
    position = len(head)
    for entry, blobs in zip(entries, sections):
        for plane, blob in zip(entry.sections, blobs):
            if plane.offset > position:
                parts.append(bytes(plane.offset - position))
            parts.append(blob)
            position = plane.offset + len(blob)
    return parts


def write(out: BinaryIO, entries: list[Entry], sections: list[list[bytes]], metadata: dict[str, str] | None) -> None:
    """Write a whole file (:func:`pieces`) to ``out``."""
    for part in pieces(entries, sections, metadata):
        out.write(part)


def to_bytes(entries: list[Entry], sections: list[list[bytes]], metadata: dict[str, str] | None) -> bytes:
    """A whole file (:func:`pieces`) as one ``bytes``, copied once (:func:`rans.hostbytes.join`)."""
    return hostbytes.join(pieces(entries, sections, metadata))


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
    _, version, encoding, header_length, header_crc, preamble_crc = PREAMBLE.unpack_from(buf)
    preamble_ok = crc32(buf[:28]) == preamble_crc
    if version != VERSION:
        if preamble_ok:
            raise UnsupportedVersionError(f"format version {version} is not supported; this reader knows version {VERSION}")
        raise ChecksumError(f"preamble checksum mismatch (its version field reads {version})", field="preamble")
    if not preamble_ok:
        raise ChecksumError("preamble checksum mismatch", field="preamble")
    if encoding not in (PLAIN, ZLIB):
        raise CorruptDataError(f"header encoding {encoding} is neither 0 (JSON) nor 1 (zlib)", field="preamble")
    if header_length > len(buf) - PREAMBLE.size:
        raise TruncatedDataError(
            f"header of {header_length} bytes does not fit a file of {len(buf)} bytes", field="header"
        )
    text = buf[PREAMBLE.size : PREAMBLE.size + header_length]
    if crc32(text) != header_crc:
        raise ChecksumError("header checksum mismatch", field="header")
    if encoding == ZLIB:
        text = _inflate(text)
    try:
        document = json.loads(bytes(text).decode("utf-8"), object_pairs_hook=_unique_keys)
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


def _inflate(packed: memoryview) -> bytes:
    """The JSON of a zlib-encoded header, never inflating more than :data:`MAX_HEADER` bytes."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(packed, MAX_HEADER)
    except zlib.error as e:
        raise CorruptDataError(f"header is not a valid zlib stream: {e}", field="header") from None
    if not inflater.eof:
        what = f"inflates past {MAX_HEADER} bytes" if inflater.unconsumed_tail else "zlib stream ends early"
        raise CorruptDataError(f"header {what}", field="header")
    if inflater.unused_data:
        raise CorruptDataError("bytes follow the header's zlib stream", field="header")
    return text


def _check_padding(buf: memoryview, position: int, entries: list[Entry], end: int) -> None:
    """Every byte between the header and the sections, and between sections, must be zero."""
    for entry in entries:
        for plane in entry.sections:
            if any(buf[position : plane.offset]):
                raise CorruptDataError("padding before a section is not zero", tensor=entry.name, field="padding")
            position = plane.offset + plane.length
    if any(buf[position:end]):
        raise CorruptDataError("padding after the header is not zero", field="padding")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        keys = [k for k, _ in pairs]
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return document


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


_ENTRY_KEYS = frozenset({"name", "dtype", "shape", "planes", "coded", "crc32"})
_REQUIRED_KEYS = frozenset({"dtype", "shape", "planes"})
_PLANE_COUNTS = {d: sorted({dtypes.plane_count(d, s) for s in dtypes.splits_of(d)}) for d in dtypes.DTYPES}
"""The plane counts each dtype's splits allow."""


def _parse_entry(t: Any, index: int) -> Entry:
    if not isinstance(t, dict) or not isinstance(t.get("name"), str):
        raise _fail(f"tensor #{index} must be an object with a string 'name'")
    name = t["name"]
    if not (t.keys() <= _ENTRY_KEYS and _REQUIRED_KEYS <= t.keys()):
        unknown, missing = set(t) - _ENTRY_KEYS, _REQUIRED_KEYS - set(t)
        raise _fail(f"unknown keys {sorted(unknown)} or missing keys {sorted(missing)}", tensor=name)
    dtype, shape, planes = t["dtype"], t["shape"], t["planes"]
    if not isinstance(dtype, str) or dtype not in dtypes.DTYPES:
        raise _fail(f"unknown dtype {dtype!r}", tensor=name, field="dtype")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(d) and 0 <= d <= MAX_ELEMENTS for d in shape):
        raise _fail(f"shape must be a list of at most {MAX_DIMS} integers from 0 to 2**48", tensor=name, field="shape")
    n = math.prod(shape)
    if math.prod(d for d in shape if d) > MAX_ELEMENTS:
        raise _fail(f"shape {shape} spans more than 2**48 elements", tensor=name, field="shape")
    allowed = _PLANE_COUNTS[dtype]
    if not isinstance(planes, list) or len(planes) not in allowed:
        raise _fail(f"{dtype} has {' or '.join(map(str, allowed))} planes", tensor=name, field="planes")
    entry = Entry(name, dtype, tuple(shape))
    symbols = dtypes.plane_length(dtype, dtypes.split_for(dtype, len(planes)), n)
    coded = t.get("coded", [])
    if not isinstance(coded, list) or not all(_is_int(v) for v in coded):
        raise _fail("'coded' must be a list of section lengths", tensor=name, field="coded")
    if len(coded) != sum(1 for p in planes if p == "c") or ("coded" in t and not coded):
        raise _fail("'coded' must give one length per coded plane, and be absent without one", tensor=name, field="coded")
    lengths = iter(coded)
    for j, p in enumerate(planes):
        entry.planes.append(_parse_plane(p, symbols, lengths, name, f"planes[{j}]"))
    if entry.sections:
        crc = t.get("crc32")
        if not _is_int(crc) or not 0 <= crc <= 0xFFFFFFFF:
            raise _fail("a tensor with sections needs a 'crc32' from 0 to 2**32 - 1", tensor=name, field="crc32")
        entry.crc = crc
    elif "crc32" in t:
        raise _fail("a tensor without sections has no 'crc32'", tensor=name, field="crc32")
    return entry


def _parse_plane(p: Any, symbols: int, coded: Iterator[int], name: str, where: str) -> Plane:
    if _is_int(p):
        if not 0 <= p <= 255:
            raise _fail("a constant plane is a byte value, 0 to 255", tensor=name, field=where)
        return Plane("const", value=p)
    if p == "r":
        return Plane("raw", length=symbols)
    if p != "c":
        raise _fail("a plane is 'c' (coded), 'r' (raw) or a byte value (constant)", tensor=name, field=where)
    length = next(coded)
    if symbols == 0:
        raise _fail("a coded plane must have symbols", tensor=name, field=where)
    if length < MIN_CODED or length > symbols * 8 + (1 << 16):
        raise _fail(f"coded section length {length} is impossible for {symbols} symbols", tensor=name, field=where)
    return Plane("coded", length=length)
