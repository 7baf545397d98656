"""Which backend serves host arrays fastest, what ``backend="auto"`` picks, and the GPU's first calls.

Usage::

    python bench/backends.py [--sizes 0.0625,1,4,16,64,256,1024] [--reps 5] [--out bench/results/backends.json]

1. For bf16 N(0, 0.02) tensors of each size (MiB) in host memory (NumPy),
   the median wall time of ``rans.compress(x, backend=b)`` and
   ``rans.decompress(data, backend=b)`` (host in, host out: the GPU's copies
   both ways are in its time) for ``b`` in ``cpu``, ``gpu`` (where a CUDA GPU
   is found) and ``auto``, in interleaved rounds after one warm-up; the
   bytes of every backend are checked equal. ``auto`` should pick the faster
   of the other two for each size and direction; the output says where it
   does not. (By then ``gpu`` has run in the process, so ``auto`` uses the
   GPU at once; in a fresh process it waits for ``rans.backends.GPU_AFTER``
   bytes, which repay the first calls measured in 2.)
2. First calls of the GPU backend in fresh processes, with an empty Numba
   cache (cold) and again with the cache the first left (warm): ``import
   rans``, the first compress and decompress of 1 MiB of bf16 on the GPU, then
   a second round trip.

MB/s are 10**6 uncompressed bytes per second. Writes ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import ml_dtypes
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]  # this checkout's rans, not an installed one

import common as C  # noqa: E402

import rans  # noqa: E402
from rans import backends  # noqa: E402

FIRST_CALLS = """
import time
t = time.perf_counter()
import numpy as np, ml_dtypes, rans
marks = [time.perf_counter()]
x = np.random.default_rng(0).normal(0, 0.02, 1 << 19).astype(ml_dtypes.bfloat16)
data = rans.compress(x, backend="gpu")
marks.append(time.perf_counter())
assert rans.decompress(data, backend="gpu").tobytes() == x.tobytes()
marks.append(time.perf_counter())
rans.decompress(rans.compress(x, backend="gpu"), backend="gpu")
marks.append(time.perf_counter())
print(marks[0] - t, *(b - a for a, b in zip(marks, marks[1:])))
"""
FIRST_FIELDS = ("import_s", "first_compress_s", "first_decompress_s", "second_round_trip_s")


def gpu_found() -> bool:
    try:
        backends.get("gpu")
    except rans.RansError:
        return False
    from numba import config

    return not config.ENABLE_CUDASIM


def first_calls() -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold_cache", "warm_cache"):
            result = subprocess.run([sys.executable, "-c", FIRST_CALLS], capture_output=True, text=True, cwd=ROOT, env=env)
            if result.returncode:
                out[label] = {"error": result.stderr[-2000:]}
            else:
                out[label] = dict(zip(FIRST_FIELDS, map(float, result.stdout.split())))
    return out


def size_case(mib: float, names: list[str], reps: int) -> dict:
    x = np.random.default_rng(1).normal(0, 0.02, int(mib * (1 << 19))).astype(ml_dtypes.bfloat16)
    data = {b: rans.compress(x, backend=b) for b in names}
    exact = len(set(data.values())) == 1 and all(rans.decompress(data[names[0]], backend=b).tobytes() == x.tobytes() for b in names)
    blob = data[names[0]]
    times: dict[str, list[float]] = {f"{b}_{op}": [] for b in names for op in ("compress", "decompress")}
    for _ in range(reps):
        for b in names:
            start = time.perf_counter()
            rans.compress(x, backend=b)
            mid = time.perf_counter()
            rans.decompress(blob, backend=b)
            end = time.perf_counter()
            times[f"{b}_compress"].append(mid - start)
            times[f"{b}_decompress"].append(end - mid)
    out = {"mib": mib, "bytes": x.nbytes, "ratio": x.nbytes / len(blob), "exact": exact,
           "auto_picks": {work: backends.get("auto").pick(work, x.nbytes).name for work in ("encode", "decode")}, "seconds": times}
    for key, values in times.items():
        out[f"{key}_MBps"] = x.nbytes / statistics.median(values) / C.MB
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0.0625,1,4,16,64,256,1024", help="tensor sizes in MiB, comma-separated")
    parser.add_argument("--reps", type=int, default=5, help="interleaved rounds per size (median)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "backends.json"))
    args = parser.parse_args()

    import numba

    gpu = gpu_found()
    names = ["cpu", "gpu", "auto"] if gpu else ["cpu", "auto"]
    result: dict = {"machine": C.machine_info(), "numba_threads": numba.get_num_threads(), "gpu": None,
                    "gpu_from": backends.GPU_FROM}
    if gpu:
        from numba import cuda

        name = cuda.get_current_device().name
        result["gpu"] = name.decode() if isinstance(name, bytes) else name
        result["first_calls"] = first_calls()
        rows = [[k, *(v.get(f) for f in FIRST_FIELDS)] for k, v in result["first_calls"].items()]
        C.table("GPU backend, first calls in a fresh process (seconds; 1 MiB bf16)",
                ["Numba cache", "import", "first compress", "first decompress", "again"], rows, 3)
        for label, v in result["first_calls"].items():
            if "error" in v:
                print(f"{label}: {v['error']}")
    print(f"\nmachine: {result['machine']['cpu_model']}, {numba.get_num_threads()} Numba threads; GPU: {result['gpu'] or 'none'}")

    cases = [size_case(float(s), names, args.reps) for s in args.sizes.split(",")]
    result["sizes"] = cases
    headers = ["MiB", "exact", "auto picks (c/d)"]
    for op in ("compress", "decompress"):
        headers += [f"{b} {op}" for b in names]
    rows = []
    misses = []
    for c in cases:
        row = [f"{c['mib']:g}", c["exact"], "/".join(c["auto_picks"].values())]
        for op, work in (("compress", "encode"), ("decompress", "decode")):
            row += [c[f"{b}_{op}_MBps"] for b in names]
            picked = c["auto_picks"][work]
            best = max(("cpu", "gpu"), key=lambda b: c[f"{b}_{op}_MBps"]) if gpu else picked
            if best != picked:
                speeds = c[f"{best}_{op}_MBps"], c[f"{picked}_{op}_MBps"]
                misses.append(f"{c['mib']} MiB {op}: auto picks {picked}, {best} is faster ({speeds[0]:.0f} vs {speeds[1]:.0f} MB/s)")
        rows.append(row)
    C.table(f"bf16 N(0, 0.02) in host memory, MB/s (median of {args.reps} interleaved rounds; compress / decompress)",
            headers, rows, 0)
    result["auto_misses"] = misses
    print("\nauto picks the faster backend at every size" if gpu and not misses else "")
    for m in misses:
        print(f"auto misses: {m}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(C.to_jsonable(result), f, indent=1)
    print(f"wrote {args.out}")
    return 0 if all(c["exact"] for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
