"""Warp operations, with a fallback for the CUDA simulator.

The simulator (``NUMBA_ENABLE_CUDASIM=1``) has no warp intrinsics. There,
:func:`ballot` goes through shared memory and one block barrier, and
:func:`xor_all` through shared memory and two, which is
correct only when a block is a single warp; :data:`WARPS_PER_BLOCK` is 1
under the simulator for that reason. On a GPU they are ``ballot_sync`` and
five ``shfl_xor_sync``.

:func:`prefetch` asks the L1 cache for the line holding an array element
(PTX ``prefetch.global.L1``) without waiting for it, :func:`tail` is
``array[start:]`` with its start hidden from LLVM (see its docstring) and
:func:`permute` is PTX ``prmt.b32`` and :func:`load4` four words in one
read-only 16-byte load (PTX ``ld.global.nc.v4.u32``); under the simulator
the first does nothing and the others are written in Python.

``scratch`` of :func:`ballot` is a warp's :data:`VOTE_BYTES` bytes of shared memory: two vote
buffers used in turn (so one barrier per ballot suffices: a lane can only
overwrite a buffer after every lane has passed the next barrier, and so
has read it) and each lane's turn.
"""

from __future__ import annotations

from numba import config, cuda, int32, types, uint32

SIMULATED = bool(config.ENABLE_CUDASIM)
WARPS_PER_BLOCK = 1 if SIMULATED else 8
FULL_MASK = 0xFFFFFFFF
VOTE_BYTES = 96

if SIMULATED:

    @cuda.jit(device=True)
    def prefetch(array, i):
        """Nothing: the simulator has no caches."""

    @cuda.jit(device=True)
    def tail(array, start):
        """``array[start:]``."""
        return array[start:]

    @cuda.jit(device=True)
    def permute(a, b, selector):
        """PTX ``prmt.b32``: byte ``i`` of the result is byte ``(selector >> 4 * i) & 7`` of ``a`` (0-3) then ``b`` (4-7)."""
        out = uint32(0)
        for i in range(4):
            k = (selector >> (4 * i)) & 7
            source = a if k < 4 else b
            out |= ((source >> (8 * (k & 3))) & 0xFF) << (8 * i)
        return uint32(out)

    @cuda.jit(device=True)
    def load4(array, i):
        """``array[i:i + 4]`` as a tuple."""
        return array[i], array[i + 1], array[i + 2], array[i + 3]

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
    from llvmlite import ir
    from numba.cuda import cgutils
    from numba.cuda.extending import intrinsic

    @intrinsic
    def prefetch(typingctx, array, i):
        """Start loading the line of ``array[i]`` (1-D, ``i`` within it) into L1; no result, no wait."""
        if not (isinstance(array, types.Array) and array.ndim == 1 and isinstance(i, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            array_type, index_type = signature.args
            ary, index = args
            index = context.cast(builder, index, index_type, types.intp)
            struct = context.make_array(array_type)(context, builder, value=ary)
            pointer = cgutils.get_item_pointer(context, builder, array_type, struct, [index])
            asm = ir.InlineAsm(ir.FunctionType(ir.VoidType(), [pointer.type]), "prefetch.global.L1 [$0];", "l", side_effect=True)
            builder.call(asm, [pointer])
            return context.get_dummy_value()

        return types.void(array, i), codegen

    @intrinsic
    def tail(typingctx, array, start):
        """``array[start:]`` (1-D, C order, ``0 <= start <= len(array)``), its start hidden from the optimizer.

        Indexing ``array[start:]`` with a 32-bit index then costs one multiply-add
        from a pointer kept in registers; otherwise LLVM folds the slice into
        each access, adding ``start`` in 64 bits every time.
        """
        if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C" and isinstance(start, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            array_type, start_type = signature.args
            whole = context.make_array(array_type)(context, builder, value=args[0])
            start = context.cast(builder, args[1], start_type, types.intp)
            pointer = builder.gep(whole.data, [start])
            word = ir.IntType(64)
            address = builder.call(ir.InlineAsm(ir.FunctionType(word, [word]), "mov.b64 $0, $1;", "=l,l"),
                                   [builder.ptrtoint(pointer, word)])
            pointer = builder.addrspacecast(builder.inttoptr(address, ir.PointerType(pointer.type.pointee, 1)), pointer.type)
            part = context.make_array(array_type)(context, builder)
            length = builder.sub(cgutils.unpack_tuple(builder, whole.shape, 1)[0], start)
            context.populate_array(part, data=pointer, shape=[length], strides=[whole.itemsize], itemsize=whole.itemsize,
                                   meminfo=whole.meminfo, parent=whole.parent)
            return part._getvalue()

        return array(array, start), codegen

    @intrinsic
    def permute(typingctx, a, b, selector):
        """PTX ``prmt.b32``: byte ``i`` of the result is byte ``(selector >> 4 * i) & 7`` of ``a`` (0-3) then ``b`` (4-7)."""
        if not all(isinstance(t, types.Integer) for t in (a, b, selector)):
            return None

        def codegen(context, builder, signature, args):
            word = ir.IntType(32)
            values = [context.cast(builder, v, t, types.uint32) for v, t in zip(args, signature.args)]
            asm = ir.InlineAsm(ir.FunctionType(word, [word, word, word]), "prmt.b32 $0, $1, $2, $3;", "=r,r,r,r")
            return builder.call(asm, values)

        return types.uint32(a, b, selector), codegen

    @intrinsic
    def load4(typingctx, array, i):
        """``array[i:i + 4]`` as a tuple, in one 16-byte load through the read-only cache.

        ``array`` is 1-D ``uint32`` in global memory, not written while the
        kernel runs, and ``array[i]`` lies at a multiple of 16 bytes.
        """
        if not (isinstance(array, types.Array) and array.ndim == 1 and array.dtype == types.uint32 and isinstance(i, types.Integer)):
            return None
        result = types.UniTuple(types.uint32, 4)

        def codegen(context, builder, signature, args):
            array_type, index_type = signature.args
            index = context.cast(builder, args[1], index_type, types.intp)
            struct = context.make_array(array_type)(context, builder, value=args[0])
            pointer = cgutils.get_item_pointer(context, builder, array_type, struct, [index])
            word = ir.IntType(32)
            asm = ir.InlineAsm(ir.FunctionType(ir.LiteralStructType([word] * 4), [pointer.type]),
                               "ld.global.nc.v4.u32 {$0, $1, $2, $3}, [$4];", "=r,=r,=r,=r,l")
            value = builder.call(asm, [pointer])
            return context.make_tuple(builder, result, [builder.extract_value(value, k) for k in range(4)])

        return result(array, i), codegen

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

