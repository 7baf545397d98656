"""Typed views of device memory and copies to and from it, without Numba device arrays.

Numba makes a device array from a CUDA array interface in ~20 us of host
time, slices one in ~57 us and copies 4 KiB to the host in ~82 us (H100
host, ``bench/NOTES.md``, entry E5); an encode call made dozens of each. A
:class:`Span` is a pointer, a dtype and a shape, made in about a
microsecond; :func:`rans.gpu.launch.run` passes it to a kernel as Numba
would pass a C-contiguous array, and the copies here call the driver
directly on the caller's stream. Not for the CUDA simulator, which has no
device pointers: there, callers keep Numba's arrays.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class Span:
    """A C-contiguous array of ``dtype`` and ``shape`` at device address ``ptr``; ``owner`` keeps the memory alive.

    Examples
    --------
    >>> import numpy as np
    >>> from rans.gpu.memory import Span
    >>> s = Span(4096, np.uint32, (10,), None)
    >>> s.size, s.nbytes, s.strides, s.view(8, np.uint8, (4,)).ptr
    (10, 40, (4,), 4104)
    """

    __slots__ = ("dtype", "nbytes", "owner", "ptr", "shape", "size")

    def __init__(self, ptr: int, dtype: Any, shape: tuple[int, ...], owner: Any) -> None:
        self.ptr = int(ptr)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(d) for d in shape)
        self.size = math.prod(self.shape)
        self.nbytes = self.size * self.dtype.itemsize
        self.owner = owner

    @property
    def strides(self) -> tuple[int, ...]:
        """Byte strides of the C-contiguous layout."""
        strides, step = [], self.dtype.itemsize
        for d in reversed(self.shape):
            strides.append(step)
            step *= d
        return tuple(reversed(strides))

    def view(self, start: int, dtype: Any, shape: tuple[int, ...]) -> Span:
        """The span of ``dtype`` and ``shape`` from byte ``start`` of this one (same owner)."""
        return Span(self.ptr + start, dtype, shape, self.owner)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": self.shape, "strides": None, "typestr": self.dtype.str, "data": (self.ptr, False), "version": 3}


def pointer(obj: Any) -> int:
    """The device address of a :class:`Span`, a torch CUDA tensor or anything with ``__cuda_array_interface__``."""
    if isinstance(obj, Span):
        return obj.ptr
    if type(obj).__module__.startswith("torch"):
        return int(obj.data_ptr())
    return int(obj.__cuda_array_interface__["data"][0])


def span(owner: Any, start: int, dtype: Any, shape: tuple[int, ...]) -> Span:
    """A :class:`Span` of ``dtype`` and ``shape`` on the bytes of ``owner`` from byte ``start``."""
    return Span(pointer(owner) + start, dtype, shape, owner)


def handle(stream: Any) -> int:
    """The CUDA stream handle of a Numba stream."""
    return int(stream.__cuda_stream__()[1])


def _check(result: tuple[Any, ...], what: str) -> None:
    from cuda.bindings import driver

    if result[0] != driver.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"{what} failed: {result[0]!r}")


def to_device(dst: int, host: np.ndarray, stream: Any) -> None:
    """Copy the contiguous ``host`` array to device address ``dst`` on ``stream``; ``host`` may be reused on return.

    From pageable memory the driver stages the bytes before it returns.
    """
    from cuda.bindings import driver

    if host.nbytes:
        _check(driver.cuMemcpyHtoDAsync(dst, host.ctypes.data, host.nbytes, handle(stream)), "a copy to the GPU")


def to_host(sources: list[Span], stream: Any) -> list[np.ndarray]:
    """Each of ``sources``' elements in a host array, once the work queued on ``stream`` is done (one wait for all)."""
    from cuda.bindings import driver

    outs = [np.empty(source.shape, dtype=source.dtype) for source in sources]
    for out, source in zip(outs, sources):
        if source.nbytes:
            _check(driver.cuMemcpyDtoHAsync(out.ctypes.data, source.ptr, source.nbytes, handle(stream)), "a copy from the GPU")
    _check(driver.cuStreamSynchronize(handle(stream)), "a stream synchronization")
    return outs


def copy(dst: Span, source: Span, stream: Any) -> None:
    """Copy ``source``'s bytes to ``dst`` on ``stream``."""
    from cuda.bindings import driver

    if source.nbytes:
        _check(driver.cuMemcpyDtoDAsync(dst.ptr, source.ptr, source.nbytes, handle(stream)), "a copy on the GPU")
