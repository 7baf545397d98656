"""Taking rans files apart and putting them back with every length and CRC-32 right.

The fuzz targets edit a file's header JSON, its preamble fields or its
sections and then make the checksums agree again, so that the edit reaches
the reader's semantic checks instead of stopping at a CRC mismatch.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from rans import container


class Draw:
    """Decisions taken from fuzzer bytes, front to back; zeros once they run out.

    Examples
    --------
    >>> d = Draw(b"\\x05\\x01\\x02")
    >>> d.below(3), d.take(4), d.below(3)
    (2, b'\\x01\\x02', 0)
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end)."""
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def below(self, n: int) -> int:
        """An integer from 0 to ``n - 1`` (``n >= 1``), from as many bytes as ``n`` needs."""
        width = max(1, (n - 1).bit_length() + 7 >> 3)
        return int.from_bytes(self.take(width).ljust(width, b"\0"), "little") % n

    def rest(self) -> bytes:
        """Every byte not yet taken."""
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out


@dataclass
class Parts:
    """A file taken apart: header encoding, header JSON and the bytes after the header's padding."""

    encoding: int
    document: Any
    body: bytes
    spans: list[tuple[int, int]]
    """Each tensor's section span relative to the start of ``body``."""


def take_apart(data: bytes) -> Parts:
    """Split a valid file into its header document and the sections that follow it."""
    buf = memoryview(data)
    header = container.read_header(buf)
    _, _, encoding, length, _, _ = container.PREAMBLE.unpack_from(buf)
    stored = bytes(buf[container.PREAMBLE.size : container.PREAMBLE.size + length])
    text = zlib.decompress(stored) if encoding == container.ZLIB else stored
    start = container.align(container.PREAMBLE.size + length)
    spans = [(a - start, b - start) if a != b else (0, 0) for a, b in (e.span() for e in header.entries)]
    return Parts(encoding, json.loads(text), bytes(buf[start:]), spans)


def header_text(document: Any, draw: Draw | None = None) -> bytes:
    """JSON text of ``document``; with ``draw``, in one of several valid spellings (spacing, escapes, key order)."""
    if draw is None:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    style = draw.below(4)
    separators = (", ", ": ") if style & 1 else (",", ":")
    text = json.dumps(document, separators=separators, ensure_ascii=bool(style & 2), sort_keys=bool(draw.below(2)))
    return text.encode("utf-8", "surrogatepass")


def preamble(encoding: int, stored: bytes, version: int = container.VERSION, length: int | None = None) -> bytes:
    """The 32-byte preamble of a header stored as ``stored``, its CRC-32 right (and ``length`` a lie if given)."""
    length = len(stored) if length is None else length
    head = container.PREAMBLE.pack(container.MAGIC, version, encoding, length, container.crc32(stored), 0)[:28]
    return head + struct.pack("<I", container.crc32(head))


def assemble(text: bytes, body: bytes, encoding: int = container.PLAIN) -> bytes:
    """A file of header JSON ``text`` (stored plain or zlib-compressed) followed by ``body``, CRCs right."""
    stored = zlib.compress(text, 9) if encoding == container.ZLIB else text
    blob = preamble(encoding, stored) + stored
    return blob + bytes(container.align(len(blob)) - len(blob)) + body


def fix_tensor_crcs(parts: Parts) -> None:
    """Set each tensor's ``crc32`` in the document to the CRC-32 of its span of the (edited) body."""
    for tensor, (start, end) in zip(parts.document["tensors"], parts.spans):
        if "crc32" in tensor:
            tensor["crc32"] = container.crc32(parts.body[start:end])
