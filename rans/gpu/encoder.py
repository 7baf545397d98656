"""Host side of the GPU encoder: the same file as the reference encoder, made on the GPU.

A call runs in three rounds, each ending in one wait for the GPU and small
device-to-host copies:

1. :func:`encode_kernels.histogram` counts the symbols of every plane of
   each tensor's preferred split (the split is fused: symbols are computed
   from the tensor's elements); :func:`tables.plan` chooses each plane's
   mode and table as :func:`rans.codec.plan_counts` does, and those of the
   tensor's bytes as one plane (split ``"none"``) beside them where the
   dtype allows it; :func:`encode_kernels.encode` codes every chunk of
   every plane planned coded (a split ``"none"`` plane only where the
   tensor's other planes are all raw) into scratch memory and leaves each
   chunk's word count. The host reads the plans and the counts, serializes the tables
   and lays the file out. A BF16 or F32 tensor whose planes would all be
   raw has its bytes counted, planned and coded in a second pass of this
   round, for split ``"none"``.
2. Raw planes are split straight into their sections (checksummed as they
   are written), the chunks' states, counts and words are moved into
   theirs, section headers, tables and padding are copied in, and
   :func:`crc.crc_blocks` checksums the rest of each tensor's
   span. The host builds the container header.
3. The header is copied in front of the sections.

Sections are laid out from byte ``R`` of one device buffer, ``R`` an upper
bound of the header's length; the file is the slice that starts ``len(header)``
bytes before ``R``. Every byte equals what :func:`rans.compress` or
:func:`rans.save_file` writes with the reference encoder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from numba import cuda

from .. import container, dtypes, hostbytes
from ..cpu.tables import serialize
from ..constants import DEFAULT_CHUNK, GROUP, LANE_COUNTS, LANES
from ..errors import InvalidArgumentError
from ..reference import coder
from . import crc, launch, memory
from . import encode_kernels as ek
from . import tables as gt
from .decoder import _stream
from .warp import SIMULATED, WARPS_PER_BLOCK

_TORCH_DTYPES: dict[str, str] = {v: k for k, v in dtypes.TORCH.items()}


def _planes(name: str) -> list[tuple[int, int, int, int]]:
    """The extractors ``(sa, ma, sb, mb)`` of the planes of a dtype's preferred split."""
    if name == "BF16":
        return [(7, 0xFF, 0, 0), (8, 0x80, 0, 0x7F)]
    if name == "F32":
        return [(23, 0xFF, 0, 0), (24, 0x80, 16, 0x7F), (8, 0xFF, 0, 0), (0, 0xFF, 0, 0)]
    return _bytes(name)


def _bytes(name: str) -> list[tuple[int, int, int, int]]:
    """The extractors of each byte of a dtype's elements (whose counts add up to split "none"'s)."""
    return [(8 * j, 0xFF, 0, 0) for j in range(dtypes.DTYPES[name].itemsize)]


def _taps(size: int, extractors: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int, int, int]]:
    """The four taps ``(A, MA, B, MB, ROW, AT)`` by which :func:`encode_kernels.histogram` counts a word of elements of ``size`` bytes.

    A word holds four 1-byte elements, two 2-byte ones (each counted for
    both extractors), one 4-byte one (one tap per extractor), or a quarter
    of an 8- or 16-byte one, whose bytes (split ``"bytes"``) go to the slots
    of their place in the element (the kernel adds it to ``ROW``). ``AT`` is
    the tap's first byte in the word, for a tensor's last, partial word.

    Examples
    --------
    >>> from rans.gpu.encoder import _planes, _taps
    >>> _taps(2, _planes("BF16"))[2:]
    [(23, 255, 16, 0, 0, 2), (24, 128, 16, 127, 256, 2)]
    """
    if size == 1:
        ((sa, ma, sb, mb),) = extractors
        return [(sa + 8 * k, ma, sb + 8 * k, mb, 0, k) for k in range(4)]
    if size == 2:
        return [(sa + 16 * e, ma, sb + 16 * e, mb, 256 * j, 2 * e) for e in range(2) for j, (sa, ma, sb, mb) in enumerate(extractors)]
    if size == 4:
        return [(sa, ma, sb, mb, 256 * j, 0) for j, (sa, ma, sb, mb) in enumerate(extractors)]
    return [(8 * k, 0xFF, 0, 0, 256 * k, 0) for k in range(4)]


