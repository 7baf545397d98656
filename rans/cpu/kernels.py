"""The hot loops of the CPU codec, compiled by Numba: one chunk per thread.

Each function mirrors a loop of :mod:`rans.reference.coder` symbol by
symbol. A chunk's lanes are visited in the reference's interleaved order
(steps and sub-steps, lanes within a sub-step), so one state array of
``W`` entries per chunk replaces the reference's ``(chunks, W)`` arrays
and the words come out already in the stream's order:

* the encoder walks steps, sub-steps and lanes all descending, which is
  the order in which the reference emits words (lanes emit in descending
  order), and stores each word just before the previous one, which is
  the reversal the reference applies at the end;
* the decoder walks them all ascending and takes words front to back.

The encoder divides by a symbol's frequency ``f`` through a double
reciprocal: ``x < f << 20`` when it divides, so ``x / f < 2**20`` and the
product ``x * (1 / f)`` is within ``2**-32`` of it, while the quotient's
fraction is a multiple of ``1 / f >= 2**-12``; adding ``2**-16`` before
truncating therefore gives ``x // f`` exactly.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..constants import ENCODE_SHIFT, M, PROB_BITS, RUN, STATE_LOW, WORD_BITS
from . import simd

_NUDGE = 2.0**-16
_WORD_MASK = (1 << WORD_BITS) - 1
_SLOT_MASK = M - 1
PARALLEL_MIN = 1 << 18
"""Symbols from which a plane is shared among threads; below, waking them costs more than it saves."""
SCRATCH_WORDS = 1 << 23
"""Words of scratch (16 MiB) the encoder codes chunks into between two compactions: bounds its memory
while keeping the threads' meeting points few (each is costly on a busy machine)."""


@nb.njit(cache=True, nogil=True)
def _encode_symbol(state, s, limit, recip, gain, cum, scratch, pos):
    """Code symbol ``s`` on ``state``: (new state, new ``pos``); its word, if it emits one, at ``scratch[pos - 1]``."""
    emit = state >= limit[s]
    scratch[pos - 1] = state & _WORD_MASK
    pos -= emit
    state = (state >> WORD_BITS) if emit else state
    q = np.int64(state * recip[s] + _NUDGE)
    return state + q * gain[s] + cum[s], pos


