"""Tensors to planes to sections and back: where the dtype layer meets the coder.

For each plane the writer picks the cheapest mode: ``"const"`` when every
byte is the same, ``"coded"`` when the estimated coded size is below the
raw size, else ``"raw"``. When every plane of the dtype's multi-plane split
would be raw, the tensor is stored as one raw plane (split ``"none"``),
which keeps tiny tensors tiny. The estimate uses integers only, so every
backend makes the same choice.
"""

from __future__ import annotations

import numpy as np

from . import container, dtypes
from .errors import ChecksumError, CorruptDataError, InvalidArgumentError, RansError
from .reference import coder, tables


def estimate_coded(counts: np.ndarray, freq: np.ndarray, n: int, chunk: int, table_bytes: int) -> int:
    """Estimated size in bytes of a coded section: header, table, states, counts and words."""
    layout = coder.Layout.of(n, chunk, table_bytes, coder.lanes_for(n))
    bits = int((counts * tables.COST[freq]).sum()) >> tables.COST_FRACTION_BITS
    return layout.words_at + -(-bits // 8)


def _plan_plane(plane: np.ndarray, chunk: int) -> tuple[str, np.ndarray | None]:
    """The mode for one plane, and its frequency table if it is to be coded."""
    return plan_counts(tables.count(plane), plane.size, chunk)


def plan_counts(counts: np.ndarray, n: int, chunk: int) -> tuple[str, np.ndarray | None]:
    """The mode for a plane of ``n`` symbols with byte ``counts``, and its table if it is to be coded.

    Encoders that count symbols elsewhere (the GPU's) plan with this, so every backend chooses alike.
    """
    if n == 0:
        return "raw", None
    if np.count_nonzero(counts) == 1:
        return "const", None
    freq = tables.quantize(counts)
    table_bytes = len(tables.serialize(freq))
    if estimate_coded(counts, freq, n, chunk, table_bytes) < n:
        return "coded", freq
    return "raw", None


def encode_tensor(array: np.ndarray, name: str, chunk: int, workers: int = 1) -> tuple[container.Entry, list[bytes]]:
    """Split, plan and code one tensor; return its header entry and its sections.

    ``workers`` processes share the chunks of each coded plane.
    """
    dtype = dtypes.name_of(array.dtype)
    array = np.asarray(array, dtype=dtypes.DTYPES[dtype], order="C")
    if dtype == "BOOL" and array.size and int(array.view(np.uint8).max()) > 1:
        raise InvalidArgumentError(f"tensor {name!r}: a BOOL array holds bytes other than 0 and 1")
    for split in dtypes.splits_of(dtype):
        planes = dtypes.split(array, split)
        plans = [_plan_plane(p, chunk) for p in planes]
        if split == "none" or any(mode != "raw" for mode, _ in plans):
            break
    entry = container.Entry(name, dtype, tuple(int(d) for d in array.shape))
    sections = []
    for plane, (mode, freq) in zip(planes, plans):
        if mode == "const":
            entry.planes.append(container.Plane("const", value=int(plane[0])))
            continue
        blob = coder.encode(plane, chunk, freq, workers) if mode == "coded" else plane.tobytes()
        entry.planes.append(container.Plane(mode, length=len(blob)))
        sections.append(blob)
    entry.crc = container.sections_crc(sections)
    return entry, sections


def decode_tensor(entry: container.Entry, buf: memoryview, verify: bool = True) -> np.ndarray:
    """Decode one tensor whose entry came from :func:`container.read_header` over ``buf``.

    With ``verify`` (the default) the CRC-32 of the tensor's sections is
    checked first. Errors name the tensor and the plane.
    """
    if verify:
        verify_sections(entry, buf)
    symbols = dtypes.plane_length(entry.dtype, entry.split, entry.size)
    planes = []
    for j, plane in enumerate(entry.planes):
        where = f"planes[{j}]"
        try:
            planes.append(_decode_plane(plane, buf, symbols, where))
        except RansError as e:
            raise e.at(tensor=entry.name, field=where) from None
        except MemoryError:
            raise CorruptDataError(f"no memory for {symbols} symbols", tensor=entry.name, field=where) from None
    if entry.dtype == "BOOL" and planes and planes[0].size and int(planes[0].max()) > 1:
        raise CorruptDataError("a BOOL element is neither 0 nor 1", tensor=entry.name, field="planes[0]")
    return dtypes.join(planes, entry.dtype, entry.split, entry.shape)


def verify_sections(entry: container.Entry, buf: memoryview) -> None:
    """Raise :class:`~rans.ChecksumError` naming the tensor if the CRC-32 of its sections is wrong."""
    start, end = entry.span()
    if entry.sections and container.crc32(buf[start:end]) != entry.crc:
        raise ChecksumError("checksum of the tensor's sections does not match", tensor=entry.name, field="crc32")


def _decode_plane(plane: container.Plane, buf: memoryview, symbols: int, where: str) -> np.ndarray:
    if plane.mode == "const":
        return np.full(symbols, plane.value, dtype=np.uint8)
    section = buf[plane.offset : plane.offset + plane.length]
    if plane.mode == "raw":
        return np.frombuffer(section, dtype=np.uint8).copy()
    return coder.decode(section, symbols, field=where)
