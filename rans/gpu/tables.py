"""Frequency tables on the GPU: each plane's mode and table, and the encoder's lookup table.

:func:`plan` decides for every plane what :func:`rans.codec.plan_counts`
decides on the host, from the histograms :func:`rans.gpu.encode_kernels.histogram`
leaves on the device: ``"raw"`` for an empty plane, ``"const"`` for one
symbol, else the table :func:`rans.reference.tables.quantize` gives (the
closest frequencies of :func:`rans.reference.tables.scale`, then the
cheapest of their roundings to 12 down to 1 significant bits, table bytes
counted as :func:`rans.reference.tables.serialized_size` counts them) and
``"coded"`` if :func:`rans.codec.estimate_coded` is below the plane's
length. A coded plane's table is also laid out for
:func:`rans.gpu.encode_kernels.encode` (:func:`encode_table`),
so that the encoder runs without the host between the histogram and the
code; the host reads the modes and tables back once, with the chunks' word
counts, and serializes the tables itself.

One block plans one plane: one of a tensor's planes in the dtype's
preferred split, or its bytes as one plane (split ``"none"``, planned
beside them; the encoder codes it only if they are all raw). Thread ``i``
of a block takes the symbols ``i, i + threads, ...`` and folds them into
one value per sum or extremum, which the block takes at once into a few
shared cells (:func:`_fold`). Integer
arithmetic throughout, in the reference's order of ties, so the tables are
the host's to the bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda, int32, int64, uint32

from ..constants import M, PROB_BITS
from ..reference import tables
from ..reference.coder import HEADER_BYTES
from .warp import FULL_MASK, SIMULATED

PLAN_THREADS = 32 if SIMULATED else 256
"""Threads of a :func:`plan` block (each takes ``256 / PLAN_THREADS`` symbols)."""

# Columns of a plane's row of :func:`plan`: the rows of the histograms whose sum are its counts (the first and
# how many), its length, the lanes writers give it, the chunk size, and its slot (its row of the outputs).
P_FIRST, P_ROWS, P_N, P_LANES, P_CHUNK, P_SLOT = range(6)
# Columns of a slot's row of ``info``: its mode, its lowest and highest symbol, its table's serialized bytes.
I_MODE, I_LOW, I_HIGH, I_TABLE = range(4)
INFO_COLUMNS = 4
RAW, CONST, CODED = 0, 1, 2
"""Modes of a slot."""
MODES = {RAW: "raw", CONST: "const", CODED: "coded"}

# Shared cells of a block.
_N, _PRESENT, _LOW, _HIGH, _SUM, _TOP, _OTHERS, _WIDEST, _BITS, _COST, _BEST, _BEST_COST, _BEST_BYTES, _D, _TOP_AT, _FIXED = range(16)
_CELLS = 16
_FRACTION = tables.COST_FRACTION_BITS


_PLUS, _LARGEST, _SMALLEST = range(3)
"""How :func:`_fold` combines."""


@cuda.jit(device=True, inline=True)
def _combine(a, b, op):
    if op == _PLUS:
        return a + b
    if op == _LARGEST:
        return max(a, b)
    return min(a, b)


@cuda.jit(device=True, inline=True)
def _atomic(cells, k, value, op):
    if op == _PLUS:
        cuda.atomic.add(cells, k, value)
    elif op == _LARGEST:
        cuda.atomic.max(cells, k, value)
    else:
        cuda.atomic.min(cells, k, value)


@cuda.jit(device=True, inline=True)
def _fold(cells, k, value, op):
    """Combine every thread's ``value`` into ``cells[k]`` by ``op`` (sum, largest or smallest); every thread
    of the block calls it.

    The warp combines first, then one lane takes the shared cell: 64-bit shared atomics are
    compare-and-swap loops (``ATOMS.CAST.SPIN.64``), which 256 threads on one address make take hundreds
    of microseconds (``bench/NOTES.md``, entry E9). The simulator, which has no warp shuffles, takes
    every thread's value to the cell.
    """
    if SIMULATED:
        _atomic(cells, k, value, op)
        return
    for delta in (16, 8, 4, 2, 1):
        value = _combine(value, cuda.shfl_xor_sync(FULL_MASK, value, delta), op)
    if cuda.laneid == 0:
        _atomic(cells, k, value, op)


@cuda.jit(device=True, inline=True)
def _bit_length(v):
    return int32(32 - cuda.clz(uint32(v)))


@cuda.jit(device=True, inline=True)
def _gamma_bits(v):
    return 2 * _bit_length(v) - 1


@cuda.jit(device=True, inline=True)
def _significant(f):
    """Bits from the leading one of ``f`` to its lowest one."""
    return _bit_length(f) - (cuda.ffs(uint32(f)) - 1)


@cuda.jit(device=True, inline=True)
def _scale(total, cnt, fx, rem, cells, tid, threads):
    """:func:`rans.reference.tables.scale` of ``cnt`` (``total`` symbols) into ``fx``."""
    mine = int64(0)
    for s in range(tid, 256, threads):
        c = cnt[s]
        f = c * M // total
        rem[s] = c * M - f * total if f > 0 else int64(-1)  # -1: not a candidate for +1 (remainders are >= 0)
        if c > 0 and f == 0:
            f = 1
        fx[s] = int32(f)
        mine += f
    _fold(cells, _SUM, mine, _PLUS)
    cuda.syncthreads()
    missing = M - cells[_SUM]
    if missing > 0:  # the largest remainders get one more, ties to the smaller symbol
        for s in range(tid, 256, threads):
            r = rem[s]
            if r >= 0:
                rank = 0
                for u in range(256):
                    q = rem[u]
                    if q > r or (q == r and u < s):
                        rank += 1
                if rank < missing:
                    fx[s] += 1
    elif missing < 0:
        # The reference takes 1 from the first largest frequency, -missing times: every frequency above
        # some level T + 1 comes down to it, then the first (by symbol) r of those at T + 1 to T.
        # T is the largest level whose excess D(T) = sum(max(0, f - T)) is at least -missing.
        need = -missing
        low, high, excess = 0, M, 0  # D(low) >= need > D(high) = excess
        while high - low > 1:
            middle = (low + high) // 2
            cuda.syncthreads()
            if tid == 0:
                cells[_D] = 0
            cuda.syncthreads()
            mine = int64(0)
            for s in range(tid, 256, threads):
                mine += max(fx[s] - middle, 0)
            _fold(cells, _D, mine, _PLUS)
            cuda.syncthreads()
            d = cells[_D]
            if d >= need:
                low = middle
            else:
                high, excess = middle, d
        r = need - excess
        for s in range(tid, 256, threads):
            rem[s] = fx[s]
        cuda.syncthreads()
        for s in range(tid, 256, threads):
            if rem[s] >= high:
                before = 0
                for u in range(s):
                    if rem[u] >= high:
                        before += 1
                fx[s] = int32(low if before < r else high)
    cuda.syncthreads()


@cuda.jit(device=True, inline=True)
def _choose(cnt, fx, sym, g, best, cost, cells, present, tid, threads):
    """:func:`rans.reference.tables.quantize`'s choice among the roundings of ``fx``, into ``best`` (by rank among the present symbols).

    Leaves the chosen table's coded bits (in units of ``2**-16``) and bytes in the cells.
    """
    top_at = cells[_TOP_AT]
    fixed = cells[_FIXED]
    precision = PROB_BITS
    while precision > 0:
        if tid == 0:
            cells[_OTHERS] = 0
            cells[_WIDEST] = 0
            cells[_BITS] = 0
            cells[_COST] = 0
        cuda.syncthreads()
        others = int64(0)
        widest = int64(0)
        for i in range(tid, present, threads):
            f = fx[sym[i]]
            if i != top_at:
                shift = _bit_length(f) - precision
                if shift > 0:
                    f = ((f >> (shift - 1)) + 1) >> 1 << shift
                others += f
                widest = max(widest, _significant(f))
            g[i] = f
        _fold(cells, _OTHERS, others, _PLUS)
        _fold(cells, _WIDEST, widest, _LARGEST)
        cuda.syncthreads()
        implied = M - cells[_OTHERS]
        widest = cells[_WIDEST]
        # The first candidate is the exact table, and every precision of at least its widest frequency's
        # significant bits gives it again, at the same cost: the next candidate that can differ is below.
        precision = widest - 1 if precision == PROB_BITS else precision - 1
        bad = 0
        bits = int64(0)
        coded = int64(0)
        for i in range(tid, present, threads):
            if i == top_at:
                f = implied
            else:
                f = g[i]
                if f > implied or (f == implied and i < top_at):
                    bad = 1
                e = _bit_length(f)
                j = i - 1 if i - 1 != top_at else i - 2  # the frequency stored before this one
                if j < 0:
                    bits += _gamma_bits(e)
                else:
                    change = e - _bit_length(g[j])
                    bits += _gamma_bits((2 * change if change >= 0 else -2 * change - 1) + 1)
                bits += min(e, widest) - 1
            coded += cnt[sym[i]] * cost[min(max(f, 1), M)]
        _fold(cells, _BITS, bits, _PLUS)
        _fold(cells, _COST, coded, _PLUS)
        if cuda.syncthreads_or(bad):
            continue
        size = (fixed + cells[_BITS] + 7) // 8
        total = ((8 * size) << _FRACTION) + cells[_COST]
        better = cells[_BEST] < 0 or total < cells[_BEST]
        cuda.syncthreads()
        if better:
            for i in range(tid, present, threads):
                best[i] = implied if i == top_at else g[i]
            if tid == 0:
                cells[_BEST] = total
                cells[_BEST_COST] = total - ((8 * size) << _FRACTION)
                cells[_BEST_BYTES] = size
    cuda.syncthreads()


@cuda.jit(device=True, inline=True)
def _plan_plane(counts, first, rows, n, lanes, chunk, slot, cost, info, freq, encode_tables, cnt, fx, sym, g, best, rem, cells):
    """Plan the plane whose counts are the sum of ``counts[first : first + rows]`` into row ``slot`` of the outputs."""
    tid = cuda.threadIdx.x
    threads = cuda.blockDim.x
    cuda.syncthreads()
    if tid == 0:
        for k in range(_CELLS):
            cells[k] = 0
        cells[_LOW] = 256
        cells[_HIGH] = -1
        cells[_TOP] = -1
        cells[_BEST] = -1
    cuda.syncthreads()
    total = int64(0)
    present = int64(0)
    low = int64(256)
    high = int64(-1)
    for s in range(tid, 256, threads):
        c = int64(0)
        for r in range(first, first + rows):
            c += int64(counts[r, s])
        cnt[s] = c
        freq[slot, s] = 0
        encode_tables[slot, s] = 0
        encode_tables[slot, 256 + s] = 0
        if c > 0:
            total += c
            present += 1
            low = min(low, s)
            high = max(high, s)
    _fold(cells, _N, total, _PLUS)
    _fold(cells, _PRESENT, present, _PLUS)
    _fold(cells, _LOW, low, _SMALLEST)
    _fold(cells, _HIGH, high, _LARGEST)
    cuda.syncthreads()
    present = cells[_PRESENT]
    mode = RAW
    if n > 0 and present == 1:
        mode = CONST
    elif n > 0:
        _scale(cells[_N], cnt, fx, rem, cells, tid, threads)
        key = int64(-1)
        for s in range(tid, 256, threads):
            if cnt[s] > 0:
                key = max(key, fx[s] * 256 + 255 - s)
        _fold(cells, _TOP, key, _LARGEST)
        cuda.syncthreads()
        if tid == 0:  # the present symbols in order, and the bits of the runs, which every rounding keeps
            top = 255 - cells[_TOP] % 256
            at = 0
            runs = 0
            bits = 0
            start = 0
            end = -1
            for s in range(256):
                if cnt[s] > 0:
                    if s == top:
                        cells[_TOP_AT] = at
                    sym[at] = s
                    at += 1
                    if s == 0 or cnt[s - 1] == 0:
                        start = s
                    if s == 255 or cnt[s + 1] == 0:
                        bits += _gamma_bits(start - end) + _gamma_bits(s + 1 - start)
                        end = s + 1
                        runs += 1
            cells[_FIXED] = bits + _gamma_bits(runs) + tables.PRECISION_BITS + _bit_length(present - 1)
        cuda.syncthreads()
        _choose(cnt, fx, sym, g, best, cost, cells, present, tid, threads)
        size = cells[_BEST_BYTES]
        k = (n + chunk - 1) // chunk
        words_at = (HEADER_BYTES + size + 3) // 4 * 4 + 4 * lanes * k + 4 * (k - 1)
        bits = cells[_BEST_COST] >> _FRACTION
        if words_at + (bits + 7) // 8 < n:
            mode = CODED
            if tid == 0:  # cumulative frequencies, kept in rem
                cum = 0
                for i in range(present):
                    rem[i] = cum
                    cum += best[i]
            cuda.syncthreads()
            for i in range(tid, present, threads):
                s = sym[i]
                f = int64(best[i])
                freq[slot, s] = f
                if f == 1:
                    rcp = int64(0xFFFFFFFF)
                    bias = rem[i] + M - 1
                    shift = 0
                else:
                    log = _bit_length(f - 1)  # ceil(log2(f))
                    rcp = (((1 << log) - f) << 32) // f + 1
                    bias = rem[i]
                    shift = log - 1
                encode_tables[slot, s] = uint32(rcp)
                encode_tables[slot, 256 + s] = uint32((M - f) | (bias << 12) | (shift << 25))
    if tid == 0:
        info[slot, I_MODE] = mode
        info[slot, I_LOW] = cells[_LOW]
        info[slot, I_HIGH] = cells[_HIGH]
        info[slot, I_TABLE] = cells[_BEST_BYTES]


@cuda.jit(cache=True)
def plan(counts, planes, cost, info, freq, encode_tables):
    """Plan every plane of ``planes`` (rows of ``P_*`` columns, one block each) from the histograms ``counts``.

    Examples
    --------
    >>> import numpy as np
    >>> from numba import cuda
    >>> from rans.gpu import tables
    >>> counts = np.zeros((1, 256), np.uint64); counts[0, :2] = (3000, 1000)
    >>> rows = np.array([[0, 1, 4000, 1, 32768, 0]], np.int64)  # 4000 symbols, 1 lane, slot 0
    >>> info, freq, enc = (cuda.to_device(np.zeros((1, w), t)) for w, t in ((4, np.int64), (256, np.int16), (512, np.uint32)))
    >>> tables.plan[1, tables.PLAN_THREADS](cuda.to_device(counts), cuda.to_device(rows), tables.cost_table(), info, freq, enc)
    >>> tables.MODES[int(info.copy_to_host()[0, tables.I_MODE])], freq.copy_to_host()[0, :2].tolist()
    ('coded', [3072, 1024])

    ``info[slot]`` gets each plane's mode, lowest and highest symbol and
    table bytes; ``freq[slot]`` the table of a coded plane,
    ``encode_tables[slot]`` its reciprocals and ``M - f | bias << 12 | shift << 25``
    words; ``cost`` is :data:`rans.reference.tables.COST`.
    """
    cnt = cuda.shared.array(256, int64)
    rem = cuda.shared.array(256, int64)
    fx = cuda.shared.array(256, int32)
    sym = cuda.shared.array(256, int32)
    g = cuda.shared.array(256, int32)
    best = cuda.shared.array(256, int32)
    cells = cuda.shared.array(_CELLS, int64)
    for p in range(cuda.blockIdx.x, planes.shape[0], cuda.gridDim.x):
        _plan_plane(
            counts, planes[p, P_FIRST], planes[p, P_ROWS], planes[p, P_N], planes[p, P_LANES], planes[p, P_CHUNK], planes[p, P_SLOT],
            cost, info, freq, encode_tables, cnt, fx, sym, g, best, rem, cells,
        )


def encode_table(freq: np.ndarray) -> np.ndarray:
    """``uint32[512]``: each symbol's reciprocal of its frequency, then ``M - freq | bias << 12 | shift << 25``.

    For ``freq >= 2`` with ``l = ceil(log2(freq))``: reciprocal
    ``floor(2**32 * (2**l - freq) / freq) + 1``, shift ``l - 1``, bias the
    cumulative frequency; ``x // freq`` is then exact for every 32-bit ``x``.
    For ``freq == 1`` the reciprocal ``2**32 - 1`` gives ``x - 1`` and the
    bias ``cum + M - 1`` makes up for it (ryg_rans's trick).

    Examples
    --------
    >>> import numpy as np
    >>> from rans.gpu.tables import encode_table
    >>> freq = np.zeros(256, np.int64); freq[:2] = (4095, 1)
    >>> t = encode_table(freq)
    >>> int(t[0]), int(t[256]) & 0xFFF, int(t[257]) >> 12 & 0x1FFF
    (1048833, 1, 8190)
    """
    freq = np.asarray(freq, dtype=np.int64)
    cum = tables.cumulative(freq)
    f = np.maximum(freq, 1)
    l = np.ceil(np.log2(f)).astype(np.int64)  # exact: f < 2**12
    rcp = np.where(f == 1, (1 << 32) - 1, ((1 << 32) * ((1 << l) - f)) // f + 1)
    shift = np.maximum(l - 1, 0)
    bias = np.where(f == 1, cum + M - 1, cum)
    info = (M - f) | (bias << 12) | (shift << 25)
    present = freq > 0
    return np.concatenate((np.where(present, rcp, 0), np.where(present, info, 0))).astype(np.uint32)


_DEVICE: dict[str, Any] = {}


def cost_table() -> Any:
    """:data:`rans.reference.tables.COST` on the device, copied once."""
    if not _DEVICE:
        _DEVICE["cost"] = cuda.to_device(np.ascontiguousarray(tables.COST))
    return _DEVICE["cost"]