@nb.njit(cache=True, nogil=True)
def _encode_chunk(symbols, start, length, lanes, limit, recip, gain, cum, table, states, scratch):
    """Code ``symbols[start : start + length]``; the words end at ``scratch[length]``. Returns the word count.

    Branchless: every symbol writes its state's low word to the next free
    place (just before the last word) and claims it only if it emits; that
    place is always inside ``scratch`` because a chunk never has more words
    than symbols. The full steps of a chunk of 8, 16 or 32 lanes are vector
    code (:func:`rans.cpu.simd.encode_step`), after its ragged last step,
    where the CPU has the instructions for it (:data:`rans.cpu.simd.AVAILABLE`).
    """
    pos = length
    if lanes == 1:  # the symbols in reverse, the state in a register: one chain, nothing to interleave
        state = np.int64(STATE_LOW)
        for k in range(start + length - 1, start - 1, -1):
            state, pos = _encode_symbol(state, symbols[k], limit, recip, gain, cum, scratch, pos)
        states[0] = state
        return length - pos
    x = np.full(lanes, STATE_LOW, dtype=np.int64)
    per_step = lanes * RUN
    wide = simd.AVAILABLE and lanes in simd.ENCODE_WIDTHS
    full = length // per_step if wide else 0
    for step in range((length + per_step - 1) // per_step - 1, full - 1, -1):
        for sub in range(RUN - 1, -1, -1):
            for lane in range(lanes - 1, -1, -1):
                k = (step * lanes + lane) * RUN + sub
                if k >= length:
                    continue
                x[lane], pos = _encode_symbol(x[lane], symbols[start + k], limit, recip, gain, cum, scratch, pos)
    if wide:
        x32 = x.astype(np.uint32)
        for step in range(full - 1, -1, -1):
            at = start + step * per_step
            if lanes == 32:
                pos = simd.encode_step(symbols, at, x32, table, recip, scratch, pos, 32)
            elif lanes == 16:
                pos = simd.encode_step(symbols, at, x32, table, recip, scratch, pos, 16)
            else:
                pos = simd.encode_step(symbols, at, x32, table, recip, scratch, pos, 8)
        x[:] = x32
    for lane in range(lanes):
        states[lane] = x[lane]
    return length - pos


@nb.njit(cache=True, nogil=True)
def _copy(source, start, target, at, count):
    """``target[at : at + count] = source[start : start + count]``, as a loop: a slice assignment brings in
    Numba's shape-mismatch error formatting, seconds of compiling on a cold cache."""
    for i in range(count):
        target[at + i] = source[start + i]


@nb.njit(cache=True, nogil=True)
def _symbol_tables(freq, cum):
    """Per symbol: the state from which coding it emits a word, ``1 / f``, ``M - f``, and
    ``f | cum << 13`` for :func:`rans.cpu.simd.encode_step`."""
    limit = np.empty(256, dtype=np.int64)
    recip = np.empty(256, dtype=np.float64)
    gain = np.empty(256, dtype=np.int64)
    table = np.empty(256, dtype=np.int32)
    for s in range(256):
        f = max(freq[s], 1)
        limit[s] = f << ENCODE_SHIFT
        recip[s] = 1.0 / f
        gain[s] = M - f
        table[s] = f | (cum[s] << 13)
    return limit, recip, gain, table


@nb.njit(parallel=True, cache=True)
def encode_chunks(symbols, chunk, lanes, freq, cum, states, counts, words):
    """Code every chunk of ``symbols``; fill ``states`` (chunks, lanes) and ``counts``; write the words to ``words``.

    Returns the total word count. ``words`` must hold one word per symbol.
    """
    n = symbols.size
    n_chunks = states.shape[0]
    limit, recip, gain, table = _symbol_tables(freq, cum)
    batch = max(1, min(n_chunks, SCRATCH_WORDS // chunk))
    scratch = np.empty((batch, min(chunk, n)), dtype=np.uint16)
    total = 0
    for first in range(0, n_chunks, batch):
        last = min(first + batch, n_chunks)
        for i in nb.prange(first, last):
            start = i * chunk
            length = min(chunk, n - start)
            counts[i] = _encode_chunk(symbols, start, length, lanes, limit, recip, gain, cum, table, states[i], scratch[i - first])
        for i in range(first, last):
            length = min(chunk, n - i * chunk)
            c = counts[i]
            _copy(scratch[i - first], length - c, words, total, c)
            total += c
    return total


@nb.njit(cache=True, nogil=True)
def slot_table(freq):
    """The decoder's lookup of a table summing to ``M`` (see :func:`_decode_chunk`): ``uint32[M]``.

    Slots past ``M`` of a table summing to more are never written (parsed tables sum to ``M``).
    """
    slots = np.empty(M, dtype=np.uint32)
    slot = 0
    for s in range(freq.size):
        f = min(freq[s], M - slot)
        if f <= 0:
            continue
        entry = np.uint32(s | ((freq[s] - 1) << 8))
        for bias in range(f):  # independent stores: vector code (3.1 -> 2.0 us a table)
            slots[slot + bias] = entry | np.uint32(bias << 20)
        slot += f
    return slots


@nb.njit(cache=True, nogil=True)
def _decode_chunk(words, first_word, end_word, initial, start, length, lanes, slots, out):
    """Decode one chunk into ``out[start : start + length]``; 0 if it ends well, 1 if its words are off, 2 if a state is.

    ``slots[slot]`` packs the slot's symbol (bits 0-7), its frequency less one
    (bits 8-19) and ``slot - cum[symbol]`` (bits 20-31). Renormalization is
    branchless: every symbol fetches the next word and keeps it only if the
    state fell below ``L``. A chunk that reads past its words reads its
    neighbour's (never past the section: the index is clamped), and fails
    whatever they hold, as its word count is then wrong. The full steps of a
    chunk of 16 or 32 lanes are vector code (:func:`rans.cpu.simd.decode_step`,
    where :data:`rans.cpu.simd.AVAILABLE`) while a step's worth of words (4 a
    lane) remains in the section.
    """
    return _decode_from(words, first_word, end_word, initial.astype(np.uint32), np.int64(0), start, length, lanes, slots, out)


@nb.njit(cache=True, nogil=True)
def _vector_steps(lanes):
    """Whether chunks of ``lanes`` lanes take :func:`rans.cpu.simd.decode_step` for their full steps."""
    return simd.AVAILABLE and lanes in simd.DECODE_WIDTHS


@nb.njit(cache=True, nogil=True, inline="always")
def _vector_step(words, w, x32, slots, out, at, lanes):
    """:func:`rans.cpu.simd.decode_step` with ``lanes`` (16 or 32) passed as the literal it needs."""
    if lanes == 32:
        return simd.decode_step(words, w, x32, slots, out, at, 32)
    return simd.decode_step(words, w, x32, slots, out, at, 16)


@nb.njit(cache=True, nogil=True)
def _decode_pair(words, first_a, end_a, initial_a, first_b, end_b, initial_b, start, chunk, lanes, slots, out):
    """Decode the two whole chunks at ``out[start : start + chunk]`` and the ``chunk`` elements after it,
    their vector steps taken in turns (each chunk's steps wait on one another; two chunks' do not, so the
    CPU overlaps them), then each finished as :func:`_decode_chunk` finishes one. Returns both statuses."""
    xa = initial_a.astype(np.uint32)
    xb = initial_b.astype(np.uint32)
    wa = first_a
    wb = first_b
    per_step = lanes * RUN
    step = 0
    if _vector_steps(lanes):
        while step < chunk // per_step and max(wa, wb) + per_step <= words.size:
            at = start + step * per_step
            wa = _vector_step(words, wa, xa, slots, out, at, lanes)
            wb = _vector_step(words, wb, xb, slots, out, at + chunk, lanes)
            step += 1
    status_a = _decode_from(words, wa, end_a, xa, step, start, chunk, lanes, slots, out)
    status_b = _decode_from(words, wb, end_b, xb, step, start + chunk, chunk, lanes, slots, out)
    return status_a, status_b


@nb.njit(cache=True, nogil=True)
def _decode_from(words, w, end_word, x32, first, start, length, lanes, slots, out):
    """:func:`_decode_chunk` from step ``first`` on, with states ``x32`` and the next word at ``w``."""
    top = words.size - 1
    per_step = lanes * RUN
    full = length // per_step
    if _vector_steps(lanes):
        while first < full and w + per_step <= words.size:
            w = _vector_step(words, w, x32, slots, out, start + first * per_step, lanes)
            first += 1
    x = x32.astype(np.int64)
    for step in range(first, (length + per_step - 1) // per_step):
        ragged = step >= full
        for sub in range(RUN):
            base = start + step * per_step + sub
            for lane in range(lanes):
                at = base + lane * RUN
                if ragged and at - start >= length:
                    continue
                state = x[lane]
                entry = np.int64(slots[state & _SLOT_MASK])
                state = (((entry >> 8) & 0xFFF) + 1) * (state >> PROB_BITS) + (entry >> 20)
                word = np.int64(words[min(w, top)])
                need = state < STATE_LOW
                x[lane] = ((state << WORD_BITS) | word) if need else state
                w += need
                out[at] = entry & 0xFF
    if w != end_word:
        return 1
    for lane in range(lanes):
        if x[lane] != STATE_LOW:
            return 2
    return 0


@nb.njit(parallel=True, cache=True)
def decode_chunks(words, chunk, lanes, slots, states, counts, out):
    """Decode every chunk into ``out``; return each chunk's status (see :func:`_decode_chunk`).

    ``words`` is the section's words, at least one (a zero where there are none).
    """
    n = out.size
    n_chunks = states.shape[0]
    first = np.empty(n_chunks, dtype=np.int64)
    total = 0
    for i in range(n_chunks):
        first[i] = total
        total += counts[i]
    status = np.zeros(n_chunks, dtype=np.int8)
    for i in nb.prange(n_chunks):
        start = i * chunk
        length = min(chunk, n - start)
        status[i] = _decode_chunk(words, first[i], first[i] + counts[i], states[i], start, length, lanes, slots, out)
    return status
