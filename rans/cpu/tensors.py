"""Tensors decoded chunk by chunk and joined while the chunk is in cache.

Decoding a coded plane whole and then joining the planes writes every
decoded symbol to memory and reads it back; here each thread decodes chunks
``i`` and ``i + 1`` of every coded plane of a tensor into scratch of its own
(64 KiB a plane by default) and joins elements ``i * chunk`` to
``(i + 2) * chunk`` from it at once, as the GPU's kernel joins in registers. That applies to
tensors of 2- and 4-byte elements split into planes (``"float"`` or
``"bytes"``), large enough to share among threads, whose coded planes share
one chunk size (writers give them one); other tensors take
:func:`rans.codec.decode_planes`. So does a tensor with a coded plane that
fails to parse, so that the error is the one the reference raises, for the
same plane.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .. import backends, codec, container, dtypes
from ..errors import CorruptDataError, RansError
from . import coder, kernels, planes

_RAW, _CODED, _CONST = 0, 1, 2
"""A plane's mode, as the kernel takes it."""
_MODES = {"raw": _RAW, "coded": _CODED, "const": _CONST}
_FLOAT, _BYTES = 0, 1
"""The split, as the kernel takes it."""
_PLANES = 4
"""The kernel's tuples hold this many planes; a tensor of 2-byte elements fills the rest with stand-ins."""


@nb.njit(cache=True, nogil=True, inline="always")
def _source(mode, source, scratch, start, length):
    """A plane's bytes for elements ``start .. start + length - 1``: a raw plane's slice, the decoded chunk or the constant."""
    if mode == _RAW:
        return source[start : start + length]
    if mode == _CODED:
        return scratch[:length]
    return source[:length]


@nb.njit(cache=True)
def _firsts(modes, counts, n_chunks):
    """``first[j, i]``: where chunk ``i`` of plane ``j`` starts in the plane's words (``first[j, n_chunks]``: their count)."""
    first = np.zeros((len(modes), n_chunks + 1), dtype=np.int64)
    for j in range(len(modes)):
        if modes[j] == _CODED:
            for i in range(n_chunks):
                first[j, i + 1] = first[j, i] + counts[j][i]
    return first


@nb.njit(parallel=True, cache=True)
def _decode_join(split, modes, sources, words, slots, states, counts, chunk, scratch, scratch_view, out):
    """Decode and join a tensor into ``out`` (its bytes); return each plane's chunk statuses (``int8[planes, chunks]``).

    ``modes`` has one entry a plane (2 or 4); the tuples have :data:`_PLANES`.
    ``scratch`` is ``uint8[threads, planes, 2 * chunk]``; ``scratch_view`` is
    the same memory, read-only, so that it types like the raw planes it stands
    beside in :func:`_source`. Each thread takes an equal run of chunks, two
    whole chunks at a time (:func:`rans.cpu.kernels._decode_pair`).
    """
    size = len(modes)
    n = out.size // size
    n_chunks = (n + chunk - 1) // chunk
    threads = scratch.shape[0]
    first = _firsts(modes, counts, n_chunks)
    status = np.zeros((size, n_chunks), dtype=np.int8)
    origin = np.int64(0)  # where a chunk starts in its scratch, typed: a literal 0 would compile the chunk loop again
    for t in nb.prange(threads):
        i = t * n_chunks // threads
        end = (t + 1) * n_chunks // threads
        while i < end:
            start = i * chunk
            pair = i + 1 < end and start + 2 * chunk <= n
            length = 2 * chunk if pair else min(chunk, n - start)
            for j in range(size):
                if modes[j] != _CODED:
                    continue
                lanes = states[j].shape[1]
                if pair:
                    status[j, i], status[j, i + 1] = kernels._decode_pair(
                        words[j], first[j, i], first[j, i + 1], states[j][i], first[j, i + 1], first[j, i + 2], states[j][i + 1],
                        origin, chunk, lanes, slots[j], scratch[t, j],
                    )
                else:
                    status[j, i] = kernels._decode_chunk(words[j], first[j, i], first[j, i + 1], states[j][i], origin, length, lanes, slots[j], scratch[t, j])
            p0 = _source(modes[0], sources[0], scratch_view[t, 0], start, length)
            p1 = _source(modes[1], sources[1], scratch_view[t, 1], start, length)
            if size == 2:
                v = out[start * 2 : (start + length) * 2].view(np.uint16)
                if split == _FLOAT:
                    planes._join_float16(p0, p1, v)
                else:
                    planes._join_bytes16(p0, p1, v)
            else:
                p2 = _source(modes[2], sources[2], scratch_view[t, 2], start, length)
                p3 = _source(modes[3], sources[3], scratch_view[t, 3], start, length)
                v = out[start * 4 : (start + length) * 4].view(np.uint32)
                if split == _FLOAT:
                    planes._join_float32(p0, p1, p2, p3, v)
                else:
                    planes._join_bytes32(p0, p1, p2, p3, v)
            i += 2 if pair else 1
    return status


