"""Frequency tables: quantization, serialization and the lookups the coder uses.

A table gives each of the 256 byte symbols an integer frequency; present
symbols have a frequency of at least 1 and all frequencies sum to ``M``
(4096). Every encoder must build the same table from the same counts, so
:func:`quantize` uses integers only and breaks ties by symbol value.
"""

from __future__ import annotations

import numpy as np

from ..constants import M
from ..errors import CorruptDataError

ALPHABET = 256


def count(plane: np.ndarray) -> np.ndarray:
    """Occurrences of each byte value in ``plane``, as ``int64[256]``."""
    return np.bincount(plane, minlength=ALPHABET).astype(np.int64)


def quantize(counts: np.ndarray) -> np.ndarray:
    """Scale symbol counts to frequencies that sum to ``M``, deterministically.

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


def cumulative(freq: np.ndarray) -> np.ndarray:
    """``cum[s]``: the sum of the frequencies of the symbols below ``s``."""
    cum = np.zeros(ALPHABET, dtype=np.int64)
    np.cumsum(freq[:-1], out=cum[1:])
    return cum


def slot_symbols(freq: np.ndarray) -> np.ndarray:
    """``uint8[M]``: the symbol that owns each slot ``0 <= slot < M``."""
    return np.repeat(np.arange(ALPHABET, dtype=np.uint8), freq)


def serialize(freq: np.ndarray) -> bytes:
    """Write a table in its compact form (``docs/FORMAT.md``, "Frequency table").

    The present symbols as runs of consecutive values: a byte ``R`` (the run
    count, 1 to 128), then per run a byte ``gap`` (the start minus the end
    of the previous run, which is 0 at first) and a byte ``length - 1``;
    then each present symbol's ``freq - 1`` in ascending symbol order as
    LEB128 (one byte below 128, else two).
    """
    present = np.flatnonzero(freq)
    breaks = np.flatnonzero(np.diff(present) != 1) + 1
    starts = present[np.concatenate(([0], breaks))]
    ends = present[np.concatenate((breaks - 1, [len(present) - 1]))] + 1
    out = bytearray([len(starts)])
    previous_end = 0
    for start, end in zip(starts.tolist(), ends.tolist()):
        out += bytes([start - previous_end, end - start - 1])
        previous_end = end
    for value in (freq[present] - 1).tolist():
        out += bytes([value]) if value < 0x80 else bytes([0x80 | (value & 0x7F), value >> 7])
    return bytes(out)


def parse(buf: memoryview | bytes, field: str = "table") -> tuple[np.ndarray, int]:
    """Read a table written by :func:`serialize` from the start of ``buf``.

    Returns the ``int64[256]`` frequencies and the number of bytes read.
    Raises :class:`~rans.CorruptDataError` naming ``field`` if the table is
    not canonical (runs out of range or touching, a frequency of 0 or above
    ``M``, non-minimal LEB128) or its frequencies do not sum to ``M``.
    """
    buf = memoryview(buf)
    pos = 0

    def byte() -> int:
        nonlocal pos
        if pos >= len(buf):
            raise CorruptDataError("frequency table is truncated", field=field)
        value = buf[pos]
        pos += 1
        return value

    runs = byte()
    if not 1 <= runs <= ALPHABET // 2:
        raise CorruptDataError(f"frequency table has {runs} runs, not 1 to 128", field=field)
    symbols: list[int] = []
    previous_end = 0
    for i in range(runs):
        gap, length = byte(), byte() + 1
        if i > 0 and gap == 0:
            raise CorruptDataError("frequency table runs touch (not canonical)", field=field)
        start = previous_end + gap
        if start + length > ALPHABET:
            raise CorruptDataError("frequency table run passes symbol 255", field=field)
        symbols.extend(range(start, start + length))
        previous_end = start + length
    freq = np.zeros(ALPHABET, dtype=np.int64)
    for symbol in symbols:
        low = byte()
        value = low
        if low & 0x80:
            high = byte()
            if high == 0:
                raise CorruptDataError("frequency table has a non-minimal LEB128", field=field)
            value = (low & 0x7F) | (high << 7)
        if value >= M:
            raise CorruptDataError(f"frequency {value + 1} exceeds {M}", field=field)
        freq[symbol] = value + 1
    if int(freq.sum()) != M:
        raise CorruptDataError(f"frequencies sum to {int(freq.sum())}, not {M}", field=field)
    return freq, pos
