"""CRC-32 (zlib's) of byte spans in device memory, in blocks on every multiprocessor.

A CRC is linear in its input: the CRC of a span is the XOR, over its
pieces, of each piece's zero-initialized CRC followed by as many zero bytes
as the span has after the piece, plus a term for zlib's conditioning.
:func:`crc_blocks` works in blocks of :data:`CRC_BLOCK` bytes aligned to a
piece's end (bytes before the piece count as zeros, which leave a
zero-initialized CRC unchanged): each thread checksums a 64-byte segment by
slicing-by-4 in shared memory and multiplies it by the GF(2) matrix that
appends the zero bytes of the segments after it (the arithmetic of zlib's
``crc32_combine``); warp shuffles XOR the segments, then the warps; a warp
appends the block's distance to its piece's end, each lane taking one
column of each matrix, and XORs the block's share into its span's
accumulator. The encoder checksums what it writes this way; the decoder
verifies a file it has copied to the GPU with :func:`checksums`.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
from numba import cuda, uint32

from .. import checksum
from .warp import SIMULATED, xor_all

# Columns of a piece descriptor for :func:`crc_blocks`.
S_START, S_END4, S_TAIL, S_FIRST_BLOCK, S_AFTER, S_TENSOR, S_SPAN = range(7)

CRC_THREADS = 32 if SIMULATED else 256
"""Threads per block of :func:`crc_blocks` (one warp under the simulator, which is slow)."""
CRC_SEGMENT_WORDS = 16
CRC_BLOCK = CRC_THREADS * CRC_SEGMENT_WORDS * 4
"""Bytes of a span one block of :func:`crc_blocks` covers (16 KiB; 2 KiB under the simulator)."""
CRC_SHARED_WORDS = CRC_BLOCK // 4 + CRC_BLOCK // 128
"""Shared words of a block's bytes, one word of padding per 32 so that each thread's 16 words start in another bank."""
CRC_WARPS = CRC_THREADS // 32
SHIFT_COLUMNS = 32 + CRC_WARPS
"""Columns of :func:`shift_table`: one operator per lane, then one per warp of a block."""
GRID_MAX = 2048
"""Most blocks a launch of :func:`crc_blocks` (or a kernel like it) starts; each loops over several CRC blocks."""
SHIFT_OPERATORS = 48
"""Operators that append ``2**k`` zero bytes to a CRC, ``k < 48``."""


@cuda.jit(device=True, inline=True)
def times(matrix, column, crc):
    """``crc`` times the GF(2) matrix held in column ``column`` of ``matrix`` (row ``j``: the image of bit ``j``)."""
    out = uint32(0)
    for j in range(32):
        if (crc >> uint32(j)) & uint32(1):
            out ^= uint32(matrix[j, column])
    return out


@cuda.jit(device=True, inline=True)
def shift_in_warp(operators, count, crc, lane, scratch):
    """``crc`` followed by ``count`` zero bytes, worked out by a whole warp (every lane holds the same ``crc`` and ``count``).

    For each set bit ``k`` of ``count``, lane ``j`` takes column ``j`` of
    operator ``k`` if bit ``j`` of ``crc`` is set, and the warp XORs them.
    """
    k = 0
    while count:
        if count & 1:
            column = uint32(operators[k, lane]) if (crc >> uint32(lane)) & uint32(1) else uint32(0)
            crc = xor_all(column, scratch, lane)
        count >>= 1
        k += 1
    return crc


@cuda.jit(device=True, inline=True)
def block_crc(words, t4, shifts, parts, scratch, tid):
    """The zero-initialized CRC of the ``CRC_BLOCK`` bytes staged in ``words``, in every lane of warp 0.

    Each thread checksums its segment, multiplies it by the operator that
    appends the segments after it in its warp (column ``lane`` of
    ``shifts``), and the warp XORs them; warp 0 does the same with the
    warps' CRCs (columns ``32 + warp``). The caller puts a barrier before
    the next use of ``words`` or ``parts``.
    """
    crc = uint32(0)
    for j in range(CRC_SEGMENT_WORDS):
        w = tid * CRC_SEGMENT_WORDS + j
        crc ^= words[w + (w >> 5)]
        crc = uint32(
            t4[3, crc & uint32(0xFF)]
            ^ t4[2, (crc >> uint32(8)) & uint32(0xFF)]
            ^ t4[1, (crc >> uint32(16)) & uint32(0xFF)]
            ^ t4[0, crc >> uint32(24)]
        )
    lane = tid % 32
    crc = xor_all(times(shifts, lane, crc), scratch, lane)
    if lane == 0:
        parts[tid // 32] = crc
    cuda.syncthreads()
    crc = uint32(0)
    if tid < 32:
        if lane < CRC_WARPS:
            crc = times(shifts, 32 + lane, parts[lane])
        crc = xor_all(crc, scratch, lane)
    return crc


@cuda.jit(device=True, inline=True)
def stage_tables(table, shifts, t4, shifted, tid):
    """Copy the slicing table and the block's shift operators into shared memory (a barrier must follow)."""
    for i in range(tid, 1024, cuda.blockDim.x):
        t4[i // 256, i % 256] = table[i // 256, i % 256]
    for i in range(tid, 32 * SHIFT_COLUMNS, cuda.blockDim.x):
        shifted[i // SHIFT_COLUMNS, i % SHIFT_COLUMNS] = shifts[i // SHIFT_COLUMNS, i % SHIFT_COLUMNS]


@cuda.jit(device=True, inline=True)
def _staged(buf32, first, start, w):
    """Word ``w`` of the block that starts at byte ``first`` of ``buf32``, zero before byte ``start``."""
    at = first + 4 * w
    return buf32[at >> 2] if at >= start else uint32(0)


@cuda.jit(device=True, inline=True)
def _stage(words, w, value):
    words[w + (w >> 5)] = value


@cuda.jit(cache=True)
def crc_blocks(buf8, buf32, pieces, block_piece, table, operators, shifts, crcs):
    """XOR into ``crcs`` the share of each piece of a tensor's sections span in its zlib CRC-32.

    ``pieces[i]`` gives the piece's first byte (a multiple of 4), its end
    rounded down to a multiple of 4, the 0-3 bytes past that, its first
    block, the bytes of the span after it, its tensor, and for the piece
    that ends the span the span's length (else -1: that piece adds the
    CRC's initial and final conditioning). ``block_piece[b]`` is the piece of
    block ``b``; block ``m`` from the piece's end covers
    ``[end4 - (m + 1) * CRC_BLOCK, end4 - m * CRC_BLOCK)``. ``table`` is the
    slicing-by-4 table (``uint32[4, 256]``), ``operators[k]`` the matrix
    that appends ``2**k`` zero bytes, column ``j`` the image of bit ``j``,
    ``shifts`` the block's operators (:func:`shift_table`).
    """
    words = cuda.shared.array(CRC_SHARED_WORDS, uint32)
    t4 = cuda.shared.array((4, 256), uint32)
    shifted = cuda.shared.array((32, SHIFT_COLUMNS), uint32)
    parts = cuda.shared.array(CRC_WARPS, uint32)
    scratch = cuda.shared.array(32, uint32)
    tid = cuda.threadIdx.x
    lane = tid % 32
    stage_tables(table, shifts, t4, shifted, tid)
    for b in range(cuda.blockIdx.x, block_piece.shape[0], cuda.gridDim.x):
        t = block_piece[b]
        start = pieces[t, S_START]
        end4 = pieces[t, S_END4]
        tail = pieces[t, S_TAIL]
        blocks = max(1, (end4 - start + CRC_BLOCK - 1) // CRC_BLOCK)
        m = blocks - 1 - (b - pieces[t, S_FIRST_BLOCK])
        first = end4 - (m + 1) * CRC_BLOCK
        w = tid
        while w < CRC_THREADS * CRC_SEGMENT_WORDS:  # four words a thread, loaded before any is stored
            v0 = _staged(buf32, first, start, w)
            v1 = _staged(buf32, first, start, w + CRC_THREADS)
            v2 = _staged(buf32, first, start, w + 2 * CRC_THREADS)
            v3 = _staged(buf32, first, start, w + 3 * CRC_THREADS)
            _stage(words, w, v0)
            _stage(words, w + CRC_THREADS, v1)
            _stage(words, w + 2 * CRC_THREADS, v2)
            _stage(words, w + 3 * CRC_THREADS, v3)
            w += 4 * CRC_THREADS
        cuda.syncthreads()
        crc = block_crc(words, t4, shifted, parts, scratch, tid)
        if tid < 32:
            shift = pieces[t, S_AFTER]
            if m == 0:
                for u in range(tail):
                    crc = uint32(t4[0, (crc ^ uint32(buf8[end4 + u])) & uint32(0xFF)] ^ (crc >> uint32(8)))
            else:
                shift += m * CRC_BLOCK + tail
            crc = shift_in_warp(operators, shift, crc, lane, scratch)
            span = pieces[t, S_SPAN]
            if m == 0 and span >= 0:
                crc ^= shift_in_warp(operators, span, uint32(0xFFFFFFFF), lane, scratch) ^ uint32(0xFFFFFFFF)
            if tid == 0:
                cuda.atomic.xor(crcs, pieces[t, S_TENSOR], crc)
        # No barrier here: block_crc's reads of ``words`` and ``parts`` all came before its own barrier,
        # and the next block's writes come after the barrier that warp 0 reaches only when done here.


def crc_operators() -> np.ndarray:
    """``uint32[48, 32]``: row ``k`` appends ``2**k`` zero bytes to a CRC-32 register (zlib's polynomial).

    Column ``j`` is the image of bit ``j`` (:func:`rans.checksum.shift`), as in zlib's ``crc32_combine``.
    """
    return np.array([[checksum.shift(1 << j, 1 << k) for j in range(32)] for k in range(SHIFT_OPERATORS)], dtype=np.uint32)


def crc_table() -> np.ndarray:
    """``uint32[4, 256]``: the slicing-by-4 tables of zlib's CRC-32 (:func:`rans.checksum.shift`).

    Row ``k`` at ``i`` is a register holding ``i`` after ``k + 1`` zero bytes.

    Examples
    --------
    >>> import zlib
    >>> int(crc_table()[0, ord("a")]) == zlib.crc32(b"a", 0xFFFFFFFF) ^ 0xFFFFFFFF
    True
    """
    return np.array([[checksum.shift(i, k + 1) for i in range(256)] for k in range(4)], dtype=np.uint32)


def shift_table() -> np.ndarray:
    """``uint32[32, SHIFT_COLUMNS]``: the operators that place a segment's or a warp's CRC in its block.

    Column ``c < 32`` appends the ``31 - c`` segments of 64 bytes that
    follow lane ``c``'s segment in its warp; column ``32 + k`` appends the
    bytes of the ``CRC_WARPS - 1 - k`` warps after warp ``k``. Row ``j`` is
    the image of bit ``j`` of a zero-initialized CRC register.

    Examples
    --------
    >>> import zlib
    >>> t = shift_table()
    >>> register = 1 << 5  # a register with bit 5 set, then 30 segments of zero bytes
    >>> int(t[5, 1]) == zlib.crc32(bytes(30 * 64), register ^ 0xFFFFFFFF) ^ 0xFFFFFFFF
    True
    """
    segment = CRC_SEGMENT_WORDS * 4
    distances = [(31 - c) * segment for c in range(32)] + [(CRC_WARPS - 1 - k) * 32 * segment for k in range(CRC_WARPS)]
    return np.array([[checksum.shift(1 << j, d) for d in distances] for j in range(32)], dtype=np.uint32)


_DEVICE: dict[str, Any] = {}


def constants() -> tuple[Any, Any, Any]:
    """The slicing table, the zero-append operators and the block's shift operators, on the device, made once."""
    if not _DEVICE:
        _DEVICE["table"] = cuda.to_device(crc_table())
        _DEVICE["operators"] = cuda.to_device(crc_operators())
        _DEVICE["shifts"] = cuda.to_device(shift_table())
    return _DEVICE["table"], _DEVICE["operators"], _DEVICE["shifts"]


def describe(pieces: Iterable[tuple[int, int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors for :func:`crc_blocks` of pieces ``(start, end, after, tensor, span)``, and each block's piece.

    ``start`` is a multiple of 4, ``after`` the bytes of the tensor's span
    that follow the piece, ``span`` the span's length for the piece that ends
    it (which adds the CRC's conditioning, so it may be empty), else -1. The
    descriptors hold one row of zeros when there are no pieces.

    Examples
    --------
    >>> pieces, blocks = describe([(0, 10, 0, 0, 10), (16, 40, 0, 2, 24)])
    >>> pieces[:, S_TAIL].tolist(), pieces[:, S_FIRST_BLOCK].tolist(), blocks.tolist()
    ([2, 0], [0, 1], [0, 1])
    """
    rows, blocks, first = [], [], 0
    for start, end, after, tensor, span in pieces:
        end4 = end & ~3
        rows.append([start, end4, end - end4, first, after, tensor, span])
        blocks.append(max(1, -(-(end4 - start) // CRC_BLOCK)))
        first += blocks[-1]
    return np.array(rows or [[0] * 7], np.int64).reshape(-1, 7), np.repeat(np.arange(len(blocks)), blocks)


def span_pieces(spans: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`describe` for checksumming each whole span ``[start, end)`` (starts multiples of 4).

    The tensor column of a span's descriptor is the span's index; empty spans get none (their CRC is 0).

    Examples
    --------
    >>> pieces, blocks = span_pieces([(0, 10), (12, 12), (16, 40)])
    >>> pieces[:, S_TENSOR].tolist(), pieces[:, S_TAIL].tolist(), blocks.tolist()
    ([0, 2], [2, 0], [0, 1])
    """
    return describe((start, end, 0, i, end - start) for i, (start, end) in enumerate(spans) if end > start)


def checksums(buf8: Any, spans: Sequence[tuple[int, int]], stream: Any) -> np.ndarray:
    """The zlib CRC-32 of each span ``[start, end)`` of the device bytes ``buf8`` (starts multiples of 4).

    ``buf8`` must hold at least 4 bytes past the rounded-down end of every
    span's last whole word. Waits for ``stream``.

    Examples
    --------
    >>> import zlib, numpy as np
    >>> from numba import cuda
    >>> data = np.arange(5000, dtype=np.uint32).view(np.uint8)
    >>> got = checksums(cuda.to_device(data), [(0, 7), (8, 8), (12, 3001)], cuda.default_stream())
    >>> got.tolist() == [zlib.crc32(data[:7]), 0, zlib.crc32(data[12:3001])]
    True
    """
    pieces, block_piece = span_pieces(spans)
    crcs = cuda.to_device(np.zeros(max(len(spans), 1), np.uint32), stream=stream)
    if block_piece.size:
        buf32 = buf8[: buf8.size & ~3].view(np.uint32)
        crc_blocks[min(block_piece.size, GRID_MAX), CRC_THREADS, stream](
            buf8, buf32, cuda.to_device(pieces, stream=stream), cuda.to_device(block_piece, stream=stream), *constants(), crcs
        )
    host = crcs.copy_to_host(stream=stream)
    stream.synchronize()
    return host[: len(spans)]
