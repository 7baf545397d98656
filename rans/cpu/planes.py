"""Byte counts and plane splits, compiled and parallel: the same results as the reference's.

:func:`count`, :func:`split` and :func:`join` return exactly what
:func:`rans.reference.tables.count`, :func:`rans.dtypes.split` and
:func:`rans.dtypes.join` return; they exist because NumPy's versions make
temporaries and run on one core, and cost more than coding the planes.
"""

from __future__ import annotations

import math
from typing import Sequence

import numba as nb
import numpy as np

from .. import dtypes
from ..reference import tables
from .kernels import PARALLEL_MIN

_BLOCK = 1 << 20
"""Bytes each thread counts into histograms of its own (8 of ``uint32``: one per byte of a 64-bit word)."""
_SPAN = 1 << 16
"""Elements a thread splits or joins at a time; arrays under :data:`PARALLEL_MIN` elements are split and
joined by the same loops on the calling thread (NumPy's expressions took 5-8 us for a tensor of a few
hundred elements, and files of such tensors are common)."""


@nb.njit(parallel=True, cache=True)
def _count(plane):
    """Counts read 8 bytes at a time into 8 histograms: a run of equal bytes (an exponent plane is mostly a
    few values) increments 8 counters in turn. With a load per byte and 4 histograms of ``int64`` it took
    0.67 ns a byte a core on bf16 exponents, now 0.25 (``bench/NOTES.md`` entry C1)."""
    n = plane.size
    blocks = max(1, (n + _BLOCK - 1) // _BLOCK)
    partial = np.zeros((blocks, 8, 256), dtype=np.uint32)
    words = plane[: n // 8 * 8].view(np.uint64)
    for b in nb.prange(blocks):
        h = partial[b]
        for i in range(b * _BLOCK // 8, min(words.size, (b + 1) * _BLOCK // 8)):
            v = words[i]
            h[0, v & 0xFF] += 1
            h[1, (v >> 8) & 0xFF] += 1
            h[2, (v >> 16) & 0xFF] += 1
            h[3, (v >> 24) & 0xFF] += 1
            h[4, (v >> 32) & 0xFF] += 1
            h[5, (v >> 40) & 0xFF] += 1
            h[6, (v >> 48) & 0xFF] += 1
            h[7, v >> 56] += 1
    out = np.zeros(256, dtype=np.int64)
    for b in range(blocks):
        for j in range(8):
            for s in range(256):
                out[s] += partial[b, j, s]
    for i in range(n // 8 * 8, n):
        out[plane[i]] += 1
    return out


def count(plane: np.ndarray) -> np.ndarray:
    """Occurrences of each byte value in ``plane``, as ``int64[256]``."""
    if plane.size < PARALLEL_MIN:
        return tables.count(plane)
    return _count(np.ascontiguousarray(plane, dtype=np.uint8).reshape(-1))


_HALF_SPAN = 1 << 30
"""Most halves one ``uint32`` histogram of :func:`_count_halves` counts (so that no bin overflows)."""


def _parts(n: int) -> int:
    """Parts :func:`_count_halves` splits ``n`` halves into: one a thread, and none over :data:`_HALF_SPAN`."""
    return max(nb.get_num_threads(), -(-n // _HALF_SPAN))


@nb.njit(parallel=True, cache=True)
def _count_halves(halves, parts):
    """Occurrences of each 16-bit value in ``halves``, as ``int64[65536]``: a ``uint32`` histogram for each
    of ``parts`` parts (:func:`_parts`)."""
    n = halves.size
    per = (n + parts - 1) // parts
    partial = np.zeros((parts, 1 << 16), dtype=np.uint32)
    for t in nb.prange(parts):
        h = partial[t]
        for i in range(t * per, min(n, (t + 1) * per)):
            h[halves[i]] += 1
    out = np.zeros(1 << 16, dtype=np.int64)
    for t in range(parts):
        for v in range(1 << 16):
            out[v] += partial[t, v]
    return out


@nb.njit(cache=True)
def _marginals(histogram, float16, first, second):
    """Add a 16-bit histogram's counts to its two planes' byte counts: the float split's exponent and
    sign-mantissa bytes (``float16``), else the low and the high byte."""
    for v in range(1 << 16):
        c = histogram[v]
        if c:
            if float16:
                first[(v >> 7) & 0xFF] += c
                second[((v >> 8) & 0x80) | (v & 0x7F)] += c
            else:
                first[v & 0xFF] += c
                second[v >> 8] += c


def counts(array: np.ndarray, split: str) -> list[np.ndarray | None] | None:
    """Byte counts of the planes ``split`` makes of a float tensor (as :func:`count` of each), from one pass
    over the 16-bit halves that hold its sign and exponent (65,536 bins, summed into each plane's bytes):
    both planes of BF16 and F16, planes 0 and 1 of F32 (``None`` for its planes 2 and 3: a float's low
    half is near-uniform, and 65,536 bins of it miss the L1 cache). ``None`` for other dtypes and splits
    and for tensors under :data:`PARALLEL_MIN` elements: their planes are counted one at a time.

    Examples
    --------
    >>> import numpy as np
    >>> from rans.cpu import planes
    >>> x = np.arange(1 << 18, dtype=np.float32)
    >>> [c if c is None else bool((c == planes.count(p)).all()) for c, p in zip(planes.counts(x, "float"), planes.split(x, "float"))]
    [True, True, None, None]
    """
    flat = array.reshape(-1)
    if flat.size < max(PARALLEL_MIN, 1):
        return None
    name = dtypes.name_of(flat.dtype)
    if (name, split) not in (("BF16", "float"), ("F16", "bytes"), ("F32", "float")):
        return None
    out: list[np.ndarray | None] = [np.zeros(256, dtype=np.int64), np.zeros(256, dtype=np.int64)]
    halves = flat.view("<u2").reshape(-1, flat.dtype.itemsize // 2)
    _marginals(_count_halves(halves[:, -1], _parts(flat.size)), split == "float", out[0], out[1])
    return out + [None, None] if name == "F32" else out


@nb.njit(cache=True, nogil=True)
def _split_float16(v, exponent, sign_mantissa):
    for i in range(v.size):
        x = v[i]
        exponent[i] = np.uint8((x >> 7) & 0xFF)
        sign_mantissa[i] = np.uint8(((x >> 8) & 0x80) | (x & 0x7F))


@nb.njit(cache=True, nogil=True)
def _split_float32(v, exponent, sign_high, middle, low):
    for i in range(v.size):
        x = v[i]
        exponent[i] = np.uint8((x >> 23) & 0xFF)
        sign_high[i] = np.uint8(((x >> 24) & 0x80) | ((x >> 16) & 0x7F))
        middle[i] = np.uint8((x >> 8) & 0xFF)
        low[i] = np.uint8(x & 0xFF)


@nb.njit(parallel=True, cache=True)
def _split_float16_parallel(v, exponent, sign_mantissa):
    for b in nb.prange((v.size + _SPAN - 1) // _SPAN):
        s = slice(b * _SPAN, (b + 1) * _SPAN)
        _split_float16(v[s], exponent[s], sign_mantissa[s])


@nb.njit(parallel=True, cache=True)
def _split_float32_parallel(v, exponent, sign_high, middle, low):
    for b in nb.prange((v.size + _SPAN - 1) // _SPAN):
        s = slice(b * _SPAN, (b + 1) * _SPAN)
        _split_float32(v[s], exponent[s], sign_high[s], middle[s], low[s])


@nb.njit(cache=True, nogil=True)
def _split_nibbles(pairs, float8, high, low):
    """Split "nibbles" of element pairs (``uint16``: element ``2i`` in the low byte) into symbols ``i``."""
    for i in range(pairs.size):
        w = pairs[i]
        if float8:
            high[i] = np.uint8(((w >> 3) & 0x0F) | ((w >> 7) & 0xF0))
            low[i] = np.uint8((w & 0x07) | ((w >> 4) & 0x78) | ((w >> 8) & 0x80))
        else:
            high[i] = np.uint8(((w >> 4) & 0x0F) | ((w >> 8) & 0xF0))
            low[i] = np.uint8((w & 0x0F) | ((w >> 4) & 0xF0))


@nb.njit(cache=True, nogil=True)
def _join_nibbles(high, low, float8, pairs):
    """The element pairs whose split "nibbles" is ``high`` and ``low`` (the inverse of :func:`_split_nibbles`)."""
    for i in range(pairs.size):
        h = np.uint16(high[i])
        h = (h | (h << 4)) & 0x0F0F
        lo = np.uint16(low[i])
        lo = (lo | (lo << 4)) & 0x0F0F
        if float8:
            pairs[i] = ((lo & 0x0808) << 4) | (h << 3) | (lo & 0x0707)
        else:
            pairs[i] = (h << 4) | lo


@nb.njit(parallel=True, cache=True)
def _split_nibbles_parallel(pairs, float8, high, low):
    for b in nb.prange((pairs.size + _SPAN - 1) // _SPAN):
        s = slice(b * _SPAN, (b + 1) * _SPAN)
        _split_nibbles(pairs[s], float8, high[s], low[s])


@nb.njit(parallel=True, cache=True)
def _join_nibbles_parallel(high, low, float8, pairs):
    for b in nb.prange((pairs.size + _SPAN - 1) // _SPAN):
        s = slice(b * _SPAN, (b + 1) * _SPAN)
        _join_nibbles(high[s], low[s], float8, pairs[s])


def _nibble_planes(array: np.ndarray) -> list[np.ndarray]:
    """Split "nibbles" of a 1-byte array, compiled: element pairs as ``uint16``, an odd last element as a pair with 0."""
    b = array.reshape(-1).view(np.uint8)
    float8 = dtypes.name_of(array.dtype) in dtypes.FLOAT8
    m = (b.size + 1) // 2
    high, low = np.empty(m, dtype=np.uint8), np.empty(m, dtype=np.uint8)
    pairs = b[: b.size // 2 * 2].view("<u2")
    (_split_nibbles if b.size < PARALLEL_MIN else _split_nibbles_parallel)(pairs, float8, high, low)
    if b.size % 2:
        _split_nibbles(np.array([b[-1]], dtype="<u2"), float8, high[-1:], low[-1:])
    return [high, low]


def _from_nibble_planes(high: np.ndarray, low: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Join planes of split "nibbles" into an array of dtype ``name`` and ``shape``, compiled."""
    n = math.prod(shape)
    float8 = name in dtypes.FLOAT8
    out = np.empty(n, dtype=np.uint8)
    pairs = out[: n // 2 * 2].view("<u2")
    (_join_nibbles if n < PARALLEL_MIN else _join_nibbles_parallel)(high, low, float8, pairs)
    if n % 2:
        last = np.empty(1, dtype="<u2")
        _join_nibbles(high[-1:], low[-1:], float8, last)
        out[-1] = last[0] & 0xFF
    return out.view(dtypes.DTYPES[name]).reshape(shape)


@nb.njit(parallel=True, cache=True)
def _gather(b, j, size, plane):
    for i in nb.prange(plane.size):
        plane[i] = b[i * size + j]


@nb.njit(cache=True, nogil=True)
def _join_float16(exponent, sign_mantissa, v):
    for i in range(v.size):
        sm = np.uint16(sign_mantissa[i])
        v[i] = ((sm & 0x80) << 8) | (np.uint16(exponent[i]) << 7) | (sm & 0x7F)


@nb.njit(cache=True, nogil=True)
def _join_float32(exponent, sign_high, middle, low, v):
    for i in range(v.size):
        sh = np.uint32(sign_high[i])
        v[i] = ((sh & 0x80) << 24) | (np.uint32(exponent[i]) << 23) | ((sh & 0x7F) << 16) | (np.uint32(middle[i]) << 8) | np.uint32(low[i])


@nb.njit(cache=True, nogil=True)
def _join_bytes16(low, high, v):
    for i in range(v.size):
        v[i] = np.uint16(low[i]) | (np.uint16(high[i]) << 8)


@nb.njit(cache=True, nogil=True)
def _join_bytes32(b0, b1, b2, b3, v):
    for i in range(v.size):
        v[i] = np.uint32(b0[i]) | (np.uint32(b1[i]) << 8) | (np.uint32(b2[i]) << 16) | (np.uint32(b3[i]) << 24)


@nb.njit(parallel=True, cache=True)
def _join_float16_parallel(exponent, sign_mantissa, v):
    for b in nb.prange((v.size + _SPAN - 1) // _SPAN):
        s = slice(b * _SPAN, (b + 1) * _SPAN)
        _join_float16(exponent[s], sign_mantissa[s], v[s])


@nb.njit(parallel=True, cache=True)
def _join_float32_parallel(exponent, sign_high, middle, low, v):
    for b in nb.prange((v.size + _SPAN - 1) // _SPAN):
        s = slice(b * _SPAN, (b + 1) * _SPAN)
        _join_float32(exponent[s], sign_high[s], middle[s], low[s], v[s])


@nb.njit(parallel=True, cache=True)
def _scatter(plane, j, size, b):
    for i in nb.prange(plane.size):
        b[i * size + j] = plane[i]


def split(array: np.ndarray, split: str) -> list[np.ndarray]:
    """Split a C-contiguous little-endian array into ``uint8`` planes, as :func:`rans.dtypes.split` does.

    Examples
    --------
    >>> import numpy as np
    >>> from rans.cpu import planes
    >>> [p.tolist() for p in planes.split(np.array([1.0, -2.5], dtype=np.float32), "float")]
    [[127, 128], [0, 160], [0, 0], [0, 0]]
    """
    flat = array.reshape(-1)
    size = flat.dtype.itemsize
    small = flat.size < PARALLEL_MIN
    if split == "nibbles":
        return _nibble_planes(flat)
    if split == "none" or (split == "bytes" and small):
        return dtypes.split(array, split)
    n = flat.size
    out = [np.empty(n, dtype=np.uint8) for _ in range(size)]
    if split == "bytes":
        for j, plane in enumerate(out):
            _gather(flat.view(np.uint8), j, size, plane)
    elif size == 2:
        (_split_float16 if small else _split_float16_parallel)(flat.view("<u2"), *out)
    else:
        (_split_float32 if small else _split_float32_parallel)(flat.view("<u4"), *out)
    return out


def join(planes: Sequence[np.ndarray], name: str, split: str, shape: tuple[int, ...]) -> np.ndarray:
    """Join planes made by :func:`split` into an array of dtype ``name`` and ``shape``, as :func:`rans.dtypes.join` does."""
    dtype = dtypes.DTYPES[name]
    size = dtype.itemsize
    n = planes[0].size
    small = n < PARALLEL_MIN
    if split == "nibbles":
        return _from_nibble_planes(np.ascontiguousarray(planes[0]), np.ascontiguousarray(planes[1]), name, shape)
    if split == "none" or (split == "bytes" and small):
        return dtypes.join(planes, name, split, shape)
    if split == "bytes":
        out = np.empty(n * size, dtype=np.uint8)
        for j, plane in enumerate(planes):
            _scatter(np.ascontiguousarray(plane), j, size, out)
        return out.view(dtype).reshape(shape)
    if size == 2:
        v = np.empty(n, dtype="<u2")
        (_join_float16 if small else _join_float16_parallel)(*planes, v)
    else:
        v = np.empty(n, dtype="<u4")
        (_join_float32 if small else _join_float32_parallel)(*planes, v)
    return v.view(dtype).reshape(shape)
