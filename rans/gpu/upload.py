"""Copy a large host buffer (a memory-mapped file) to the GPU through pinned staging buffers.

A copy from pageable memory runs at a fraction of the bus's speed, and a
memory-mapped file must first be paged in by the one thread that copies
it. :func:`upload` cuts the buffer into pieces of :data:`PIECE` bytes;
worker threads copy pieces into a ring of pinned buffers (NumPy lets other
threads run while it copies, so the pieces are paged in and copied on
several cores at once), and the calling thread sends each filled buffer to
the device with an asynchronous copy, reusing a buffer once an event says
its copy is done. Buffers of less than :data:`DIRECT_MAX` bytes are copied
directly. The pinned buffers and the threads are made on first use and kept
for the process.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from numba import cuda

PIECE = 8 << 20
"""Bytes of one staging buffer."""
DIRECT_MAX = 32 << 20
"""Buffers below this size are copied without staging."""
WORKERS = max(1, min(8, os.cpu_count() or 1))
"""Threads that fill the staging buffers."""
SLOTS = 2 * WORKERS
"""Staging buffers in the ring: every worker can fill one while the last ones travel."""

_lock = threading.Lock()
_state: dict[str, Any] = {}


def _ring() -> tuple[ThreadPoolExecutor, list[Any], list[Any]]:
    """The worker threads, the pinned buffers and an event per buffer, made once (the caller holds ``_lock``)."""
    if not _state:
        _state["pool"] = ThreadPoolExecutor(WORKERS, thread_name_prefix="rans-upload")
        _state["buffers"] = [cuda.pinned_array(PIECE, dtype=np.uint8) for _ in range(SLOTS)]
        _state["events"] = [cuda.event() for _ in range(SLOTS)]
    return _state["pool"], _state["buffers"], _state["events"]


def upload(host: memoryview, device: Any, stream: Any) -> None:
    """Copy the bytes of ``host`` to the start of the ``uint8`` device array ``device``, in order on ``stream``.

    Returns once every byte has left the host buffers (the device may still
    be writing: later work on ``stream`` sees the bytes).

    Examples
    --------
    >>> import numpy as np
    >>> from numba import cuda
    >>> data = np.arange(1000, dtype=np.uint8)
    >>> target = cuda.device_array(1000, dtype=np.uint8)
    >>> upload(memoryview(data), target, cuda.default_stream())
    >>> bool((target.copy_to_host() == data).all())
    True
    """
    source = np.frombuffer(host, dtype=np.uint8)
    if source.size < DIRECT_MAX:
        if source.size:
            device[: source.size].copy_to_device(source, stream=stream)
        return
    starts = range(0, source.size, PIECE)
    with _lock:  # one upload at a time owns the ring
        pool, buffers, events = _ring()
        filling: dict[int, Future] = {}

        def fill(i: int) -> None:
            piece = source[starts[i] : starts[i] + PIECE]
            filling[i] = pool.submit(np.copyto, buffers[i % len(buffers)][: piece.size], piece)

        try:
            for i in range(min(len(buffers), len(starts))):
                fill(i)
            for i, start in enumerate(starts):
                filling.pop(i).result()
                slot = i % len(buffers)
                n = min(PIECE, source.size - start)
                device[start : start + n].copy_to_device(buffers[slot][:n], stream=stream)
                events[slot].record(stream)
                if i and i - 1 + len(buffers) < len(starts):  # the previous piece's buffer, once its copy is done
                    events[(i - 1) % len(buffers)].synchronize()
                    fill(i - 1 + len(buffers))
            events[(len(starts) - 1) % len(buffers)].synchronize()
        finally:
            for future in filling.values():  # after a failure: no worker may still write into the ring
                future.cancel() or future.exception()
