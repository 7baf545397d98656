"""One full step of a 32-lane chunk as vector code: the CPU codec's inner loops for wide chunks.

A step is 4 sub-steps of the chunk's 32 lanes; lane ``l`` codes the 4
consecutive symbols at bytes ``4 l .. 4 l + 3`` of the step's 128, so a
step's symbols are one 128-byte load, lane ``l``'s in 32-bit element ``l``,
sub-step ``u`` in its byte ``u``. Within a sub-step the lanes are independent
but for the words: the lanes that renormalize take (or give) their words in
lane order, which is what AVX-512's expand-load and compress-store do.
Numba has no vector types, so each step is an intrinsic written in LLVM IR
(``llvm.masked.gather``, ``llvm.masked.expandload``,
``llvm.masked.compressstore``), used where the CPU has AVX-512 with VBMI2
(:func:`available`); elsewhere the scalar loops code every step.

The arithmetic is :mod:`rans.cpu.kernels`' in 32-bit lanes:

* the encoder emits when ``x >> 20 >= f`` (``x >= f << 20`` without the
  33-bit ``f << 20`` of ``f = M``) and divides by ``f`` through the double
  reciprocal, with the same operations (a product, then a sum, each rounded);
* the decoder's slot table is :func:`rans.cpu.kernels.slot_table`'s.

Callers keep the words in bounds: :func:`encode_step` stores at most 128
words below ``pos``, :func:`decode_step` loads at most 128 from ``w``.
Numba's disk cache keys :mod:`rans.cpu.kernels` on that file alone: after
editing this one, delete ``rans/cpu/__pycache__/*.nbi`` (``bench/NOTES.md``,
entry C1).

Examples
--------
>>> import numpy as np
>>> from rans import cpu
>>> plane = (np.random.default_rng(1).normal(0, 6, 1 << 15) % 256).astype(np.uint8)
>>> section = cpu.encode(plane, 1 << 14, lanes=32)  # full 32-lane steps: this module's, where available
>>> from rans import reference
>>> section == reference.coder.encode(plane, 1 << 14, lanes=32)
True
>>> bool((cpu.decode(section, plane.size) == plane).all())
True
"""

from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic

from ..constants import M, PROB_BITS, STATE_LOW, WORD_BITS

LANES = 32
"""Lanes of the chunks these steps code (chunks of fewer lanes take the scalar loops)."""
NEEDS = ("avx512f", "avx512bw", "avx512vl", "avx512vbmi2")
"""The CPU features the steps are used with (``vpcompressw`` and ``vpexpandw`` are AVX512-VBMI2)."""


def available() -> bool:
    """Whether Numba compiles for a CPU with :data:`NEEDS`.

    >>> from rans.cpu import simd
    >>> simd.available() == simd.AVAILABLE
    True

    Elsewhere LLVM emulates the masked vector operations with scalar code, which
    was 10-20% slower than the scalar loops (AVX2 only, ``bench/NOTES.md`` entry
    C1), so :mod:`rans.cpu.kernels` leaves the steps out.
    """
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else llvm.get_host_cpu_features().flatten()
    return all(f"+{need}" in features.split(",") for need in NEEDS)


AVAILABLE = available()
""":func:`available` when this module was imported: a constant of the compiled loops."""
STEP_SYMBOLS = LANES * 4
"""Symbols of a step, and the most words a step emits or takes."""

_I1, _I16, _I32, _I64 = (ir.IntType(b) for b in (1, 16, 32, 64))
_F64 = ir.DoubleType()
_PTR = ir.PointerType()


def _vec(t: ir.Type) -> ir.VectorType:
    return ir.VectorType(t, LANES)


def _splat(t: ir.Type, value: int | float) -> ir.Constant:
    return ir.Constant(_vec(t), [value] * LANES)


def _contiguous(*arrays: types.Type) -> bool:
    """Whether every argument is a C-contiguous array: the steps address elements from the first one."""
    return all(isinstance(a, types.Array) and a.layout == "C" for a in arrays)


def _data(context, builder, aryty, value):
    """The address of an array's first element, as an integer."""
    return builder.ptrtoint(context.make_array(aryty)(context, builder, value).data, _I64)


def _at(builder, base, index, size: int):
    """The pointer ``base + index * size`` (``base`` an integer address, ``index`` an ``i64``)."""
    offset = builder.mul(index, ir.Constant(_I64, size))
    return builder.inttoptr(builder.add(base, offset), _PTR)


def _gather(builder, base, index, elt: ir.Type, size: int):
    """``base[index]`` for each lane: ``index`` a ``<32 x i32>`` of non-negative table indices."""
    bases = builder.shuffle_vector(
        builder.insert_element(ir.Constant(_vec(_I64), ir.Undefined), base, ir.Constant(_I32, 0)),
        ir.Constant(_vec(_I64), ir.Undefined),
        _splat(_I32, 0),
    )
    pointers = builder.inttoptr(builder.add(bases, builder.mul(builder.zext(index, _vec(_I64)), _splat(_I64, size))), _vec(_PTR))
    name = f"llvm.masked.gather.v{LANES}{'f64' if elt is _F64 else f'i{elt.width}'}.v{LANES}p0"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_vec(elt), [_vec(_PTR), _I32, _vec(_I1), _vec(elt)]), name)
    return builder.call(fn, [pointers, ir.Constant(_I32, size), _splat(_I1, 1), ir.Constant(_vec(elt), ir.Undefined)])


