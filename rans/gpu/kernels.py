"""Numba CUDA kernels: interleaved rANS decode with the plane join fused in.

One warp decodes one chunk, its lanes in lockstep as ``docs/FORMAT.md``
(4.2) says (a plane of ``W < 32`` lanes leaves the warp's other lanes
idle); the lanes that need a word take them in lane order through a
ballot and a population count. A block of :data:`WARPS_PER_BLOCK` warps
decodes up to that many chunks of one plane, with the plane's decode table
in shared memory. Blocks stride over a list of such groups, so one launch
decodes every plane of every tensor of a batch.

The join is fused: a lane holds 4 consecutive symbols of its chunk, fetches
the same 4 bytes of each other plane of the tensor (raw, from the file
buffer, or constant) and writes 4 finished elements (8 under split
"nibbles", whose symbols hold two). Each kind of join has
a loop of its own (:func:`_steps`, inlined with the kind as a constant),
indexed in 32 bits from per-chunk views (:func:`warp.tail`), and a warp
prefetches its words :data:`AHEAD_WORDS` ahead: 75 instructions per warp
sub-step became 31 on bf16 (``bench/NOTES.md``, entry 7). The state
arithmetic is 32-bit unsigned: Numba widens ``uint32`` products to 64 bits
unless every assignment is cast back, which doubled the hot loop's cost
(entry 1).

Integrity: every lane's state must start at or above ``L`` and end at
``L``, and the warp must consume exactly its chunk's words; word reads are
bounded to the chunk. A failing chunk increments ``status[0]`` and lowers
``status[1]`` to its index in ``chunks``.
"""

from __future__ import annotations

from numba import cuda, uint8, uint32

from ..constants import LANES, M, PROB_BITS, RUN, STATE_LOW, WORD_BITS
from .warp import SIMULATED, VOTE_BYTES, WARPS_PER_BLOCK, ballot, permute, prefetch, tail

# Columns of the plane descriptors (int64).
P_TABLE, P_KIND, P_OUT, P_SRC1, P_SRC2, P_SRC3, P_SHIFT, P_LANES = range(8)
# Columns of the chunk descriptors (int64).
C_WORDS, C_END, C_STATES, C_BASE, C_LEN = range(5)
CHUNK_COLUMNS = 5

KIND_BYTES = 0
"""The plane is the output: symbol ``k`` goes to byte ``out + k``."""
KIND_BF16 = 1
"""BF16 split "float": the coded plane is the exponent, SRC1 the sign and mantissa."""
KIND_F32 = 2
"""F32 split "float": the coded plane is the exponent, SRC1..SRC3 planes 1..3."""
KIND_BYTES2 = 3
"""2-byte split "bytes": the coded plane is byte SHIFT, SRC1 the other byte."""
KIND_BYTES4 = 4
"""4-byte split "bytes": the coded plane is byte SHIFT, SRC1..SRC3 the others in byte order."""
KIND_NIBBLES = 5
"""U8 or I8 split "nibbles": the coded plane holds two elements' high nibbles a symbol, SRC1 their low ones."""
KIND_NIBBLES8 = 6
"""F8_E4M3 or F8_E5M2 split "nibbles": as :data:`KIND_NIBBLES`, the nibbles being the 4 bits under the sign and the sign over the 3 lowest."""

_MASK = uint32(M - 1)
_LOW = uint32(STATE_LOW)


@cuda.jit(device=True, inline=True)
def _source4(buf32, src, k0):
    """Bytes ``k0 .. k0+3`` of a plane: raw at byte offset ``src >= 0``, else the constant ``-src - 1``."""
    if src < 0:
        return uint32(-src - 1) * uint32(0x01010101)
    return buf32[(src + k0) >> 2]


@cuda.jit(device=True, inline=True)
def _byte(word, u):
    return (word >> uint32(8 * u)) & uint32(0xFF)


@cuda.jit(device=True, inline=True)
def _spread(v):
    """Nibbles 0, 1, 4, 5 of ``v`` (bytes 0 and 2 of nibble pairs) as the low nibbles of bytes 0 to 3."""
    return (v | (v << uint32(4))) & uint32(0x0F0F0F0F)


