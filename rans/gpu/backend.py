"""The GPU as ``backend="gpu"``: host arrays in and out, coded by :mod:`.encoder`, decoded by :mod:`.decoder`.

Examples
--------
>>> import numpy as np, rans
>>> x = np.arange(1000, dtype=np.int16)
>>> rans.compress(x, backend="gpu") == rans.compress(x, backend="reference")
True
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from typing import Any

from .. import backends, codec, container, dtypes
from . import decoder, encoder

__all__ = ["available", "decode_tensor", "encode_tensor"]


def available() -> bool:
    """Whether a CUDA GPU (or the CUDA simulator) is there."""
    return bool(cuda.is_available())


def encode_tensor(
    array: Any, name: str, chunk: int, workers: int = 1, prefer: str = "ratio"
) -> tuple[container.Entry, list[Any]]:
    """Code one tensor as :func:`rans.codec.encode_tensor` does: on the GPU (:func:`.encoder.encode_tensor`)
    for the smallest file; a tensor written for speed (``prefer="speed"``) is coded by the host backend
    (:func:`rans.backends.host`), the GPU encoder making the files for ratio only."""
    if prefer != "ratio":
        return codec.encode_tensor(array, name, chunk, workers, backends.host(), prefer)
    return encoder.encode_tensor(array, name, chunk)


def decode_tensor(entry: container.Entry, buf: memoryview, verify: bool = True) -> np.ndarray:
    """Decode one tensor on the GPU and bring it back as a NumPy array (see :func:`rans.codec.decode_tensor`)."""
    if verify:
        codec.verify_sections(entry, buf)
    bits = decoder.decode_entry(buf, entry, "numba").copy_to_host()
    return bits.view(dtypes.DTYPES[entry.dtype]).reshape(entry.shape)
