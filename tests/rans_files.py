"""Helpers shared by the tests: sample tensors, and a small reader and writer of
the container written from ``docs/FORMAT.md`` rather than from
``rans.container``, so that tests can take files apart, edit them and put
them back together with every length, offset and CRC-32 correct.

A file is a 32-byte preamble ``<8sIIQII`` (magic, version, header encoding,
stored header length, CRC-32 of the stored header, CRC-32 of bytes 0..27),
the stored header (encoding 0: UTF-8 JSON; 1: a zlib stream of it, which
writers use when it is shorter), zero bytes up to a multiple of 4, then one
section per raw or coded plane, each at a multiple of 4 bytes, the gaps
zero. A header tensor entry is ``{"name", "dtype", "shape", "planes",
"coded", "crc32"}``: ``planes`` holds ``"c"`` (coded), ``"r"`` (raw) or a
byte (constant) per plane; ``coded`` the lengths of the coded sections
(present iff a plane is coded); ``crc32`` the CRC-32 of the bytes from the
tensor's first section start to its last section end, padding included
(present iff a plane has a section). The split is implied: one plane is
``none``, ``itemsize`` planes the dtype's multi-plane split.

A coded section is a 4-byte header ``<BBH`` (lanes ``W``, a zero byte,
chunk size / 128), the frequency table (a bit stream, :func:`read_table`), zero bytes up to a multiple of 4,
``uint32`` states ``[chunks][W]``, ``uint32`` word counts ``[chunks - 1]``
(the last chunk's count is what the section's length leaves) and ``uint16``
words. A raw section is the plane's symbols.
"""

from __future__ import annotations

import copy
import json
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import ml_dtypes
import numpy as np

import rans
from rans import codec, container
from rans.dtypes import DTYPES

