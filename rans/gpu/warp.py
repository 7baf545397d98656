"""Warp operations, with a fallback for the CUDA simulator.

The simulator (``NUMBA_ENABLE_CUDASIM=1``) has no warp intrinsics. There,
:func:`ballot` goes through shared memory and one block barrier, and
:func:`xor_all` through shared memory and two, which is
correct only when a block is a single warp; :data:`WARPS_PER_BLOCK` is 1
under the simulator for that reason. On a GPU they are ``ballot_sync`` and
five ``shfl_xor_sync``.

``scratch`` of :func:`ballot` is a warp's :data:`VOTE_BYTES` bytes of shared memory: two vote
buffers used in turn (so one barrier per ballot suffices: a lane can only
overwrite a buffer after every lane has passed the next barrier, and so
has read it) and each lane's turn.
"""

from __future__ import annotations

from numba import config, cuda, int32, uint32

SIMULATED = bool(config.ENABLE_CUDASIM)
WARPS_PER_BLOCK = 1 if SIMULATED else 8
FULL_MASK = 0xFFFFFFFF
VOTE_BYTES = 96

if SIMULATED:

    @cuda.jit(device=True)
    def xor_all(value, scratch, lane):
        """The XOR of ``value`` over the warp's lanes, in every lane (``scratch``: 32 shared ``uint32``)."""
        cuda.syncthreads()
        scratch[lane] = value
        cuda.syncthreads()
        out = uint32(0)
        for i in range(32):
            out ^= scratch[i]
        return out

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
    def xor_all(value, scratch, lane):
        """The XOR of ``value`` over the warp's lanes, in every lane (``scratch``: 32 shared ``uint32``)."""
        value = int32(value)  # shfl_xor_sync takes signed words; the bits are what count
        value ^= cuda.shfl_xor_sync(FULL_MASK, value, 16)
        value ^= cuda.shfl_xor_sync(FULL_MASK, value, 8)
        value ^= cuda.shfl_xor_sync(FULL_MASK, value, 4)
        value ^= cuda.shfl_xor_sync(FULL_MASK, value, 2)
        value ^= cuda.shfl_xor_sync(FULL_MASK, value, 1)
        return uint32(value)

    @cuda.jit(device=True, inline=True)
    def ballot(predicate, scratch, lane):
        """Bit ``i`` set when lane ``i`` of the warp passed a true ``predicate``."""
        return uint32(cuda.ballot_sync(FULL_MASK, predicate))

