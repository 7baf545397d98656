"""``python -m rans demo``: a round trip of synthetic bf16 weights, with ratio, bound and speed."""

from __future__ import annotations

import sys
import time

import ml_dtypes
import numpy as np

from . import api, backends, dtypes, entropy


def order0_bound(weights: np.ndarray) -> float:
    """Best ratio an order-0 coder of the bf16 exponent plane can reach (sign and mantissa raw)."""
    return 16 / (8 + entropy.h0(dtypes.split(weights, "float")[0]))


def run(n: int, seed: int) -> int:
    """Round-trip ``n`` bf16 weights drawn N(0, 0.02); print ratio, bound and speed; return the exit status."""
    weights = np.random.default_rng(seed).normal(0, 0.02, n).astype(np.float32).astype(ml_dtypes.bfloat16)
    api.decompress(api.compress(weights[:4096]))  # compiles (or loads) the backend's loops before timing
    start = time.perf_counter()
    data = api.compress(weights)
    encoded = time.perf_counter()
    back = api.decompress(data)
    decoded = time.perf_counter()
    if back.dtype != weights.dtype or not np.array_equal(back.view(np.uint16), weights.view(np.uint16)):
        print("FAIL: the round trip changed the weights", file=sys.stderr)
        return 1
    megabytes = weights.nbytes / 1e6
    print(f"{n} bf16 weights N(0, 0.02), {megabytes:.1f} MB, round trip exact")
    print(f"ratio {weights.nbytes / len(data):.4f}   order-0 bound {order0_bound(weights):.4f}")
    print(f"compress {megabytes / (encoded - start):.0f} MB/s   decompress {megabytes / (decoded - encoded):.0f} MB/s ({backends.get().name} backend)")
    return 0
