"""One full step of a chunk of 8, 16 or 32 lanes as vector code: the CPU codec's inner loops for wide chunks.

A step is 4 sub-steps of the chunk's ``W`` lanes; lane ``l`` codes the 4
consecutive symbols at bytes ``4 l .. 4 l + 3`` of the step's ``4 W``, so a
step's symbols are one ``4 W``-byte load, lane ``l``'s in 32-bit element ``l``,
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

Callers keep the words in bounds: :func:`encode_step` stores at most ``4 W``
words below ``pos``, :func:`decode_step` loads at most ``4 W`` from ``w``.
The lane count is a constant of each call (a literal ``W``), so each width
compiles to vectors of its own.
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

ENCODE_WIDTHS = (8, 16, 32)
"""Lane counts whose chunks :mod:`rans.cpu.kernels` encodes with these steps (with 4 lanes they were slower
than the scalar loops: 3.36 against 2.81 ns a symbol, ``bench/NOTES.md`` entry C2)."""
DECODE_WIDTHS = (16, 32)
"""Lane counts whose chunks it decodes with them (with 8 lanes they were slower: 2.02 against 1.70 ns)."""
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

_I1, _I16, _I32, _I64 = (ir.IntType(b) for b in (1, 16, 32, 64))
_F64 = ir.DoubleType()
_PTR = ir.PointerType()


def _vec(t: ir.Type, n: int) -> ir.VectorType:
    return ir.VectorType(t, n)


def _splat(t: ir.Type, value: int | float, n: int) -> ir.Constant:
    return ir.Constant(_vec(t, n), [value] * n)


def _width(lanes: types.Type) -> int | None:
    """The lane count a call passes as a literal, if it is one of :data:`ENCODE_WIDTHS` (which hold every width used)."""
    value = getattr(lanes, "literal_value", None)
    return value if isinstance(lanes, types.IntegerLiteral) and value in ENCODE_WIDTHS else None


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
    """``base[index]`` for each lane: ``index`` a ``<W x i32>`` of non-negative table indices."""
    n = index.type.count
    bases = builder.shuffle_vector(
        builder.insert_element(ir.Constant(_vec(_I64, n), ir.Undefined), base, ir.Constant(_I32, 0)),
        ir.Constant(_vec(_I64, n), ir.Undefined),
        _splat(_I32, 0, n),
    )
    offsets = builder.mul(builder.zext(index, _vec(_I64, n)), _splat(_I64, size, n))
    pointers = builder.inttoptr(builder.add(bases, offsets), _vec(_PTR, n))
    name = f"llvm.masked.gather.v{n}{'f64' if elt is _F64 else f'i{elt.width}'}.v{n}p0"
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_vec(elt, n), [_vec(_PTR, n), _I32, _vec(_I1, n), _vec(elt, n)]), name
    )
    return builder.call(fn, [pointers, ir.Constant(_I32, size), _splat(_I1, 1, n), ir.Constant(_vec(elt, n), ir.Undefined)])


def _popcount(builder, mask):
    """The number of set lanes of a ``<W x i1>`` mask, as ``i64``."""
    bits = builder.bitcast(mask, ir.IntType(mask.type.count))
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(bits.type, [bits.type]), f"llvm.ctpop.i{bits.type.width}")
    return builder.zext(builder.call(fn, [bits]), _I64)


def _load(builder, pointer, t: ir.Type):
    load = builder.load(pointer, typ=t)
    load.align = 1
    return load


def _store(builder, value, pointer) -> None:
    store = builder.store(value, pointer)
    store.align = 1


@intrinsic(prefer_literal=True)
def encode_step(typingctx, symbols, at, states, table, recips, scratch, pos, lanes):
    """Encode the step of ``symbols[at : at + 4 W]`` into ``states`` (``uint32[W]``, ``W`` the literal
    ``lanes``); return the new ``pos``.

    Sub-steps run 3 to 0, as the encoder walks them; the words a sub-step
    emits go, in lane order, to the places just below ``pos`` in ``scratch``.
    ``table[s]`` is ``f | cum << 13`` and ``recips[s]`` is ``1.0 / max(f, 1)``.
    """
    n = _width(lanes)
    if n is None or not _contiguous(symbols, states, table, recips, scratch):
        return None
    sig = types.int64(symbols, types.int64, states, table, recips, scratch, types.int64, lanes)

    def codegen(context, builder, signature, args):
        symbols_at = _data(context, builder, signature.args[0], args[0])
        states_at = _data(context, builder, signature.args[2], args[2])
        table_at = _data(context, builder, signature.args[3], args[3])
        recips_at = _data(context, builder, signature.args[4], args[4])
        scratch_at = _data(context, builder, signature.args[5], args[5])
        step = _load(builder, _at(builder, symbols_at, args[1], 1), _vec(_I32, n))
        x_at = builder.inttoptr(states_at, _PTR)
        x = _load(builder, x_at, _vec(_I32, n))
        pos = args[6]
        compress = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [_vec(_I16, n), _PTR, _vec(_I1, n)]), f"llvm.masked.compressstore.v{n}i16"
        )
        for sub in range(3, -1, -1):
            s = builder.and_(builder.lshr(step, _splat(_I32, 8 * sub, n)), _splat(_I32, 0xFF, n))
            packed = _gather(builder, table_at, s, _I32, 4)
            f = builder.and_(packed, _splat(_I32, (1 << 13) - 1, n))
            cum = builder.lshr(packed, _splat(_I32, 13, n))
            emit = builder.icmp_unsigned(">=", builder.lshr(x, _splat(_I32, 20, n)), f)
            count = _popcount(builder, emit)
            pos = builder.sub(pos, count)
            builder.call(compress, [builder.trunc(x, _vec(_I16, n)), _at(builder, scratch_at, pos, 2), emit])
            x = builder.select(emit, builder.lshr(x, _splat(_I32, WORD_BITS, n)), x)
            product = builder.fmul(builder.uitofp(x, _vec(_F64, n)), _gather(builder, recips_at, s, _F64, 8))
            q = builder.fptoui(builder.fadd(product, _splat(_F64, 2.0**-16, n)), _vec(_I32, n))
            x = builder.add(builder.add(x, builder.mul(q, builder.sub(_splat(_I32, M, n), f))), cum)
        _store(builder, x, x_at)
        return pos

    return sig, codegen


@intrinsic(prefer_literal=True)
def decode_step(typingctx, words, w, states, slots, out, at, lanes):
    """Decode one step into ``out[at : at + 4 W]`` from ``states`` (``uint32[W]``, ``W`` the literal
    ``lanes``); return the new ``w``.

    Sub-steps run 0 to 3; the lanes that fall below ``L`` take the words
    from ``words[w]`` on, in lane order. ``slots`` is the slot table.
    """
    n = _width(lanes)
    if n is None or not _contiguous(words, states, slots, out):
        return None
    sig = types.int64(words, types.int64, states, slots, out, types.int64, lanes)

    def codegen(context, builder, signature, args):
        words_at = _data(context, builder, signature.args[0], args[0])
        states_at = _data(context, builder, signature.args[2], args[2])
        slots_at = _data(context, builder, signature.args[3], args[3])
        out_at = _data(context, builder, signature.args[4], args[4])
        x_at = builder.inttoptr(states_at, _PTR)
        x = _load(builder, x_at, _vec(_I32, n))
        w = args[1]
        expand = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_vec(_I16, n), [_PTR, _vec(_I1, n), _vec(_I16, n)]), f"llvm.masked.expandload.v{n}i16"
        )
        symbols = _splat(_I32, 0, n)
        for sub in range(4):
            entry = _gather(builder, slots_at, builder.and_(x, _splat(_I32, M - 1, n)), _I32, 4)
            f = builder.add(builder.and_(builder.lshr(entry, _splat(_I32, 8, n)), _splat(_I32, 0xFFF, n)), _splat(_I32, 1, n))
            x = builder.add(builder.mul(f, builder.lshr(x, _splat(_I32, PROB_BITS, n))), builder.lshr(entry, _splat(_I32, 20, n)))
            need = builder.icmp_unsigned("<", x, _splat(_I32, STATE_LOW, n))
            taken = builder.call(expand, [_at(builder, words_at, w, 2), need, _splat(_I16, 0, n)])
            renormalized = builder.or_(builder.shl(x, _splat(_I32, WORD_BITS, n)), builder.zext(taken, _vec(_I32, n)))
            x = builder.select(need, renormalized, x)
            w = builder.add(w, _popcount(builder, need))
            symbols = builder.or_(symbols, builder.shl(builder.and_(entry, _splat(_I32, 0xFF, n)), _splat(_I32, 8 * sub, n)))
        _store(builder, x, x_at)
        _store(builder, symbols, _at(builder, out_at, args[5], 1))
        return w

    return sig, codegen
