"""The writer's table choice, compiled: the same tables as :func:`rans.reference.tables.quantize`,
and the same sizes as :func:`rans.reference.tables.serialized_size`.

The reference tries every precision from 12 down to 1 bits with NumPy
calls on 256-entry arrays, about 1 ms a plane: on files of thousands of
small tensors that was most of the time ``save_file`` took. The loops here
do the same arithmetic on scalars.

Examples
--------
>>> import numpy as np
>>> from rans.cpu import tables as fast
>>> from rans.reference import tables
>>> counts = np.bincount(np.random.default_rng(0).geometric(0.2, 3000), minlength=256)[:256]
>>> bool((fast.quantize(counts) == tables.quantize(counts)).all())
True
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..constants import M, PROB_BITS
from ..reference import tables


@nb.njit(cache=True)
def _bit_length(value):
    n = 0
    while value:
        n += 1
        value >>= 1
    return n


@nb.njit(cache=True)
def _gamma_bits(value):
    return 2 * _bit_length(value) - 1


@nb.njit(cache=True)
def _trailing_zeros(value):
    n = 0
    while value and not value & 1:
        n += 1
        value >>= 1
    return n


@nb.njit(cache=True)
def _top(freq):
    """The first symbol of the largest frequency."""
    top = -1
    for s in range(freq.size):
        if freq[s] > 0 and (top < 0 or freq[s] > freq[top]):
            top = s
    return top


@nb.njit(cache=True)
def _serialized_size(freq, precision_bits):
    """:func:`rans.reference.tables.serialized_size`."""
    runs = 0
    bits = 0
    present = 0
    previous_end = -1
    s = 0
    while s < freq.size:
        if freq[s] == 0:
            s += 1
            continue
        start = s
        while s < freq.size and freq[s] > 0:
            s += 1
        bits += _gamma_bits(start - previous_end) + _gamma_bits(s - start)
        previous_end = s
        runs += 1
        present += s - start
    bits += _gamma_bits(runs)
    if present > 1:
        top = _top(freq)
        precision = 0
        for s in range(freq.size):
            if freq[s] > 0 and s != top:
                precision = max(precision, _bit_length(freq[s]) - _trailing_zeros(freq[s]))
        previous = -1
        for s in range(freq.size):
            if freq[s] > 0 and s != top:
                e = _bit_length(freq[s])
                if previous < 0:
                    bits += _gamma_bits(e)
                else:
                    change = e - previous
                    bits += _gamma_bits((2 * change if change >= 0 else -2 * change - 1) + 1)
                bits += min(e, precision) - 1
                previous = e
        bits += precision_bits + _bit_length(present - 1)
    return (bits + 7) // 8


@nb.njit(cache=True)
def _round_to_precision(freq, precision, out):
    """:func:`rans.reference.tables.round_to_precision` into ``out``; False where the reference gives None."""
    top = _top(freq)
    others = 0
    for s in range(freq.size):
        f = freq[s]
        shift = _bit_length(f) - precision
        if s != top and shift > 0 and f > 0:
            f = ((f >> (shift - 1)) + 1) >> 1 << shift
        out[s] = f
        if s != top:
            others += f
    out[top] = M - others
    for s in range(freq.size):
        if s < top and out[s] >= out[top]:
            return False
        if s > top and out[s] > out[top]:
            return False
    return True


@nb.njit(cache=True)
def _choose(counts, exact, cost, precision_bits, prob_bits, fraction_bits):
    best = exact.copy()
    best_cost = -1
    freq = np.empty_like(exact)
    for precision in range(prob_bits, 0, -1):
        if not _round_to_precision(exact, precision, freq):
            continue
        total = (8 * _serialized_size(freq, precision_bits)) << fraction_bits
        for s in range(freq.size):
            total += counts[s] * cost[freq[s]]
        if best_cost < 0 or total < best_cost:
            best[:] = freq
            best_cost = total
    return best


def serialized_size(freq: np.ndarray) -> int:
    """:func:`rans.reference.tables.serialized_size`: the bytes :func:`rans.reference.tables.serialize` writes."""
    return int(_serialized_size(np.asarray(freq, dtype=np.int64), tables.PRECISION_BITS))


def quantize(counts: np.ndarray) -> np.ndarray:
    """:func:`rans.reference.tables.quantize`: the same ``int64[256]`` table, computed in compiled loops."""
    counts = np.asarray(counts, dtype=np.int64)
    exact = tables.scale(counts)
    return _choose(counts, exact, tables.COST, tables.PRECISION_BITS, PROB_BITS, tables.COST_FRACTION_BITS)
