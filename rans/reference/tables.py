"""Frequency tables: quantization, serialization and the lookups the coder uses.

A table gives each of the 256 byte symbols an integer frequency; present
symbols have a frequency of at least 1 and all frequencies sum to ``M``
(4096). Every encoder must build the same table from the same counts, so
:func:`quantize` uses integers only and breaks ties by symbol value.

A table is stored as a bit stream (``docs/FORMAT.md``, section 3.2): the
present symbols as runs, then every frequency but the largest one, each as
its bit length (coded as the change from the previous one) and its leading
``P`` significant bits. The largest frequency is what the others leave of
``M``. A writer picks ``P`` per table, trading table bits against coded
bits (:func:`quantize`), so a small plane gets a coarse, short table.
"""

from __future__ import annotations

import numpy as np

from ..constants import M, PROB_BITS
from ..errors import CorruptDataError

ALPHABET = 256
MAX_RUNS = ALPHABET // 2
PRECISION_BITS = 4
"""Bits of the field that stores ``P - 1``."""

COST_FRACTION_BITS = 16
COST = np.zeros(M + 1, dtype=np.int64)
COST[1:] = np.round(np.log2(M / np.arange(1, M + 1)) * (1 << COST_FRACTION_BITS)).astype(np.int64)
"""``COST[f]``: bits a symbol of frequency ``f`` costs, in units of 2**-16 bit (round half to even)."""


def count(plane: np.ndarray) -> np.ndarray:
    """Occurrences of each byte value in ``plane``, as ``int64[256]``."""
    return np.bincount(plane, minlength=ALPHABET).astype(np.int64)


def scale(counts: np.ndarray) -> np.ndarray:
    """Scale symbol counts to frequencies that sum to ``M``, as closely as integers allow.

    1. ``f = floor(c * M / N)`` for each symbol of count ``c`` (``N`` the
       total); a present symbol whose ``f`` is 0 gets 1.
    2. If the sum is below ``M``, the symbols that were not raised to 1 get
       one more each, in order of the remainder ``c * M mod N``, largest
       first, ties to the smaller symbol value, until the sum is ``M``.
    3. If the sum is above ``M`` (many rare symbols were raised to 1), one is
       taken at a time from the largest frequency, ties to the smaller
       symbol value, until the sum is ``M``.

    Parameters
    ----------
    counts : numpy.ndarray
        ``int64[256]`` occurrences, at least one non-zero.

    Returns
    -------
    numpy.ndarray
        ``int64[256]`` frequencies summing to ``M``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    present = counts > 0
    scaled = counts * M // total
    raised = present & (scaled == 0)
    freq = np.where(raised, 1, scaled)
    missing = M - int(freq.sum())
    if missing > 0:
        remainder = counts * M - scaled * total
        candidates = np.flatnonzero(present & ~raised)
        # Largest remainder first; np.lexsort's last key is the primary one and the
        # sort is stable, so equal remainders stay in ascending symbol order.
        order = candidates[np.lexsort((candidates, -remainder[candidates]))]
        freq[order[:missing]] += 1
    while missing < 0:
        freq[int(np.argmax(freq))] -= 1
        missing += 1
    return freq


def round_to_precision(freq: np.ndarray, precision: int) -> np.ndarray | None:
    """``freq`` with every frequency but the largest rounded to ``precision`` significant bits.

    A frequency of bit length ``e > precision`` becomes the nearest multiple
    of ``2^(e - precision)``, halves rounded up; the largest frequency (the
    first, if several are equal) takes what the others leave of ``M``.
    Returns None if it would then not be the first largest any more.
    """
    out = np.array(freq, dtype=np.int64)
    present = np.flatnonzero(out)
    top = int(present[int(np.argmax(out[present]))])
    for s in present.tolist():
        f = int(out[s])
        shift = f.bit_length() - precision
        if s != top and shift > 0:
            out[s] = ((f >> (shift - 1)) + 1) >> 1 << shift
    others = np.delete(out, top)
    out[top] = M - int(others.sum())
    if out[top] <= int(out[:top].max(initial=0)) or out[top] < int(out[top + 1 :].max(initial=0)):
        return None
    return out


def quantize(counts: np.ndarray) -> np.ndarray:
    """The table a writer gives a plane of symbol counts ``counts``, deterministically.

    :func:`scale` gives the closest frequencies; then, for each precision
    ``P`` from 12 down to 1, :func:`round_to_precision` a coarser table, and
    the writer keeps the one of the fewest bits in all: 8 times its
    serialized bytes plus ``sum(counts[s] * COST[f[s]])`` (in 2**-16 bits),
    ties to the larger ``P``. Large planes keep their exact table; small
    ones get a coarse table that costs fewer bytes than it loses.

    Parameters
    ----------
    counts : numpy.ndarray
        ``int64[256]`` occurrences, at least one non-zero.

    Returns
    -------
    numpy.ndarray
        ``int64[256]`` frequencies summing to ``M``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    exact = scale(counts)
    best, best_cost = exact, None
    for precision in range(PROB_BITS, 0, -1):
        freq = round_to_precision(exact, precision)
        if freq is None:
            continue
        cost = (8 * serialized_size(freq) << COST_FRACTION_BITS) + int((counts * COST[freq]).sum())
        if best_cost is None or cost < best_cost:
            best, best_cost = freq, cost
    return best


