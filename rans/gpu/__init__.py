"""The GPU backend (Numba CUDA): interleaved rANS decode with the plane join fused in
(:mod:`rans.gpu.decoder`), and encode with the plane split fused in, byte-identical
to the reference encoder (:mod:`rans.gpu.encoder`).

Importing this package needs ``numba-cuda`` (``pip install rans[gpu]``).
Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same kernels run
on the CPU, slowly, for testing without a GPU.
"""

from __future__ import annotations


def available() -> bool:
    """True when a CUDA GPU (or the CUDA simulator) can run the kernels."""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - no numba-cuda, no driver: no GPU either way
        return False
