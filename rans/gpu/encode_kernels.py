"""Numba CUDA kernels of the GPU encoder: histogram, interleaved rANS encode, layout.

The plane split is fused into every kernel that reads a tensor: a plane's
symbol is computed from its element where it is needed. An *extractor*
names a plane of a tensor: elements of ``s`` bytes at byte ``base`` of the
source buffer, and, for ``s <= 4``, the symbol of an element of bits ``v``
is ``((v >> sa) & ma) | ((v >> sb) & mb)`` (a byte, a bf16/f32 exponent,
or the sign over the high mantissa bits). For ``s >= 8`` the symbol is
byte ``sa // 8`` of the element. Split ``"none"`` reads the tensor as
1-byte elements.

:func:`encode` mirrors :func:`rans.reference.coder.encode`: one warp per
chunk walks the steps and sub-steps backwards, each lane with its state;
the lanes that emit a word in a sub-step place it through a ballot and a
population count, higher lanes first, as the reference's ``after`` does.
Words go to a per-chunk scratch region of ``chunk`` words, filled from its
end, so that a chunk's words lie there already in file order; division by
a frequency is a multiplication by a reciprocal (Granlund and Montgomery's
round-up method, exact for every 32-bit state).

Each tensor's CRC-32 is built as :mod:`rans.gpu.crc` describes:
:func:`split_raw` checksums the raw planes' whole groups of 4 bytes as it
writes them; :func:`rans.gpu.crc.crc_blocks` reads back the rest (coded
sections, padding, raw tails).

State arithmetic is 32-bit unsigned: every result is cast back with
``uint32`` so Numba does not widen it to 64 bits.

The kernels are cached on disk (``cache=True``), as the decoder's are: the
first process compiles them, later ones load the cubin
(``bench/backends.py`` times both).
"""

from __future__ import annotations

from numba import cuda, uint8, uint16, uint32, uint64

from ..constants import ENCODE_SHIFT, LANES, M, RUN, STATE_LOW, WORD_BITS
from .crc import CRC_BLOCK, CRC_SHARED_WORDS, CRC_THREADS, CRC_WARPS, SHIFT_COLUMNS, block_crc, shift_in_warp, stage_tables
from .tables import CODED, I_MODE, RAW
from .warp import SIMULATED, VOTE_BYTES, WARPS_PER_BLOCK, ballot, load4, tail

# Columns of an extractor (int64): where a plane's symbols come from.
X_BASE, X_SIZE, X_SA, X_MA, X_SB, X_MB = range(6)
# Further columns of a coded plane descriptor for :func:`encode`.
E_SLOT, E_LANES, E_CHUNK, E_N, E_SCRATCH, E_FIRST, E_RIVALS, E_RIVAL_COUNT = range(6, 14)
# Further columns of a raw plane descriptor for :func:`split_raw`.
R_N, R_DST, R_FIRST_ITEM, R_AFTER, R_TENSOR = range(6, 11)
# Columns of a coded plane descriptor for :func:`compact`.
K_FIRST, K_CHUNKS, K_CHUNK, K_LANES, K_SCRATCH, K_STATES, K_COUNTS, K_WORDS = range(8)
# Columns of a tensor descriptor for :func:`histogram`: its first whole word in the source, whole words,
# bytes after them, first slot, slots, first item, and words per element less one (elements of 8 or 16 bytes).
H_WORD, H_WORDS, H_TAIL, H_SLOT, H_SLOTS, H_FIRST_ITEM, H_WM = range(7)
# Columns of one of a tensor's four taps in its row of :func:`histogram`'s ``taps``.
TAP_A, TAP_MA, TAP_B, TAP_MB, TAP_ROW, TAP_AT = range(6)
TAP_COLUMNS = 6
TAP_ROW_WORDS = 4 * TAP_COLUMNS
HIST_COPIES = 8
"""Most copies of the bins :func:`histogram` keeps (8 for up to 4 slots)."""
HIST_SHARED = HIST_COPIES * (4 * 256 + 1)
"""``uint32`` counters of :func:`histogram`'s shared memory (32 KiB): copies of every slot's 256 bins."""
HIST_WORDS = 64 if SIMULATED else 1 << 16
"""Words one block of :func:`histogram` counts (few under the simulator, so that tests make several blocks)."""
HIST_GRID = 2048
"""Most blocks a launch of :func:`histogram` starts; each loops over items."""
THREADS = 32 if SIMULATED else 256
"""Threads per block of the kernels that are not one warp per chunk (one warp under the simulator, which is slow)."""
ENCODE_REGISTERS = 64
"""Register cap of :func:`encode`: 4 blocks of 8 warps per SM (ptxas needs 69 uncapped, 3 blocks; no spills at 64)."""
RAW_QUADS = CRC_BLOCK // 4
"""Groups of 4 symbols one block of :func:`split_raw` writes: one CRC block."""

