"""Reading rans files one tensor at a time: :class:`safe_open`, and the CPU side of :func:`rans.load_file`.

Files are memory-mapped. A tensor is decoded when asked for; the pages of
its sections are then dropped from the process (``madvise(MADV_DONTNEED)``;
the kernel's page cache keeps them), so reading a file costs host memory in
proportion to its largest tensor, beyond the tensors returned.
"""

from __future__ import annotations

import mmap
import os
from typing import Any, Callable, TypeVar

import numpy as np

from . import backends, codec, container, dtypes
from .errors import InvalidArgumentError, RansError

T = TypeVar("T")

RELEASE_BYTES = 1 << 22
"""Bytes of sections a :class:`safe_open` lets pile up mapped before it drops their pages (4 MiB)."""
FRAMEWORKS = {"cpu": ("numpy", "torch"), "cuda": ("torch", "numba")}
"""The array types each device can return, the default first (on ``cuda``, torch when importable)."""


def check_framework(device: str, framework: str | None) -> None:
    """Raise :class:`~rans.InvalidArgumentError` unless ``device`` can return ``framework`` arrays."""
    if device not in FRAMEWORKS:
        raise InvalidArgumentError(f"device must be 'cpu' or 'cuda', not {device!r}")
    if framework is not None and framework not in FRAMEWORKS[device]:
        raise InvalidArgumentError(
            f"framework must be one of {', '.join(map(repr, FRAMEWORKS[device]))} on {device!r}, not {framework!r}"
        )


def gpu_decoder() -> Any:
    """:mod:`rans.gpu.decoder`; :class:`~rans.InvalidArgumentError` where numba-cuda is missing."""
    try:
        from .gpu import decoder
    except ImportError as e:
        raise InvalidArgumentError(f"device='cuda' needs numba-cuda (pip install 'rans[gpu]'): {e}") from None
    return decoder


def to_torch(array: np.ndarray) -> Any:
    """A CPU ``torch.Tensor`` sharing ``array``'s memory (bf16 and fp8 included)."""
    try:
        import torch
    except ImportError as e:
        raise InvalidArgumentError(f"framework='torch' needs PyTorch: {e}") from None
    name = dtypes.name_of(array.dtype)
    array = np.ascontiguousarray(array)
    if name in ("BF16", "F8_E4M3", "F8_E5M2"):
        bits = np.int16 if name == "BF16" else np.uint8
        return torch.from_numpy(array.view(bits)).view(getattr(torch, dtypes.TORCH[name]))
    return torch.from_numpy(array)


