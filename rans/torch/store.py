"""Where a group's compressed tensors live, and how they are decoded into the scratch buffer.

A *group* is the set of tensors decoded together (one module's, or one
transformer block's). Its compressed sections are packed into a small rans
file of their own (no re-encoding: the sections are copied as they are) and
held either in host memory, decoded by the NumPy codec, or on the GPU, as a
:class:`rans.gpu.decoder.Batch` that decodes the whole group in one launch.
Both write tensor ``i`` at ``offsets[i]`` of a byte buffer.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Sequence

import numpy as np

from .. import codec, container

OUT_ALIGN = 256
"""Alignment of each tensor in the scratch buffer (the GPU decoder's)."""


def offsets(entries: Sequence[container.Entry]) -> tuple[list[int], int]:
    """Each tensor's byte offset in the scratch buffer, and the bytes the group needs."""
    at, total = [], 0
    for entry in entries:
        at.append(total)
        total = -(-(total + entry.nbytes) // OUT_ALIGN) * OUT_ALIGN
    return at, max(total, 8)


def copy_entry(entry: container.Entry, name: str | None = None) -> container.Entry:
    """A fresh header entry for ``entry`` (optionally renamed), its planes unplaced."""
    planes = [container.Plane(p.mode, length=p.length, value=p.value) for p in entry.planes]
    return container.Entry(entry.name if name is None else name, entry.dtype, entry.shape, planes, entry.crc)


def pack(entries: Sequence[container.Entry], sections: Sequence[Sequence[Any]]) -> tuple[memoryview, list[container.Entry]]:
    """A rans file of ``entries`` with their ``sections`` (bytes-like), and its parsed entries."""
    out = io.BytesIO()
    container.write(out, [copy_entry(e) for e in entries], [list(s) for s in sections], None)
    buf = memoryview(out.getvalue())
    return buf, container.read_header(buf).entries


def sections_of(entry: container.Entry, buf: memoryview) -> list[memoryview]:
    """The sections of a tensor of the file in ``buf``, in file order."""
    return [buf[p.offset : p.offset + p.length] for p in entry.sections]


class HostStore:
    """A group's compressed tensors in host memory, decoded by the NumPy codec."""

    def __init__(self, buf: memoryview, entries: Sequence[container.Entry]) -> None:
        self.buf = buf
        self.entries = list(entries)
        self.offsets, self.nbytes = offsets(self.entries)
        self.held = len(buf)

    def decode_into(self, out: np.ndarray) -> None:
        """Decode every tensor into the ``uint8`` array ``out`` (integrity is checked as it goes)."""
        for entry, at in zip(self.entries, self.offsets):
            array = codec.decode_tensor(entry, self.buf, verify=False)
            out[at : at + entry.nbytes] = array.reshape(-1).view(np.uint8)

    def check(self) -> None:
        """Nothing is ever pending on the host."""


class DeviceStore:
    """A group's compressed tensors on the GPU, decoded by one kernel launch (or the replay of its graph)."""

    def __init__(self, buf: memoryview, entries: Sequence[container.Entry], allocate: Any, stream: Any) -> None:
        from ..gpu import decoder

        self.batch = decoder.Batch(buf, entries, stream, allocate=allocate)
        self.entries = self.batch.entries
        self.offsets, self.nbytes = offsets(self.entries)
        if self.offsets != self.batch.offsets:
            raise AssertionError("the GPU decoder lays tensors out differently from rans.torch")
        self.held = self.batch.device_nbytes
        self.graph: Any = None
        import torch

        self.statuses = [torch.as_tensor(status) for status in self.batch.statuses()]

    def capture(self, out: Any, stream: Callable[[], Any]) -> None:
        """Decode into ``out`` once, checked, then record that decode as a CUDA graph to replay.

        A replay costs microseconds of CPU time where a launch from Python
        costs a fraction of a millisecond; it always writes to ``out``.
        ``stream()`` is torch's current stream as a numba stream.
        """
        import torch

        self.batch.decode_into(out, stream(), check=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.batch.decode_into(out, stream(), check=False)
        self.batch.unchecked = False
        self.graph = graph

    def decode_into(self, out: Any, stream: Any, check: bool) -> None:
        """Enqueue the decode of every tensor into the numba ``uint8`` device array ``out`` on ``stream``."""
        if self.graph is None:
            self.batch.decode_into(out, stream, check=check)
            return
        self.graph.replay()
        self.batch.unchecked = True
        if check:
            self.batch.check(stream)

    def check(self, stream: Any) -> None:
        """Raise :class:`~rans.CorruptDataError` if a decode since the last check failed."""
        self.batch.check(stream)

    @property
    def pending(self) -> bool:
        """Whether a decode was enqueued since the last check."""
        return self.batch.unchecked

    def passed(self) -> None:
        """Record a check that read every count of :attr:`statuses` (torch views of the batch's) as zero."""
        self.batch.passed()


def verify(entries: Sequence[container.Entry], buf: memoryview) -> None:
    """Check the CRC-32 of every tensor's sections once, before they are kept."""
    for entry in entries:
        codec.verify_sections(entry, buf)