_LOW = uint32(STATE_LOW)
_WORD_MASK = uint32((1 << WORD_BITS) - 1)


@cuda.jit(device=True, inline=True)
def _extractor(planes, p):
    """The extractor of descriptor row ``p``: base, size, sa, ma, sb, mb."""
    return planes[p, X_BASE], planes[p, X_SIZE], planes[p, X_SA], planes[p, X_MA], planes[p, X_SB], planes[p, X_MB]


@cuda.jit(device=True, inline=True)
def _symbol_of(v, sa, ma, sb, mb):
    return uint32(((v >> uint32(sa)) & uint32(ma)) | ((v >> uint32(sb)) & uint32(mb)))


@cuda.jit(device=True, inline=True)
def _symbol_at(in8, base, size, sa, ma, sb, mb, e):
    """The symbol of element ``e``, read byte by byte (tails and elements of 8 or 16 bytes)."""
    at = base + e * size
    if size > 4:
        return uint32(in8[at + (sa >> 3)]) & uint32(ma)
    v = uint32(0)
    for b in range(size):
        v |= uint32(in8[at + b]) << uint32(8 * b)
    return _symbol_of(v, sa, ma, sb, mb)


@cuda.jit(device=True, inline=True)
def _quad_of(w0, w1, w2, w3, size, sa, ma, sb, mb):
    """The 4 symbols of elements of ``size`` (1, 2 or 4) bytes in the words ``w0 .. w3`` (zero beyond ``size``), packed in a word."""
    if size == 1:
        return w0
    if size == 2:
        return uint32(
            _symbol_of(w0 & uint32(0xFFFF), sa, ma, sb, mb)
            | (_symbol_of(w0 >> uint32(16), sa, ma, sb, mb) << uint32(8))
            | (_symbol_of(w1 & uint32(0xFFFF), sa, ma, sb, mb) << uint32(16))
            | (_symbol_of(w1 >> uint32(16), sa, ma, sb, mb) << uint32(24))
        )
    return uint32(
        _symbol_of(w0, sa, ma, sb, mb)
        | (_symbol_of(w1, sa, ma, sb, mb) << uint32(8))
        | (_symbol_of(w2, sa, ma, sb, mb) << uint32(16))
        | (_symbol_of(w3, sa, ma, sb, mb) << uint32(24))
    )


@cuda.jit(device=True, inline=True)
def _words(view, q, ok, size):
    """The ``size`` (a constant: 1, 2 or 4) words of group ``q`` of ``view``, zeros beyond ``size``; all zeros, unread, unless ``ok``."""
    zero = uint32(0)
    at = uint32(q * uint32(size))
    w0 = uint32(view[at]) if ok else zero
    w1 = uint32(view[uint32(at + uint32(1))]) if ok and size >= 2 else zero
    w2 = uint32(view[uint32(at + uint32(2))]) if ok and size == 4 else zero
    w3 = uint32(view[uint32(at + uint32(3))]) if ok and size == 4 else zero
    return w0, w1, w2, w3


@cuda.jit(device=True, inline=True)
def _quad(in8, base, size, sa, ma, sb, mb, e0, count):
    """Symbols of elements ``e0 .. e0 + 3`` packed in a word, byte ``u`` for ``e0 + u`` (zero past ``count``), read byte
    by byte: a chunk's last group, and elements of 8 or 16 bytes (whole groups of smaller ones go through :func:`_words`)."""
    packed = uint32(0)
    for u in range(RUN):
        if u < count:
            packed = uint32(packed | (_symbol_at(in8, base, size, sa, ma, sb, mb, e0 + u) << uint32(8 * u)))
    return packed


