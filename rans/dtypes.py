"""The dtype layer: split a tensor into byte planes and join them back.

It knows element layouts and nothing of coding. A *split* names how a
tensor's elements become planes (``docs/FORMAT.md``, "Plane splits"):

``"none"``
    One plane: the tensor's bytes in memory order, little-endian.
``"bytes"``
    For dtypes of 2 or more bytes but ``BF16`` and ``F32``: one plane per
    byte of the element; plane ``j`` holds byte ``j`` (little-endian) of
    every element.
``"float"``
    For ``BF16`` and ``F32``, whose exponent is 8 bits: plane 0 is the
    exponent, plane 1 the sign bit over the 7 high mantissa bits, and for
    ``F32`` planes 2 and 3 the middle and low mantissa bytes.
``"nibbles"``
    For ``U8``, ``I8``, ``F8_E4M3`` and ``F8_E5M2``: each byte becomes a
    high and a low nibble (for the float8 dtypes, the high one is the 4
    exponent bits under the sign, the low one the sign over the 3 lowest
    bits); plane 0 packs the high nibbles of elements ``2i`` and ``2i + 1``
    into symbol ``i``, plane 1 the low nibbles. Writers use it only when
    asked (``prefer="speed"``): a GPU decodes two elements per symbol.

A tensor's split follows from its dtype and plane count: one plane is
``"none"``, more is the dtype's other split.

Examples
--------
>>> import numpy as np
>>> from rans import dtypes
>>> x = np.array([1.0, -2.5], dtype=np.float32)
>>> planes = dtypes.split(x, "float")
>>> [p.tolist() for p in planes]
[[127, 128], [0, 160], [0, 0], [0, 0]]
>>> dtypes.join(planes, "F32", "float", (2,)).tolist()
[1.0, -2.5]
"""

from __future__ import annotations

import math
from typing import Sequence

import ml_dtypes
import numpy as np

from .errors import InvalidArgumentError

DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
    "C64": np.dtype("<c8"),
    "C128": np.dtype("<c16"),
}
"""Format dtype names (safetensors' where it has one) and their NumPy dtypes."""

TORCH: dict[str, str] = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "U16": "uint16", "I16": "int16", "F16": "float16", "BF16": "bfloat16", "U32": "uint32", "I32": "int32",
    "F32": "float32", "U64": "uint64", "I64": "int64", "F64": "float64", "C64": "complex64", "C128": "complex128",
}
"""The name of each dtype's ``torch`` attribute (``torch.bfloat16`` for ``BF16``)."""

_UINT = {2: np.dtype("<u2"), 4: np.dtype("<u4")}


_NAMES = {dtype: name for name, dtype in reversed(DTYPES.items())}
"""Each NumPy dtype's format name (the first in :data:`DTYPES` where two names share one)."""


def name_of(dtype: np.dtype) -> str:
    """The format name of a NumPy dtype; raises :class:`~rans.InvalidArgumentError` if it has none."""
    name = _NAMES.get(dtype) if isinstance(dtype, np.dtype) else None
    if name is not None:
        return name
    dtype = np.dtype(dtype)
    native = dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
    for name, candidate in DTYPES.items():
        if native == candidate:
            return name
    raise InvalidArgumentError(f"dtype {dtype} is not supported; supported: {', '.join(DTYPES)}")


NIBBLE_DTYPES = ("U8", "I8", "F8_E4M3", "F8_E5M2")
"""The dtypes split ``"nibbles"`` allows."""
FLOAT8 = ("F8_E4M3", "F8_E5M2")
"""The float8 dtypes, whose nibbles under split ``"nibbles"`` are the 4 bits under the sign and the sign over the 3 lowest."""

PREFERENCES = ("ratio", "speed")
"""What a writer favours (``prefer=`` of :func:`rans.compress`): the smallest file, or the fastest
GPU decode (1-byte dtypes split ``"nibbles"``, one coded plane a tensor at most)."""


def check_prefer(prefer: str) -> None:
    """Raise :class:`~rans.InvalidArgumentError` unless ``prefer`` is one of :data:`PREFERENCES`."""
    if not (isinstance(prefer, str) and prefer in PREFERENCES):
        raise InvalidArgumentError(f"prefer must be one of {', '.join(map(repr, PREFERENCES))}, not {prefer!r}")


def splits_of(name: str, prefer: str = "ratio") -> tuple[str, ...]:
    """The splits allowed for dtype ``name``, the one writers use first for ``prefer``."""
    size = DTYPES[name].itemsize
    if size == 1:
        if name not in NIBBLE_DTYPES:
            return ("none",)
        return ("nibbles", "none") if prefer == "speed" else ("none", "nibbles")
    if name in ("BF16", "F32"):
        return ("float", "none")
    return ("bytes", "none")


