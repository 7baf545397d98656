"""The CPU coder: the reference's sections, byte for byte, from compiled loops.

Validation, tables and layout are the reference's own (:mod:`rans.reference`);
only the per-symbol loops (:mod:`rans.cpu.kernels`) are compiled, and they
run one chunk per thread on every core. A plane too small to share among
threads is made into its whole section, or decoded from it, by one
compiled call (:func:`_small_section`, :func:`_small_decode`): the header,
table and layout handled in Python cost a plane of a few hundred symbols
more than coding it. The compiled reader only says whether a section is
sound; where it is not, the reference's reader runs and raises the error
that says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from ..constants import GROUP, LANE_COUNTS, MAX_CHUNK, PROB_BITS, STATE_LOW
from ..errors import CorruptDataError, InvalidArgumentError
from ..reference import tables
from ..reference.coder import HEADER, HEADER_BYTES, Layout, check_chunk, lanes_for, read_section
from . import kernels
from . import tables as fast_tables
from .planes import count
from .tables import quantize


@nb.njit(cache=True)
def layout(n, chunk, table_bytes, lanes):
    """(``states_at``, ``counts_at``, ``words_at``) of :meth:`rans.reference.coder.Layout.of`, compiled."""
    n_chunks = (n + chunk - 1) // chunk
    states_at = (HEADER_BYTES + table_bytes + 3) // 4 * 4
    counts_at = states_at + 4 * lanes * n_chunks
    return states_at, counts_at, counts_at + 4 * (n_chunks - 1)


@nb.njit(cache=True, nogil=True)
def _small_section(plane, chunk, lanes, freq, precision_bits, max_table_bytes):
    """The section :func:`encode` makes, on the calling thread: (buffer, bytes of it used).

    The header's chunk field is little-endian, as the states, counts and words written through views are
    on the little-endian machines Numba compiles for.
    """
    n = plane.size
    table = np.zeros(max_table_bytes, dtype=np.uint8)
    table_bytes = fast_tables._serialize(freq, precision_bits, table)
    states_at, counts_at, words_at = layout(n, chunk, table_bytes, lanes)
    n_chunks = (counts_at - states_at) // (4 * lanes)
    out = np.empty(words_at + 2 * n, dtype=np.uint8)
    out[:states_at] = 0
    out[0] = lanes
    out[2] = (chunk // GROUP) & 0xFF
    out[3] = (chunk // GROUP) >> 8
    out[HEADER_BYTES : HEADER_BYTES + table_bytes] = table[:table_bytes]
    cum = np.zeros(freq.size, dtype=np.int64)
    for s in range(1, freq.size):
        cum[s] = cum[s - 1] + freq[s - 1]
    limit, recip, gain, entries = kernels._symbol_tables(freq, cum)
    states = out[states_at:counts_at].view(np.uint32).reshape((n_chunks, lanes))
    stored = out[counts_at:words_at].view(np.uint32)
    words = out[words_at:].view(np.uint16)
    scratch = np.empty(min(chunk, n), dtype=np.uint16)
    total = 0
    for i in range(n_chunks):  # the chunks' loop of kernels.encode_chunks, on this thread
        length = min(chunk, n - i * chunk)
        c = kernels._encode_chunk(plane, i * chunk, length, lanes, limit, recip, gain, cum, entries, states[i], scratch)
        if i < n_chunks - 1:
            stored[i] = c
        kernels._copy(scratch, length - c, words, total, c)
        total += c
    return out, words_at + 2 * total


@nb.njit(cache=True, nogil=True)
def _small_decode(data, out, precision_bits, prob_bits, max_runs, max_table_bytes):
    """Decode the section ``data`` into ``out`` on the calling thread: True, or False for any fault
    :func:`rans.reference.coder.read_section` or :func:`decode` would raise."""
    n = out.size
    if data.size < HEADER_BYTES:
        return False
    lanes = np.int64(data[0])
    chunk = (np.int64(data[2]) | (np.int64(data[3]) << 8)) * GROUP
    if (lanes & (lanes - 1)) != 0 or lanes < 1 or lanes > LANE_COUNTS[-1] or data[1] != 0 or not GROUP <= chunk <= MAX_CHUNK:
        return False
    freq = np.zeros(256, dtype=np.int64)
    table_bytes = fast_tables._parse(data[HEADER_BYTES : HEADER_BYTES + max_table_bytes], precision_bits, prob_bits, max_runs, freq)
    if table_bytes < 0:
        return False
    states_at, counts_at, words_at = layout(n, chunk, table_bytes, lanes)
    if data.size < words_at or (data.size - words_at) % 2:
        return False
    for i in range(HEADER_BYTES + table_bytes, states_at):
        if data[i] != 0:
            return False
    n_chunks = (counts_at - states_at) // (4 * lanes)
    counts = np.empty(n_chunks, dtype=np.int64)
    stored = data[counts_at:words_at].view(np.uint32)
    left = (data.size - words_at) // 2
    for i in range(n_chunks - 1):
        counts[i] = stored[i]
        left -= counts[i]
        if counts[i] > chunk:
            return False
    counts[n_chunks - 1] = left
    if left < 0 or left > n - (n_chunks - 1) * chunk:
        return False
    states = data[states_at:counts_at].view(np.uint32).reshape((n_chunks, lanes))
    for i in range(n_chunks):
        for lane in range(lanes):
            if states[i, lane] < STATE_LOW:
                return False
    words = data[words_at:].view(np.uint16) if data.size > words_at else np.zeros(1, dtype=np.uint16)
    slots = kernels.slot_table(freq)
    first = np.int64(0)
    for i in range(n_chunks):  # the chunks' loop of kernels.decode_chunks, on this thread
        start = i * chunk
        if kernels._decode_chunk(words, first, first + counts[i], states[i], start, min(chunk, n - start), lanes, slots, out) != 0:
            return False
        first += counts[i]
    return True


def encode(plane: np.ndarray, chunk: int, freq: np.ndarray | None = None, lanes: int | None = None) -> memoryview:
    """Code a plane of byte symbols into a section, as :func:`rans.reference.coder.encode` does.

    Examples
    --------
    >>> import numpy as np
    >>> from rans import cpu, reference
    >>> plane = np.random.default_rng(0).integers(0, 8, 5000).astype(np.uint8)
    >>> section = cpu.encode(plane, 1024)
    >>> section == reference.coder.encode(plane, 1024)
    True
    >>> bool((cpu.decode(section, plane.size) == plane).all())
    True

    Parameters
    ----------
    plane : numpy.ndarray
        ``uint8`` symbols, one-dimensional, at least one.
    chunk : int
        Symbols per chunk, a multiple of 128.
    freq : numpy.ndarray, optional
        The table to code with; by default ``tables.quantize`` of the
        plane's counts. Every symbol of the plane must have a frequency.
    lanes : int, optional
        Lanes per chunk, a power of two up to 32; by default
        :func:`rans.reference.coder.lanes_for` the plane's length.

    Returns
    -------
    memoryview
        The coded section (a view of a buffer sized for the worst case, whose
        unused tail is never touched and so takes no memory).
    """
    chunk = check_chunk(chunk)
    plane = np.ascontiguousarray(plane, dtype=np.uint8).reshape(-1)
    n = plane.size
    lanes = lanes_for(n) if lanes is None else lanes
    if not isinstance(lanes, (int, np.integer)) or isinstance(lanes, bool) or lanes not in LANE_COUNTS:
        raise InvalidArgumentError(f"lanes must be a power of two from 1 to 32, not {lanes!r}")
    lanes = int(lanes)
    if freq is None:
        freq = quantize(count(plane))
    freq = np.ascontiguousarray(freq, dtype=np.int64)
    if n < kernels.PARALLEL_MIN:
        out, used = _small_section(plane, chunk, lanes, freq, tables.PRECISION_BITS, tables.MAX_TABLE_BYTES)
        return memoryview(out[:used])
    head = HEADER.pack(lanes, 0, chunk // GROUP) + fast_tables.serialize(freq)
    layout = Layout.of(n, chunk, len(head) - HEADER_BYTES, lanes)
    out = np.empty(layout.words_at + 2 * n, dtype=np.uint8)
    out[: layout.states_at] = 0
    out[: len(head)] = np.frombuffer(head, dtype=np.uint8)
    states = out[layout.states_at : layout.counts_at].view("<u4").reshape(layout.n_chunks, lanes)
    counts = np.empty(layout.n_chunks, dtype=np.int64)
    words = out[layout.words_at :].view("<u2")
    total = kernels.encode_chunks(plane, chunk, lanes, freq, tables.cumulative(freq), states, counts, words)
    out[layout.counts_at : layout.words_at].view("<u4")[:] = counts[:-1]
    return memoryview(out[: layout.words_at + 2 * total])


def slot_table(freq: np.ndarray) -> np.ndarray:
    """``uint32[M]``: each slot's symbol, its frequency less one and its offset in the symbol's slots, packed."""
    return kernels.slot_table(np.ascontiguousarray(freq, dtype=np.int64))


def decode(section: bytes | memoryview, n: int, field: str = "plane", out: np.ndarray | None = None) -> np.ndarray:
    """Decode a section into ``n`` byte symbols, as :func:`rans.reference.coder.decode` does.

    Examples
    --------
    >>> import numpy as np
    >>> from rans import cpu
    >>> cpu.decode(cpu.encode(np.arange(200, dtype=np.uint8) % 3, 128), 200)[:6]
    array([0, 1, 2, 0, 1, 2], dtype=uint8)

    Parameters
    ----------
    section : bytes-like
        The coded section, exactly (no trailing bytes).
    n : int
        Number of symbols, at least one.
    field : str
        Name used in error messages.
    out : numpy.ndarray, optional
        A C-contiguous ``uint8[n]`` to decode into; by default a new array.

    Raises
    ------
    rans.CorruptDataError
        Exactly where the reference raises it, with the same chunk: the
        section is malformed, a chunk starts below state ``L``, or does not
        end in state ``L`` having read exactly its words.
    """
    if out is not None and not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (n,) and out.flags.c_contiguous):
        raise InvalidArgumentError(f"out must be a C-contiguous uint8 array of {n} elements")
    if 0 < n < kernels.PARALLEL_MIN:
        data = np.frombuffer(section, dtype=np.uint8)
        small = np.empty(n, dtype=np.uint8) if out is None else out
        if _small_decode(data, small, tables.PRECISION_BITS, PROB_BITS, tables.MAX_RUNS, tables.MAX_TABLE_BYTES):
            return small
    prepared = prepare(section, n, field)
    if out is None:
        out = np.empty(n, dtype=np.uint8)
    lanes = prepared.states.shape[1]
    status = kernels.decode_chunks(prepared.words, prepared.chunk, lanes, prepared.slots, prepared.states, prepared.counts, out)
    check_status(status, field)
    return out


@dataclass(frozen=True)
class Prepared:
    """A coded section parsed and checked as far as it can be without decoding, in the form the kernels take."""

    chunk: int
    words: np.ndarray
    """``uint16``, read-only: the section's words, at least one (a zero where it has none)."""
    slots: np.ndarray
    """The slot table (:func:`slot_table`)."""
    states: np.ndarray
    """``int64[chunks, lanes]``: the initial states (the lane count is their second dimension)."""
    counts: np.ndarray
    """``int64[chunks]``: each chunk's word count."""