@cuda.jit(device=True, inline=True)
def _tap(shared, v, a, ma, b, mb, row):
    """Count the symbol ``((v >> a) & ma) | ((v >> b) & mb)`` of word ``v`` in the bins starting at ``row``."""
    cuda.atomic.add(shared, uint32(row + uint32(((v >> a) & ma) | ((v >> b) & mb))), uint32(1))


@cuda.jit(device=True, inline=True)
def _tap_at(shared, v, row, t, c):
    """Count the symbol that the tap at column ``c`` of tap row ``t`` (registers) takes from word ``v``."""
    _tap(shared, v, t[c + TAP_A], t[c + TAP_MA], t[c + TAP_B], t[c + TAP_MB], row + t[c + TAP_ROW])


@cuda.jit(device=True, inline=True)
def _taps(shared, v, row, t):
    """Count the four symbols that tap row ``t`` takes from word ``v``."""
    _tap_at(shared, v, row, t, 0)
    _tap_at(shared, v, row, t, TAP_COLUMNS)
    _tap_at(shared, v, row, t, 2 * TAP_COLUMNS)
    _tap_at(shared, v, row, t, 3 * TAP_COLUMNS)


@cuda.jit(device=True, inline=True)
def _tap_within(shared, v, extra, t, c):
    """Tap ``c`` of row ``t`` on the partial word ``v`` of ``extra`` bytes: counted if its first byte is one of them."""
    if t[c + TAP_AT] < extra:
        _tap_at(shared, v, uint32(0), t, c)


