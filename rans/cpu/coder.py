"""The CPU coder: the reference's sections, byte for byte, from compiled loops.

Validation, tables and layout are the reference's own (:mod:`rans.reference`);
only the per-symbol loops (:mod:`rans.cpu.kernels`) are compiled, and they
run one chunk per thread on every core.
"""

from __future__ import annotations

import numpy as np

from ..constants import GROUP, LANE_COUNTS, STATE_LOW
from ..errors import CorruptDataError, InvalidArgumentError
from ..reference import tables
from ..reference.coder import HEADER, HEADER_BYTES, Layout, check_chunk, lanes_for, read_section
from . import kernels
from . import tables as fast_tables
from .planes import count
from .tables import quantize


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
    head = HEADER.pack(lanes, 0, chunk // GROUP) + fast_tables.serialize(freq)
    layout = Layout.of(n, chunk, len(head) - HEADER_BYTES, lanes)
    out = np.empty(layout.words_at + 2 * n, dtype=np.uint8)
    out[: layout.states_at] = 0
    out[: len(head)] = np.frombuffer(head, dtype=np.uint8)
    states = out[layout.states_at : layout.counts_at].view("<u4").reshape(layout.n_chunks, lanes)
    counts = np.empty(layout.n_chunks, dtype=np.int64)
    words = out[layout.words_at :].view("<u2")
    encode_chunks = kernels.encode_chunks if n >= kernels.PARALLEL_MIN else kernels.encode_chunks_serial
    total = encode_chunks(plane, chunk, lanes, freq, tables.cumulative(freq), states, counts, words)
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
    parsed = read_section(section, n, field, fast_tables.parse)
    layout = parsed.layout
    initial = parsed.states.astype(np.int64)
    bad = np.flatnonzero((initial < STATE_LOW).any(axis=1))
    if bad.size:
        raise CorruptDataError(f"initial state below L = {STATE_LOW}", field=field, chunk=int(bad[0]))
    if out is None:
        out = np.empty(n, dtype=np.uint8)
    elif not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (n,) and out.flags.c_contiguous):
        raise InvalidArgumentError(f"out must be a C-contiguous uint8 array of {n} elements")
    words = parsed.words if parsed.words.size else np.zeros(1, dtype=np.uint16)
    decode_chunks = kernels.decode_chunks if n >= kernels.PARALLEL_MIN else kernels.decode_chunks_serial
    status = decode_chunks(words, parsed.chunk, layout.lanes, slot_table(parsed.freq), initial, parsed.counts, out)
    bad = np.flatnonzero(status)
    if bad.size:
        i = int(bad[0])
        what = "did not read exactly its words" if status[i] == 1 else "did not end in state L"
        raise CorruptDataError(f"chunk {what}: the coded data is corrupt", field=field, chunk=i)
    return out
