"""Host side of the GPU decoder: plan a batch of tensors, launch, check, hand out arrays.

The whole file is copied to the GPU once. For every coded plane the host
validates the section's table, word counts and length (as the reference
does), builds a 4096-entry decode table and one descriptor per chunk; one
launch of :func:`kernels.decode` then decodes every coded plane of every
tensor, joining planes as it writes. Tensors the fused kernel does not
cover (several coded planes, 8-byte elements, split ``"nibbles"`` of an odd
element count or with its high plane not coded) decode their coded planes
to a scratch buffer and go through :func:`kernels.join`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
from numba import cuda

from .. import codec, container, dtypes
from ..constants import LANES, M
from ..cpu import tables as fast_tables
from ..errors import CorruptDataError, InvalidArgumentError, RansError
from ..reference import coder, tables
from . import crc, kernels, launch, upload
from .warp import WARPS_PER_BLOCK

OUT_ALIGN = 256
_NUMBA_VIEW = {"BF16": np.dtype("<u2"), "F8_E4M3": np.dtype(np.uint8), "F8_E5M2": np.dtype(np.uint8)}
"""Numba device arrays cannot hold these dtypes: they come back as their raw bits."""


def _align(n: int, to: int) -> int:
    return -(-n // to) * to


@dataclass
class _Launch:
    """Descriptors for one launch of :func:`kernels.decode` into one target buffer."""

    tables: list[np.ndarray] = field(default_factory=list)
    planes: list[list[int]] = field(default_factory=list)
    chunks: list[np.ndarray] = field(default_factory=list)
    groups: list[np.ndarray] = field(default_factory=list)
    owners: list[tuple[int, int, int, int]] = field(default_factory=list)  # (first chunk, entry, plane, chunks)
    n_chunks: int = 0
    device: tuple[Any, ...] = ()
    status: Any = None
    prepared: tuple[Any, launch.Prepared] | None = None

    def add(self, plane: container.Plane, section: coder.Section, kind: int, out: int, others: list[int], j: int, e: int) -> None:
        """Describe one coded plane: its table row, its chunks and its groups of chunks."""
        layout = section.layout
        others = others + [0] * (3 - len(others))
        shift = j if kind in (kernels.KIND_BYTES2, kernels.KIND_BYTES4) else 0
        self.planes.append([len(self.tables), kind, out, *others, shift, layout.lanes])
        self.tables.append(_decode_table(section.freq))
        k = layout.n_chunks
        first_word = (plane.offset + layout.words_at) // 2 + np.cumsum(section.counts) - section.counts
        chunks = np.empty((k, kernels.CHUNK_COLUMNS), dtype=np.int64)
        chunks[:, kernels.C_WORDS] = first_word
        chunks[:, kernels.C_END] = first_word + section.counts
        chunks[:, kernels.C_STATES] = (plane.offset + layout.states_at) // 4 + layout.lanes * np.arange(k)
        chunks[:, kernels.C_BASE] = section.chunk * np.arange(k)
        chunks[:, kernels.C_LEN] = section.lengths
        self.chunks.append(chunks)
        starts = np.arange(0, k, WARPS_PER_BLOCK)
        groups = np.empty((starts.size, 3), dtype=np.int64)
        groups[:, 0] = len(self.planes) - 1
        groups[:, 1] = self.n_chunks + starts
        groups[:, 2] = np.minimum(WARPS_PER_BLOCK, k - starts)
        self.groups.append(groups)
        self.owners.append((self.n_chunks, e, j, k))
        self.n_chunks += k

    def upload(self, stream: Any, clear: Any) -> None:
        """Copy the descriptors and tables to the GPU, with a cleared status array for the launch."""
        self.status = cuda.to_device(clear, stream=stream)
        if self.planes:
            self.device = (
                cuda.to_device(np.stack(self.tables), stream=stream),
                cuda.to_device(np.array(self.planes, dtype=np.int64), stream=stream),
                cuda.to_device(np.concatenate(self.chunks), stream=stream),
                cuda.to_device(np.concatenate(self.groups), stream=stream),
            )

    def run(self, buf16: Any, buf32: Any, target: tuple[Any, Any, Any], stream: Any) -> None:
        """Launch the decode of every plane into ``target`` (its 8-, 16- and 32-bit views).

        The launch's arguments are marshalled once per target (:class:`launch.Prepared`); the status
        array keeps failures until :meth:`Batch.check` reads and clears it.
        """
        if not self.planes:
            return
        if self.prepared is None or self.prepared[0] is not target:
            tables_d, planes_d, chunks_d, groups_d = self.device
            args = (buf16, buf32, tables_d, planes_d, chunks_d, groups_d, *target, self.status)
            self.prepared = (target, launch.Prepared(kernels.decode, groups_d.shape[0], WARPS_PER_BLOCK * LANES, args))
        self.prepared[1](stream)

    def error(self, entries: Sequence[container.Entry], chunk: int) -> CorruptDataError:
        """The error for the failed chunk with index ``chunk`` in this launch."""
        for first, e, j, k in self.owners:
            if first <= chunk < first + k:
                return CorruptDataError(
                    "chunk failed the integrity check (final states or word count): the coded data is corrupt",
                    tensor=entries[e].name,
                    field=f"planes[{j}]",
                    chunk=chunk - first,
                )
        raise AssertionError(f"status names chunk {chunk}, which no plane owns")


@dataclass
class _Plan:
    """Everything the decode of a batch needs, built on the host."""

    fused: _Launch = field(default_factory=_Launch)
    to_scratch: _Launch = field(default_factory=_Launch)
    joins: list[tuple[int, list[int], int]] = field(default_factory=list)  # (entry, plane sources, kind)
    copies: list[tuple[int, int, int]] = field(default_factory=list)  # (entry, source offset, bytes)
    fills: list[tuple[int, int]] = field(default_factory=list)  # (entry, byte value)
    scratch_bytes: int = 0


def _source(plane: container.Plane) -> int:
    return plane.offset if plane.mode == "raw" else -plane.value - 1


def _decode_table(freq: np.ndarray) -> np.ndarray:
    """Per slot: (slot - cum) | symbol << 12 | (freq - 1) << 20."""
    symbol = tables.slot_symbols(freq).astype(np.int64)
    cum = tables.cumulative(freq)
    bias = np.arange(M, dtype=np.int64) - cum[symbol]
    return (bias | (symbol << 12) | ((freq[symbol] - 1) << 20)).astype(np.uint32)


def _fused_kind(entry: container.Entry, coded: int) -> tuple[int, list[int]] | None:
    """The fused kernel kind for a tensor whose only coded plane is ``coded``, and its other planes' sources."""
    others = [_source(p) for j, p in enumerate(entry.planes) if j != coded]
    size = dtypes.DTYPES[entry.dtype].itemsize
    if entry.split == "none":
        return kernels.KIND_BYTES, []
    if entry.split == "float" and coded == 0:
        return (kernels.KIND_BF16 if size == 2 else kernels.KIND_F32), others
    if entry.split == "bytes" and size in (2, 4):
        return (kernels.KIND_BYTES2 if size == 2 else kernels.KIND_BYTES4), others
    if entry.split == "nibbles" and coded == 0 and entry.size % 2 == 0:
        return _join_kind(entry), others
    return None