@dataclass
class _PlanePlan:
    mode: str
    extractor: tuple[int, int, int, int, int, int]  # base, size, sa, ma, sb, mb
    n: int
    freq: np.ndarray | None = None
    value: int = 0
    lanes: int = 0
    table: bytes = b""
    layout: coder.Layout | None = None
    slot: int = 0  # its row of the plan's outputs
    first_chunk: int = 0  # over the whole call
    scratch: int = 0  # first word of its scratch region
    entry_plane: container.Plane | None = None


@dataclass
class _Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    source: int
    base: int
    first_chunk: int = 0  # of its region, which its planes share
    scratch: int = 0
    planes: list[_PlanePlan] = field(default_factory=list)

    @property
    def n(self) -> int:
        return math.prod(self.shape)


@dataclass
class _Source:
    """One device buffer the tensors' bytes are read from, with its 32-bit view."""

    in8: Any
    in32: Any
    keep: Any = None
    tensors: list[int] = field(default_factory=list)


@dataclass
class Encoded:
    """A rans file made on the GPU.

    ``buffer`` is a ``uint8`` numba device array holding exactly the file
    (a view into ``storage``); ``entries`` its tensors, offsets filled in.
    """

    buffer: Any
    entries: list[container.Entry]
    storage: Any = None

    @property
    def nbytes(self) -> int:
        """Bytes of the file."""
        return int(self.buffer.size)

    def to_bytes(self) -> bytes:
        """The file, copied to the host."""
        return hostbytes.join([self.buffer.copy_to_host()]) if self.nbytes else b""


def _allocate(nbytes: int) -> Any:
    """A device buffer of ``nbytes`` bytes rounded up to a multiple of 8 (at least 8); torch's caching allocator when it has CUDA."""
    nbytes = max(int(nbytes), 8)
    nbytes += -nbytes % 8
    if not SIMULATED:
        try:
            import torch

            if torch.cuda.is_available():
                return torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        except ImportError:
            pass
    return cuda.device_array(nbytes, dtype=np.uint8)


