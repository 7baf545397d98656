"""The CPU codec: Numba-compiled encode and decode, byte-identical to :mod:`rans.reference`.

Needs ``numba``; the loops compile on first use and are cached on disk.
"""

from .coder import decode, encode
from .planes import count, join, split

__all__ = ["encode", "decode", "count", "split", "join"]
