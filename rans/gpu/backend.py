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

from .. import codec, container, dtypes
from . import decoder
from .encoder import encode_tensor

__all__ = ["available", "decode_tensor", "encode_tensor"]


def available() -> bool:
    """Whether a CUDA GPU (or the CUDA simulator) is there."""
    return bool(cuda.is_available())


def decode_tensor(entry: container.Entry, buf: memoryview, verify: bool = True) -> np.ndarray:
    """Decode one tensor on the GPU and bring it back as a NumPy array (see :func:`rans.codec.decode_tensor`)."""
    if verify:
        codec.verify_sections(entry, buf)
    bits = decoder.decode_entry(buf, entry, "numba").copy_to_host()
    return bits.view(dtypes.DTYPES[entry.dtype]).reshape(entry.shape)