def _empty(nbytes: int, dtype: Any = np.uint8) -> tuple[Any, Any]:
    """A device buffer of :func:`_allocate` and a view of all of it as ``dtype``."""
    storage = _allocate(nbytes)
    return storage, _view(storage, 0, dtype, (storage.shape[0] // np.dtype(dtype).itemsize,))


def _view(owner: Any, start: int, dtype: Any, shape: tuple[int, ...]) -> Any:
    """A view of ``dtype`` and ``shape`` on the bytes of ``owner`` (a span, device array or torch tensor) from byte ``start``.

    A :class:`~rans.gpu.memory.Span`, which :func:`rans.gpu.launch.run`
    passes to kernels: a Numba device array costs 20-80 us of host time to
    make on an H100 host (``bench/NOTES.md``, entries E5 and E6), and a call
    makes dozens of views. Under the simulator, a Numba array by slicing.
    """
    dtype = np.dtype(dtype)
    if SIMULATED:
        return owner[start : start + math.prod(shape) * dtype.itemsize].view(dtype).reshape(shape)
    return memory.span(owner, start, dtype, shape)


def _numba(owner: Any, start: int, dtype: Any, shape: tuple[int, ...]) -> Any:
    """A Numba device array of ``dtype`` and ``shape`` on the bytes of ``owner`` from byte ``start`` (for callers)."""
    if SIMULATED:
        return _view(owner, start, dtype, shape)
    if not math.prod(shape):
        return cuda.device_array(shape, dtype)
    interface = memory.span(owner, start, dtype, shape).__cuda_array_interface__
    return cuda.from_cuda_array_interface(interface, owner=owner, sync=False)


def _to_host(arrays: list[Any], stream: Any) -> list[np.ndarray]:
    """Views from :func:`_view` on the host, once ``stream``'s work is done (one wait for them all)."""
    if SIMULATED:
        hosts = [array.copy_to_host(stream=stream) for array in arrays]
        stream.synchronize()
        return hosts
    return memory.to_host(arrays, stream)


def _copy_in(storage: Any, start: int, host: np.ndarray, stream: Any) -> None:
    """Copy ``host``'s bytes into ``storage`` from byte ``start`` on ``stream``; ``host`` may be reused on return.

    Through the driver (:func:`rans.gpu.memory.to_device`): Numba's copy of
    4 KiB from pageable memory took 168 us of host time on an H100 host
    (``bench/NOTES.md``, entry E5). Under the simulator, Numba's.
    """
    host = np.ascontiguousarray(host).reshape(-1).view(np.uint8)
    if SIMULATED:
        _view(storage, start, np.uint8, (host.size,)).copy_to_device(host, stream=stream)
    else:
        memory.to_device(memory.pointer(storage) + start, host, stream)


def _upload(arrays: list[np.ndarray], stream: Any) -> list[Any]:
    """Copy small host arrays to the device (:func:`_to_device`, 8-byte aligned); return a device view of each.

    The device buffer comes from :func:`_allocate` (torch's caching allocator
    when it has CUDA), so the rounds' uploads reuse cached device memory
    instead of a ``cudaMalloc`` each and a ``cudaFree`` later; the views
    keep it alive.
    """
    storage, offsets = _to_device(arrays, stream, 8)
    return [_view(storage, at, a.dtype, a.shape) for a, at in zip(arrays, offsets)]


DIRECT_BYTES = 1 << 20
"""Host arrays from which :func:`_to_device` copies straight from the caller's memory: one pass over
the bytes instead of two (a staging copy first), which is most of a large tensor's host time."""


def _to_device(arrays: list[np.ndarray], stream: Any, align: int) -> tuple[Any, list[int]]:
    """Copy host arrays into one device buffer, each at a multiple of ``align`` bytes; return it and their offsets.

    Runs of arrays under :data:`DIRECT_BYTES` are gathered into one host
    buffer and copied in one transfer; larger ones are copied from where
    they lie. The gaps between arrays are left as they are: nothing reads
    them.
    """
    offsets, total = [], 0
    for array in arrays:
        offsets.append(total)
        total += -(-array.nbytes // align) * align
    storage = _allocate(total)
    run: list[int] = []

    def flush() -> None:
        if run:
            first, last = offsets[run[0]], offsets[run[-1]] + arrays[run[-1]].nbytes
            staging = np.empty(last - first, dtype=np.uint8)
            for j in run:
                staging[offsets[j] - first : offsets[j] - first + arrays[j].nbytes] = np.ascontiguousarray(arrays[j]).reshape(-1).view(np.uint8)
            _copy_in(storage, first, staging, stream)
            run.clear()

    for j, array in enumerate(arrays):
        if array.nbytes < DIRECT_BYTES:
            run.append(j)
            continue
        flush()
        _copy_in(storage, offsets[j], array, stream)
    flush()
    return storage, offsets


def _device_bytes(obj: Any, dtype: str | None) -> tuple[Any, str, tuple[int, ...], Any]:
    """A contiguous numba ``uint8`` view of a device array's bytes, its format dtype name, shape and owner."""
    if type(obj).__module__.startswith("torch"):
        import torch

        owner = obj.detach().contiguous()
        name = dtype or _TORCH_DTYPES.get(str(owner.dtype).removeprefix("torch."))
        if name is None:
            raise InvalidArgumentError(f"dtype {owner.dtype} is not supported; supported: {', '.join(dtypes.DTYPES)}")
        _check_itemsize(name, owner.element_size())
        nbytes = owner.numel() * owner.element_size()
        if SIMULATED:
            flat = cuda.as_cuda_array(owner.reshape(-1).view(torch.uint8)) if nbytes else cuda.device_array(0, dtype=np.uint8)
        else:
            flat = memory.Span(owner.data_ptr(), np.uint8, (nbytes,), owner)
        return flat, name, tuple(owner.shape), owner
    array = obj if hasattr(obj, "copy_to_host") else cuda.as_cuda_array(obj)
    name = dtype or dtypes.name_of(array.dtype)
    _check_itemsize(name, array.dtype.itemsize)
    if not array.is_c_contiguous():
        raise InvalidArgumentError("a device array must be contiguous")
    if SIMULATED:
        flat = array.reshape(-1).view(np.uint8) if array.size else cuda.device_array(0, dtype=np.uint8)
    else:
        flat = memory.span(array, 0, np.uint8, (array.size * array.dtype.itemsize,))
    return flat, name, tuple(array.shape), array


def _on_device(value: Any) -> bool:
    """Whether ``value`` lies on the GPU; a torch tensor is asked directly (its fp8 dtypes raise in ``__cuda_array_interface__``)."""
    if type(value).__module__.startswith("torch"):
        return bool(getattr(value, "is_cuda", False))
    return hasattr(value, "copy_to_host") or hasattr(value, "__cuda_array_interface__")


def _check_itemsize(name: str, itemsize: int) -> None:
    if dtypes.DTYPES[name].itemsize != itemsize:
        raise InvalidArgumentError(f"a device array of {itemsize}-byte elements cannot hold {name} elements")


def _aligned(in8: Any, stream: Any) -> Any:
    """``in8``, or a copy of it whose start is aligned to 16 bytes (:func:`encode_kernels.histogram` reads 16 at a time)."""
    if SIMULATED or not memory.pointer(in8) % 16:
        return in8
    _, copy = _empty(in8.size)
    memory.copy(copy, in8, stream)
    return copy.view(0, np.uint8, (in8.size,))


def _resident(arrays: Any) -> list[Any]:
    """Device arrays made once (:func:`crc.constants`, :func:`rans.gpu.tables.cost_table`) as views for :func:`launch.run`."""
    return [c if SIMULATED else memory.span(c, 0, c.dtype, c.shape) for c in arrays]


def _source(in8: Any, keep: Any) -> _Source:
    whole = in8.size & ~3
    return _Source(in8, _view(in8, 0, np.uint32, (whole // 4,)), keep)


class _Call:
    """The state of one encode call: tensors, sources, plans and device buffers."""

    def __init__(self, tensors: Mapping[str, Any], chunk: int, dtype: str | None, stream: Any, lanes: int | None) -> None:
        self.chunk = chunk
        self.lanes = lanes
        self.stream = _stream(stream)
        self.tensors: list[_Tensor] = []
        self.sources: list[_Source] = []
        host: list[tuple[int, np.ndarray]] = []
        for name, value in tensors.items():
            if not isinstance(name, str):
                raise InvalidArgumentError(f"tensor names must be strings, not {type(name).__name__}")
            on_device = _on_device(value)
            if on_device:
                in8, kind, shape, keep = _device_bytes(value, dtype)
                self.tensors.append(_Tensor(name, kind, shape, len(self.sources), 0))
                self.sources.append(_source(_aligned(in8, self.stream), keep))
            else:
                from ..api import _as_array

                array = _as_array(value, f"tensor {name!r}")
                kind = dtypes.name_of(array.dtype)
                array = np.asarray(array, dtype=dtypes.DTYPES[kind], order="C")
                host.append((len(self.tensors), array))
                self.tensors.append(_Tensor(name, kind, tuple(int(d) for d in array.shape), -1, 0))
        if host:
            storage, offsets = _to_device([array for _, array in host], self.stream, 256)
            for (i, _), at in zip(host, offsets):
                self.tensors[i].source, self.tensors[i].base = len(self.sources), at
            self.sources.append(_source(_view(storage, 0, np.uint8, (storage.shape[0],)), storage))
        for i, t in enumerate(self.tensors):
            self.sources[t.source].tensors.append(i)

    # ---------------------------------------------------------------- round 1
    def plan_and_encode(self) -> None:
        """Count, plan and code every tensor's planes on the GPU; bring the plans and word counts to the host.

        Each tensor gets a region of chunks and scratch large enough for its
        preferred planes or for its bytes as one plane, which share it: only
        one of the two splits is coded. A BF16 or F32 tensor whose float
        planes are all raw has its bytes counted, planned and coded in a
        second pass, for split ``"none"``.
        """
        chunks = scratch = 0
        for t in self.tensors:
            t.first_chunk, t.scratch = chunks, scratch
            if t.n:  # as many planes as bytes an element has: their chunks hold those of the bytes as one plane too
                need = len(_planes(t.dtype)) * -(-t.n // self.chunk)
                chunks += need
                scratch += need * self.chunk
            else:
                t.planes = [_PlanePlan("raw", (t.base, 1, 0, 0xFF, 0, 0), 0)]
        self.n_chunks = chunks
        self.keep = [_empty(2 * scratch, np.uint16), _empty(4 * LANES * chunks, np.uint32), _empty(4 * chunks, np.uint32)]
        self.scratch16, self.states, self.counts_d = (view for _, view in self.keep)
        self.word_counts = np.zeros(0, np.int64)
        again = self._pass([i for i, t in enumerate(self.tensors) if t.n], False)
        if again:
            self._pass(again, True)
        self.coded = [p for t in self.tensors for p in t.planes if p.mode == "coded"]

    def _count(self, indices: list[int], extractors: list[list[tuple[int, int, int, int]]]) -> tuple[Any, list[int]]:
        """Launch the histograms of the planes ``extractors[k]`` of tensor ``indices[k]``: ``uint64[rows, 256]`` on the device, and each tensor's first row."""
        firsts, rows_total = [], 0
        for chosen in extractors:
            firsts.append(rows_total)
            rows_total += len(chosen)
        by_source: dict[int, list[int]] = {}
        for k, i in enumerate(indices):
            by_source.setdefault(self.tensors[i].source, []).append(k)
        launches, arrays = [], [np.zeros((max(rows_total, 1), 256), np.uint64)]
        for source, ks in by_source.items():
            rows, taps, items, first = [], [], [], 0
            for k in ks:
                t = self.tensors[indices[k]]
                size = dtypes.DTYPES[t.dtype].itemsize
                words, extra = divmod(t.n * size, 4)
                rows.append([t.base // 4, words, extra, firsts[k], len(extractors[k]), first, max(size // 4, 1) - 1])
                items.append(max(-(-words // ek.HIST_WORDS), 1))
                first += items[-1]
                taps.append(np.array(_taps(size, extractors[k]), np.int64).reshape(-1))
            launches.append((self.sources[source], len(arrays), first))
            arrays += [np.array(rows, np.int64), np.stack(taps), np.repeat(np.arange(len(rows)), items)]
        device = _upload(arrays, self.stream)
        for source, at, blocks in launches:
            launch.run(
                ek.histogram, min(blocks, ek.HIST_GRID), ek.THREADS, self.stream,
                source.in8, source.in32, device[at], device[at + 1], device[at + 2], device[0],
            )
        return device[0], firsts

    def _pass(self, indices: list[int], none: bool) -> list[int]:
        """Count, plan and code tensors ``indices`` under their preferred split (``none`` False) or split ``"none"``.

        Returns the tensors whose preferred split left every plane raw and
        whose bytes must be counted for split ``"none"`` (BF16 and F32).
        """
        if not indices:
            return []
        extractors = [_bytes(self.tensors[i].dtype) if none else _planes(self.tensors[i].dtype) for i in indices]
        counts_d, firsts = self._count(indices, extractors)
        slots = firsts[-1] + len(extractors[-1])
        plan_rows, candidates, todo = [], [], []
        for i, chosen, first in zip(indices, extractors, firsts):
            t = self.tensors[i]
            size = dtypes.DTYPES[t.dtype].itemsize
            k = -(-t.n // self.chunk)
            preferred = [] if none else [
                _PlanePlan("", (t.base, size, *x), t.n, slot=first + j, first_chunk=t.first_chunk + j * k, scratch=t.scratch + j * k * self.chunk)
                for j, x in enumerate(chosen)
            ]
            plan_rows += [[p.slot, 1, p.n, coder.lanes_for(p.n), self.chunk, p.slot] for p in preferred]
            todo += [(t.source, p, (0, 0)) for p in preferred]
            whole = None
            if none or dtypes.splits_of(t.dtype)[0] == "bytes":  # the byte planes' counts add up to the bytes'
                whole = _PlanePlan("", (t.base, 1, 0, 0xFF, 0, 0), size * t.n, slot=slots, first_chunk=t.first_chunk, scratch=t.scratch)
                plan_rows.append([first, len(chosen), whole.n, coder.lanes_for(whole.n), self.chunk, whole.slot])
                todo.append((t.source, whole, (first, len(preferred))))
                slots += 1
            candidates.append((i, preferred, whole))
            for p in preferred + ([whole] if whole else []):
                p.lanes = self.lanes or coder.lanes_for(p.n)
        info_d = _view(_allocate(8 * gt.INFO_COLUMNS * slots), 0, np.int64, (slots, gt.INFO_COLUMNS))
        freq_d = _view(_allocate(2 * 256 * slots), 0, np.int16, (slots, 256))
        tables_d = _view(_allocate(4 * 512 * slots), 0, np.uint32, (slots, 512))
        (plan_rows_d,) = _upload([np.array(plan_rows, np.int64)], self.stream)
        (cost,) = _resident([gt.cost_table()])
        launch.run(gt.plan, len(plan_rows), gt.PLAN_THREADS, self.stream, counts_d, plan_rows_d, cost, info_d, freq_d, tables_d)
        self._encode(todo, tables_d, info_d)
        info, freq, counts = _to_host([info_d, freq_d, self.counts_d], self.stream)
        freq = freq.astype(np.int64)
        self.word_counts = counts.astype(np.int64)
        again = []
        for i, preferred, whole in candidates:
            t = self.tensors[i]
            if t.dtype == "BOOL" and int(info[preferred[0].slot, gt.I_HIGH]) > 1:
                raise InvalidArgumentError(f"tensor {t.name!r}: a BOOL array holds bytes other than 0 and 1")
            all_raw = all(int(info[p.slot, gt.I_MODE]) == gt.RAW for p in preferred)
            if whole is not None and all_raw:
                t.planes = [whole]
            elif all_raw and dtypes.splits_of(t.dtype)[0] == "float":
                again.append(i)
                continue
            else:  # a plane of the preferred split is not raw, or the split is "none" (1-byte elements)
                t.planes = preferred
            for p in t.planes:
                p.mode = gt.MODES[int(info[p.slot, gt.I_MODE])]
                if p.mode == "const":
                    p.value = int(info[p.slot, gt.I_LOW])
                elif p.mode == "coded":
                    p.freq = freq[p.slot]
                    p.table = serialize(p.freq)
                    p.layout = coder.Layout.of(p.n, self.chunk, len(p.table), p.lanes)
        return again

    def _encode(self, planes: list[tuple[int, _PlanePlan, tuple[int, int]]], tables_d: Any, info_d: Any) -> None:
        """Launch the code of every chunk of ``planes`` (source, plane, rivals), to be skipped on the GPU unless the plane is coded.

        A plane's rivals (first slot, count) are the planes of the tensor's
        preferred split for its split "none" plane, which is coded only if
        they are all raw.
        """
        chunk = self.chunk
        by_source: dict[int, list[tuple[_PlanePlan, tuple[int, int]]]] = {}
        for source, p, rivals in planes:
            by_source.setdefault(source, []).append((p, rivals))
        launches, arrays = [], []
        for source, group in by_source.items():
            rows, groups = [], []
            for p, rivals in group:
                rows.append([*p.extractor, p.slot, p.lanes, chunk, p.n, p.scratch, p.first_chunk, *rivals])
                k = -(-p.n // chunk)
                starts = np.arange(0, k, WARPS_PER_BLOCK)
                groups.append(np.stack([np.full(starts.size, len(rows) - 1), starts, np.minimum(WARPS_PER_BLOCK, k - starts)], axis=1))
            launches.append((self.sources[source], len(arrays)))
            arrays += [np.array(rows, np.int64), np.concatenate(groups).astype(np.int64)]
        device = _upload(arrays, self.stream)
        for source, at in launches:
            planes_d, groups_d = device[at : at + 2]
            launch.run(
                ek.encode, groups_d.shape[0], WARPS_PER_BLOCK * LANES, self.stream,
                source.in8, source.in32, tables_d, info_d, planes_d, groups_d, self.scratch16, self.states, self.counts_d,
            )

    def lay_out(self, metadata: dict[str, str] | None) -> int:
        """Make the entries, place the sections from offset 0; return the data's length."""
        self.entries = []
        for t in self.tensors:
            entry = container.Entry(t.name, t.dtype, t.shape)
            for p in t.planes:
                if p.mode == "const":
                    plane = container.Plane("const", value=p.value)
                elif p.mode == "raw":
                    plane = container.Plane("raw", length=p.n)
                else:
                    words = int(self.word_counts[p.first_chunk : p.first_chunk + p.layout.n_chunks].sum())
                    plane = container.Plane("coded", length=p.layout.words_at + 2 * words)
                p.entry_plane = plane
                entry.planes.append(plane)
            self.entries.append(entry)
        data = container.layout(self.entries, 0)
        for entry in self.entries:
            entry.crc = 0xFFFFFFFF
        container.encode_header(self.entries, metadata)  # raises for text the header cannot hold
        document: dict[str, Any] = {"tensors": [e.to_json() for e in self.entries]}
        if metadata:
            document["metadata"] = metadata
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self.reserve = container.align(container.PREAMBLE.size + len(text))
        return data

    # ---------------------------------------------------------------- round 2
    def assemble(self, data: int) -> np.ndarray:
        """Write every section into a new buffer at ``reserve + offset``; return the tensors' CRC-32s on the host."""
        r = self.reserve
        self.storage, self.out8 = _empty(r + data + 8)
        out16 = _view(self.storage, 0, np.uint16, (self.out8.size // 2,))
        out32 = _view(self.storage, 0, np.uint32, (self.out8.size // 4,))
        arrays: list[np.ndarray] = []
        launches: list[tuple[str, Any, int]] = []

        blob, heads, position = bytearray(), [], 0
        for t in self.tensors:
            for p in t.planes:
                plane = p.entry_plane
                if plane.mode == "const":
                    continue
                head = b""
                if plane.mode == "coded":
                    head = coder.HEADER.pack(p.lanes, 0, self.chunk // GROUP) + p.table
                    head += bytes(p.layout.states_at - len(head))
                piece = bytes(plane.offset - position) + head
                if piece:
                    heads.append((len(blob), r + position, len(piece)))
                    blob += piece
                position = plane.offset + plane.length
        if heads:
            launches.append(("scatter", None, len(arrays)))
            arrays += [np.frombuffer(bytes(blob), np.uint8), np.array(heads, np.int64)]

        spans = [(start + r, end + r) for start, end in (entry.span() for entry in self.entries)]
        for source in self.sources:
            rows, items, first = [], [], 0
            for i in source.tensors:
                for p in self.tensors[i].planes:
                    if p.mode == "raw" and p.n:
                        dst = r + p.entry_plane.offset
                        after = spans[i][1] - (dst + 4 * (p.n // 4))
                        rows.append([*p.extractor, p.n, dst, first, after, i])
                        items.append(max(1, -(-(p.n // 4) // ek.RAW_QUADS)))
                        first += items[-1]
            if items:
                launches.append(("raw", source, len(arrays)))
                arrays += [np.array(rows, np.int64), np.repeat(np.arange(len(rows)), items)]

        if self.coded:
            rows, chunk_plane, first_word = [], np.full(self.n_chunks, -1, np.int64), np.zeros(self.n_chunks, np.int64)
            for j, p in enumerate(self.coded):
                k = p.layout.n_chunks
                at = r + p.entry_plane.offset
                rows.append([p.first_chunk, k, self.chunk, p.lanes, p.scratch, at + p.layout.states_at, at + p.layout.counts_at, at + p.layout.words_at])
                chunk_plane[p.first_chunk : p.first_chunk + k] = j
                counts = self.word_counts[p.first_chunk : p.first_chunk + k]
                first_word[p.first_chunk : p.first_chunk + k] = np.cumsum(counts) - counts
            launches.append(("compact", None, len(arrays)))
            arrays += [np.array(rows, np.int64), chunk_plane, first_word]

        cut_spans = []
        for e, (entry, (start, end)) in enumerate(zip(self.entries, spans)):
            if end == start:
                continue
            cuts, cursor = [], start  # the span but the raw planes' whole groups, which split_raw checksums
            for plane in entry.sections:
                if plane.mode == "raw" and plane.length >= 4:
                    if plane.offset + r > cursor:
                        cuts.append((cursor, plane.offset + r))
                    cursor = plane.offset + r + plane.length // 4 * 4
            cuts.append((cursor, end))
            cut_spans += [(first, last, end - last, e, end - start if last == end else -1) for first, last in cuts]
        pieces, block_piece = crc.describe(cut_spans)
        crc_at = len(arrays)
        arrays += [np.zeros(max(len(self.entries), 1), np.uint32), pieces, block_piece if block_piece.size else np.zeros(1, np.int64)]

        device = _upload(arrays, self.stream)
        crcs = device[crc_at]
        constants = _resident(crc.constants())
        for what, source, at in launches:
            if what == "scatter":
                launch.run(ek.scatter, device[at + 1].shape[0], ek.THREADS, self.stream, device[at], device[at + 1], self.out8)
            elif what == "raw":
                launch.run(
                    ek.split_raw, min(device[at + 1].shape[0], crc.GRID_MAX), crc.CRC_THREADS, self.stream,
                    source.in8, source.in32, device[at], device[at + 1], self.out8, out32, *constants, crcs,
                )
            else:
                launch.run(
                    ek.compact, self.n_chunks, ek.THREADS, self.stream,
                    device[at], device[at + 1], device[at + 2], self.scratch16, self.states, self.counts_d, out16, out32,
                )
        if block_piece.size:
            launch.run(
                crc.crc_blocks, min(block_piece.size, crc.GRID_MAX), crc.CRC_THREADS, self.stream,
                self.out8, out32, device[crc_at + 1], device[crc_at + 2], *constants, crcs,
            )
        return _to_host([crcs], self.stream)[0]

    # ---------------------------------------------------------------- round 3
    def finish(self, crcs: np.ndarray, metadata: dict[str, str] | None, data: int) -> Encoded:
        """Put the header in front of the sections; return the file."""
        for entry, value in zip(self.entries, crcs.tolist()):
            entry.crc = int(value) if entry.sections else 0
        head = container.encode_header(self.entries, metadata)
        start = self.reserve - len(head)
        _copy_in(self.storage, start, np.frombuffer(head, dtype=np.uint8), self.stream)
        container.layout(self.entries, len(head))
        self.stream.synchronize()
        return Encoded(_numba(self.storage, start, np.uint8, (self.reserve + data - start,)), self.entries, self.storage)


def encode_file(
    tensors: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    dtype: str | None = None,
    stream: Any = None,
    lanes: int | None = None,
) -> Encoded:
    """Encode named tensors on the GPU into a rans file held in device memory.

    The bytes equal those :func:`rans.save_file` writes for the same tensors,
    metadata and chunk size.

    Examples
    --------
    >>> import numpy as np, rans
    >>> from rans.gpu import encoder
    >>> x = np.arange(1000, dtype=np.int16)
    >>> f = encoder.encode_file({"x": x}, {"by": "gpu"}, chunk_size=1024)
    >>> f.entries[0].name, f.nbytes < x.nbytes
    ('x', True)
    >>> bool((rans.decompress(f.to_bytes()) == x).all())
    True

    Parameters
    ----------
    tensors : mapping of str to array
        Host arrays (NumPy, CPU torch, anything :func:`numpy.asarray`
        takes), copied to the GPU, or device arrays (torch CUDA tensors,
        anything with ``__cuda_array_interface__``), read where they lie.
    metadata : mapping of str to str, optional
        Stored in the header.
    chunk_size : int
        Symbols per chunk, a multiple of 128.
    dtype : str, optional
        The format dtype of device arrays whose own dtype is raw bits
        (``"BF16"`` for a numba ``uint16`` array); default: their dtype.
    stream : optional
        A numba, torch or CuPy stream, or a raw handle; the call returns
        once its work on it is done.
    lanes : int, optional
        Lanes of every coded plane instead of the writers' choice
        (:func:`rans.reference.coder.lanes_for`): for tests and
        experiments; such files are valid but not what writers make.

    Returns
    -------
    Encoded
        The file in device memory, and its header entries.

    Notes
    -----
    Besides the tensors and the file, a call holds 2 bytes of scratch per
    symbol of every plane that may be coded (a tensor's planes and, for
    dtypes that allow it, its bytes as one plane, which share it): twice
    the tensor's size, whatever its dtype.
    """
    chunk = coder.check_chunk(chunk_size)
    if not isinstance(tensors, Mapping):
        raise InvalidArgumentError("tensors must be a mapping of names to arrays")
    if metadata is not None and not (
        isinstance(metadata, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise InvalidArgumentError("metadata must map strings to strings")
    if dtype is not None and dtype not in dtypes.DTYPES:
        raise InvalidArgumentError(f"dtype must be one of {', '.join(dtypes.DTYPES)}, not {dtype!r}")
    if lanes is not None and lanes not in LANE_COUNTS:
        raise InvalidArgumentError(f"lanes must be a power of two from 1 to 32, not {lanes!r}")
    metadata = dict(metadata) if metadata else None
    call = _Call(tensors, chunk, dtype, stream, lanes)
    call.plan_and_encode()
    data = call.lay_out(metadata)
    return call.finish(call.assemble(data), metadata, data)


def compress_device(array: Any, *, chunk_size: int = DEFAULT_CHUNK, dtype: str | None = None, stream: Any = None) -> Encoded:
    """Encode one tensor (named ``""``) on the GPU: the file :func:`rans.compress` makes, in device memory."""
    return encode_file({"": array}, chunk_size=chunk_size, dtype=dtype, stream=stream)


def compress(array: Any, *, chunk_size: int = DEFAULT_CHUNK, dtype: str | None = None, stream: Any = None) -> Any:
    """Compress one tensor on the GPU; return the file as a ``uint8`` device array.

    Examples
    --------
    >>> import numpy as np, rans
    >>> from rans.gpu import encoder
    >>> x = np.random.default_rng(0).normal(0, 1, 3000).astype(np.float16)
    >>> data = encoder.compress(x, chunk_size=1024).copy_to_host().tobytes()
    >>> data == rans.compress(x, chunk_size=1024)
    True
    """
    return compress_device(array, chunk_size=chunk_size, dtype=dtype, stream=stream).buffer


def encode_tensor(array: Any, name: str, chunk: int, workers: int = 1) -> tuple[container.Entry, list[memoryview]]:
    """:func:`rans.codec.encode_tensor` on the GPU: the header entry and the sections, views of one host copy.

    ``workers`` is accepted for the same signature and ignored.
    """
    encoded = encode_file({name: array}, chunk_size=chunk)
    entry = encoded.entries[0]
    start, end = entry.span()
    (data,) = _to_host([_view(encoded.buffer, start, np.uint8, (end - start,))], _stream(None))
    sections = [memoryview(data)[p.offset - start : p.offset - start + p.length] for p in entry.sections]
    for p in entry.planes:
        p.offset = 0
    return entry, sections