@cuda.jit(device=True, inline=True)
def _nibbles(kind, h, low):
    """Bytes of elements from their high and low nibble pairs ``h`` and ``low`` (bytes 0 and 2 of each)."""
    h = _spread(h)
    low = _spread(low)
    if kind == KIND_NIBBLES:
        return (h << uint32(4)) | low
    return ((low & uint32(0x08080808)) << uint32(4)) | (h << uint32(3)) | (low & uint32(0x07070707))


@cuda.jit(device=True, inline=True)
def _assemble(kind, s, a, b, c, shift):
    """One element's bits from its coded symbol ``s`` and the other planes' bytes ``a, b, c``.

    Under split "nibbles" a symbol and its byte ``a`` are two elements, 16 bits.
    """
    if kind == KIND_NIBBLES or kind == KIND_NIBBLES8:
        return _nibbles(kind, s, a)
    if kind == KIND_BF16:
        return ((a & uint32(0x80)) << uint32(8)) | (s << uint32(7)) | (a & uint32(0x7F))
    if kind == KIND_F32:
        return (
            ((a & uint32(0x80)) << uint32(24))
            | (s << uint32(23))
            | ((a & uint32(0x7F)) << uint32(16))
            | (b << uint32(8))
            | c
        )
    if kind == KIND_BYTES2:
        return (s << uint32(8)) | a if shift == 1 else s | (a << uint32(8))
    if shift == 0:
        return s | (a << uint32(8)) | (b << uint32(16)) | (c << uint32(24))
    if shift == 1:
        return a | (s << uint32(8)) | (b << uint32(16)) | (c << uint32(24))
    if shift == 2:
        return a | (b << uint32(8)) | (s << uint32(16)) | (c << uint32(24))
    return a | (b << uint32(8)) | (c << uint32(16)) | (s << uint32(24))


@cuda.jit(device=True, inline=True)
def _symbol(table, words, x, active, consumed, count, below, votes, lane):
    """One sub-step of one lane: decode a symbol, renormalize; return (state, symbol, words consumed).

    The table entry of a slot is ``slot - cum | symbol << 12 | (freq - 1) << 20``.
    Word reads are clamped to the chunk (index ``count`` is padding or the
    next chunk's first word); a chunk that would read past its words ends
    with ``consumed > count`` and fails its check.
    """
    entry = table[x & _MASK]
    if active:
        q = x >> uint32(PROB_BITS)
        x = uint32((entry >> uint32(20)) * q + q + (entry & _MASK))
    need = active and x < _LOW
    bits = ballot(need, votes, lane)
    if need:
        i = uint32(consumed + uint32(cuda.popc(bits & below)))
        x = uint32((x << uint32(WORD_BITS)) | uint32(words[min(i, count)]))
    consumed = uint32(consumed + uint32(cuda.popc(bits)))
    return x, (entry >> uint32(12)) & uint32(0xFF), consumed


@cuda.jit(device=True, inline=True)
def _write(kind, packed, a4, b4, c4, shift, out, k, k0, length, out8, out16, out32):
    """Store the (up to) 4 elements that start at symbol ``k0`` of the chunk, ``k`` of the plane.

    ``a4``, ``b4`` and ``c4`` are the same 4 bytes of the tensor's other planes.
    """
    full = k0 + RUN <= length
    if kind == KIND_BYTES:
        if full:
            out32[(out + k) >> 2] = packed
        else:
            for u in range(RUN):
                if k0 + u < length:
                    out8[out + k + u] = uint8(_byte(packed, u))
        return
    if kind == KIND_F32 or kind == KIND_BYTES4:
        for u in range(RUN):
            if k0 + u < length:
                out32[(out >> 2) + k + u] = _assemble(kind, _byte(packed, u), _byte(a4, u), _byte(b4, u), _byte(c4, u), shift)
        return
    zero = uint32(0)
    v0 = _assemble(kind, _byte(packed, 0), _byte(a4, 0), zero, zero, shift)
    v1 = _assemble(kind, _byte(packed, 1), _byte(a4, 1), zero, zero, shift)
    v2 = _assemble(kind, _byte(packed, 2), _byte(a4, 2), zero, zero, shift)
    v3 = _assemble(kind, _byte(packed, 3), _byte(a4, 3), zero, zero, shift)
    if full:
        at = ((out >> 1) + k) >> 1
        out32[at] = v0 | (v1 << uint32(16))
        out32[at + 1] = v2 | (v3 << uint32(16))
    else:
        at = (out >> 1) + k
        out16[at] = v0
        if k0 + 1 < length:
            out16[at + 1] = v1
        if k0 + 2 < length:
            out16[at + 2] = v2


