"""Frequency tables, compiled: the writer's choice (the same tables as
:func:`rans.reference.tables.quantize`, the same sizes as
:func:`rans.reference.tables.serialized_size`) and the bit stream written
and read (the same bytes as :func:`rans.reference.tables.serialize`, the same
tables accepted as by :func:`rans.reference.tables.parse`).

The reference tries every precision from 12 down to 1 bits with NumPy
calls on 256-entry arrays, about 1 ms a plane: on files of thousands of
small tensors that was most of the time ``save_file`` took. The loops here
do the same arithmetic on scalars. The reference's bit stream is a Python
integer handled a few bits at a time, about 0.2 ms a table each way: on the
same files, as long again as the choice.

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


_BIT_LENGTHS = np.array([v.bit_length() for v in range(M + 1)], dtype=np.int64)
_TRAILING_ZEROS = np.array([0] + [(v & -v).bit_length() - 1 for v in range(1, M + 1)], dtype=np.int64)
"""Bit lengths and trailing zero bits of 0 to ``M``: every frequency, count of symbols or of runs."""


@nb.njit(cache=True)
def _bit_length(value):
    if 0 <= value <= M:
        return _BIT_LENGTHS[value]
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
    if 0 <= value <= M:
        return _TRAILING_ZEROS[value]
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
def _run_bits(freq):
    """The bits of a table's run count and runs (its present symbols), and how many symbols are present."""
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
    return bits + _gamma_bits(runs), present


@nb.njit(cache=True)
def _frequency_bits(values, top):
    """The bits of the stored frequencies: ``values`` those of the present symbols in symbol order,
    ``top`` the index of the implied one (bit lengths as gamma codes of their changes, then the
    bits below each leading one up to the precision)."""
    widest = 0
    for i in range(values.size):
        if i != top:
            widest = max(widest, _bit_length(values[i]) - _trailing_zeros(values[i]))
    bits = 0
    last = -1
    for i in range(values.size):
        if i != top:
            e = _bit_length(values[i])
            if last < 0:
                bits += _gamma_bits(e)
            else:
                change = e - last
                bits += _gamma_bits((2 * change if change >= 0 else -2 * change - 1) + 1)
            bits += min(e, widest) - 1
            last = e
    return bits


@nb.njit(cache=True)
def _serialized_size(freq, precision_bits):
    """:func:`rans.reference.tables.serialized_size`."""
    bits, present = _run_bits(freq)
    if present > 1:
        top = _top(freq)
        values = np.empty(present, dtype=np.int64)
        rank = 0
        i = 0
        for s in range(freq.size):
            if freq[s] > 0:
                if s == top:
                    rank = i
                values[i] = freq[s]
                i += 1
        bits += precision_bits + _bit_length(present - 1) + _frequency_bits(values, rank)
    return (bits + 7) // 8


