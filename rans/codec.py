"""Tensors to planes to sections and back: where the dtype layer meets the coder.

For each plane the writer picks the cheapest mode: ``"const"`` when every
byte is the same, ``"coded"`` when the estimated coded size is below the
raw size, else ``"raw"``. When every plane of the dtype's multi-plane split
would be raw, the tensor is stored as one raw plane (split ``"none"``),
which keeps tiny tensors tiny. The estimate uses integers only, so every
backend makes the same choice.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from . import backends, container, dtypes
from .errors import ChecksumError, CorruptDataError, InvalidArgumentError, RansError, SizeLimitError
from .reference import coder, tables

MAX_RATIO = 1024
"""Default limit on decoded bytes per byte of file, about deflate's largest ratio (1032)."""
MIN_LIMIT = 1 << 28
"""Default limit on decoded bytes for files small enough that :data:`MAX_RATIO` would allow less (256 MiB)."""


def estimate_coded(counts: np.ndarray, freq: np.ndarray, n: int, chunk: int, table_bytes: int) -> int:
    """Estimated size in bytes of a coded section: header, table, states, counts and words."""
    layout = coder.Layout.of(n, chunk, table_bytes, coder.lanes_for(n))
    bits = int((counts * tables.COST[freq]).sum()) >> tables.COST_FRACTION_BITS
    return layout.words_at + -(-bits // 8)


def _plan_plane(
    plane: np.ndarray, chunk: int, backend: backends.Backend, counts: np.ndarray | None = None
) -> tuple[str, np.ndarray | None]:
    """The mode for one plane, and its frequency table if it is to be coded (``counts``: the plane's byte
    counts where they are known)."""
    if backend.plan is not None:
        return backend.plan(plane, chunk, counts)
    return plan_counts(tables.count(plane) if counts is None else counts, plane.size, chunk)


def plan_counts(
    counts: np.ndarray,
    n: int,
    chunk: int,
    quantize: Callable[[np.ndarray], np.ndarray] = tables.quantize,
    serialized_size: Callable[[np.ndarray], int] = tables.serialized_size,
) -> tuple[str, np.ndarray | None]:
    """The mode for a plane of ``n`` symbols with byte ``counts``, and its table if it is to be coded.

    Every backend's choice is this one (the GPU's, made on the device by :func:`rans.gpu.tables.plan`,
    is tested against it); ``quantize`` and ``serialized_size`` are :mod:`rans.reference.tables`' or a
    backend's faster equals.
    """
    if n == 0:
        return "raw", None
    if np.count_nonzero(counts) == 1:
        return "const", None
    freq = quantize(counts)
    if estimate_coded(counts, freq, n, chunk, serialized_size(freq)) < n:
        return "coded", freq
    return "raw", None


def encode_tensor(
    array: np.ndarray,
    name: str,
    chunk: int,
    workers: int = 1,
    backend: backends.Backend | None = None,
    prefer: str = "ratio",
) -> tuple[container.Entry, list[bytes | memoryview]]:
    """Split, plan and code one tensor; return its header entry and its sections (bytes-like).

    ``backend`` (default: ``backends.get("auto")``), or the one it picks for
    the tensor's size (:meth:`rans.backends.Backend.pick`), does the work;
    ``workers`` processes share the chunks of each coded plane on the
    reference backend, and are ignored by the others. A plane is released
    once coded, so at most the planes not yet coded and the sections made
    so far are held at once. ``prefer="speed"`` takes the dtype's split for
    ``"speed"`` (:func:`rans.dtypes.splits_of`) and codes one plane at most
    (:func:`_one_coded`).
    """
    backend = (backend or backends.get()).pick("encode", array.nbytes)
    if backend.encode_tensor is not None:
        return backend.encode_tensor(array, name, chunk, workers, prefer)
    encode = functools.partial(coder.encode, workers=workers) if backend.name == "reference" else backend.encode
    dtype = dtypes.name_of(array.dtype)
    array = np.asarray(array, dtype=dtypes.DTYPES[dtype], order="C")
    if dtype == "BOOL" and array.size and int(array.view(np.uint8).max()) > 1:
        raise InvalidArgumentError(f"tensor {name!r}: a BOOL array holds bytes other than 0 and 1")
    for split in dtypes.splits_of(dtype, prefer):
        planes = backend.split(array, split)
        known = (backend.counts(array, split) if backend.counts is not None else None) or [None] * len(planes)
        if prefer == "speed":  # the one-coded rule needs every plane's counts: counted once, for the plans too
            known = [backend.count(p) if c is None else c for p, c in zip(planes, known)]
        plans = [_plan_plane(p, chunk, backend, c) for p, c in zip(planes, known)]
        if prefer == "speed":
            plans = _one_coded(planes, plans, chunk, known)
        if split == "none" or any(mode != "raw" for mode, _ in plans):
            break
    entry = container.Entry(name, dtype, tuple(int(d) for d in array.shape))
    sections: list[bytes | memoryview] = []
    for j, (mode, freq) in enumerate(plans):
        plane, planes[j] = planes[j], None
        if mode == "const":
            entry.planes.append(container.Plane("const", value=int(plane[0])))
            continue
        if mode == "coded":
            blob = encode(plane, chunk, freq)
        else:  # a view of the caller's array under split "none": copy it, the caller may change it
            blob = plane.tobytes() if split == "none" else memoryview(plane)
        entry.planes.append(container.Plane(mode, length=len(blob)))
        sections.append(blob)
    entry.crc = container.sections_crc(sections)
    return entry, sections


def _one_coded(
    planes: list[np.ndarray], plans: list[tuple[str, np.ndarray | None]], chunk: int, counts: list[np.ndarray]
) -> list[tuple[str, np.ndarray | None]]:
    """``plans`` with one coded plane at most: the one whose estimated section saves the most bytes
    (the first of equals; ``counts[j]`` is plane ``j``'s byte counts); the other coded planes become raw.
    A GPU decodes a tensor of one coded plane in one pass, joining the others as it goes."""
    coded = [j for j, (mode, _) in enumerate(plans) if mode == "coded"]
    if len(coded) < 2:
        return plans

    def saving(j: int) -> int:
        freq = plans[j][1]
        return planes[j].size - estimate_coded(counts[j], freq, planes[j].size, chunk, tables.serialized_size(freq))

    keep = max(coded, key=lambda j: (saving(j), -j))
    return [("raw", None) if j in coded and j != keep else plan for j, plan in enumerate(plans)]


def decode_tensor(
    entry: container.Entry, buf: memoryview, verify: bool = True, backend: backends.Backend | None = None
) -> np.ndarray:
    """Decode one tensor whose entry came from :func:`container.read_header` over ``buf``.

    With ``verify`` (the default) the CRC-32 of the tensor's sections is
    checked first. Errors name the tensor and the plane. ``backend``
    (default: ``backends.get("auto")``), or the one it picks for the
    tensor's size, decodes and joins the planes.
    """
    backend = (backend or backends.get()).pick("decode", entry.nbytes)
    if backend.decode_tensor is not None:
        return backend.decode_tensor(entry, buf, verify)
    return decode_planes(entry, buf, verify, backend)


def decode_planes(entry: container.Entry, buf: memoryview, verify: bool, backend: backends.Backend) -> np.ndarray:
    """:func:`decode_tensor` plane by plane: each plane decoded by ``backend.decode``, then joined by ``backend.join``."""
    if verify:
        verify_sections(entry, buf)
    symbols = dtypes.plane_length(entry.dtype, entry.split, entry.size)
    planes = []
    for j, plane in enumerate(entry.planes):
        where = f"planes[{j}]"
        try:
            planes.append(_decode_plane(plane, buf, symbols, where, backend.decode, len(entry.planes) > 1))
        except RansError as e:
            raise e.at(tensor=entry.name, field=where) from None
        except MemoryError:
            raise CorruptDataError(f"no memory for {symbols} symbols", tensor=entry.name, field=where) from None
    if entry.dtype == "BOOL" and planes and planes[0].size and int(planes[0].max()) > 1:
        raise CorruptDataError("a BOOL element is neither 0 nor 1", tensor=entry.name, field="planes[0]")
    return backend.join(planes, entry.dtype, entry.split, entry.shape)


def default_max_bytes(file_size: int) -> int:
    """The decoded bytes a file of ``file_size`` bytes may hold unless the caller allows more.

    ``max(MIN_LIMIT, MAX_RATIO * file_size)``: memory and work stay
    proportional to the input, as with deflate, with a 256 MiB floor.
    """
    return max(MIN_LIMIT, MAX_RATIO * file_size)


def check_size(entries: list[container.Entry], file_size: int, max_bytes: int | None) -> None:
    """Raise :class:`~rans.SizeLimitError`, naming the tensor that crosses it, if the entries
    decode to more than ``max_bytes`` bytes together (by default :func:`default_max_bytes`).

    Called after the header is parsed and before anything is allocated, so
    a tiny file whose header claims a huge tensor (a constant plane stores
    nothing) costs nothing to reject.
    """
    if max_bytes is None:
        limit, why = default_max_bytes(file_size), f"the default for a file of {file_size} bytes"
    elif isinstance(max_bytes, (int, np.integer)) and not isinstance(max_bytes, bool) and max_bytes >= 0:
        limit, why = int(max_bytes), "max_bytes"
    else:
        raise InvalidArgumentError(f"max_bytes must be a non-negative integer or None, not {max_bytes!r}")
    total = 0
    for entry in entries:
        total += entry.nbytes
        if total > limit:
            raise SizeLimitError(
                f"{entry.dtype} tensor of shape {list(entry.shape)} ({entry.nbytes} bytes) brings the decoded "
                f"size to {total} bytes, above {limit} ({why}); pass a larger max_bytes to allow it",
                tensor=entry.name,
                field="shape",
            )


def verify_sections(entry: container.Entry, buf: memoryview) -> None:
    """Raise :class:`~rans.ChecksumError` naming the tensor if the CRC-32 of its sections is wrong."""
    start, end = entry.span()
    if entry.sections and container.crc32(buf[start:end]) != entry.crc:
        raise checksum_error(entry)


def checksum_error(entry: container.Entry) -> ChecksumError:
    """The error for a tensor whose sections do not match their CRC-32."""
    return ChecksumError("checksum of the tensor's sections does not match", tensor=entry.name, field="crc32")


def _decode_plane(
    plane: container.Plane, buf: memoryview, symbols: int, where: str, decode: Callable[..., np.ndarray], joined: bool
) -> np.ndarray:
    """One plane's symbols; a raw plane is a view of ``buf`` when ``joined`` (the join copies it), else a copy."""
    if plane.mode == "const":
        return np.full(symbols, plane.value, dtype=np.uint8)
    section = buf[plane.offset : plane.offset + plane.length]
    if plane.mode == "raw":
        raw = np.frombuffer(section, dtype=np.uint8)
        return raw if joined else raw.copy()
    return decode(section, symbols, field=where)
