"""The CPU codec: Numba-compiled encode and decode, byte-identical to :mod:`rans.reference`.

Needs ``numba``; the loops compile on first use and are cached on disk.
They run on Numba's threads (``NUMBA_NUM_THREADS``, every core by default).
Unless told otherwise, OpenMP threads here sleep rather than spin while they
wait (``OMP_WAIT_POLICY=PASSIVE``, read when Numba first starts its
threads): spinning threads on a busy machine made coding 10 to 50 times
slower, sleeping ones cost nothing measurable on an idle one.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .coder import decode, encode  # noqa: E402
from .modes import plan  # noqa: E402
from .planes import count, counts, join, split  # noqa: E402
from .tables import quantize, serialized_size  # noqa: E402
from .tensors import decode_tensor  # noqa: E402

__all__ = ["encode", "decode", "plan", "count", "counts", "quantize", "serialized_size", "split", "join", "decode_tensor"]