def _join_kind(entry: container.Entry) -> int:
    if entry.split == "float":
        return kernels.KIND_BF16 if entry.dtype == "BF16" else kernels.KIND_F32
    if entry.split == "nibbles":
        return kernels.KIND_NIBBLES8 if entry.dtype.startswith("F8") else kernels.KIND_NIBBLES
    return kernels.KIND_BYTES


def plan(buf: memoryview, entries: Sequence[container.Entry], out_offsets: Sequence[int]) -> _Plan:
    """Validate the coded sections of ``entries`` and build the launch descriptors."""
    p = _Plan()
    for e, (entry, out) in enumerate(zip(entries, out_offsets)):
        if entry.size == 0:
            continue
        coded = [j for j, plane in enumerate(entry.planes) if plane.mode == "coded"]
        if not coded:
            first = entry.planes[0]
            if entry.split == "none" and first.mode == "raw":
                p.copies.append((e, first.offset, first.length))
            elif entry.split == "none":
                p.fills.append((e, first.value))
            else:
                p.joins.append((e, [_source(q) for q in entry.planes], _join_kind(entry)))
            continue
        fused = _fused_kind(entry, coded[0]) if len(coded) == 1 else None
        sources = [_source(q) for q in entry.planes]
        symbols = dtypes.plane_length(entry.dtype, entry.split, entry.size)
        for j in coded:
            plane = entry.planes[j]
            try:
                section = coder.read_section(
                    buf[plane.offset : plane.offset + plane.length], symbols, f"planes[{j}]", fast_tables.parse
                )
            except RansError as error:
                raise error.at(tensor=entry.name) from None
            if fused is not None:
                p.fused.add(plane, section, fused[0], out, fused[1], j, e)
            else:
                sources[j] = -kernels.SCRATCH - 1 - p.scratch_bytes
                p.to_scratch.add(plane, section, kernels.KIND_BYTES, p.scratch_bytes, [], j, e)
                p.scratch_bytes = _align(p.scratch_bytes + symbols, OUT_ALIGN)
        if fused is None:
            p.joins.append((e, sources, _join_kind(entry)))
    return p


