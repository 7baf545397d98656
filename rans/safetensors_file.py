"""The safetensors file format, read through a memory map and written back byte for byte.

A safetensors file is an 8-byte little-endian header length ``n``, ``n``
bytes of UTF-8 JSON (an object mapping each tensor name to its ``dtype``,
``shape`` and ``data_offsets``, plus an optional ``__metadata__`` object of
strings), then the tensors' bytes. Writers pad the JSON with spaces to a
multiple of 8 bytes and list the tensors in the order of their data.

Only what the checkpoint commands need is here: :class:`SafetensorsFile`
reads one tensor at a time from a memory map, :func:`canonical_header`
writes the header the way the ``safetensors`` library does, so a header
that matches it need not be stored.

Examples
--------
>>> import numpy as np, os, tempfile
>>> from rans import safetensors_file
>>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
>>> tensors = [safetensors_file.TensorInfo("w", "F32", (2,), 0, 8)]
>>> with open(path, "wb") as f:
...     _ = f.write(safetensors_file.canonical_header(tensors, {"format": "np"}))
...     _ = f.write(np.array([1.5, -2], np.float32).tobytes())
>>> with safetensors_file.SafetensorsFile(path) as st:
...     st.metadata, st.array(st.tensors[0]).tolist()
({'format': 'np'}, [1.5, -2.0])
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import dtypes
from .errors import NotSafetensorsError

MAX_HEADER = 100_000_000
"""The longest header the ``safetensors`` library reads (100 MB)."""

_LENGTH = struct.Struct("<Q")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors header: name, dtype name, shape and byte range in the data."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def parse_header(text: str, data_size: int) -> tuple[list[TensorInfo], dict[str, str] | None]:
    """The tensors of a header in data order, and its ``__metadata__`` (None when absent).

    Checks that every tensor's byte range fits its dtype and shape and that
    the ranges tile the ``data_size`` bytes of data exactly, as the
    ``safetensors`` library does; raises :class:`~rans.NotSafetensorsError`.
    """
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise NotSafetensorsError(f"header is not JSON: {e}", field="header") from None
    if not isinstance(document, dict):
        raise NotSafetensorsError("header is not a JSON object", field="header")
    metadata = document.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise NotSafetensorsError("__metadata__ must map strings to strings", field="__metadata__")
    tensors = [_parse_tensor(name, info) for name, info in document.items()]
    tensors.sort(key=lambda t: (t.begin, t.end))
    position = 0
    for t in tensors:
        if t.begin != position:
            raise NotSafetensorsError(
                f"data_offsets start at {t.begin}, the previous tensor ends at {position}", tensor=t.name, field="data_offsets"
            )
        position = t.end
    if position != data_size:
        raise NotSafetensorsError(f"tensors cover {position} bytes of data, the file holds {data_size}", field="data_offsets")
    return tensors, metadata


def _parse_tensor(name: str, info: Any) -> TensorInfo:
    if not isinstance(info, dict):
        raise NotSafetensorsError("tensor info is not an object", tensor=name)
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str):
        raise NotSafetensorsError("dtype must be a string", tensor=name, field="dtype")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise NotSafetensorsError("shape must be a list of non-negative integers", tensor=name, field="shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1]):
        raise NotSafetensorsError("data_offsets must be two ascending non-negative integers", tensor=name, field="data_offsets")
    t = TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])
    if dtype in dtypes.DTYPES and math.prod(shape) * dtypes.DTYPES[dtype].itemsize != t.nbytes:
        raise NotSafetensorsError(
            f"{t.nbytes} bytes of data do not hold a {dtype} tensor of shape {list(shape)}", tensor=name, field="data_offsets"
        )
    return t


def canonical_header(tensors: list[TensorInfo], metadata: dict[str, str] | None) -> bytes:
    """The length prefix and header the ``safetensors`` library writes for ``tensors`` (in data order).

    Compact JSON, ``__metadata__`` first when given, the tensors in the order
    of their data, spaces up to a multiple of 8 bytes.
    """
    document: dict[str, Any] = {}
    if metadata is not None:
        document["__metadata__"] = metadata
    for t in tensors:
        document[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [t.begin, t.end]}
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return _LENGTH.pack(len(text)) + text


class SafetensorsFile:
    """A safetensors file, memory-mapped: its header, and each tensor as a view of the map.

    Use it as a context manager; views from :meth:`array` are valid until it closes.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            self.size = os.fstat(f.fileno()).st_size
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else None
        try:
            self._parse()
        except BaseException:
            self.close()
            raise

    def _parse(self) -> None:
        if self.size < _LENGTH.size:
            raise NotSafetensorsError(f"file of {self.size} bytes is too short for a safetensors header")
        (n,) = _LENGTH.unpack_from(self._map)
        if n > min(MAX_HEADER, self.size - _LENGTH.size):
            raise NotSafetensorsError(f"header length {n} does not fit a file of {self.size} bytes", field="header")
        raw = self._map[_LENGTH.size : _LENGTH.size + n]
        if not raw.startswith(b"{"):
            raise NotSafetensorsError("header does not start with '{'", field="header")
        try:
            self.header_text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise NotSafetensorsError(f"header is not UTF-8: {e}", field="header") from None
        self.data_start = _LENGTH.size + n
        self.tensors, self.metadata = parse_header(self.header_text, self.size - self.data_start)

    @property
    def header_bytes(self) -> bytes:
        """The file's first ``data_start`` bytes: length prefix and header, verbatim."""
        return _LENGTH.pack(self.data_start - _LENGTH.size) + self.header_text.encode("utf-8")

    def is_canonical(self) -> bool:
        """Whether :func:`canonical_header` rebuilds this file's header exactly."""
        return canonical_header(self.tensors, self.metadata) == self.header_bytes

    def array(self, t: TensorInfo) -> np.ndarray:
        """A read-only view of tensor ``t``'s bytes as its dtype and shape (``uint8`` bytes for dtypes rans lacks)."""
        if not t.nbytes:
            return np.empty(t.shape if t.dtype in dtypes.DTYPES else (0,), dtypes.DTYPES.get(t.dtype, np.uint8))
        flat = np.frombuffer(self._map, np.uint8, t.nbytes, self.data_start + t.begin)
        return flat.view(dtypes.DTYPES[t.dtype]).reshape(t.shape) if t.dtype in dtypes.DTYPES else flat

    def release(self, t: TensorInfo) -> None:
        """Drop the pages of tensor ``t`` from this process (they stay in the page cache)."""
        start = self.data_start + t.begin
        start -= start % mmap.PAGESIZE
        end = self.data_start + t.end
        if self._map is not None and end > start and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED, start, end - start)

    def close(self) -> None:
        """Unmap the file (deferred to garbage collection while views of it are alive)."""
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass
            self._map = None

    def __enter__(self) -> "SafetensorsFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
