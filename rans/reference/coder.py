"""The reference rANS coder: one plane of byte symbols in, one coded section out.

Read me first. Three things surprise people about rANS:

1. **It encodes backwards.** The decoder reads symbols front to back, so the
   encoder visits them back to front, and its last state is the decoder's
   first. The state that starts every lane is ``L``; a decoder that ends
   anywhere else has read corrupt data.
2. **Words come out in reverse.** The encoder pushes 16-bit words as the
   state overflows; the decoder pulls them in the opposite order, so the
   section stores them reversed.
3. **Lanes interleave.** A chunk of ``C`` symbols is coded by ``W`` lanes
   (32 for large planes, fewer for small ones), each with its own state,
   sharing one word stream. Symbol ``k`` of a chunk belongs to group
   ``g = k // 4``: lane ``g % W`` codes it at step ``g // W``, sub-step
   ``k % 4``. The decoder goes step by step, sub-step by sub-step, and at
   each one every lane that needs a word takes the next one, lanes in
   ascending order (what a GPU warp does with a ballot).

To follow one symbol ``s`` of frequency ``f`` and cumulative frequency ``c``
through a lane whose state is ``x``:

* encode: if ``x >= f << 20``, emit ``x & 0xFFFF`` and ``x >>= 16``; then
  ``x = (x // f) * 4096 + x % f + c``;
* decode: ``slot = x % 4096`` gives ``s`` (the symbol whose slots
  ``[c, c + f)`` hold ``slot``); ``x = f * (x >> 12) + slot - c``; if
  ``x < L``, ``x = (x << 16) | next_word``.

The code below does exactly this, for all chunks and all ``W`` lanes of a
sub-step at once, with NumPy arrays of shape ``(chunks, W)``.

A coded section holds, in this order (``docs/FORMAT.md``, "Coded planes"):
a 4-byte header (``uint8`` lane count ``W``, a zero byte, ``uint16`` chunk
size over 128), the frequency table, zero bytes up to a multiple of 4, the
initial decoder states (``uint32[chunks][W]``), the word count of each
chunk but the last (``uint32[chunks - 1]``; the last one is what the
section's length leaves) and the words of all chunks (``uint16``,
little-endian).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..constants import ENCODE_SHIFT, GROUP, LANE_COUNTS, LANE_SYMBOLS, LANES, M, MAX_CHUNK, PROB_BITS, RUN, STATE_LOW, WORD_BITS
from ..errors import CorruptDataError, InvalidArgumentError
from . import tables

_WORD_MASK = (1 << WORD_BITS) - 1
HEADER = struct.Struct("<BBH")
"""A coded section starts with ``uint8`` lanes, a zero byte and ``uint16`` chunk size / 128."""
HEADER_BYTES = HEADER.size


@dataclass(frozen=True)
class Layout:
    """Where the parts of a coded section lie, in bytes from its start."""

    lanes: int
    n_chunks: int
    table_bytes: int
    states_at: int
    counts_at: int
    words_at: int

    @classmethod
    def of(cls, n: int, chunk: int, table_bytes: int, lanes: int) -> "Layout":
        n_chunks = -(-n // chunk)
        states_at = -(-(HEADER_BYTES + table_bytes) // 4) * 4
        counts_at = states_at + 4 * lanes * n_chunks
        return cls(lanes, n_chunks, table_bytes, states_at, counts_at, counts_at + 4 * (n_chunks - 1))


def lanes_for(n: int) -> int:
    """The lane count writers give a plane of ``n`` symbols: one per 4096 symbols, a power of two up to 32."""
    lanes = 1
    while lanes < LANES and 2 * lanes * LANE_SYMBOLS <= n:
        lanes *= 2
    return lanes


def check_chunk(chunk: int) -> int:
    """``chunk`` as a Python int; :class:`~rans.InvalidArgumentError` unless it is a valid chunk size."""
    if not (isinstance(chunk, (int, np.integer)) and not isinstance(chunk, bool) and GROUP <= chunk <= MAX_CHUNK and chunk % GROUP == 0):
        raise InvalidArgumentError(f"chunk size must be a multiple of {GROUP} from {GROUP} to {MAX_CHUNK}, not {chunk!r}")
    return int(chunk)


def _positions(step: int, sub: int, lanes: int) -> np.ndarray:
    """Index in its chunk of the symbol each lane codes at (step, sub-step)."""
    return (step * lanes + np.arange(lanes)) * RUN + sub


def _steps(n: int, chunk: int, lanes: int) -> int:
    """Steps of the longest chunk: a plane shorter than a chunk needs fewer."""
    return -(-min(n, chunk) // (lanes * RUN))


def _chunk_lengths(n: int, chunk: int, n_chunks: int) -> np.ndarray:
    lengths = np.full(n_chunks, chunk, dtype=np.int64)
    lengths[-1] = n - (n_chunks - 1) * chunk
    return lengths


def encode(
    plane: np.ndarray, chunk: int, freq: np.ndarray | None = None, workers: int = 1, lanes: int | None = None
) -> bytes:
    """Code a plane of byte symbols into a section.

    Parameters
    ----------
    plane : numpy.ndarray
        ``uint8`` symbols, one-dimensional, at least one.
    chunk : int
        Symbols per chunk, a multiple of 128.
    freq : numpy.ndarray, optional
        The table to code with; by default ``tables.quantize`` of the
        plane's counts. Every symbol of the plane must have a frequency.
    workers : int
        Processes to share the chunks among; chunks are independent once the
        table is fixed, so the bytes do not depend on this.
    lanes : int, optional
        Lanes per chunk, a power of two up to 32; by default
        :func:`lanes_for` the plane's length.

    Returns
    -------
    bytes
        The coded section.
    """
    chunk = check_chunk(chunk)
    n = plane.size
    lanes = lanes_for(n) if lanes is None else lanes
    if not isinstance(lanes, (int, np.integer)) or isinstance(lanes, bool) or lanes not in LANE_COUNTS:
        raise InvalidArgumentError(f"lanes must be a power of two from 1 to 32, not {lanes!r}")
    if freq is None:
        freq = tables.quantize(tables.count(plane))
    head = HEADER.pack(lanes, 0, chunk // GROUP) + tables.serialize(freq)
    layout = Layout.of(n, chunk, len(head) - HEADER_BYTES, lanes)
    if workers > 1 and layout.n_chunks > 1:
        return head + _encode_in_parallel(plane, chunk, freq, workers, layout)
    lengths = _chunk_lengths(n, chunk, layout.n_chunks)
    symbols = np.zeros(layout.n_chunks * chunk, dtype=np.uint8)
    symbols[:n] = plane
    symbols = symbols.reshape(layout.n_chunks, chunk)
    # Padding symbols past the end of the last chunk are never coded, but they are
    # looked up: give them frequency 1 so the arithmetic on them stays defined.
    safe_freq = np.maximum(freq, 1)
    cum = tables.cumulative(freq)

    x = np.full((layout.n_chunks, lanes), STATE_LOW, dtype=np.int64)
    emitted = np.zeros((layout.n_chunks, chunk), dtype=np.uint16)  # per chunk, in emission order
    n_emitted = np.zeros(layout.n_chunks, dtype=np.int64)
    for step in reversed(range(_steps(n, chunk, lanes))):
        for sub in reversed(range(RUN)):
            k = _positions(step, sub, lanes)
            s = symbols[:, k]
            f = safe_freq[s]
            active = k < lengths[:, None]
            emit = (x >= f << ENCODE_SHIFT) & active
            # Lanes emit in descending order, so the decoder, reading the reversed
            # stream, meets them in ascending order.
            after = np.cumsum(emit[:, ::-1], axis=1)[:, ::-1] - emit
            rows, cols = np.nonzero(emit)
            emitted[rows, n_emitted[rows] + after[rows, cols]] = x[rows, cols] & _WORD_MASK
            n_emitted += emit.sum(axis=1)
            x = np.where(emit, x >> WORD_BITS, x)
            quotient, remainder = np.divmod(x, f)
            x = np.where(active, quotient * M + remainder + cum[s], x)

    # Each chunk's words, reversed, then all chunks one after another.
    total = int(n_emitted.sum())
    chunk_of_word = np.repeat(np.arange(layout.n_chunks), n_emitted)
    first_word = np.cumsum(n_emitted) - n_emitted
    reversed_index = n_emitted[chunk_of_word] - 1 - (np.arange(total) - first_word[chunk_of_word])
    words = emitted[chunk_of_word, reversed_index]

    out = bytearray(layout.words_at + 2 * total)
    out[: len(head)] = head
    out[layout.states_at : layout.counts_at] = x.astype("<u4").tobytes()
    out[layout.counts_at : layout.words_at] = n_emitted[:-1].astype("<u4").tobytes()
    out[layout.words_at :] = words.astype("<u2").tobytes()
    return bytes(out)


def _encode_in_parallel(plane: np.ndarray, chunk: int, freq: np.ndarray, workers: int, layout: Layout) -> bytes:
    """Everything after the table, with slices of whole chunks coded in separate processes."""
    from concurrent.futures import ProcessPoolExecutor

    per_slice = -(-layout.n_chunks // workers) * chunk
    slices = [plane[i : i + per_slice] for i in range(0, plane.size, per_slice)]
    count = len(slices)
    with ProcessPoolExecutor(count) as pool:
        parts = pool.map(encode, slices, [chunk] * count, [freq] * count, [1] * count, [layout.lanes] * count)
        parts = [memoryview(part) for part in parts]
    geometry = [Layout.of(s.size, chunk, layout.table_bytes, layout.lanes) for s in slices]
    out = bytearray(layout.states_at - HEADER_BYTES - layout.table_bytes)
    for part, g in zip(parts, geometry):
        out += part[g.states_at : g.counts_at]
    counts = np.concatenate([read_section(part, s.size).counts for part, s in zip(parts, slices)])
    out += counts[:-1].astype("<u4").tobytes()
    for part, g in zip(parts, geometry):
        out += part[g.words_at :]
    return bytes(out)


@dataclass(frozen=True)
class Section:
    """A coded section, validated: its table, layout, initial states and word counts."""

    freq: np.ndarray
    chunk: int
    layout: Layout
    lengths: np.ndarray
    states: np.ndarray
    counts: np.ndarray
    words: np.ndarray


def read_section(
    section: bytes | memoryview, n: int, field: str = "plane", parse: Callable[..., tuple[np.ndarray, int]] = tables.parse
) -> Section:
    """Parse and validate a coded section of ``n`` symbols, without decoding it.

    ``parse`` reads the frequency table (:func:`rans.reference.tables.parse`
    or an equal one).

    Raises
    ------
    rans.CorruptDataError
        The header or table is invalid, the section's length does not match
        its table, states and word counts, or a word count exceeds its
        chunk's length (so decoding is bounded by ``n``).
    """
    section = memoryview(section)
    if len(section) < HEADER_BYTES:
        raise CorruptDataError("coded section is shorter than its 4-byte header", field=field)
    lanes, reserved, groups = HEADER.unpack_from(section)
    if lanes not in LANE_COUNTS:
        raise CorruptDataError(f"lane count {lanes} is not a power of two up to 32", field=field)
    if reserved != 0:
        raise CorruptDataError("byte 1 of the coded section header is not zero", field=field)
    chunk = groups * GROUP
    if not GROUP <= chunk <= MAX_CHUNK:
        raise CorruptDataError(f"chunk size {chunk} is not from {GROUP} to {MAX_CHUNK}", field=field)
    freq, table_bytes = parse(section[HEADER_BYTES:], field=f"{field}.table")
    layout = Layout.of(n, chunk, table_bytes, lanes)
    if len(section) < layout.words_at:
        raise CorruptDataError(
            f"coded section of {len(section)} bytes cannot hold the states and counts of {layout.n_chunks} chunks",
            field=field,
        )
    if any(section[HEADER_BYTES + table_bytes : layout.states_at]):
        raise CorruptDataError("padding after the frequency table is not zero", field=field)
    lengths = _chunk_lengths(n, chunk, layout.n_chunks)
    states = np.frombuffer(section[layout.states_at : layout.counts_at], dtype="<u4").reshape(layout.n_chunks, lanes)
    stored = np.frombuffer(section[layout.counts_at : layout.words_at], dtype="<u4").astype(np.int64)
    too_many = np.flatnonzero(stored > lengths[:-1])
    if too_many.size:
        raise CorruptDataError("word count exceeds the chunk's symbols", field=field, chunk=int(too_many[0]))
    if (len(section) - layout.words_at) % 2:
        raise CorruptDataError(f"coded section of {len(section)} bytes ends in half a word", field=field)
    # The last chunk's word count is not stored: it is what the others leave of the words.
    last = (len(section) - layout.words_at) // 2 - int(stored.sum())
    if last < 0:
        raise CorruptDataError(
            f"coded section is {len(section)} bytes; its word counts say at least {layout.words_at + 2 * int(stored.sum())}",
            field=field,
        )
    if last > lengths[-1]:
        raise CorruptDataError("word count exceeds the chunk's symbols", field=field, chunk=layout.n_chunks - 1)
    counts = np.append(stored, last)
    words = np.frombuffer(section[layout.words_at :], dtype="<u2")
    return Section(freq, chunk, layout, lengths, states, counts, words)


_OVERRUN_CHECK = 256
"""Steps between checks for chunks that have read past their words (and so will fail)."""


def decode(section: bytes | memoryview, n: int, field: str = "plane") -> np.ndarray:
    """Decode a section written by :func:`encode` back into ``n`` byte symbols.

    Parameters
    ----------
    section : bytes-like
        The coded section, exactly (no trailing bytes).
    n : int
        Number of symbols, at least one.
    field : str
        Name used in error messages.

    Raises
    ------
    rans.CorruptDataError
        :func:`read_section` rejects the section, or a chunk starts below
        state ``L`` or does not end in state ``L`` having read exactly its
        words; the error names the first such chunk.

    Notes
    -----
    Every :data:`_OVERRUN_CHECK` steps, chunks that have read past their
    words are set aside as failed and only the chunks before the first of
    them are decoded further (only those can be the first to fail), so a
    damaged long chunk costs a few hundred steps, not its length.
    """
    parsed = read_section(section, n, field)
    freq, chunk, layout, lengths, counts = parsed.freq, parsed.chunk, parsed.layout, parsed.lengths, parsed.counts
    x = parsed.states.astype(np.int64)
    bad = np.flatnonzero((x < STATE_LOW).any(axis=1))
    if bad.size:
        raise CorruptDataError(f"initial state below L = {STATE_LOW}", field=field, chunk=int(bad[0]))
    words = parsed.words if parsed.words.size else np.zeros(1, dtype=np.uint16)  # something for np.take to clip into

    sym_of_slot = tables.slot_symbols(freq)
    cum = tables.cumulative(freq)
    next_word = np.cumsum(counts) - counts
    end = next_word + counts
    out = np.empty((layout.n_chunks, chunk), dtype=np.uint8)
    overrun = None  # the first chunk known to have read past its words
    for step in range(_steps(n, chunk, layout.lanes)):
        for sub in range(RUN):
            k = _positions(step, sub, layout.lanes)
            slot = x & (M - 1)
            s = sym_of_slot[slot]
            decoded = freq[s] * (x >> PROB_BITS) + slot - cum[s]
            active = k < lengths[:, None]
            decoded = np.where(active, decoded, x)
            need = decoded < STATE_LOW
            rank = np.cumsum(need, axis=1) - need
            word = np.take(words, next_word[:, None] + rank, mode="clip").astype(np.int64)
            x = np.where(need, (decoded << WORD_BITS) | word, decoded)
            next_word += need.sum(axis=1)
            out[:, k] = s
        if step % _OVERRUN_CHECK == _OVERRUN_CHECK - 1 and (next_word > end).any():
            overrun = int(np.flatnonzero(next_word > end)[0])
            x, next_word, end, lengths, out = x[:overrun], next_word[:overrun], end[:overrun], lengths[:overrun], out[:overrun]
            if overrun == 0:
                break

    bad = np.flatnonzero((next_word != end) | (x != STATE_LOW).any(axis=1))
    if bad.size or overrun is not None:
        i = int(bad[0]) if bad.size else overrun
        what = "did not end in state L" if i != overrun and next_word[i] == end[i] else "did not read exactly its words"
        raise CorruptDataError(f"chunk {what}: the coded data is corrupt", field=field, chunk=i)
    return out.reshape(-1)[:n]