MAGIC = b"\x89RANS\r\n\x1a"
PREAMBLE = struct.Struct("<8sIIQII")
PLAIN, ZLIB = 0, 1
"""Header encodings: UTF-8 JSON as it is, or a zlib stream (RFC 1950) of it."""
MAX_HEADER = 1 << 28
"""The most bytes a reader inflates a zlib header to."""
SECTION_HEADER = struct.Struct("<BBH")
"""A coded section's header: lane count, a zero byte, chunk size / 128."""
VALID_LANES = (1, 2, 4, 8, 16, 32)
GROUP = 128
MODES = {"c": "coded", "r": "raw"}


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def align4(offset: int) -> int:
    return -(-offset // 4) * 4


def writer_lanes(n: int) -> int:
    """The lane count a writer gives a coded plane of ``n`` symbols, straight from FORMAT.md 4.4:
    the largest power of two ``W <= 32`` with ``W * 4096 <= n``, or 1 when ``n < 8192``."""
    if n < 8192:
        return 1
    return max(w for w in VALID_LANES if w * 4096 <= n)


def sample_tensors() -> dict[str, np.ndarray]:
    """Small tensors that, at chunk size 256, give coded, raw and const planes.

    ``w`` (bf16, 512): exponent coded with 1 lane in 2 chunks, sign/mantissa raw;
    ``scales`` (f32 powers of two): exponent coded in 1 chunk, three const planes;
    ``q`` (int8, 8244): one coded plane with 2 lanes in 33 chunks, the last one short (52 symbols),
    and table padding;
    ``bias`` (3 f32): two raw planes with padding between them, two const;
    ``ones`` (f32): four const planes, so no sections and no ``crc32``;
    ``flags`` (bool, 40): one coded plane; ``empty``: no elements (one raw plane of 0 bytes).
    """
    rng = np.random.default_rng(1234)
    w = rng.normal(0, 0.02, 512).astype(ml_dtypes.bfloat16)
    scales = (2.0 ** rng.integers(-8, 8, 96)).astype(np.float32)
    q = np.clip(np.round(rng.normal(0, 1.6, 8244)), -127, 127).astype(np.int8)
    flags = rng.random(40) < 0.5
    # File order: tensors that are slow to decode for their size come last, because a damaged
    # section is found only after every tensor before it has been decoded (this order makes the
    # exhaustive bit-flip test about twice as fast).
    return {
        "bias": np.array([0.5, -1.25, 3.0], dtype=np.float32),
        "ones": np.ones((2, 4), dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=ml_dtypes.bfloat16),
        "q": q,
        "w": w,
        "scales": scales,
        "flags": flags,
    }


SAMPLE_CHUNK = 256
SAMPLE_METADATA = {"origin": "tests", "note": "ünïcode ✓"}


def sample_file(path: Any) -> bytes:
    """Write the sample tensors with :func:`rans.save_file` and return the bytes."""
    rans.save_file(sample_tensors(), path, SAMPLE_METADATA, chunk_size=SAMPLE_CHUNK)
    with open(path, "rb") as f:
        return f.read()


def load_bytes(data: bytes) -> dict[str, np.ndarray]:
    """Decode every tensor of an in-memory file.

    This is what :func:`rans.load_file` does on the CPU once it has mapped
    the file (``test_malformed`` checks the two agree on damaged files); it
    lets the exhaustive tests run without touching the disk.
    """
    buf = memoryview(data)
    header = container.read_header(buf)
    return {entry.name: codec.decode_tensor(entry, buf) for entry in header.entries}


def assert_identical(expected: np.ndarray, actual: np.ndarray) -> None:
    """Same dtype (the little-endian format dtype), same shape, same bytes in C order."""
    dtype = DTYPES[rans.dtypes.name_of(expected.dtype)]
    assert actual.dtype == dtype
    assert actual.shape == expected.shape
    assert actual.tobytes() == expected.astype(dtype).tobytes()


def plane_mode(entry: Any) -> str:
    """``"coded"``, ``"raw"`` or ``"const"`` for one item of a header's ``planes``."""
    return "const" if isinstance(entry, int) and not isinstance(entry, bool) else MODES[entry]


def plane_modes(tensor: dict) -> list[str]:
    return [plane_mode(p) for p in tensor["planes"]]


def plane_symbols(tensor: dict) -> int:
    """Symbols in each plane: the split is ``none`` (bytes of every element) iff there is one plane, and
    ``nibbles`` (two elements a symbol) iff a 1-byte dtype has two."""
    n = math.prod(tensor["shape"])
    size = DTYPES[tensor["dtype"]].itemsize
    if len(tensor["planes"]) == 1:
        return n * size
    return (n + 1) // 2 if size == 1 else n


@dataclass
class Section:
    """One section of a file: the plane it belongs to and where it lies.

    ``lanes`` and ``chunk`` are read from a coded section's header (0 for raw).
    """

    index: int
    tensor: str
    plane: int
    mode: str
    offset: int
    length: int
    symbols: int
    lanes: int = 0
    chunk: int = 0

    @property
    def n_chunks(self) -> int:
        return -(-self.symbols // self.chunk) if self.chunk else 0


@dataclass
class Parsed:
    """A well-formed file taken apart.

    ``header_length`` is the stored header's length, ``encoding`` its
    encoding and ``text`` its JSON (inflated when stored with zlib).
    """

    document: dict
    header_length: int
    sections: list[Section]
    blobs: list[bytes]
    encoding: int = PLAIN
    text: bytes = b""
    stored: bytes = b""

    def of_tensor(self, name: str) -> list[int]:
        """Indices of the sections of tensor ``name``, in file order."""
        return [s.index for s in self.sections if s.tensor == name]


def header_json(stored: bytes, encoding: int) -> bytes:
    """The JSON text of a stored header."""
    return zlib.decompress(stored) if encoding == ZLIB else stored


def parse(data: bytes) -> Parsed:
    """Take a well-formed file apart (no validation: the file is trusted)."""
    _, _, encoding, header_length, _, _ = PREAMBLE.unpack_from(data)
    stored = data[PREAMBLE.size : PREAMBLE.size + header_length]
    text = header_json(stored, encoding)
    document = json.loads(text.decode("utf-8"))
    offset = PREAMBLE.size + header_length
    sections, blobs = [], []
    for tensor in document["tensors"]:
        coded = iter(tensor.get("coded", []))
        symbols = plane_symbols(tensor)
        for j, plane in enumerate(tensor["planes"]):
            mode = plane_mode(plane)
            if mode == "const":
                continue
            offset = align4(offset)
            lanes = chunk = 0
            if mode == "coded":
                length = next(coded)
                lanes, _, groups = SECTION_HEADER.unpack_from(data, offset)
                chunk = groups * GROUP
            else:
                length = symbols
            sections.append(Section(len(sections), tensor["name"], j, mode, offset, length, symbols, lanes, chunk))
            blobs.append(data[offset : offset + length])
            offset += length
    return Parsed(document, header_length, sections, blobs, encoding, text, stored)


def header_text(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def tensor_crc(blobs: list[bytes]) -> int:
    """The ``crc32`` of a tensor whose sections are ``blobs``: each section 4-aligned, the gaps zero.

    The first section starts at a multiple of 4, so offsets relative to it align like file offsets.
    """
    span = bytearray()
    for blob in blobs:
        span += bytes(align4(len(span)) - len(span))
        span += blob
    return crc32(bytes(span))


def store_header(text: bytes, encoding: int | None = None) -> tuple[int, bytes]:
    """The encoding and stored bytes of JSON ``text``: by default what a writer stores (zlib at level 9
    when that is shorter, else the JSON as it is); or as ``encoding`` says."""
    if encoding is None:
        packed = zlib.compress(text, 9)
        return (ZLIB, packed) if len(packed) < len(text) else (PLAIN, text)
    return encoding, zlib.compress(text, 9) if encoding == ZLIB else text


def assemble_stored(
    stored: bytes,
    encoding: int,
    blobs: list[bytes],
    *,
    version: int = 1,
    header_length: int | None = None,
) -> bytes:
    """A file of ``stored`` header bytes (claimed to be of ``encoding``) and section ``blobs``,
    with padding and both preamble CRCs correct."""
    length = len(stored) if header_length is None else header_length
    head = struct.pack("<8sIIQI", MAGIC, version, encoding, length, crc32(stored))
    out = bytearray(head + struct.pack("<I", crc32(head)) + stored)
    out += bytes(align4(len(out)) - len(out))
    for blob in blobs:
        out += bytes(align4(len(out)) - len(out))
        out += blob
    return bytes(out)


def assemble(text: bytes, blobs: list[bytes], *, encoding: int | None = None, version: int = 1) -> bytes:
    """A file of JSON header ``text`` (stored as :func:`store_header` says) and section ``blobs``."""
    encoding, stored = store_header(text, encoding)
    return assemble_stored(stored, encoding, blobs, version=version)


def rebuild(data: bytes, edit: Callable[[dict], None], encoding: int | None = None) -> bytes:
    """The file with its header document changed in place by ``edit``, both header checksums correct.

    The sections (and so the tensors' ``crc32``) are left as they are; the header is stored as a
    writer would, or with ``encoding``.
    """
    parsed = parse(data)
    document = copy.deepcopy(parsed.document)
    edit(document)
    return assemble(header_text(document), parsed.blobs, encoding=encoding)


def rebuild_text(data: bytes, text: bytes, encoding: int | None = None) -> bytes:
    """The file with its header JSON replaced verbatim by ``text``, both header checksums correct."""
    return assemble(text, parse(data).blobs, encoding=encoding)


def replace_section(data: bytes, index: int, blob: bytes) -> bytes:
    """The file with section ``index`` replaced, its ``coded`` length and its tensor's ``crc32`` fixed.

    A raw section's length is implied by the shape, so a raw replacement keeps the header's lengths.
    """
    parsed = parse(data)
    section = parsed.sections[index]
    document = copy.deepcopy(parsed.document)
    entry = next(t for t in document["tensors"] if t["name"] == section.tensor)
    if section.mode == "coded":
        k = sum(1 for p in entry["planes"][: section.plane] if p == "c")
        entry["coded"][k] = len(blob)
    blobs = list(parsed.blobs)
    blobs[index] = blob
    entry["crc32"] = tensor_crc([blobs[i] for i in parsed.of_tensor(section.tensor)])
    return assemble(header_text(document), blobs)


def read_table(table: bytes) -> tuple[dict[int, int], int]:
    """The frequencies (symbol -> f) of the serialized table at the start of ``table``, and its bytes.

    The table is a bit stream, least significant bit of each byte first:
    ``gamma(R)``, per run ``gamma(start - previous end)`` (the first run's
    previous end is -1) and ``gamma(length)``; then, with more than one
    present symbol, ``P - 1`` in 4 bits, the position ``t`` of the implied
    frequency in ``bit_length(F - 1)`` bits, and every other frequency in
    symbol order: its bit length ``e`` (``gamma(e)`` first, then
    ``gamma(zigzag(e - previous e) + 1)``) and the ``min(e, P) - 1`` bits
    below its leading one; the implied one is 4096 minus the rest. No
    validation beyond what it takes to read it.
    """
    position = 0

    def bits(width: int) -> int:
        nonlocal position
        value = 0
        for i in range(width):
            byte, bit = divmod(position + i, 8)
            value |= ((table[byte] >> bit) & 1) << i
        position += width
        return value

    def gamma() -> int:
        zeros = 0
        while bits(1) == 0:
            zeros += 1
        return (1 << zeros) + bits(zeros)

    symbols: list[int] = []
    end = -1
    for _ in range(gamma()):
        start = end + gamma()
        end = start + gamma()
        symbols.extend(range(start, end))
    if len(symbols) == 1:
        return {symbols[0]: 4096}, -(-position // 8)
    precision = bits(4) + 1
    implied = bits((len(symbols) - 1).bit_length())
    values: list[int] = []
    e = 0
    for i in range(len(symbols) - 1):
        if i == 0:
            e = gamma()
        else:
            zigzag = gamma() - 1
            e += zigzag // 2 if zigzag % 2 == 0 else -(zigzag + 1) // 2
        kept = min(e, precision) - 1
        values.append(((1 << kept) + bits(kept)) << (e - 1 - kept))
    values.insert(implied, 4096 - sum(values))
    return dict(zip(symbols, values)), -(-position // 8)


def table_length(table: bytes) -> int:
    """Bytes of the serialized frequency table at the start of ``table``."""
    return read_table(table)[1]


@dataclass
class Coded:
    """The parts of a coded section; ``lanes``, ``zero`` and ``groups`` are its header's three fields;
    ``counts`` the word count of every chunk, the last one (not stored) taken from the words, and
    :meth:`join` stores all but the last."""

    lanes: int
    zero: int
    groups: int
    table: bytes
    padding: bytes
    states: np.ndarray
    counts: np.ndarray
    words: np.ndarray

    @property
    def chunk(self) -> int:
        return self.groups * GROUP

    @classmethod
    def split(cls, section: bytes, n: int) -> "Coded":
        """Take apart a well-formed coded section of ``n`` symbols."""
        lanes, zero, groups = SECTION_HEADER.unpack_from(section)
        n_chunks = -(-n // (groups * GROUP))
        t = SECTION_HEADER.size + table_length(section[SECTION_HEADER.size :])
        states_at = align4(t)
        counts_at = states_at + 4 * lanes * n_chunks
        words_at = counts_at + 4 * (n_chunks - 1)
        stored = np.frombuffer(section[counts_at:words_at], "<u4")
        words = np.frombuffer(section[words_at:], "<u2").copy()
        return cls(
            lanes,
            zero,
            groups,
            section[SECTION_HEADER.size : t],
            section[t:states_at],
            np.frombuffer(section[states_at:counts_at], "<u4").reshape(n_chunks, lanes).copy(),
            np.append(stored, len(words) - int(stored.sum())).astype(np.uint32),
            words,
        )

    def join(self) -> bytes:
        return (
            SECTION_HEADER.pack(self.lanes, self.zero, self.groups)
            + self.table
            + self.padding
            + self.states.astype("<u4").tobytes()
            + self.counts[:-1].astype("<u4").tobytes()
            + self.words.astype("<u2").tobytes()
        )


def regions(data: bytes) -> list[tuple[int, int, str, Section | None]]:
    """Every byte range of a file with the name of the part it belongs to.

    Names: ``magic``, ``version``, ``encoding``, ``header_length``,
    ``header_crc``, ``preamble_crc``, ``header``, ``padding``, and per
    section ``raw``, or ``lanes``, ``lanes_zero``, ``chunk_size``,
    ``table``, ``table_padding``, ``states``, ``counts`` and ``words`` for
    a coded one.
    """
    parsed = parse(data)
    out: list[tuple[int, int, str, Section | None]] = [
        (0, 8, "magic", None),
        (8, 12, "version", None),
        (12, 16, "encoding", None),
        (16, 24, "header_length", None),
        (24, 28, "header_crc", None),
        (28, 32, "preamble_crc", None),
        (32, 32 + parsed.header_length, "header", None),
    ]
    position = 32 + parsed.header_length
    for section, blob in zip(parsed.sections, parsed.blobs):
        out.append((position, section.offset, "padding", None))
        start = section.offset
        if section.mode == "raw":
            out.append((start, start + section.length, "raw", section))
        else:
            n_chunks = section.n_chunks
            t = SECTION_HEADER.size + table_length(blob[SECTION_HEADER.size :])
            states_at = align4(t)
            counts_at = states_at + 4 * section.lanes * n_chunks
            words_at = counts_at + 4 * (n_chunks - 1)
            for name, a, b in [
                ("lanes", 0, 1),
                ("lanes_zero", 1, 2),
                ("chunk_size", 2, 4),
                ("table", 4, t),
                ("table_padding", t, states_at),
                ("states", states_at, counts_at),
                ("counts", counts_at, words_at),
                ("words", words_at, section.length),
            ]:
                out.append((start + a, start + b, name, section))
        position = start + section.length
    out.append((position, len(data), "padding", None))
    return [r for r in out if r[0] < r[1]]
