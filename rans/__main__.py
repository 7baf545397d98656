"""The rans command line: ``python -m rans COMMAND`` (or ``rans COMMAND``).

Commands
--------
demo
    Compress synthetic bf16 weights drawn N(0, 0.02), decompress them, check
    the round trip and print the ratio beside the order-0 bound.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import ml_dtypes
import numpy as np

from . import api, dtypes
from .reference import tables


def order0_bound(weights: np.ndarray) -> float:
    """Best ratio an order-0 coder of the bf16 exponent plane can reach (sign and mantissa raw)."""
    exponent = dtypes.split(weights, "float")[0]
    p = tables.count(exponent) / exponent.size
    p = p[p > 0]
    entropy = float(-(p * np.log2(p)).sum())
    return 16 / (8 + entropy)


def demo(args: argparse.Namespace) -> int:
    """Round-trip synthetic bf16 weights and print ratio, bound and speed."""
    n = args.weights
    weights = np.random.default_rng(args.seed).normal(0, 0.02, n).astype(np.float32).astype(ml_dtypes.bfloat16)
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
    print(f"compress {megabytes / (encoded - start):.0f} MB/s   decompress {megabytes / (decoded - encoded):.0f} MB/s (reference codec)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rans", description="Lossless compression of tensors with rANS.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help="round-trip synthetic bf16 weights; print ratio and bound")
    p.add_argument("--weights", type=int, default=1 << 24, help="number of weights (default 16 Mi)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