def _popcount(builder, mask):
    """The number of set lanes of a ``<32 x i1>`` mask, as ``i64``."""
    bits = builder.bitcast(mask, ir.IntType(LANES))
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(bits.type, [bits.type]), f"llvm.ctpop.i{LANES}")
    return builder.zext(builder.call(fn, [bits]), _I64)


def _load(builder, pointer, t: ir.Type):
    load = builder.load(pointer, typ=t)
    load.align = 1
    return load


def _store(builder, value, pointer) -> None:
    store = builder.store(value, pointer)
    store.align = 1


@intrinsic
def encode_step(typingctx, symbols, at, states, table, recips, scratch, pos):
    """Encode the step of ``symbols[at : at + 128]`` into ``states`` (``uint32[32]``); return the new ``pos``.

    Sub-steps run 3 to 0, as the encoder walks them; the words a sub-step
    emits go, in lane order, to the places just below ``pos`` in ``scratch``.
    ``table[s]`` is ``f | cum << 13`` and ``recips[s]`` is ``1.0 / max(f, 1)``.
    """
    if not _contiguous(symbols, states, table, recips, scratch):
        return None
    sig = types.int64(symbols, types.int64, states, table, recips, scratch, types.int64)

    def codegen(context, builder, signature, args):
        symbols_at = _data(context, builder, signature.args[0], args[0])
        states_at = _data(context, builder, signature.args[2], args[2])
        table_at = _data(context, builder, signature.args[3], args[3])
        recips_at = _data(context, builder, signature.args[4], args[4])
        scratch_at = _data(context, builder, signature.args[5], args[5])
        step = _load(builder, _at(builder, symbols_at, args[1], 1), _vec(_I32))
        x_at = builder.inttoptr(states_at, _PTR)
        x = _load(builder, x_at, _vec(_I32))
        pos = args[6]
        compress = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [_vec(_I16), _PTR, _vec(_I1)]), f"llvm.masked.compressstore.v{LANES}i16"
        )
        for sub in range(3, -1, -1):
            s = builder.and_(builder.lshr(step, _splat(_I32, 8 * sub)), _splat(_I32, 0xFF))
            packed = _gather(builder, table_at, s, _I32, 4)
            f = builder.and_(packed, _splat(_I32, (1 << 13) - 1))
            cum = builder.lshr(packed, _splat(_I32, 13))
            emit = builder.icmp_unsigned(">=", builder.lshr(x, _splat(_I32, 20)), f)
            count = _popcount(builder, emit)
            pos = builder.sub(pos, count)
            builder.call(compress, [builder.trunc(x, _vec(_I16)), _at(builder, scratch_at, pos, 2), emit])
            x = builder.select(emit, builder.lshr(x, _splat(_I32, WORD_BITS)), x)
            product = builder.fmul(builder.uitofp(x, _vec(_F64)), _gather(builder, recips_at, s, _F64, 8))
            q = builder.fptoui(builder.fadd(product, _splat(_F64, 2.0**-16)), _vec(_I32))
            x = builder.add(builder.add(x, builder.mul(q, builder.sub(_splat(_I32, M), f))), cum)
        _store(builder, x, x_at)
        return pos

    return sig, codegen


@intrinsic
def decode_step(typingctx, words, w, states, slots, out, at):
    """Decode one step into ``out[at : at + 128]`` from ``states`` (``uint32[32]``); return the new ``w``.

    Sub-steps run 0 to 3; the lanes that fall below ``L`` take the words
    from ``words[w]`` on, in lane order. ``slots`` is the slot table.
    """
    if not _contiguous(words, states, slots, out):
        return None
    sig = types.int64(words, types.int64, states, slots, out, types.int64)

    def codegen(context, builder, signature, args):
        words_at = _data(context, builder, signature.args[0], args[0])
        states_at = _data(context, builder, signature.args[2], args[2])
        slots_at = _data(context, builder, signature.args[3], args[3])
        out_at = _data(context, builder, signature.args[4], args[4])
        x_at = builder.inttoptr(states_at, _PTR)
        x = _load(builder, x_at, _vec(_I32))
        w = args[1]
        expand = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_vec(_I16), [_PTR, _vec(_I1), _vec(_I16)]), f"llvm.masked.expandload.v{LANES}i16"
        )
        symbols = _splat(_I32, 0)
        for sub in range(4):
            entry = _gather(builder, slots_at, builder.and_(x, _splat(_I32, M - 1)), _I32, 4)
            f = builder.add(builder.and_(builder.lshr(entry, _splat(_I32, 8)), _splat(_I32, 0xFFF)), _splat(_I32, 1))
            x = builder.add(builder.mul(f, builder.lshr(x, _splat(_I32, PROB_BITS))), builder.lshr(entry, _splat(_I32, 20)))
            need = builder.icmp_unsigned("<", x, _splat(_I32, STATE_LOW))
            taken = builder.call(expand, [_at(builder, words_at, w, 2), need, _splat(_I16, 0)])
            renormalized = builder.or_(builder.shl(x, _splat(_I32, WORD_BITS)), builder.zext(taken, _vec(_I32)))
            x = builder.select(need, renormalized, x)
            w = builder.add(w, _popcount(builder, need))
            symbols = builder.or_(symbols, builder.shl(builder.and_(entry, _splat(_I32, 0xFF)), _splat(_I32, 8 * sub)))
        _store(builder, x, x_at)
        _store(builder, symbols, _at(builder, out_at, args[5], 1))
        return w

    return sig, codegen