@cuda.jit(device=True, inline=True)
def _others(kind, buf32, src1, src2, src3, k):
    """The 4 bytes at symbol ``k`` of each other plane the kind joins (zero where it joins none)."""
    zero = uint32(0)
    if kind == KIND_BYTES:
        return zero, zero, zero
    if kind == KIND_F32 or kind == KIND_BYTES4:
        return _source4(buf32, src1, k), _source4(buf32, src2, k), _source4(buf32, src3, k)
    return _source4(buf32, src1, k), zero, zero


AHEAD_WORDS = 128
"""How far past its position in its chunk's words a warp prefetches, at the start of every step."""


@cuda.jit(device=True, inline=True)
def _pair(kind, shift, s, t, a):
    """Two 2-byte elements (or 4 elements of split "nibbles") in one word: symbols ``s``, ``t`` and their
    other-plane bytes as bytes 0 and 2 of ``a``."""
    if kind == KIND_NIBBLES or kind == KIND_NIBBLES8:
        return _nibbles(kind, s | (t << uint32(16)), a)
    if kind == KIND_BF16:
        return uint32(((a << uint32(8)) & uint32(0x80008000)) | (a & uint32(0x007F007F)) | (s << uint32(7)) | (t << uint32(23)))
    if shift == 1:
        return uint32((s << uint32(8)) | (t << uint32(24)) | a)
    return uint32(s | (t << uint32(16)) | (a << uint32(8)))


@cuda.jit(device=True, inline=True)
def _store(kind, shift, s0, s1, s2, s3, a4, b4, c4, o32, j):
    """Store the 4 elements (symbols ``s0 .. s3``) of group ``j`` of a chunk whose output starts at ``o32[0]``."""
    if kind == KIND_BYTES:
        o32[j] = s0 | (s1 << uint32(8)) | (s2 << uint32(16)) | (s3 << uint32(24))
        return
    if kind == KIND_F32 or kind == KIND_BYTES4:
        at = uint32(j << uint32(2))
        o32[at] = _assemble(kind, s0, _byte(a4, 0), _byte(b4, 0), _byte(c4, 0), shift)
        o32[at + uint32(1)] = _assemble(kind, s1, _byte(a4, 1), _byte(b4, 1), _byte(c4, 1), shift)
        o32[at + uint32(2)] = _assemble(kind, s2, _byte(a4, 2), _byte(b4, 2), _byte(c4, 2), shift)
        o32[at + uint32(3)] = _assemble(kind, s3, _byte(a4, 3), _byte(b4, 3), _byte(c4, 3), shift)
        return
    at = uint32(j << uint32(1))
    o32[at] = _pair(kind, shift, s0, s1, permute(a4, 0, 0x4140))
    o32[at + uint32(1)] = _pair(kind, shift, s2, s3, permute(a4, 0, 0x4342))


@cuda.jit(device=True, **({} if SIMULATED else {"forceinline": True}))
def _steps(kind, shift, table, words, count, x, mine, lane, lanes, steps, below, votes, o32, r1, r2, r3, c1, c2, c3):
    """The first ``steps`` full steps of a chunk (4 symbols a lane each): return (state, words consumed).

    Inlined where ``kind`` and ``shift`` are constants, so each kind gets a
    loop of its own, free of the dispatch. ``o32`` starts at the chunk's first
    output element, ``r1 .. r3`` at its first byte of each other plane (raw
    planes; ``c1 .. c3``, which replace them when not negative, are the
    constant planes' 4 bytes). Indices are 32-bit and unsigned: Numba checks
    signed ones for wraparound.
    """
    consumed = uint32(0)
    zero = uint32(0)
    j = uint32(lane)
    end = uint32(steps * lanes + lane)
    while j < end:
        prefetch(words, min(uint32(consumed + uint32(AHEAD_WORDS)), count))
        a4 = zero
        b4 = zero
        c4 = zero
        if kind != KIND_BYTES and mine:
            a4 = r1[j] if c1 < 0 else uint32(c1)
            if kind == KIND_F32 or kind == KIND_BYTES4:
                b4 = r2[j] if c2 < 0 else uint32(c2)
                c4 = r3[j] if c3 < 0 else uint32(c3)
        x, s0, consumed = _symbol(table, words, x, mine, consumed, count, below, votes, lane)
        x, s1, consumed = _symbol(table, words, x, mine, consumed, count, below, votes, lane)
        x, s2, consumed = _symbol(table, words, x, mine, consumed, count, below, votes, lane)
        x, s3, consumed = _symbol(table, words, x, mine, consumed, count, below, votes, lane)
        if mine:
            _store(kind, shift, s0, s1, s2, s3, a4, b4, c4, o32, j)
        j = uint32(j + lanes)
    return x, consumed