@nb.njit(cache=True)
def _choose(counts, exact, cost, precision_bits, prob_bits, fraction_bits):
    """The cheapest of ``exact`` rounded to each precision from ``prob_bits`` down to 1, as the reference
    picks it (the first of equal costs), on the present symbols only: rounding keeps every frequency
    above zero, so the runs, and the bits that describe them, are the same for every candidate.

    Element loops throughout: slice assignments and array comparisons bring in Numba's shape-mismatch
    error formatting, seconds of compiling on a cold cache.
    """
    m = 1 << prob_bits
    symbols = np.empty(exact.size, dtype=np.int64)
    k = 0
    for s in range(exact.size):
        if exact[s] > 0:
            symbols[k] = s
            k += 1
    best = exact.copy()
    if k < 2:
        return best
    run_bits, _ = _run_bits(exact)
    fixed_bits = run_bits + precision_bits + _bit_length(k - 1)
    top = 0
    for i in range(k):
        if exact[symbols[i]] > exact[symbols[top]]:
            top = i
    candidate = np.empty(k, dtype=np.int64)
    previous = np.full(k, -1, dtype=np.int64)
    best_cost = -1
    for precision in range(prob_bits, 0, -1):
        others = 0
        for i in range(k):
            f = exact[symbols[i]]
            shift = _bit_length(f) - precision
            if i != top and shift > 0:
                f = ((f >> (shift - 1)) + 1) >> 1 << shift
            candidate[i] = f
            if i != top:
                others += f
        candidate[top] = m - others
        valid = True
        same = True
        for i in range(k):
            if (i < top and candidate[i] >= candidate[top]) or (i > top and candidate[i] > candidate[top]):
                valid = False
            same = same and candidate[i] == previous[i]
        if not valid or same:  # the same candidate costs the same, and ties keep the earlier one
            continue
        for i in range(k):
            previous[i] = candidate[i]
        total = (8 * ((fixed_bits + _frequency_bits(candidate, top) + 7) // 8)) << fraction_bits
        for i in range(k):
            total += counts[symbols[i]] * cost[candidate[i]]
        if best_cost < 0 or total < best_cost:
            for i in range(k):
                best[symbols[i]] = candidate[i]
            best_cost = total
    return best


def serialized_size(freq: np.ndarray) -> int:
    """:func:`rans.reference.tables.serialized_size`: the bytes :func:`rans.reference.tables.serialize` writes."""
    return int(_serialized_size(np.asarray(freq, dtype=np.int64), tables.PRECISION_BITS))


@nb.njit(cache=True)
def _sort_by_remainder(symbols, k, remainder):
    """Shell sort of ``symbols[:k]`` by ``remainder`` (negated: largest first), then by symbol.

    Every pair of keys differs, so the order is the one the reference's stable sort gives
    (a library sort would compile for seconds on a machine's first call).
    """
    gap = 1
    while gap < k // 3:
        gap = 3 * gap + 1
    while gap > 0:
        for i in range(gap, k):
            s = symbols[i]
            j = i
            while j >= gap and (
                remainder[symbols[j - gap]] > remainder[s]
                or (remainder[symbols[j - gap]] == remainder[s] and symbols[j - gap] > s)
            ):
                symbols[j] = symbols[j - gap]
                j -= gap
            symbols[j] = s
        gap //= 3
    return symbols


@nb.njit(cache=True)
def _scale(counts, m):
    """:func:`rans.reference.tables.scale`."""
    total = 0
    for s in range(counts.size):
        total += counts[s]
    freq = np.empty(counts.size, dtype=np.int64)
    remainder = np.zeros(counts.size, dtype=np.int64)
    candidates = np.empty(counts.size, dtype=np.int64)
    k = 0
    missing = m
    for s in range(counts.size):
        c = counts[s]
        f = c * m // total
        if c > 0 and f == 0:
            f = 1
        elif c > 0:
            remainder[s] = -(c * m - f * total)
            candidates[k] = s
            k += 1
        freq[s] = f
        missing -= f
    if missing > 0:
        _sort_by_remainder(candidates, k, remainder)
        for i in range(min(missing, k)):
            freq[candidates[i]] += 1
    while missing < 0:
        largest = 0
        for s in range(freq.size):
            if freq[s] > freq[largest]:
                largest = s
        freq[largest] -= 1
        missing += 1
    return freq


@nb.njit(cache=True)
def _quantize(counts, cost, precision_bits, prob_bits, fraction_bits):
    return _choose(counts, _scale(counts, 1 << prob_bits), cost, precision_bits, prob_bits, fraction_bits)


def scale(counts: np.ndarray) -> np.ndarray:
    """:func:`rans.reference.tables.scale`: the same ``int64[256]`` frequencies, computed in compiled loops."""
    return _scale(np.asarray(counts, dtype=np.int64), M)


def quantize(counts: np.ndarray) -> np.ndarray:
    """:func:`rans.reference.tables.quantize`: the same ``int64[256]`` table, computed in compiled loops."""
    counts = np.asarray(counts, dtype=np.int64)
    return _quantize(counts, tables.COST, tables.PRECISION_BITS, PROB_BITS, tables.COST_FRACTION_BITS)


@nb.njit(cache=True)
def _put(out, at, value, width):
    """Write the ``width`` low bits of ``value`` at bit ``at[0]`` of the zeroed ``out``, least significant
    first, a byte's worth at a time (a bit at a time, a 75-symbol table took 5.7 us to write)."""
    bit = at[0]
    while width > 0:
        shift = bit & 7
        take = min(width, 8 - shift)
        out[bit >> 3] |= np.uint8((value & ((1 << take) - 1)) << shift)
        value >>= take
        width -= take
        bit += take
    at[0] = bit


@nb.njit(cache=True)
def _put_gamma(out, at, value):
    n = _bit_length(value)
    _put(out, at, 1 << (n - 1), n)
    _put(out, at, value - (1 << (n - 1)), n - 1)


@nb.njit(cache=True)
def _serialize(freq, precision_bits, out):
    """:func:`rans.reference.tables.serialize` into the zeroed ``out``; returns the bytes written."""
    at = np.zeros(1, dtype=np.int64)
    starts = np.empty(freq.size, dtype=np.int64)
    ends = np.empty(freq.size, dtype=np.int64)
    runs = 0
    s = 0
    while s < freq.size:
        if freq[s] == 0:
            s += 1
            continue
        starts[runs] = s
        while s < freq.size and freq[s] > 0:
            s += 1
        ends[runs] = s
        runs += 1
    _put_gamma(out, at, runs)
    previous_end = -1
    present = 0
    for r in range(runs):
        _put_gamma(out, at, starts[r] - previous_end)
        _put_gamma(out, at, ends[r] - starts[r])
        previous_end = ends[r]
        present += ends[r] - starts[r]
    if present > 1:
        top = _top(freq)
        precision = 0
        rank = 0
        for s in range(freq.size):
            if freq[s] > 0 and s != top:
                precision = max(precision, _bit_length(freq[s]) - _trailing_zeros(freq[s]))
            if freq[s] > 0 and s < top:
                rank += 1
        _put(out, at, precision - 1, precision_bits)
        _put(out, at, rank, _bit_length(present - 1))
        previous = -1
        for s in range(freq.size):
            if freq[s] > 0 and s != top:
                f = freq[s]
                e = _bit_length(f)
                if previous < 0:
                    _put_gamma(out, at, e)
                else:
                    change = e - previous
                    _put_gamma(out, at, (2 * change if change >= 0 else -2 * change - 1) + 1)
                previous = e
                kept = min(e, precision) - 1
                _put(out, at, (f >> (e - 1 - kept)) - (1 << kept), kept)
    return (at[0] + 7) // 8


@nb.njit(cache=True)
def _get(data, at, width):
    """The ``width`` bits at bit ``at[0]`` of ``data``, least significant first; -1 past its end."""
    if at[0] + width > 8 * data.size:
        return -1
    value = 0
    got = 0
    bit = at[0]
    while got < width:
        shift = bit & 7
        take = min(width - got, 8 - shift)
        value |= ((np.int64(data[bit >> 3]) >> shift) & ((1 << take) - 1)) << got
        got += take
        bit += take
    at[0] = bit
    return value


@nb.njit(cache=True)
def _get_gamma(data, at, most):
    """An Elias gamma code of at most ``most`` bits of value; -1 if it is longer or truncated."""
    zeros = 0
    while True:
        bit = _get(data, at, 1)
        if bit < 0:
            return -1
        if bit == 1:
            break
        zeros += 1
        if zeros >= most:
            return -1
    rest = _get(data, at, zeros)
    return -1 if rest < 0 else (1 << zeros) | rest


@nb.njit(cache=True)
def _parse(data, precision_bits, prob_bits, max_runs, freq):
    """:func:`rans.reference.tables.parse` into the zeroed ``freq``: the bytes read, or -1 for any table it rejects."""
    at = np.zeros(1, dtype=np.int64)
    runs = _get_gamma(data, at, 9)
    if runs < 0 or runs > max_runs:
        return -1
    symbols = np.empty(freq.size, dtype=np.int64)
    present = 0
    previous_end = -1
    for _ in range(runs):
        gap = _get_gamma(data, at, 9)
        length = _get_gamma(data, at, 9)
        if gap < 0 or length < 0:
            return -1
        start = previous_end + gap
        if start + length > freq.size:
            return -1
        for s in range(start, start + length):
            symbols[present] = s
            present += 1
        previous_end = start + length
    if present == 1:
        freq[symbols[0]] = 1 << prob_bits
    else:
        precision = _get(data, at, precision_bits) + 1
        top = _get(data, at, _bit_length(present - 1))
        if precision < 1 or precision > prob_bits or top < 0 or top >= present:
            return -1
        values = np.empty(present, dtype=np.int64)
        previous = -1
        total = 0
        widest = 0
        for i in range(present - 1):
            if previous < 0:
                e = _get_gamma(data, at, 4)
                if e < 0:
                    return -1
            else:
                zigzag = _get_gamma(data, at, 5) - 1
                if zigzag < 0:
                    return -1
                e = previous + (zigzag >> 1 if zigzag % 2 == 0 else -((zigzag + 1) >> 1))
            if e < 1 or e > prob_bits:
                return -1
            previous = e
            kept = min(e, precision) - 1
            low = _get(data, at, kept)
            if low < 0:
                return -1
            f = ((1 << kept) | low) << (e - 1 - kept)
            values[i + (i >= top)] = f
            total += f
            widest = max(widest, _bit_length(f) - _trailing_zeros(f))
        largest = (1 << prob_bits) - total
        if widest != precision or largest < 1:
            return -1
        values[top] = largest
        for i in range(present):
            if (i < top and values[i] >= largest) or (i > top and values[i] > largest):
                return -1
        for i in range(present):
            freq[symbols[i]] = values[i]
    used = (at[0] + 7) // 8
    if _get(data, at, 8 * used - at[0]) != 0:
        return -1
    return used


def serialize(freq: np.ndarray) -> bytes:
    """:func:`rans.reference.tables.serialize`: the same bytes, written by compiled loops."""
    out = np.zeros(tables.MAX_TABLE_BYTES, dtype=np.uint8)
    return out[: _serialize(np.asarray(freq, dtype=np.int64), tables.PRECISION_BITS, out)].tobytes()


def parse(buf: memoryview | bytes, field: str = "table") -> tuple[np.ndarray, int]:
    """:func:`rans.reference.tables.parse`: the same tables, read by compiled loops.

    A table the loops reject is read again by the reference, which raises
    the :class:`~rans.CorruptDataError` that says why.
    """
    data = np.frombuffer(memoryview(buf)[: tables.MAX_TABLE_BYTES], dtype=np.uint8)
    freq = np.zeros(tables.ALPHABET, dtype=np.int64)
    used = _parse(data, tables.PRECISION_BITS, PROB_BITS, tables.MAX_RUNS, freq)
    if used < 0:
        return tables.parse(buf, field)
    return freq, int(used)
