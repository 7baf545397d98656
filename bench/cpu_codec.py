"""CPU codec benchmark: rans's ``cpu`` backend against ZipNN 0.5.4 and zstd -3, same run, same bytes.

1. Synthetic bf16 N(0, 0.02) (128 MiB by default, ``--mib``): rans compress
   and decompress through ``rans.compress`` / ``rans.decompress``, ZipNN
   (bf16 byte mode, threads=2) and zstd -3 (threads=2) on the same bytes,
   timed in interleaved rounds (median of ``--reps``); the reference backend
   on a 16 MiB slice for context.
2. Every ``/work/shared/data/real/*.safetensors``: the tensors ZipNN accepts
   (F32, F16) through ``rans.save_file`` / ``rans.load_file`` (files on
   /dev/shm), ZipNN per tensor and zstd -3 on their concatenated bytes; then
   all files together.
3. Peak host memory of ``rans.compress`` on the synthetic input, as a multiple
   of the input size: in a subprocess that loads the input, warms up, resets
   its peak RSS (``/proc/self/clear_refs``), compresses, and reads its peak
   RSS (``VmHWM``); the figure is (peak - RSS before compressing) / input.
4. First-call time (JIT): ``import rans``, then the first compress and
   decompress of a small tensor and of a large one in a fresh process, with an
   empty Numba cache (cold) and again with the cache it left (warm).

The VM is shared: the load average before and after is recorded, and wall-clock
speeds of every codec drop when it is high.

``--gib X`` adds a synthetic run at X GiB (compress and decompress, one round).
MB/s are 10**6 uncompressed bytes per second. Targets (issue 4): compress and
decompress >= 2x ZipNN with a ratio >= ZipNN's; peak memory <= 1.5x input.
Writes ``bench/results/cpu_codec.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]  # this checkout's rans, not an installed one

import common as C  # noqa: E402
import ml_dtypes  # noqa: E402

import rans  # noqa: E402

REAL_DIR = "/work/shared/data/real"
SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None


def bf16_normal(nbytes: int, seed: int = 0) -> np.ndarray:
    """N(0, 0.02) bf16 weights, generated in pieces (no float64 temporaries of the full size)."""
    rng = np.random.default_rng(seed)
    n = nbytes // 2
    out = np.empty(n, dtype=ml_dtypes.bfloat16)
    step = 1 << 24
    for i in range(0, n, step):
        out[i : i + step] = (rng.standard_normal(min(step, n - i), dtype=np.float32) * 0.02).astype(ml_dtypes.bfloat16)
    return out


def rounds(ops: dict, reps: int) -> dict:
    """Run each op once per round, ``reps`` rounds, interleaved; the median seconds of each."""
    times: dict[str, list[float]] = {k: [] for k in ops}
    for _ in range(reps):
        for name, op in ops.items():
            t = time.perf_counter()
            op()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def synthetic(nbytes: int, reps: int, peers: bool = True) -> dict:
    x = bf16_normal(nbytes)
    raw = x.tobytes()
    data = rans.compress(x, backend="cpu")
    assert rans.decompress(data, backend="cpu").tobytes() == raw
    out = {"input_bytes": nbytes, "rans_ratio": nbytes / len(data)}
    ops = {"rans_compress": lambda: rans.compress(x, backend="cpu"), "rans_decompress": lambda: rans.decompress(data, backend="cpu")}
    if peers:
        zblob = C.zipnn_compress(raw, "bfloat16")
        sblob = C.zstd_compress(raw)
        assert bytes(C.zipnn_decompress(zblob, "bfloat16")) == raw and C.zstd_decompress(sblob, nbytes) == raw
        out |= {"zipnn_ratio": nbytes / len(zblob), "zstd3_ratio": nbytes / len(sblob)}
        held = {}
        ops |= {
            "zipnn_compress": lambda: held.__setitem__("z", C.zipnn_compress_owned(bytearray(raw), "bfloat16")),
            "zipnn_decompress": lambda: C.zipnn_decompress(zblob, "bfloat16"),
            "zstd3_compress": lambda: C.zstd_compress(raw),
            "zstd3_decompress": lambda: C.zstd_decompress(sblob, nbytes),
        }
    seconds = rounds(ops, reps)
    out |= {f"{k}_MBps": nbytes / v / C.MB for k, v in seconds.items()}
    return out


def reference_speed(nbytes: int) -> dict:
    x = bf16_normal(nbytes, seed=1)
    data = rans.compress(x)
    seconds = rounds(
        {
            "reference_compress": lambda: rans.compress(x, backend="reference"),
            "reference_decompress": lambda: rans.decompress(data, backend="reference"),
        },
        1,
    )
    return {"input_bytes": nbytes} | {f"{k}_MBps": nbytes / v / C.MB for k, v in seconds.items()}


def load_real(path: str) -> dict[str, np.ndarray]:
    import safetensors.numpy as stn

    return stn.load_file(path)


def real_file(path: str, reps: int, workdir: str) -> dict:
    tensors = {k: np.ascontiguousarray(t) for k, t in load_real(path).items() if C.zipnn_dtype(t)}
    out = {"file": os.path.basename(path), "tensors": len(tensors)}
    if not tensors:
        return out
    nbytes = sum(t.nbytes for t in tensors.values())
    raws = {k: t.tobytes() for k, t in tensors.items()}
    cat = b"".join(raws.values())
    target = os.path.join(workdir, "f.rans")
    rans.save_file(tensors, target, backend="cpu")
    size = os.path.getsize(target)
    back = rans.load_file(target, backend="cpu")
    zblobs = {k: C.zipnn_compress(raws[k], C.zipnn_dtype(t)) for k, t in tensors.items()}
    exact = all(back[k].tobytes() == raws[k] for k in tensors) and all(
        bytes(C.zipnn_decompress(zblobs[k], C.zipnn_dtype(tensors[k]))) == raws[k] for k in tensors
    )
    sblob = C.zstd_compress(cat)

    def zipnn_all() -> None:
        for k, t in tensors.items():
            C.zipnn_compress_owned(bytearray(raws[k]), C.zipnn_dtype(t))

    def unzipnn_all() -> None:
        for k, t in tensors.items():
            C.zipnn_decompress(zblobs[k], C.zipnn_dtype(t))

    seconds = rounds(
        {
            "rans_compress": lambda: rans.save_file(tensors, target, backend="cpu"),
            "rans_decompress": lambda: rans.load_file(target, backend="cpu"),
            "zipnn_compress": zipnn_all,
            "zipnn_decompress": unzipnn_all,
            "zstd3_compress": lambda: C.zstd_compress(cat),
            "zstd3_decompress": lambda: C.zstd_decompress(sblob, nbytes),
        },
        reps,
    )
    out |= {
        "input_bytes": nbytes, "exact": exact, "rans_ratio": nbytes / size,
        "zipnn_ratio": nbytes / sum(len(b) for b in zblobs.values()), "zstd3_ratio": nbytes / len(sblob),
        "seconds": seconds,
    }
    out |= {f"{k}_MBps": nbytes / v / C.MB for k, v in seconds.items()}
    return out


PEAK_SCRIPT = r"""
import resource, sys, time, numpy as np, ml_dtypes, rans
x = np.fromfile(sys.argv[1], dtype=ml_dtypes.bfloat16)
rans.compress(x[: 1 << 16])
def rss(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = rss("VmRSS:")
data = rans.compress(x)
print(before, rss("VmHWM:"), len(data))
"""


def peak_memory(nbytes: int, workdir: str) -> dict:
    path = os.path.join(workdir, "input.bin")
    bf16_normal(nbytes).tofile(path)
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, path], capture_output=True, text=True, cwd=ROOT, check=True)
    os.unlink(path)
    before, peak, size = map(int, result.stdout.split())
    return {
        "input_bytes": nbytes, "output_bytes": size, "rss_before": before, "peak_rss": peak,
        "peak_over_input": (peak - before) / nbytes, "method": "VmHWM after clear_refs, minus VmRSS before compress",
    }


JIT_SCRIPT = r"""
import time
t = time.perf_counter()
import numpy as np, rans
marks = [time.perf_counter()]
small = np.random.default_rng(0).normal(0, 0.02, 5000).astype(np.float32)
large = np.random.default_rng(0).normal(0, 0.02, 1 << 20).astype(np.float32)
for x in (small, large):
    data = rans.compress(x)
    marks.append(time.perf_counter())
    rans.decompress(data)
    marks.append(time.perf_counter())
rans.decompress(rans.compress(large))
marks.append(time.perf_counter())
print(marks[0] - t, *(b - a for a, b in zip(marks, marks[1:])))
"""
JIT_FIELDS = ("import_s", "first_compress_small_s", "first_decompress_small_s", "first_compress_large_s",
              "first_decompress_large_s", "second_round_trip_large_s")
"""Small: 5000 f32 (the one-thread loops); large: 1 Mi f32, 4 MiB (the threaded ones, compiled separately)."""


def jit_times() -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold_cache", "warm_cache"):
            result = subprocess.run([sys.executable, "-c", JIT_SCRIPT], capture_output=True, text=True, cwd=ROOT, env=env, check=True)
            out[label] = dict(zip(JIT_FIELDS, map(float, result.stdout.split())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=128, help="synthetic bf16 input size in MiB (default 128)")
    parser.add_argument("--reps", type=int, default=5, help="interleaved rounds per measurement (median)")
    parser.add_argument("--gib", type=float, default=0, help="also run synthetic bf16 of this many GiB (one round)")
    parser.add_argument("--no-real", action="store_true", help="skip the real files")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "cpu_codec.json"))
    args = parser.parse_args()

    import numba

    result: dict = {"machine": C.machine_info(), "numba_threads": numba.get_num_threads(), "load_before": os.getloadavg()}
    print(f"machine: {result['machine']['cpu_model']}, {result['machine']['cpus_usable']} CPUs; load {os.getloadavg()}")
    result["jit"] = jit_times()
    C.table("First calls in a fresh process (seconds; small = 5000 f32, large = 1 Mi f32)",
            ["Numba cache", "import", "compress small", "decompress small", "compress large", "decompress large", "again, large"],
            [[k, *(v[f] for f in JIT_FIELDS)] for k, v in result["jit"].items()], 3)

    s = synthetic(args.mib << 20, args.reps)
    result["synthetic"] = s
    result["threading_layer"] = numba.threading_layer()
    ref = reference_speed(16 << 20)
    result["reference_backend_16MiB"] = ref
    rows = [
        ["rans cpu", s["rans_ratio"], s["rans_compress_MBps"], s["rans_decompress_MBps"]],
        ["ZipNN 0.5.4 bf16, threads=2", s["zipnn_ratio"], s["zipnn_compress_MBps"], s["zipnn_decompress_MBps"]],
        ["zstd -3, threads=2", s["zstd3_ratio"], s["zstd3_compress_MBps"], s["zstd3_decompress_MBps"]],
        ["rans reference (16 MiB)", None, ref["reference_compress_MBps"], ref["reference_decompress_MBps"]],
        ["rans cpu / ZipNN", s["rans_ratio"] / s["zipnn_ratio"], s["rans_compress_MBps"] / s["zipnn_compress_MBps"],
         s["rans_decompress_MBps"] / s["zipnn_decompress_MBps"]],
    ]
    C.table(f"Synthetic bf16 N(0, 0.02), {args.mib} MiB, median of {args.reps} interleaved rounds",
            ["codec", "ratio", "compress MB/s", "decompress MB/s"], rows, 3)

    with tempfile.TemporaryDirectory(dir=SHM) as workdir:
        result["peak_memory"] = peak_memory(args.mib << 20, workdir)
        pm = result["peak_memory"]
        print(f"\npeak host memory of rans.compress ({args.mib} MiB bf16): {pm['peak_over_input']:.3f} x input "
              f"({(pm['peak_rss'] - pm['rss_before']) / 2**20:.0f} MiB above {pm['rss_before'] / 2**20:.0f} MiB; {pm['method']})")
        if not args.no_real:
            files = [real_file(p, args.reps, workdir) for p in sorted(glob.glob(os.path.join(REAL_DIR, "*.safetensors")))]
            result["real"] = files
            timed = [f for f in files if "seconds" in f]
            total = sum(f["input_bytes"] for f in timed)
            agg = {k: total / sum(f["seconds"][k] for f in timed) / C.MB for k in timed[0]["seconds"]}
            result["real_all"] = {"files": len(timed), "input_bytes": total} | {f"{k}_MBps": v for k, v in agg.items()}
            rows = [[f["file"].removesuffix(".safetensors"), f["input_bytes"], f["rans_ratio"], f["zipnn_ratio"], f["zstd3_ratio"],
                     f["rans_compress_MBps"], f["zipnn_compress_MBps"], f["zstd3_compress_MBps"],
                     f["rans_decompress_MBps"], f["zipnn_decompress_MBps"], f["zstd3_decompress_MBps"], f["exact"]] for f in timed]
            rows.append(["ALL (bytes / total time)", total, None, None, None, agg["rans_compress"], agg["zipnn_compress"],
                         agg["zstd3_compress"], agg["rans_decompress"], agg["zipnn_decompress"], agg["zstd3_decompress"], None])
            C.table("Real files (F32/F16 tensors): rans save_file/load_file vs ZipNN per tensor vs zstd -3; MB/s",
                    ["file", "bytes", "rans", "ZipNN", "zstd", "rans c", "ZipNN c", "zstd c", "rans d", "ZipNN d", "zstd d", "exact"],
                    rows, 2)
            skipped = [f["file"] for f in files if "seconds" not in f]
            if skipped:
                print(f"no F32/F16 tensors (ZipNN n/a): {', '.join(skipped)}")
    if args.gib:
        g = synthetic(int(args.gib * (1 << 30)), 1)
        result["synthetic_gib"] = g
        C.table(f"Synthetic bf16, {args.gib} GiB, one round", ["codec", "ratio", "compress MB/s", "decompress MB/s"],
                [["rans cpu", g["rans_ratio"], g["rans_compress_MBps"], g["rans_decompress_MBps"]],
                 ["ZipNN", g["zipnn_ratio"], g["zipnn_compress_MBps"], g["zipnn_decompress_MBps"]],
                 ["zstd -3", g["zstd3_ratio"], g["zstd3_compress_MBps"], g["zstd3_decompress_MBps"]]], 3)

    targets = {
        "compress >= 2x ZipNN (synthetic)": s["rans_compress_MBps"] >= 2 * s["zipnn_compress_MBps"],
        "decompress >= 2x ZipNN (synthetic)": s["rans_decompress_MBps"] >= 2 * s["zipnn_decompress_MBps"],
        "ratio >= ZipNN (synthetic)": s["rans_ratio"] >= s["zipnn_ratio"],
        "peak memory <= 1.5x input": result["peak_memory"]["peak_over_input"] <= 1.5,
    }
    if "real_all" in result:
        a = result["real_all"]
        targets["compress >= 2x ZipNN (real, all files)"] = a["rans_compress_MBps"] >= 2 * a["zipnn_compress_MBps"]
        targets["decompress >= 2x ZipNN (real, all files)"] = a["rans_decompress_MBps"] >= 2 * a["zipnn_decompress_MBps"]
        targets["ratio >= ZipNN (real, every file)"] = all(f["rans_ratio"] >= f["zipnn_ratio"] for f in result["real"] if "seconds" in f)
    if "synthetic_gib" in result:
        g = result["synthetic_gib"]
        targets[f"compress >= 2x ZipNN ({args.gib} GiB)"] = g["rans_compress_MBps"] >= 2 * g["zipnn_compress_MBps"]
    result["targets"] = targets
    C.table("Targets (issue 4)", ["target", "result"], [[k, v] for k, v in targets.items()])
    result["load_after"] = os.getloadavg()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(C.to_jsonable(result), f, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
