"""A plane's mode and table, chosen in one compiled call: what :func:`rans.codec.plan_counts` chooses.

On files of many small tensors (``shared/data/real``: 2,990 tensors, half
of them 512 bytes or less) choosing the planes' modes took 185 of the
408 ms that ``save_file`` took on the CPU backend: a NumPy count, the
table's precision search, its size and the section's estimate, each a call
of its own. :func:`plan` counts, chooses and estimates in one call, and
skips the precision search where even the plane's order-0 entropy could not
make a section shorter than the raw plane (near-uniform low mantissa bytes:
``H0`` falls short of 8 bits by about 23 bytes a plane, less than any
table costs), which gives the same answer as the search: raw.

Examples
--------
>>> import numpy as np
>>> from rans import codec
>>> from rans.cpu import modes
>>> plane = np.random.default_rng(0).geometric(0.3, 5000).astype(np.uint8)
>>> mode, freq = modes.plan(plane, 1024)
>>> expected, table = codec.plan_counts(np.bincount(plane, minlength=256), plane.size, 1024)
>>> mode == expected, bool((freq == table).all())
(True, True)
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ..constants import PROB_BITS
from ..reference import tables
from ..reference.coder import lanes_for
from . import kernels
from .coder import layout
from .planes import count
from .tables import _bit_length, _choose, _run_bits, _scale, _serialized_size

MODES = ("raw", "const", "coded")
"""The modes :func:`_plan` returns, by index."""
_NO_COUNTS = np.zeros(0, dtype=np.int64)


@nb.njit(cache=True)
def _floor_bytes(counts, n, chunk, lanes, k, cost_fraction_bits, precision_bits):
    """A lower bound of the estimated section of every table the precision search could choose.

    Its table has the same ``k`` symbols and runs and at least a bit for each
    stored frequency; its coded bits are at least ``n * H0`` (Gibbs'
    inequality: every candidate sums to ``M``) less half a cost unit a
    symbol (``COST`` is rounded) and a margin for the floating-point sum.
    """
    entropy = 0.0
    for s in range(counts.size):
        c = counts[s]
        if c > 0:
            entropy += c * math.log2(n / c)
    run_bits, _ = _run_bits(counts)
    table_bits = run_bits + precision_bits + _bit_length(k - 1) + (k - 1)
    units = (entropy - 1e-9 * n - 1e-6) * (1 << cost_fraction_bits) - n / 2
    bits = int(units) >> cost_fraction_bits if units > 0 else 0
    return layout(n, chunk, (table_bits + 7) // 8, lanes)[2] + (bits + 7) // 8


@nb.njit(cache=True)
def _plan(plane, counts, chunk, lanes, cost, precision_bits, prob_bits, fraction_bits):
    """(mode index into :data:`MODES`, table): :func:`rans.codec.plan_counts` on the plane's ``counts``,
    counted here (on this thread) when ``counts`` is empty; ``lanes`` is ``lanes_for(plane.size)``,
    computed by the caller (a format constant frozen into cached code would outlive a change to it). One entry point, not a counting one calling a
    planning one: each level of calls between compiled functions costs a cold cache another compile of
    everything below it."""
    if counts.size == 0:
        counts = np.zeros(256, dtype=np.int64)
        for i in range(plane.size):
            counts[plane[i]] += 1
    n = plane.size
    freq = np.zeros(counts.size, dtype=np.int64)
    if n == 0:
        return 0, freq
    k = 0
    for s in range(counts.size):
        if counts[s] > 0:
            k += 1
    if k == 1:
        return 1, freq
    if _floor_bytes(counts, n, chunk, lanes, k, fraction_bits, precision_bits) >= n:
        return 0, freq
    freq = _choose(counts, _scale(counts, 1 << prob_bits), cost, precision_bits, prob_bits, fraction_bits)
    units = 0
    for s in range(counts.size):
        units += counts[s] * cost[freq[s]]
    estimate = layout(n, chunk, _serialized_size(freq, precision_bits), lanes)[2] + ((units >> fraction_bits) + 7) // 8
    return (2, freq) if estimate < n else (0, freq)


def plan(plane: np.ndarray, chunk: int, counts: np.ndarray | None = None) -> tuple[str, np.ndarray | None]:
    """The mode of a plane of byte symbols and its table if it is to be coded, as
    :func:`rans.codec.plan_counts` chooses them from the plane's counts.

    Examples
    --------
    >>> import numpy as np
    >>> from rans import cpu
    >>> cpu.plan(np.zeros(100, dtype=np.uint8), 1024)
    ('const', None)
    >>> cpu.plan(np.arange(256, dtype=np.uint8), 1024)
    ('raw', None)

    Parameters
    ----------
    plane : numpy.ndarray
        ``uint8`` symbols, one-dimensional.
    chunk : int
        Symbols per chunk of its section.
    counts : numpy.ndarray, optional
        The plane's byte counts (``int64[256]``) where the caller has them
        (:func:`rans.cpu.planes.counts`); by default they are counted here.

    Returns
    -------
    tuple
        ``("coded", int64[256] table)``, ``("raw", None)`` or ``("const", None)``.
    """
    plane = np.ascontiguousarray(plane, dtype=np.uint8).reshape(-1)
    if counts is None:
        counts = _NO_COUNTS if plane.size < kernels.PARALLEL_MIN else count(plane)  # small: counted in the call
    else:
        counts = np.ascontiguousarray(counts, dtype=np.int64)
    options = (tables.COST, tables.PRECISION_BITS, PROB_BITS, tables.COST_FRACTION_BITS)
    mode, freq = _plan(plane, counts, chunk, lanes_for(plane.size), *options)
    return MODES[mode], (freq if mode == 2 else None)