def split_for(name: str, planes: int) -> str:
    """The split of a tensor of dtype ``name`` stored in ``planes`` planes."""
    if planes <= 1:
        return "none"
    return next(s for s in splits_of(name) if s != "none")


def plane_count(name: str, split: str) -> int:
    """Number of planes ``split`` makes of a tensor of dtype ``name``."""
    if split == "nibbles":
        return 2
    return 1 if split == "none" else DTYPES[name].itemsize


def plane_length(name: str, split: str, n: int) -> int:
    """Symbols in each plane of an ``n``-element tensor."""
    if split == "nibbles":
        return (n + 1) // 2
    return n * DTYPES[name].itemsize if split == "none" else n


def split(array: np.ndarray, split: str) -> list[np.ndarray]:
    """Split a C-contiguous little-endian array into ``uint8`` planes."""
    flat = array.reshape(-1)
    size = flat.dtype.itemsize
    if split == "none":
        return [flat.view(np.uint8)]
    if split == "bytes":
        as_bytes = flat.view(np.uint8).reshape(-1, size)
        return [np.ascontiguousarray(as_bytes[:, j]) for j in range(size)]
    if split == "nibbles":
        return _split_nibbles(flat.view(np.uint8), name_of(flat.dtype) in FLOAT8)
    v = flat.view(_UINT[size])
    if size == 2:
        exponent = (v >> 7).astype(np.uint8)
        sign_mantissa = (((v >> 8) & 0x80) | (v & 0x7F)).astype(np.uint8)
        return [exponent, sign_mantissa]
    exponent = (v >> 23).astype(np.uint8)
    sign_high = (((v >> 24) & 0x80) | ((v >> 16) & 0x7F)).astype(np.uint8)
    return [exponent, sign_high, (v >> 8).astype(np.uint8), v.astype(np.uint8)]


def join(planes: Sequence[np.ndarray], name: str, split: str, shape: tuple[int, ...]) -> np.ndarray:
    """Join planes made by :func:`split` into an array of dtype ``name`` and ``shape``."""
    dtype = DTYPES[name]
    size = dtype.itemsize
    if split == "none":
        return np.ascontiguousarray(planes[0]).view(dtype).reshape(shape)
    if split == "nibbles":
        return _join_nibbles(planes[0], planes[1], name in FLOAT8, math.prod(shape)).view(dtype).reshape(shape)
    n = planes[0].size
    if split == "bytes":
        out = np.empty((n, size), dtype=np.uint8)
        for j, plane in enumerate(planes):
            out[:, j] = plane
        return out.reshape(-1).view(dtype).reshape(shape)
    u = _UINT[size]
    if size == 2:
        exponent, sign_mantissa = (p.astype(u) for p in planes)
        v = ((sign_mantissa & 0x80) << 8) | (exponent << 7) | (sign_mantissa & 0x7F)
    else:
        exponent, sign_high, middle, low = (p.astype(u) for p in planes)
        v = ((sign_high & 0x80) << 24) | (exponent << 23) | ((sign_high & 0x7F) << 16) | (middle << 8) | low
    return v.astype(u).view(dtype).reshape(shape)


def _split_nibbles(b: np.ndarray, float8: bool) -> list[np.ndarray]:
    """Split ``"nibbles"`` of bytes ``b``: planes of high and low nibbles, two elements a symbol."""
    if float8:
        high, low = (b >> 3) & 0xF, ((b >> 4) & 0x8) | (b & 0x7)
    else:
        high, low = b >> 4, b & 0xF
    planes = []
    for nibbles in (high, low):
        pairs = np.zeros(2 * ((b.size + 1) // 2), dtype=np.uint8)
        pairs[: b.size] = nibbles
        planes.append(pairs[0::2] | (pairs[1::2] << 4))
    return planes


def _join_nibbles(high: np.ndarray, low: np.ndarray, float8: bool, n: int) -> np.ndarray:
    """The ``n`` bytes whose split ``"nibbles"`` is ``high`` and ``low`` (the last symbols' unused nibbles ignored)."""
    h = np.stack((high & 0xF, high >> 4), axis=1).reshape(-1)[:n]
    lo = np.stack((low & 0xF, low >> 4), axis=1).reshape(-1)[:n]
    if float8:
        return ((lo & 0x8) << 4) | (h << 3) | (lo & 0x7)
    return (h << 4) | lo
