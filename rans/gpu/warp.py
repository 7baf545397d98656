"""Warp operations, with a fallback for the CUDA simulator.

The simulator (``NUMBA_ENABLE_CUDASIM=1``) has no warp intrinsics. There,
:func:`ballot` goes through shared memory and block barriers, which is
correct only when a block is a single warp; :data:`WARPS_PER_BLOCK` is 1
under the simulator for that reason. On a GPU it is ``ballot_sync``.
"""

from __future__ import annotations

from numba import config, cuda, uint32

SIMULATED = bool(config.ENABLE_CUDASIM)
WARPS_PER_BLOCK = 1 if SIMULATED else 8
FULL_MASK = 0xFFFFFFFF

if SIMULATED:

    @cuda.jit(device=True)
    def ballot(predicate, scratch, lane):
        """Bit ``i`` set when lane ``i`` of the warp passed a true ``predicate``."""
        scratch[lane] = 1 if predicate else 0
        cuda.syncthreads()
        bits = uint32(0)
        for i in range(32):
            if scratch[i]:
                bits |= uint32(1) << uint32(i)
        cuda.syncthreads()
        return bits

else:

    @cuda.jit(device=True, inline=True)
    def ballot(predicate, scratch, lane):
        """Bit ``i`` set when lane ``i`` of the warp passed a true ``predicate``."""
        return uint32(cuda.ballot_sync(FULL_MASK, predicate))