def prepare(section: bytes | memoryview, n: int, field: str = "plane") -> Prepared:
    """Parse a section of ``n`` symbols for :func:`rans.cpu.kernels.decode_chunks`.

    Raises :class:`rans.CorruptDataError` where the reference's reader does,
    and for the first chunk with an initial state below ``L``.
    """
    parsed = read_section(section, n, field, fast_tables.parse)
    initial = parsed.states.astype(np.int64)
    bad = np.flatnonzero((initial < STATE_LOW).any(axis=1))
    if bad.size:
        raise CorruptDataError(f"initial state below L = {STATE_LOW}", field=field, chunk=int(bad[0]))
    words = read_only(parsed.words if parsed.words.size else np.zeros(1, dtype=np.uint16))
    return Prepared(parsed.chunk, words, slot_table(parsed.freq), initial, parsed.counts)


def read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array``: the kernels then see one array type whatever buffer a section came
    from (each type is a compile of its own, tens of seconds for the threaded loops)."""
    view = array.view()
    view.flags.writeable = False
    return view


def check_status(status: np.ndarray, field: str) -> None:
    """Raise :class:`rans.CorruptDataError` for the first chunk whose status (:func:`rans.cpu.kernels.decode_chunks`) is not 0."""
    bad = np.flatnonzero(status)
    if bad.size:
        i = int(bad[0])
        what = "did not read exactly its words" if status[i] == 1 else "did not end in state L"
        raise CorruptDataError(f"chunk {what}: the coded data is corrupt", field=field, chunk=i)