@cuda.jit(cache=True)
def histogram(in8, in32, tensors, taps, item_tensor, counts):
    """Count the symbols of every slot (plane extractor) of the tensors of one source buffer.

    A tensor is read as 32-bit words; each word gives four symbols, tap
    ``k`` of the tensor's row of ``taps`` taking ``((v >> A) & MA) | ((v >> B)
    & MB)`` into the 256 bins at ``ROW`` (plus ``1024 * (word & H_WM)`` for
    elements of 8 or 16 bytes, whose words go to their slots in turn), four
    words to a thread in one 16-byte load (a tensor's words start at a
    multiple of 16 bytes of the source). Block
    ``b`` counts words ``[HIST_WORDS * i, HIST_WORDS * (i + 1))`` of tensor
    ``t = item_tensor[b]`` (``i`` its item within the tensor); the tensor's
    last item also counts the ``H_TAIL`` bytes after its whole words, the
    taps whose first byte ``AT`` lies among them. Bins are kept in shared
    memory in up to :data:`HIST_COPIES` copies, thread ``i`` counting into
    copy ``i % copies``, each copy one word longer than its bins so that one
    symbol's bins in different copies lie in different banks (lanes of a warp
    that count the same symbol, the few exponents of a weight tensor, rarely
    touch the same word), and added to ``counts[slot, symbol]`` at the end
    of the item.
    """
    shared = cuda.shared.array(HIST_SHARED, uint32)
    tap = cuda.local.array(TAP_ROW_WORDS, uint32)
    tid = cuda.threadIdx.x
    threads = uint32(cuda.blockDim.x)
    for b in range(cuda.blockIdx.x, item_tensor.shape[0], cuda.gridDim.x):
        t = item_tensor[b]
        first_slot = tensors[t, H_SLOT]
        n_slots = tensors[t, H_SLOTS]
        stride = n_slots * 256 + 1
        copies = min(HIST_COPIES, HIST_SHARED // stride)
        for i in range(tid, copies * stride, cuda.blockDim.x):
            shared[i] = 0
        for k in range(TAP_ROW_WORDS):
            tap[k] = uint32(taps[t, k])
        cuda.syncthreads()
        item = b - tensors[t, H_FIRST_ITEM]
        start = item * HIST_WORDS
        words = uint32(max(0, min(HIST_WORDS, tensors[t, H_WORDS] - start)))
        view = tail(in32, tensors[t, H_WORD] + start)
        mine = uint32((tid % copies) * stride)
        wm = uint32(tensors[t, H_WM])
        row0 = mine
        row1 = mine + ((uint32(1) & wm) << uint32(10))
        row2 = mine + ((uint32(2) & wm) << uint32(10))
        row3 = mine + ((uint32(3) & wm) << uint32(10))
        i = uint32(tid)
        while i < words >> uint32(2):
            v0, v1, v2, v3 = load4(view, i << uint32(2))
            _taps(shared, v0, row0, tap)
            _taps(shared, v1, row1, tap)
            _taps(shared, v2, row2, tap)
            _taps(shared, v3, row3, tap)
            i += threads
        i = (words & ~uint32(3)) + uint32(tid)
        if i < words:
            _taps(shared, uint32(view[i]), mine + ((i & wm) << uint32(10)), tap)
        extra = tensors[t, H_TAIL]
        if tid == 0 and extra and start + HIST_WORDS >= tensors[t, H_WORDS]:
            at = 4 * (tensors[t, H_WORD] + tensors[t, H_WORDS])
            v = uint32(0)
            for u in range(extra):
                v |= uint32(in8[at + u]) << uint32(8 * u)
            _tap_within(shared, v, extra, tap, 0)
            _tap_within(shared, v, extra, tap, TAP_COLUMNS)
            _tap_within(shared, v, extra, tap, 2 * TAP_COLUMNS)
            _tap_within(shared, v, extra, tap, 3 * TAP_COLUMNS)
        cuda.syncthreads()
        for i in range(tid, n_slots * 256, cuda.blockDim.x):
            total = uint64(0)
            for c in range(copies):
                total += uint64(shared[c * stride + i])
            if total:
                cuda.atomic.add(counts, (first_slot + i // 256, i % 256), total)
        cuda.syncthreads()


@cuda.jit(device=True, inline=True)
def _encode_symbol(x, s, active, rcp, info, votes, lane, above, emitted, out, last):
    """One sub-step of one lane: renormalize (emit a word), then code ``s``; return (state, words emitted).

    ``info[s]`` is ``M - freq | bias << 12 | shift << 25`` and ``rcp[s]``
    the reciprocal of ``freq``: ``q = x // freq`` is
    ``(t + ((x - t) >> 1)) >> shift`` with ``t = mulhi(x, rcp)``, and the
    new state ``x + bias + q * (M - freq)``. The word a lane emits goes to
    ``out[last - position]``, its position in the chunk's emission
    order counting the lanes above it that emit in this sub-step first.
    """
    entry = uint32(info[s])
    cmpl = entry & uint32(M - 1)
    emit = active and x >= uint32(uint32(M - cmpl) << uint32(ENCODE_SHIFT))
    bits = ballot(emit, votes, lane)
    if emit:
        position = uint32(emitted + uint32(cuda.popc(uint32(bits & above))))
        out[uint32(last - position)] = uint16(x & _WORD_MASK)
        x = uint32(x >> uint32(WORD_BITS))
    emitted = uint32(emitted + uint32(cuda.popc(bits)))
    if active:
        t = uint32((uint64(x) * uint64(rcp[s])) >> uint64(32))
        q = uint32(uint32(t + uint32(uint32(x - t) >> uint32(1))) >> uint32(entry >> uint32(25)))
        x = uint32(x + ((entry >> uint32(12)) & uint32(0x1FFF)) + uint32(q * cmpl))
    return x, emitted


@cuda.jit(device=True, inline=True)
def _group_words(view, k, ok, length, size):
    """The words of the group of 4 symbols from symbol ``k`` of a chunk of ``length``: read only if ``ok``,
    the group is whole and ``size <= 4`` (else zeros; :func:`_quad` reads the others byte by byte)."""
    return _words(view, uint32(max(k, 0) >> 2), ok and size <= 4 and length - k >= RUN, size)


@cuda.jit(device=True, inline=True)
def _encode_chunk(in8, in32, planes, plane, size, start, length, rcp, info, votes, lane, above, out, chunk):
    """One lane's part of coding a chunk of ``length`` symbols from element ``start``; return (final state, words emitted).

    ``size``, the plane's element size, is a constant: for 1, 2 and 4 whole
    groups of 4 symbols come from 32-bit words of a view that starts at the
    chunk's first element, with 32-bit indices, loaded a step ahead of their
    coding (waits on global loads were 30% of the kernel's stall cycles;
    ``bench/NOTES.md``, entry E8); elements of 8 and 16 bytes are read byte
    by byte.
    """
    base, _, sa, ma, sb, mb = _extractor(planes, plane)
    lanes = planes[plane, E_LANES]
    mine = lane < lanes
    words = tail(in32, (base + start * size) >> 2) if size <= 4 else in32
    x = _LOW
    emitted = uint32(0)
    last = uint32(chunk - 1)
    span = lanes * RUN
    step = (length + span - 1) // span
    w0, w1, w2, w3 = _group_words(words, ((step - 1) * lanes + lane) * RUN, mine and step > 0, length, size)
    while step > 0:
        step -= 1
        k0 = (step * lanes + lane) * RUN
        valid = length - k0
        packed = uint32(0)
        if mine and valid > 0:
            if size <= 4 and valid >= RUN:
                packed = _quad_of(w0, w1, w2, w3, size, sa, ma, sb, mb)
            else:
                packed = _quad(in8, base, size, sa, ma, sb, mb, start + k0, valid)
        w0, w1, w2, w3 = _group_words(words, k0 - lanes * RUN, mine and step > 0, length, size)
        for u in range(RUN - 1, -1, -1):
            s = uint32((packed >> uint32(8 * u)) & uint32(0xFF))
            x, emitted = _encode_symbol(x, s, mine and u < valid, rcp, info, votes, lane, above, emitted, out, last)
    return x, emitted


@cuda.jit(cache=True, **({} if SIMULATED else {"max_registers": ENCODE_REGISTERS}))
def encode(in8, in32, tables, plans, planes, groups, scratch16, states, counts):
    """Code every chunk listed in ``groups`` (plane, first chunk, chunk count) of the planes planned coded.

    Chunk ``c`` of plane ``p`` (``g = planes[p, E_FIRST] + c`` over the
    call's chunks) leaves its words in ``scratch16`` at the end of its
    region ``[E_SCRATCH + c * chunk, E_SCRATCH + (c + 1) * chunk)``, in file
    order, its final states in ``states[g * 32 + lane]`` and its word count
    in ``counts[g]``. The plane's ``E_SLOT`` names its row of
    :func:`rans.gpu.tables.plan`'s outputs: ``plans[slot, I_MODE]``, and
    ``tables[slot]``, ``rcp[256]`` then ``info[256]``. A plane is coded if
    its mode is ``CODED`` and the ``E_RIVAL_COUNT`` slots from ``E_RIVALS``
    (a tensor's planes in its preferred split, for its split "none" plane)
    are all ``RAW``; the chunks of other planes are skipped.
    """
    rcp = cuda.shared.array(256, uint32)
    info = cuda.shared.array(256, uint32)
    scratch = cuda.shared.array((WARPS_PER_BLOCK, VOTE_BYTES), uint8)
    tid = cuda.threadIdx.x
    warp = tid // LANES
    lane = tid % LANES
    votes = scratch[warp]
    votes[64 + lane] = 0
    below = uint32((uint32(1) << uint32(lane)) - uint32(1))
    above = uint32(uint32(0xFFFFFFFF) ^ below ^ (uint32(1) << uint32(lane)))
    for g in range(cuda.blockIdx.x, groups.shape[0], cuda.gridDim.x):
        plane = groups[g, 0]
        row = planes[plane, E_SLOT]
        used = plans[row, I_MODE] == CODED
        for r in range(planes[plane, E_RIVALS], planes[plane, E_RIVALS] + planes[plane, E_RIVAL_COUNT]):
            used = used and plans[r, I_MODE] == RAW
        if not used:
            continue
        for i in range(tid, 256, cuda.blockDim.x):
            rcp[i] = tables[row, i]
            info[i] = tables[row, 256 + i]
        cuda.syncthreads()
        if warp < groups[g, 2]:
            c = groups[g, 1] + warp
            size = planes[plane, X_SIZE]
            chunk = planes[plane, E_CHUNK]
            start = c * chunk
            length = min(chunk, planes[plane, E_N] - start)
            out = tail(scratch16, planes[plane, E_SCRATCH] + start)
            if size == 1:
                x, emitted = _encode_chunk(in8, in32, planes, plane, 1, start, length, rcp, info, votes, lane, above, out, chunk)
            elif size == 2:
                x, emitted = _encode_chunk(in8, in32, planes, plane, 2, start, length, rcp, info, votes, lane, above, out, chunk)
            elif size == 4:
                x, emitted = _encode_chunk(in8, in32, planes, plane, 4, start, length, rcp, info, votes, lane, above, out, chunk)
            elif size == 8:
                x, emitted = _encode_chunk(in8, in32, planes, plane, 8, start, length, rcp, info, votes, lane, above, out, chunk)
            else:
                x, emitted = _encode_chunk(in8, in32, planes, plane, 16, start, length, rcp, info, votes, lane, above, out, chunk)
            done = planes[plane, E_FIRST] + c
            if lane < planes[plane, E_LANES]:
                states[done * LANES + lane] = x
            if lane == 0:
                counts[done] = emitted
        cuda.syncthreads()


@cuda.jit(device=True, inline=True)
def _put_group(target, words, w, skip, packed):
    """Store group ``w`` of a block (``packed``) in the plane unless it lies below 0, and stage it for the CRC."""
    if w >= skip:
        target[uint32(w - skip)] = packed
    words[uint32(w + (w >> uint32(5)))] = packed


RAW_UNROLL = 4
"""Groups a thread of :func:`split_raw` loads before it uses any (:func:`_raw_quads` is written out for
four): one load at a time left the kernel waiting on memory 41% of the time at 37% occupancy
(``bench/NOTES.md``, entry E7)."""
assert RAW_QUADS % (RAW_UNROLL * CRC_THREADS) == 0


@cuda.jit(device=True, inline=True)
def _raw_quads(in32, out32, words, base, dst, first, size, sa, ma, sb, mb, tid):
    """:func:`split_raw`'s groups ``first .. first + RAW_QUADS - 1`` of a plane of elements of ``size`` (a constant: 1, 2 or 4) bytes.

    The groups below 0 are zeros and not written; indices are 32-bit, from views that start at group ``max(first, 0)``.
    A thread takes :data:`RAW_UNROLL` groups a step, ``CRC_THREADS`` apart, their loads first.
    """
    skip = uint32(max(0, -first))
    start = first + skip
    source = tail(in32, (base >> 2) + start * size)
    target = tail(out32, (dst >> 2) + start)
    sa, ma, sb, mb = uint32(sa), uint32(ma), uint32(sb), uint32(mb)
    step = uint32(CRC_THREADS)
    w = uint32(tid)
    while w < uint32(RAW_QUADS):
        w1 = uint32(w + step)
        w2 = uint32(w1 + step)
        w3 = uint32(w2 + step)
        a0, a1, a2, a3 = _words(source, uint32(max(w, skip) - skip), w >= skip, size)
        b0, b1, b2, b3 = _words(source, uint32(max(w1, skip) - skip), w1 >= skip, size)
        c0, c1, c2, c3 = _words(source, uint32(max(w2, skip) - skip), w2 >= skip, size)
        d0, d1, d2, d3 = _words(source, uint32(max(w3, skip) - skip), w3 >= skip, size)
        _put_group(target, words, w, skip, _quad_of(a0, a1, a2, a3, size, sa, ma, sb, mb))
        _put_group(target, words, w1, skip, _quad_of(b0, b1, b2, b3, size, sa, ma, sb, mb))
        _put_group(target, words, w2, skip, _quad_of(c0, c1, c2, c3, size, sa, ma, sb, mb))
        _put_group(target, words, w3, skip, _quad_of(d0, d1, d2, d3, size, sa, ma, sb, mb))
        w = uint32(w3 + step)


@cuda.jit(cache=True)
def split_raw(in8, in32, planes, item_plane, out8, out32, table, operators, shifts, crcs):
    """Write raw planes and XOR the CRC-32 share of their whole groups of 4 bytes into ``crcs``.

    A plane of ``n`` symbols has ``Q = n // 4`` whole groups; block ``m``
    from the plane's end (``item_plane[b]`` its plane) writes groups
    ``[Q - (m + 1) * RAW_QUADS, Q - m * RAW_QUADS)`` (those below 0 are
    zeros for the CRC, and not written), the block with ``m == 0`` also the
    ``n % 4`` last symbols, which :func:`rans.gpu.crc.crc_blocks` covers. A plane's
    section starts at byte ``planes[p, R_DST]`` of ``out8``, a multiple of 4;
    ``R_AFTER`` bytes of its tensor's span follow its whole groups.
    """
    words = cuda.shared.array(CRC_SHARED_WORDS, uint32)
    t4 = cuda.shared.array((4, 256), uint32)
    shifted = cuda.shared.array((32, SHIFT_COLUMNS), uint32)
    parts = cuda.shared.array(CRC_WARPS, uint32)
    scratch = cuda.shared.array(32, uint32)
    tid = cuda.threadIdx.x
    stage_tables(table, shifts, t4, shifted, tid)
    for b in range(cuda.blockIdx.x, item_plane.shape[0], cuda.gridDim.x):
        p = item_plane[b]
        base, size, sa, ma, sb, mb = _extractor(planes, p)
        n = planes[p, R_N]
        dst = planes[p, R_DST]
        whole = n // RUN
        blocks = max(1, (whole + RAW_QUADS - 1) // RAW_QUADS)
        m = blocks - 1 - (b - planes[p, R_FIRST_ITEM])
        first = whole - (m + 1) * RAW_QUADS
        if size == 1:
            _raw_quads(in32, out32, words, base, dst, first, 1, sa, ma, sb, mb, tid)
        elif size == 2:
            _raw_quads(in32, out32, words, base, dst, first, 2, sa, ma, sb, mb, tid)
        elif size == 4:
            _raw_quads(in32, out32, words, base, dst, first, 4, sa, ma, sb, mb, tid)
        else:
            for w in range(tid, RAW_QUADS, cuda.blockDim.x):
                q = first + w
                packed = uint32(0)
                if q >= 0:
                    packed = _quad(in8, base, size, sa, ma, sb, mb, q * RUN, RUN)
                    out32[(dst >> 2) + q] = packed
                words[w + (w >> 5)] = packed
        if m == 0 and tid == 0:
            for u in range(n - whole * RUN):
                e = whole * RUN + u
                out8[dst + e] = uint8(_symbol_at(in8, base, size, sa, ma, sb, mb, e))
        cuda.syncthreads()
        crc = block_crc(words, t4, shifted, parts, scratch, tid)
        if tid < 32:
            crc = shift_in_warp(operators, m * CRC_BLOCK + planes[p, R_AFTER], crc, tid, scratch)
            if tid == 0:
                cuda.atomic.xor(crcs, planes[p, R_TENSOR], crc)
        # No barrier here: every read of ``words`` and ``parts`` for this block came before block_crc's
        # barrier, and the next block's writes to them come after the barrier that follows its staging,
        # which warp 0 reaches only once it is done here; so the other warps load the next block meanwhile.


@cuda.jit(cache=True)
def compact(planes, chunk_plane, first_word, scratch16, states, counts, out16, out32):
    """Move every coded chunk's states, word count (all chunks' but the last) and words into its section.

    Block ``b`` handles chunk ``b`` of the call (``chunk_plane[b]`` its
    plane, -1 for the chunks of planes that were not coded); ``first_word[b]``
    is the index of its first word in its plane's words. ``K_STATES``,
    ``K_COUNTS`` and ``K_WORDS`` are byte offsets in the output of the
    section's states, counts and words.
    """
    tid = cuda.threadIdx.x
    for g in range(cuda.blockIdx.x, chunk_plane.shape[0], cuda.gridDim.x):
        p = chunk_plane[g]
        if p < 0:
            continue
        c = g - planes[p, K_FIRST]
        lanes = planes[p, K_LANES]
        chunk = planes[p, K_CHUNK]
        n = counts[g]
        if tid < lanes:
            out32[(planes[p, K_STATES] >> 2) + c * lanes + tid] = states[g * LANES + tid]
        if tid == 0 and c + 1 < planes[p, K_CHUNKS]:
            out32[(planes[p, K_COUNTS] >> 2) + c] = n
        src = planes[p, K_SCRATCH] + (c + 1) * chunk - n
        dst = (planes[p, K_WORDS] >> 1) + first_word[g]
        for i in range(tid, n, cuda.blockDim.x):
            out16[dst + i] = scratch16[src + i]


@cuda.jit(cache=True)
def scatter(blob, pieces, out8):
    """Copy small host-made pieces into the output: ``pieces[i]`` is (source offset, target offset, length)."""
    for i in range(cuda.blockIdx.x, pieces.shape[0], cuda.gridDim.x):
        src = pieces[i, 0]
        dst = pieces[i, 1]
        for j in range(cuda.threadIdx.x, pieces[i, 2], cuda.blockDim.x):
            out8[dst + j] = blob[src + j]