@cuda.jit(device=True, inline=True)
def _plane4(buf32, src, base):
    """The other plane at byte offset ``src`` from symbol ``base`` on, as (4-byte view, constant or -1)."""
    if src >= 0:
        return tail(buf32, (src + base) >> 2), -1
    return tail(buf32, 0), (-src - 1) * 0x01010101


MAX_REGISTERS = 32
"""Register cap of :func:`decode`: 8 blocks (64 warps) per SM, so 1 GiB of bf16 (16,384 chunks)
decodes in 2 rounds of resident chunks instead of 4 at 48 registers (``bench/NOTES.md``, entry 7:
+18% on bf16, +24% on int8, +32% on fp16, -8% on fp32, whose loop spills a little; H100). The
simulator takes no such option. Kernels are cached on disk (``cache=True``): the first process
compiles them, later ones load the cubin."""


@cuda.jit(cache=True, **({} if SIMULATED else {"max_registers": MAX_REGISTERS}))
def decode(buf16, buf32, tables, planes, chunks, groups, out8, out16, out32, status):
    """Decode every chunk listed in ``groups`` (plane, first chunk, chunk count) into ``out``."""
    table = cuda.shared.array(M, uint32)
    scratch = cuda.shared.array((WARPS_PER_BLOCK, VOTE_BYTES), uint8)
    tid = cuda.threadIdx.x
    warp = tid // LANES
    lane = tid % LANES
    votes = scratch[warp]
    votes[64 + lane] = 0
    below = uint32((uint32(1) << uint32(lane)) - uint32(1))
    for g in range(cuda.blockIdx.x, groups.shape[0], cuda.gridDim.x):
        plane = groups[g, 0]
        for i in range(tid, M, cuda.blockDim.x):
            table[i] = tables[planes[plane, P_TABLE], i]
        cuda.syncthreads()
        if warp < groups[g, 2]:
            c = groups[g, 1] + warp
            kind = planes[plane, P_KIND]
            out = planes[plane, P_OUT]
            src1 = planes[plane, P_SRC1]
            src2 = planes[plane, P_SRC2]
            src3 = planes[plane, P_SRC3]
            shift = planes[plane, P_SHIFT]
            lanes = planes[plane, P_LANES]
            first = chunks[c, C_WORDS]
            count = uint32(chunks[c, C_END] - first)
            words = tail(buf16, first)
            base = chunks[c, C_BASE]
            length = chunks[c, C_LEN]
            mine = lane < lanes
            x = _LOW
            if mine:
                x = uint32(buf32[chunks[c, C_STATES] + lane])
            ok = x >= _LOW
            span = lanes * RUN
            full_steps = uint32(length // span)
            if kind == KIND_BYTES:
                o32 = tail(out32, (out + base) >> 2)
            elif kind == KIND_F32 or kind == KIND_BYTES4:
                o32 = tail(out32, (out >> 2) + base)
            else:
                o32 = tail(out32, ((out >> 1) + base) >> 1)
            r1, c1 = _plane4(buf32, src1, base)
            r2, c2 = _plane4(buf32, src2, base)
            r3, c3 = _plane4(buf32, src3, base)
            args = (table, words, count, x, mine, uint32(lane), uint32(lanes), full_steps, below, votes, o32, r1, r2, r3, c1, c2, c3)
            if kind == KIND_BF16:
                x, consumed = _steps(KIND_BF16, 0, *args)
            elif kind == KIND_BYTES:
                x, consumed = _steps(KIND_BYTES, 0, *args)
            elif kind == KIND_F32:
                x, consumed = _steps(KIND_F32, 0, *args)
            elif kind == KIND_BYTES2 and shift == 1:
                x, consumed = _steps(KIND_BYTES2, 1, *args)
            elif kind == KIND_BYTES2:
                x, consumed = _steps(KIND_BYTES2, 0, *args)
            elif kind == KIND_NIBBLES:
                x, consumed = _steps(KIND_NIBBLES, 0, *args)
            elif kind == KIND_NIBBLES8:
                x, consumed = _steps(KIND_NIBBLES8, 0, *args)
            else:
                x, consumed = _steps(KIND_BYTES4, shift, *args)
            if full_steps * span < length:
                k0 = (full_steps * lanes + lane) * RUN if mine else length
                a4, b4, c4 = _others(kind, buf32, src1, src2, src3, base + min(k0, length - 1) // RUN * RUN)
                x, s0, consumed = _symbol(table, words, x, mine and k0 < length, consumed, count, below, votes, lane)
                x, s1, consumed = _symbol(table, words, x, mine and k0 + 1 < length, consumed, count, below, votes, lane)
                x, s2, consumed = _symbol(table, words, x, mine and k0 + 2 < length, consumed, count, below, votes, lane)
                x, s3, consumed = _symbol(table, words, x, mine and k0 + 3 < length, consumed, count, below, votes, lane)
                if mine and k0 < length:
                    packed = s0 | (s1 << uint32(8)) | (s2 << uint32(16)) | (s3 << uint32(24))
                    _write(kind, packed, a4, b4, c4, shift, out, base + k0, k0, length, out8, out16, out32)
            ok = ok and x == _LOW and consumed == count
            failed = ballot(not ok, votes, lane)
            if lane == 0 and failed != 0:
                cuda.atomic.add(status, 0, 1)
                cuda.atomic.min(status, 1, c)
        cuda.syncthreads()


SCRATCH = 1 << 40
"""Join sources below ``-SCRATCH`` point into the scratch buffer (see :func:`join`)."""


@cuda.jit(device=True, inline=True)
def _plane_byte(buf8, scratch8, src, i):
    if src >= 0:
        return uint32(buf8[src + i])
    if src < -SCRATCH:
        return uint32(scratch8[-src - SCRATCH - 1 + i])
    return uint32(-src - 1)


@cuda.jit(cache=True)
def join(buf8, scratch8, sources, out8, count, itemsize, kind, out):
    """Assemble ``count`` elements from byte planes, for tensors the fused path does not cover.

    ``sources[j]`` locates plane ``j``: ``>= 0`` a byte offset in ``buf8``,
    ``< -SCRATCH`` the offset ``-src - SCRATCH - 1`` in ``scratch8``, and
    otherwise the constant ``-src - 1``. ``kind`` is :data:`KIND_BYTES` for
    split "bytes", :data:`KIND_BF16` or :data:`KIND_F32` for "float", and
    :data:`KIND_NIBBLES` or :data:`KIND_NIBBLES8` for "nibbles".
    """
    for i in range(cuda.grid(1), count, cuda.gridsize(1)):
        at = out + i * itemsize
        if kind == KIND_NIBBLES or kind == KIND_NIBBLES8:
            nibble = uint32(4 * (i & 1))
            h = (_plane_byte(buf8, scratch8, sources[0], i >> 1) >> nibble) & uint32(0xF)
            low = (_plane_byte(buf8, scratch8, sources[1], i >> 1) >> nibble) & uint32(0xF)
            out8[at] = uint8(_nibbles(kind, h, low) & uint32(0xFF))
        elif kind == KIND_BYTES:
            for j in range(itemsize):
                out8[at + j] = uint8(_plane_byte(buf8, scratch8, sources[j], i))
        else:
            s = _plane_byte(buf8, scratch8, sources[0], i)
            a = _plane_byte(buf8, scratch8, sources[1], i)
            b = uint32(0)
            c = uint32(0)
            if kind == KIND_F32:
                b = _plane_byte(buf8, scratch8, sources[2], i)
                c = _plane_byte(buf8, scratch8, sources[3], i)
            value = _assemble(kind, s, a, b, c, 0)
            for j in range(itemsize):
                out8[at + j] = uint8((value >> uint32(8 * j)) & uint32(0xFF))


@cuda.jit(cache=True)
def fill(out8, at, count, value):
    """Set ``count`` bytes of ``out8`` from ``at`` to ``value``."""
    for i in range(cuda.grid(1), count, cuda.gridsize(1)):
        out8[at + i] = uint8(value)
