"""Check an install: ``python -m rans.selftest [--full]``.

Reports the versions and the hardware found, round-trips every dtype (and
the 1-byte ones once more written for speed, split "nibbles") on every
available backend (the Numba CPU codec and the NumPy reference; the
GPU encoder and decoder where a CUDA GPU is present; under the CUDA
simulator, ``NUMBA_ENABLE_CUDASIM=1``, the GPU decoder only), checks that
every backend writes the same bytes and decodes them back to the input,
prints a small table of ratio and throughput (of the first CPU backend),
and exits with status 1 and a message naming what failed on any failure.

Examples
--------
>>> from rans import selftest
>>> selftest.main(["--quiet", "--backends", "cpu"])
0
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import time
from typing import Callable, Sequence

import ml_dtypes
import numpy as np

from . import api, backends, dtypes
from .errors import RansError


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def sample(name: str, n: int, seed: int = 0) -> np.ndarray:
    """A tensor of dtype ``name`` whose values look like real ones (weights, indices, masks)."""
    rng = np.random.default_rng(seed)
    dtype = dtypes.DTYPES[name]
    if name == "BOOL":
        return rng.random(n) < 0.1
    if dtype.kind == "f" or name in ("BF16", "F8_E4M3", "F8_E5M2"):
        scale = 1.0 if name.startswith("F8") else 0.02
        return rng.normal(0, scale, n).astype(np.float32).astype(dtype)
    if dtype.kind == "c":
        return (rng.normal(0, 0.02, n) + 1j * rng.normal(0, 0.02, n)).astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(rng.normal(0, 30, n)), info.min, info.max).astype(dtype)


def gpu_backend() -> tuple[str, Callable[[bytes], np.ndarray]] | None:
    """The GPU decoder as ``(description, decode)``, or None where no GPU (or simulator) is usable."""
    try:
        from numba import config, cuda
    except ImportError:
        return None
    try:
        if not cuda.is_available():
            return None
        where = "CUDA simulator" if config.ENABLE_CUDASIM else cuda.get_current_device().name.decode()
    except Exception:  # noqa: BLE001 - no driver or no device: no GPU backend
        return None
    if isinstance(where, bytes):
        where = where.decode()

    def decode(data: bytes) -> np.ndarray:
        return api.decompress(data, device="cuda", framework="numba").copy_to_host()

    return str(where), decode


def _usable(name: str) -> bool:
    try:
        backends.get(name)
    except RansError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the self-test; return the exit status (0 when everything passed)."""
    parser = argparse.ArgumentParser(prog="python -m rans.selftest", description="Check the rans install.")
    parser.add_argument("--full", action="store_true", help="larger tensors and more seeds")
    parser.add_argument("--quiet", action="store_true", help="print only failures")
    parser.add_argument("--backends", choices=["all", "cpu"], default="all", help="'cpu' skips the GPU")
    args = parser.parse_args(argv)
    say = (lambda *a: None) if args.quiet else print
    from . import __version__

    say(f"rans {__version__}, Python {platform.python_version()}, numpy {np.__version__}, "
        f"numba {_version('numba')}, numba-cuda {_version('numba-cuda')}, ml_dtypes {ml_dtypes.__version__}")
    say(f"CPU: {platform.machine()}, {os.cpu_count()} cores")
    gpu = gpu_backend() if args.backends == "all" else None
    simulated = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    say(f"GPU: {gpu[0] if gpu else 'none found (CPU backend only)'}")
    n = (1 << 20) if args.full else (1 << 14)
    if gpu and simulated:
        n = 512
    seeds = range(3 if args.full else 1)
    failures = []
    host = [name for name in backends.AUTO if _usable(name)]
    coders = host + (["gpu"] if gpu and not simulated else [])  # the simulator takes minutes per GPU encode
    say(f"Backends: {', '.join(coders)} (each one's bytes compared with the others', each one's decode with the input)")
    say(f"\n{'dtype':14} {'elements':>9} {'ratio':>7} {'compress MB/s':>14} {'decompress MB/s':>16}  backends")
    chunk = 1024 if n < 32768 else 32768
    cases = [(name, "ratio") for name in dtypes.DTYPES] + [(name, "speed") for name in dtypes.NIBBLE_DTYPES]
    for name, prefer in cases:
        label = name if prefer == "ratio" else f"{name}/speed"
        for seed in seeds:
            x = sample(name, n, seed)
            where = f"{label} (seed {seed})"
            start = time.perf_counter()
            data = api.compress(x, chunk_size=chunk, backend=host[0], prefer=prefer)
            encoded = time.perf_counter()
            back = api.decompress(data, backend=host[0])
            decoded = time.perf_counter()
            if back.dtype != x.dtype or back.shape != x.shape or back.tobytes() != x.tobytes():
                failures.append(f"{where}: the {host[0]} round trip changed the tensor")
            for other in coders[1:]:
                try:
                    if api.compress(x, chunk_size=chunk, backend=other, prefer=prefer) != data:
                        failures.append(f"{where}: the {other} encoder wrote other bytes than the {host[0]} one")
                    if api.decompress(data, backend=other).tobytes() != x.tobytes():
                        failures.append(f"{where}: the {other} decoder gave other bytes than the input")
                except Exception as e:  # noqa: BLE001 - reported as a failure, with its cause
                    failures.append(f"{where}: the {other} backend failed: {type(e).__name__}: {e}")
            if gpu:
                try:
                    if gpu[1](data).tobytes() != x.tobytes():
                        failures.append(f"{where}: decoding to GPU memory gave other bytes than the input")
                except Exception as e:  # noqa: BLE001 - reported as a failure, with its cause
                    failures.append(f"{where}: decoding to GPU memory failed: {type(e).__name__}: {e}")
            megabytes = x.nbytes / 1e6
            say(f"{label:14} {n:9} {x.nbytes / len(data):7.3f} {megabytes / (encoded - start):14.1f} "
                f"{megabytes / (decoded - encoded):16.1f}  {'+'.join(coders + (['gpu decode'] if gpu and 'gpu' not in coders else []))}")
    if failures:
        print("\nFAILED:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    say("\nall round trips exact on every backend")
    return 0


if __name__ == "__main__":
    sys.exit(main())