class safe_open:  # noqa: N801 - named after safetensors.safe_open, whose interface it follows
    """A rans file opened for reading single tensors, like ``safetensors.safe_open``.

    Only the header is read on opening; :meth:`get_tensor` checks and decodes
    one tensor, so a damaged tensor does not stop the others from loading.

    Examples
    --------
    >>> import numpy as np, rans, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "m.rans")
    >>> rans.save_file({"a": np.arange(4, dtype=np.int16), "b": np.ones(2, np.float32)}, path, {"k": "v"})
    >>> with rans.safe_open(path, framework="numpy") as f:
    ...     f.keys(), f.metadata(), f.get_tensor("a")
    (['a', 'b'], {'k': 'v'}, array([0, 1, 2, 3], dtype=int16))

    Parameters
    ----------
    path : str or os.PathLike
        A rans file.
    framework : {"numpy", "torch", "numba"}
        The array type :meth:`get_tensor` returns: NumPy or torch on the CPU,
        torch or Numba device arrays on ``cuda`` (see :func:`rans.decompress`).
    device : {"cpu", "cuda"}
        Where to decode.
    verify : bool
        Check each tensor's CRC-32 before decoding it (default).
    backend : {"auto", "cpu", "reference", "gpu"}
        The CPU-side decoder (see :func:`rans.decompress`); ``device="cuda"`` decodes on the GPU.
    max_bytes : int, optional
        The most bytes one tensor may decode to (see :func:`rans.decompress`).

    Raises
    ------
    rans.NotRansDataError, rans.UnsupportedVersionError, rans.CorruptDataError
        On opening, when the file's header is not that of a valid rans file;
        on :meth:`get_tensor`, when that tensor is damaged.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        framework: str = "numpy",
        device: str = "cpu",
        *,
        verify: bool = True,
        backend: str = "auto",
        max_bytes: int | None = None,
    ) -> None:
        check_framework(device, framework)
        self.framework, self.device, self.verify, self.max_bytes = framework, device, verify, max_bytes
        self._decoder = backends.get(backend)
        self._map: mmap.mmap | None = None
        self._view = memoryview(b"")
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                self._view = memoryview(self._map)
        try:
            self.header = self._guarded(lambda: container.read_header(self._view))
        except BaseException:
            self.close()
            raise
        self._entries = {e.name: e for e in self.header.entries}
        self._unreleased = (len(self._view), 0)  # sections decoded since their pages were last dropped

    def keys(self) -> list[str]:
        """The tensor names, in file order."""
        return list(self._entries)

    def metadata(self) -> dict[str, str]:
        """The user metadata of the file."""
        return dict(self.header.metadata)

    def entry(self, name: str) -> container.Entry:
        """The header entry of tensor ``name`` (dtype, shape, planes); raises ``KeyError`` if there is none."""
        return self._entries[name]

    def get_tensor(self, name: str) -> Any:
        """Check and decode tensor ``name``; raises ``KeyError`` if the file has no such tensor."""
        entry = self._entries[name]
        self._guarded(lambda: codec.check_size([entry], len(self._view), self.max_bytes))
        return self._decoded(entry)

    def _decoded(self, entry: container.Entry) -> Any:
        """Tensor ``entry`` decoded, its size already checked."""
        if self.device == "cuda":
            return self._guarded(lambda: self._on_gpu(entry))
        array = self._guarded(lambda: codec.decode_tensor(entry, self._view, self.verify, self._decoder))
        self.release(entry)
        return to_torch(array) if self.framework == "torch" else array

    def _on_gpu(self, entry: container.Entry) -> Any:
        decoder = gpu_decoder()
        if self.verify:
            codec.verify_sections(entry, self._view)
        return decoder.decode_entry(self._view, entry, self.framework)

    def release(self, entry: container.Entry) -> None:
        """Drop the pages of ``entry``'s sections from this process (they stay in the page cache).

        Sections read since the last drop are dropped together once they span
        :data:`RELEASE_BYTES` (one call per tensor cost files of small tensors
        3% of their load time), so at most that much more stays mapped.
        """
        start, end = entry.span()
        if end <= start or self._map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        low, high = self._unreleased
        low, high = min(low, start), max(high, end)
        if high - low < RELEASE_BYTES:
            self._unreleased = (low, high)
            return
        low -= low % mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, low, high - low)
        self._unreleased = (len(self._view), 0)

    def _guarded(self, call: Callable[[], T]) -> T:
        """``call()``, re-raising its error without the traceback, whose frames hold views of the map."""
        error = None
        try:
            return call()
        except RansError as e:
            error = e
            error.__traceback__ = None
            error.__context__ = None
        raise error

    def close(self) -> None:
        """Unmap the file; tensors already returned stay valid (unmapping waits for the garbage
        collector while something still holds a view of the map)."""
        try:
            self._view.release()
            if self._map is not None:
                self._map.close()
        except BufferError:
            pass
        self._map = None

    def __enter__(self) -> "safe_open":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def load_cpu(
    path: str | os.PathLike, framework: str | None, verify: bool, backend: str = "auto", max_bytes: int | None = None
) -> dict[str, Any]:
    """Every tensor of a file decoded on the CPU, one at a time (what :func:`rans.load_file` does on ``cpu``).

    Raises :class:`~rans.SizeLimitError` before decoding anything if the tensors would take more
    than ``max_bytes`` (see :func:`rans.codec.check_size`).
    """
    with safe_open(path, framework or "numpy", "cpu", verify=verify, backend=backend, max_bytes=max_bytes) as f:
        f._guarded(lambda: codec.check_size(f.header.entries, len(f._view), max_bytes))
        return {entry.name: f._decoded(entry) for entry in f.header.entries}