def cumulative(freq: np.ndarray) -> np.ndarray:
    """``cum[s]``: the sum of the frequencies of the symbols below ``s``."""
    cum = np.zeros(ALPHABET, dtype=np.int64)
    np.cumsum(freq[:-1], out=cum[1:])
    return cum


def slot_symbols(freq: np.ndarray) -> np.ndarray:
    """``uint8[M]``: the symbol that owns each slot ``0 <= slot < M``."""
    return np.repeat(np.arange(ALPHABET, dtype=np.uint8), freq)


_BIT_LENGTH = np.array([i.bit_length() for i in range(2 * M)], dtype=np.int64)
_TRAILING_ZEROS = np.array([(i & -i).bit_length() - 1 if i else 0 for i in range(2 * M)], dtype=np.int64)


def _gamma_bits(values: np.ndarray) -> np.ndarray:
    return 2 * _BIT_LENGTH[values] - 1


def serialized_size(freq: np.ndarray) -> int:
    """``len(serialize(freq))``, computed without writing the table."""
    present = np.flatnonzero(freq)
    breaks = np.flatnonzero(np.diff(present) != 1) + 1
    starts = present[np.concatenate(([0], breaks))]
    ends = present[np.concatenate((breaks - 1, [len(present) - 1]))] + 1
    previous_ends = np.concatenate(([-1], ends[:-1]))
    bits = int(_gamma_bits(np.array([len(starts)])).sum() + _gamma_bits(starts - previous_ends).sum() + _gamma_bits(ends - starts).sum())
    if len(present) > 1:
        values = freq[present]
        others = np.delete(values, int(np.argmax(values)))
        e = _BIT_LENGTH[others]
        precision = int((e - _TRAILING_ZEROS[others]).max())
        change = np.diff(e)
        zigzag = np.where(change >= 0, 2 * change, -2 * change - 1)
        bits += PRECISION_BITS + _BIT_LENGTH[len(present) - 1] + int(_gamma_bits(e[:1]).sum())
        bits += int(_gamma_bits(zigzag + 1).sum() + (np.minimum(e, precision) - 1).sum())
    return -(-bits // 8)


def _significant_bits(f: int) -> int:
    """Bits from the leading one of ``f`` to its lowest one, inclusive."""
    return f.bit_length() - ((f & -f).bit_length() - 1)


class _BitWriter:
    """Bits, least significant first within each byte."""

    def __init__(self) -> None:
        self.value = 0
        self.length = 0

    def bits(self, value: int, width: int) -> None:
        """``width`` bits of ``value``, its least significant bit first."""
        self.value |= value << self.length
        self.length += width

    def gamma(self, value: int) -> None:
        """Elias gamma of ``value >= 1``: ``n - 1`` zeros, a one, the ``n - 1`` bits below the leading one."""
        n = value.bit_length()
        self.bits(1 << (n - 1), n)
        self.bits(value - (1 << (n - 1)), n - 1)

    def to_bytes(self) -> bytes:
        return self.value.to_bytes(-(-self.length // 8), "little")


def serialize(freq: np.ndarray) -> bytes:
    """Write a table in its compact form (``docs/FORMAT.md``, section 3.2).

    A bit stream, least significant bit of each byte first: the run count
    and the runs of consecutive present symbols (Elias gamma codes), then,
    if more than one symbol is present, ``P - 1`` in 4 bits (``P`` the most
    significant bits any frequency but the largest has), the position of
    the largest frequency among the present symbols, and every other
    frequency in ascending symbol order: its bit length ``e`` (the first
    one as a gamma code, the others as the gamma code of the zigzag of the
    change plus one) and the ``min(e, P) - 1`` bits below its leading one.
    Zero bits fill the last byte.
    """
    present = np.flatnonzero(freq)
    breaks = np.flatnonzero(np.diff(present) != 1) + 1
    starts = present[np.concatenate(([0], breaks))]
    ends = present[np.concatenate((breaks - 1, [len(present) - 1]))] + 1
    out = _BitWriter()
    out.gamma(len(starts))
    previous_end = -1
    for start, end in zip(starts.tolist(), ends.tolist()):
        out.gamma(start - previous_end)
        out.gamma(end - start)
        previous_end = end
    values = freq[present].tolist()
    if len(values) > 1:
        top = int(np.argmax(values))
        others = values[:top] + values[top + 1 :]
        precision = max(_significant_bits(f) for f in others)
        out.bits(precision - 1, PRECISION_BITS)
        out.bits(top, (len(values) - 1).bit_length())
        previous = None
        for f in others:
            e = f.bit_length()
            if previous is None:
                out.gamma(e)
            else:
                change = e - previous
                out.gamma((2 * change if change >= 0 else -2 * change - 1) + 1)
            previous = e
            kept = min(e, precision) - 1
            out.bits((f >> (e - 1 - kept)) - (1 << kept), kept)
    return out.to_bytes()


MAX_TABLE_BYTES = 2048
"""More than any table takes (its runs and frequencies fit in about 1.3 KB)."""


class _BitReader:
    def __init__(self, buf: memoryview, field: str) -> None:
        self.data = bytes(buf[:MAX_TABLE_BYTES])
        self.value = int.from_bytes(self.data, "little")
        self.size = 8 * len(self.data)
        self.position = 0
        self.field = field

    def bits(self, width: int) -> int:
        if self.position + width > self.size:
            raise CorruptDataError("frequency table is truncated", field=self.field)
        value = (self.value >> self.position) & ((1 << width) - 1)
        self.position += width
        return value

    def gamma(self, most: int) -> int:
        """An Elias gamma code of at most ``most`` bits of value."""
        zeros = 0
        while self.bits(1) == 0:
            zeros += 1
            if zeros >= most:
                raise CorruptDataError("frequency table holds a value out of range", field=self.field)
        return (1 << zeros) | self.bits(zeros)


def parse(buf: memoryview | bytes, field: str = "table") -> tuple[np.ndarray, int]:
    """Read a table written by :func:`serialize` from the start of ``buf``.

    Returns the ``int64[256]`` frequencies and the number of bytes read.
    Raises :class:`~rans.CorruptDataError` naming ``field`` if the table is
    truncated or not canonical: more than 128 runs, runs past symbol 255, a
    bit length above 12 or a precision above 12, a precision larger than
    the frequencies need, a largest frequency below 1 or not the first
    largest, non-zero fill bits.
    """
    reader = _BitReader(memoryview(buf), field)
    runs = reader.gamma(9)
    if runs > MAX_RUNS:
        raise CorruptDataError(f"frequency table has {runs} runs, not 1 to {MAX_RUNS}", field=field)
    symbols: list[int] = []
    previous_end = -1
    for _ in range(runs):
        start = previous_end + reader.gamma(9)
        length = reader.gamma(9)
        if start + length > ALPHABET:
            raise CorruptDataError("frequency table run passes symbol 255", field=field)
        symbols.extend(range(start, start + length))
        previous_end = start + length
    freq = np.zeros(ALPHABET, dtype=np.int64)
    if len(symbols) == 1:
        freq[symbols[0]] = M
    else:
        precision = reader.bits(PRECISION_BITS) + 1
        if precision > PROB_BITS:
            raise CorruptDataError(f"frequency table precision {precision} exceeds {PROB_BITS}", field=field)
        top = reader.bits((len(symbols) - 1).bit_length())
        if top >= len(symbols):
            raise CorruptDataError("frequency table's largest symbol is not a present one", field=field)
        values = []
        previous = None
        for _ in range(len(symbols) - 1):
            if previous is None:
                e = reader.gamma(4)
            else:
                zigzag = reader.gamma(5) - 1
                e = previous + (zigzag >> 1 if zigzag % 2 == 0 else -((zigzag + 1) >> 1))
            if not 1 <= e <= PROB_BITS:
                raise CorruptDataError(f"frequency table holds a frequency of {e} bits", field=field)
            previous = e
            kept = min(e, precision) - 1
            values.append(((1 << kept) | reader.bits(kept)) << (e - 1 - kept))
        largest = M - sum(values)
        if max(_significant_bits(f) for f in values) != precision:
            raise CorruptDataError("frequency table precision is not the least that holds its frequencies", field=field)
        values.insert(top, largest)
        if largest < 1 or largest <= max(values[:top], default=0) or largest < max(values[top + 1 :], default=0):
            raise CorruptDataError("frequency table's implied frequency is not the first largest", field=field)
        freq[symbols] = values
    used = -(-reader.position // 8)
    if reader.value >> reader.position & ((1 << (8 * used - reader.position)) - 1):
        raise CorruptDataError("frequency table fill bits are not zero", field=field)
    return freq, used