def _stream(stream: Any) -> Any:
    if stream is None:
        return cuda.default_stream()
    if hasattr(stream, "cuda_stream"):  # torch.cuda.Stream
        return cuda.external_stream(stream.cuda_stream)
    if hasattr(stream, "ptr"):  # cupy.cuda.Stream
        return cuda.external_stream(stream.ptr)
    if isinstance(stream, int):
        return cuda.external_stream(stream)
    return stream


def default_framework() -> str:
    """``"torch"`` when PyTorch is installed, else ``"numba"``."""
    return "torch" if importlib.util.find_spec("torch") is not None else "numba"


def _allocate(nbytes: int, framework: str) -> tuple[Any, Any]:
    """A byte buffer on the GPU in the framework's type, and a numba view of it."""
    if framework == "torch":
        import torch

        storage = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        return storage, cuda.as_cuda_array(storage)
    storage = cuda.device_array(nbytes, dtype=np.uint8)
    return storage, storage


def _bytes_view(out: Any, nbytes: int) -> Any:
    """A numba ``uint8`` view of a caller's contiguous device array of ``nbytes`` bytes."""
    if type(out).__module__.startswith("torch"):
        import torch

        if not (out.is_cuda and out.is_contiguous()):
            raise InvalidArgumentError("out must be a contiguous CUDA tensor")
        array = cuda.as_cuda_array(out.view(-1).view(torch.uint8))
    elif hasattr(out, "copy_to_host") and hasattr(out, "view"):  # a numba device array
        array = out
    elif hasattr(out, "__cuda_array_interface__"):
        array = cuda.as_cuda_array(out)
    else:
        raise InvalidArgumentError("out must be a device array (torch, CuPy, numba: __cuda_array_interface__)")
    if not array.is_c_contiguous():
        raise InvalidArgumentError("out must be contiguous")
    view = array.reshape(-1).view(np.uint8) if array.dtype != np.uint8 or array.ndim != 1 else array
    if view.size != nbytes:
        raise InvalidArgumentError(f"out holds {view.size} bytes; the tensor needs {nbytes}")
    pointer = getattr(view, "device_ctypes_pointer", None)
    if pointer is not None and (pointer.value or 0) % 4:
        raise InvalidArgumentError("out must be aligned to 4 bytes")
    return view


def _views(out8: Any) -> tuple[Any, Any, Any]:
    """``out8`` and its 16- and 32-bit views (trimmed to whole elements) for :func:`kernels.decode`."""
    return out8, out8[: out8.size & ~1].view(np.uint16), out8[: out8.size & ~3].view(np.uint32)


