"""Order-0 entropy and the bound it puts on any coder of a tensor's planes.

Examples
--------
>>> import numpy as np
>>> from rans import entropy
>>> entropy.h0(np.array([0, 0, 1, 1], np.uint8))
1.0
>>> entropy.bound_bytes(np.zeros(1000, np.int16), "bytes")
0.0
"""

from __future__ import annotations

import numpy as np

from . import dtypes


def h0(plane: np.ndarray) -> float:
    """Empirical order-0 entropy of a ``uint8`` plane, in bits per symbol."""
    if plane.size == 0:
        return 0.0
    counts = np.bincount(plane.reshape(-1), minlength=256)
    p = counts[counts > 0] / plane.size
    return float(-(p * np.log2(p)).sum()) + 0.0


def bound_bytes(array: np.ndarray, split: str) -> float:
    """Fewest bytes an order-0 coder of ``array``'s planes under ``split`` can reach: sum of n * min(8, H0) / 8."""
    array = np.ascontiguousarray(array)
    return float(sum(p.size * min(8.0, h0(p)) / 8 for p in dtypes.split(array, split)))
