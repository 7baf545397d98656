"""Warp operations, with a fallback for the CUDA simulator.

The simulator (``NUMBA_ENABLE_CUDASIM=1``) has no warp intrinsics. There,
:func:`ballot` goes through shared memory and one block barrier, which is
correct only when a block is a single warp; :data:`WARPS_PER_BLOCK` is 1
under the simulator for that reason. On a GPU it is ``ballot_sync``.

``scratch`` is a warp's :data:`VOTE_BYTES` bytes of shared memory: two vote
buffers used in turn (so one barrier per ballot suffices: a lane can only
overwrite a buffer after every lane has passed the next barrier, and so
has read it) and each lane's turn.
"""

from __future__ import annotations

from numba import config, cuda, uint32

SIMULATED = bool(config.ENABLE_CUDASIM)
WARPS_PER_BLOCK = 1 if SIMULATED else 8
FULL_MASK = 0xFFFFFFFF
VOTE_BYTES = 96

if SIMULATED:

    @cuda.jit(device=True)
    def ballot(predicate, scratch, lane):
        """Bit ``i`` set when lane ``i`` of the warp passed a true ``predicate``."""
        turn = scratch[64 + lane]
        scratch[64 + lane] = 1 - turn
        votes = 32 * turn
        scratch[votes + lane] = 1 if predicate else 0
        cuda.syncthreads()
        bits = uint32(0)
        for i in range(32):
            if scratch[votes + i]:
                bits |= uint32(1) << uint32(i)
        return bits

else:

    @cuda.jit(device=True, inline=True)
    def ballot(predicate, scratch, lane):
        """Bit ``i`` set when lane ``i`` of the warp passed a true ``predicate``."""
        return uint32(cuda.ballot_sync(FULL_MASK, predicate))