def _fill(out8: Any, at: int, nbytes: int, value: int, stream: Any) -> None:
    kernels.fill[max(1, min(-(-nbytes // 256), 65536)), 256, stream](out8, at, nbytes, value)


def _view(storage: Any, at: int, entry: container.Entry, framework: str) -> Any:
    nbytes = entry.nbytes
    if framework == "torch":
        import torch

        return storage[at : at + nbytes].view(getattr(torch, dtypes.TORCH[entry.dtype])).view(entry.shape)
    dtype = _NUMBA_VIEW.get(entry.dtype, dtypes.DTYPES[entry.dtype])
    return storage[at : at + nbytes].view(dtype).reshape(entry.shape)


class Batch:
    """Tensors of one file, resident on the GPU in compressed form, ready to decode.

    Building a batch copies the file to the GPU (through pinned buffers,
    :mod:`rans.gpu.upload`), validates the coded sections and copies the
    launch descriptors there once; :meth:`decode_into` then decodes
    every tensor with one launch (two when some tensor needs the scratch
    path), as often as asked. This is what a caller that keeps weights
    compressed on the GPU and decodes them on demand holds on to.

    Parameters
    ----------
    buf : memoryview
        The whole file.
    entries : sequence of container.Entry
        The tensors to decode, from :func:`rans.container.read_header` over ``buf``.
    stream : optional
        Stream for the uploads (see :func:`decode`).
    allocate : callable, optional
        ``allocate(nbytes)`` returns a numba ``uint8`` device array for the
        file's bytes and the scratch planes (for instance a view of a torch
        tensor, so that torch's allocator accounts for them); by default
        :func:`numba.cuda.device_array`.
    verify : bool
        Check every tensor's CRC-32 on the GPU once the file is there, and
        raise :class:`~rans.ChecksumError` naming the first that is wrong.
    """

    def __init__(
        self,
        buf: memoryview,
        entries: Sequence[container.Entry],
        stream: Any = None,
        *,
        allocate: Any = None,
        verify: bool = False,
    ) -> None:
        self.entries = list(entries)
        self.sizes = [e.nbytes for e in self.entries]
        self.offsets = []
        total = 0
        for size in self.sizes:
            self.offsets.append(total)
            total = _align(total + size, OUT_ALIGN)
        self.nbytes = max(total, 8)
        stream = _stream(stream)
        allocate = allocate or (lambda nbytes: cuda.device_array(nbytes, dtype=np.uint8, stream=stream))
        self.buffer = allocate(_align(len(buf), 8) + 8)
        upload.upload(buf, self.buffer, stream)
        if verify:
            self._verify(stream)
        self.plan = plan(buf, self.entries, self.offsets)
        self.scratch = allocate(max(self.plan.scratch_bytes, 8))
        self.clear = np.array([0, np.iinfo(np.int64).max], dtype=np.int64)
        self.plan.to_scratch.upload(stream, self.clear)
        self.plan.fused.upload(stream, self.clear)
        self.sources = [cuda.to_device(np.array(sources, dtype=np.int64), stream=stream) for _, sources, _ in self.plan.joins]
        self.buf16 = self.buffer.view(np.uint16)
        self.buf32 = self.buffer.view(np.uint32)
        self.scratch_views = _views(self.scratch)
        self.seen = cuda.pinned_array((2, 2), dtype=np.int64)
        self.target: tuple[Any, tuple[Any, Any, Any]] | None = None
        self.unchecked = False

    def _verify(self, stream: Any) -> None:
        """Raise :class:`~rans.ChecksumError` naming the first tensor whose sections' CRC-32, taken on the GPU, is wrong."""
        got = crc.checksums(self.buffer, [entry.span() for entry in self.entries], stream)
        for entry, value in zip(self.entries, got.tolist()):
            if entry.sections and value != entry.crc:
                raise codec.checksum_error(entry)

    @property
    def device_nbytes(self) -> int:
        """Bytes this batch holds on the GPU: the file, the scratch planes, descriptors and tables."""
        arrays = [self.buffer, self.scratch, *self.sources]
        for run in (self.plan.to_scratch, self.plan.fused):
            arrays += [*run.device, run.status]
        return sum(a.nbytes for a in arrays)

    def decode_into(self, out8: Any, stream: Any = None, *, check: bool = True) -> None:
        """Decode every tensor into ``out8`` (a numba ``uint8`` device array), tensor ``i`` at ``offsets[i]``.

        With ``check`` (the default), waits for the stream, then raises
        :class:`~rans.CorruptDataError` naming the tensor, plane and chunk if
        any chunk failed its check. Without it, the call only enqueues work on
        the stream and returns: failures accumulate on the GPU until the next
        :meth:`check` (or checked decode), which reports them. Output decoded
        in between may then be garbage, so a caller that defers the check
        must not let that output escape before checking.
        """
        stream = _stream(stream)
        p = self.plan
        if self.target is None or self.target[0] is not out8:
            self.target = (out8, _views(out8))
        p.to_scratch.run(self.buf16, self.buf32, self.scratch_views, stream)
        p.fused.run(self.buf16, self.buf32, self.target[1], stream)
        for (e, _, kind), sources in zip(p.joins, self.sources):
            entry = self.entries[e]
            blocks = max(1, min(-(-entry.size // 256), 65536))
            kernels.join[blocks, 256, stream](
                self.buffer, self.scratch, sources, out8, entry.size, dtypes.DTYPES[entry.dtype].itemsize, kind, self.offsets[e]
            )
        for e, source, length in p.copies:
            out8[self.offsets[e] : self.offsets[e] + length].copy_to_device(self.buffer[source : source + length], stream=stream)
        for e, value in p.fills:
            _fill(out8, self.offsets[e], self.sizes[e], value, stream)
        self.unchecked = True
        if check:
            self.check(stream)

    def check(self, stream: Any = None) -> None:
        """Wait for the stream; raise :class:`~rans.CorruptDataError` if any decode since the last check failed.

        The first failed chunk's tensor, plane and chunk are named. Returns at
        once when nothing was decoded since the last check.
        """
        if not self.unchecked:
            return
        stream = _stream(stream)
        launches = self._launches()
        for i, run in enumerate(launches):
            run.status.copy_to_host(self.seen[i], stream=stream)
        stream.synchronize()
        failed = [(run, int(self.seen[i, 1])) for i, run in enumerate(launches) if self.seen[i, 0]]
        if failed:
            self.unchecked = False
            for run, _ in failed:
                run.status.copy_to_device(self.clear, stream=stream)
            stream.synchronize()
            raise failed[0][0].error(self.entries, failed[0][1])
        self.passed()

    def statuses(self) -> list[Any]:
        """The device arrays (``int64``: failed chunks, first failed chunk) this batch's launches report into.

        For a caller that checks many batches with one read from the GPU:
        once the stream has passed the decodes, all counts zero means
        :meth:`passed` may stand for :meth:`check`; otherwise :meth:`check`
        names the failure.
        """
        return [run.status for run in self._launches()]

    def _launches(self) -> list[Any]:
        """The plan's launches that decode something, in the order of their statuses."""
        return [run for run in (self.plan.to_scratch, self.plan.fused) if run.planes]

    def passed(self) -> None:
        """Record a check that read every count of :meth:`statuses` as zero (BOOL tensors are still checked)."""
        self.unchecked = False
        if self.target is not None:
            self._check_bools(self.target[0])

    def _check_bools(self, out8: Any) -> None:
        """Raise :class:`~rans.CorruptDataError` if a decoded BOOL tensor holds a byte other than 0 or 1.

        BOOL tensors are copied back to the host for this; they are rare and small in model files.
        """
        for entry, offset, size in zip(self.entries, self.offsets, self.sizes):
            if entry.dtype == "BOOL" and size and int(out8[offset : offset + size].copy_to_host().max()) > 1:
                raise CorruptDataError("a BOOL element is neither 0 nor 1", tensor=entry.name, field="planes[0]")

    def decode(self, framework: str | None = None, stream: Any = None) -> list[Any]:
        """Decode into a new buffer; return one device array per tensor (see :func:`decode`)."""
        framework = _framework(framework)
        storage, out8 = _allocate(self.nbytes, framework)
        self.decode_into(out8, stream)
        return [_view(storage, self.offsets[i], entry, framework) for i, entry in enumerate(self.entries)]


def _framework(framework: str | None) -> str:
    framework = framework or default_framework()
    if framework not in ("torch", "numba"):
        raise InvalidArgumentError(f"framework must be 'torch' or 'numba' on the GPU, not {framework!r}")
    return framework


def decode(
    buf: memoryview,
    entries: Sequence[container.Entry],
    *,
    out: Any = None,
    stream: Any = None,
    framework: str | None = None,
    verify: bool = False,
) -> list[Any]:
    """Decode ``entries`` of the file in ``buf`` on the GPU; return one device array per entry.

    ``framework`` picks the array type: ``"torch"`` (default when PyTorch is
    importable) or ``"numba"`` (device arrays; BF16 and FP8 tensors come back
    as their raw bits, ``uint16`` and ``uint8``). ``out``, for a single
    entry, is a preallocated contiguous device array (anything with
    ``__cuda_array_interface__``) of exactly the tensor's size in bytes,
    returned filled. ``stream`` is a numba, torch or CuPy stream, or a raw
    ``cudaStream_t`` handle. ``verify`` checks each tensor's CRC-32 on the
    GPU first (:class:`Batch`).
    """
    framework = _framework(framework)
    if out is not None and len(entries) != 1:
        raise InvalidArgumentError("out= takes a single tensor")
    if out is not None:
        out8 = _bytes_view(out, entries[0].nbytes)
        Batch(buf, entries, stream, verify=verify).decode_into(out8, stream)
        return [out]
    return Batch(buf, entries, stream, verify=verify).decode(framework, stream)


def decode_entry(buf: memoryview, entry: container.Entry, framework: str | None = None) -> Any:
    """Decode one tensor of the file in ``buf`` on the GPU, copying only its sections there.

    The caller checks the CRC-32 first if it wants to (:func:`rans.codec.verify_sections`).
    """
    start, end = entry.span()
    shifted = replace(entry, planes=[replace(p, offset=p.offset - start) if p.mode != "const" else p for p in entry.planes])
    return decode(buf[start:end], [shifted], framework=framework)[0]