def _prepare(entry: container.Entry, buf: memoryview) -> list[coder.Prepared | None] | None:
    """Each coded plane's :class:`~rans.cpu.coder.Prepared` (``None`` for the other planes), or ``None``
    where :func:`decode_tensor` leaves the tensor to :func:`rans.codec.decode_planes`."""
    n = entry.size
    if entry.split == "none" or dtypes.DTYPES[entry.dtype].itemsize not in (2, 4) or n < kernels.PARALLEL_MIN:
        return None
    prepared: list[coder.Prepared | None] = []
    for j, plane in enumerate(entry.planes):
        if plane.mode != "coded":
            prepared.append(None)
            continue
        try:
            prepared.append(coder.prepare(buf[plane.offset : plane.offset + plane.length], n, f"planes[{j}]"))
        except RansError:
            return None
    chunks = {p.chunk for p in prepared if p is not None}
    return prepared if len(chunks) == 1 else None


def _bytes_of(plane: container.Plane, buf: memoryview, span: int, nothing: np.ndarray) -> np.ndarray:
    """The read-only bytes the kernel reads for a plane: a raw plane's section, ``span`` copies of a
    constant plane's value, or ``nothing`` for a coded plane (its bytes are decoded into scratch)."""
    if plane.mode == "raw":
        return coder.read_only(np.frombuffer(buf[plane.offset : plane.offset + plane.length], dtype=np.uint8))
    if plane.mode == "const":
        return coder.read_only(np.full(span, plane.value, dtype=np.uint8))
    return nothing


def decode_tensor(entry: container.Entry, buf: memoryview, verify: bool = True) -> np.ndarray:
    """Decode one tensor as :func:`rans.codec.decode_tensor` does with the CPU backend: the same array, the same errors.

    Examples
    --------
    >>> import numpy as np
    >>> import rans
    >>> from rans import container
    >>> from rans.cpu import tensors
    >>> weights = np.random.default_rng(0).normal(0, 0.02, 1 << 18).astype(np.float16)
    >>> data = rans.compress(weights)
    >>> entry = container.read_header(memoryview(data)).entries[0]
    >>> bool((tensors.decode_tensor(entry, memoryview(data)) == weights).all())
    True
    """
    if verify:
        codec.verify_sections(entry, buf)
    prepared = _prepare(entry, buf)
    if prepared is None:
        return codec.decode_planes(entry, buf, False, backends.get("cpu"))
    coded = next(p for p in prepared if p is not None)
    chunk = coded.chunk
    missing = _PLANES - len(prepared)

    def each(part: str, stand_in: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(stand_in if p is None else getattr(p, part) for p in prepared) + (stand_in,) * missing

    modes = np.array([_MODES[plane.mode] for plane in entry.planes], dtype=np.int8)
    nothing = coder.read_only(np.zeros(1, dtype=np.uint8))
    sources = tuple(_bytes_of(plane, buf, 2 * chunk, nothing) for plane in entry.planes) + (nothing,) * missing
    scratch = np.empty((nb.get_num_threads(), len(prepared), 2 * chunk), dtype=np.uint8)
    try:
        out = np.empty(entry.nbytes, dtype=np.uint8)
    except MemoryError:
        raise CorruptDataError(f"no memory for {entry.size} elements", tensor=entry.name, field="shape") from None
    split = _FLOAT if entry.split == "float" else _BYTES
    status = _decode_join(
        split, modes, sources, each("words", coded.words), each("slots", coded.slots), each("states", coded.states),
        each("counts", coded.counts), chunk, scratch, coder.read_only(scratch), out,
    )
    for j in range(len(prepared)):
        try:
            coder.check_status(status[j], f"planes[{j}]")
        except RansError as e:
            raise e.at(tensor=entry.name) from None
    return out.view(dtypes.DTYPES[entry.dtype]).reshape(entry.shape)
