"""GPU decode throughput: rans against nvCOMP 6.0 ANS, same process, same GPU.

Usage (on a CUDA machine, with ``nvidia-nvcomp-cu13`` installed for the peer)::

    python bench/gpu_decode.py [--gib 1] [--out bench/results/gpu_decode.json]

For each dtype it makes ``--gib`` GiB of weights (bf16, fp16 and fp32 drawn
N(0, 0.02); fp8 e4m3 drawn N(0, 1); int8 rounded N(0, 12)), compresses them
with rans (the host encoder; for fp8 and int8 once for ratio, the default, and
once for speed, ``prefer="speed"``: nibble planes) and with every
nvCOMP ANS data type that applies, checks both round trips bit for bit on
the GPU, and times decode with CUDA events after a warm-up: the median of
``--repeat`` calls, compressed input already on the GPU for both. For rans a
call is the whole public decode of a resident batch (``Batch.decode_into``:
one kernel launch, the integrity check and its device-to-host status copy),
Python overhead included. Throughput is uncompressed bytes per second.

Then tensor sizes of 4, 16 and 64 Mi bf16 weights, alone and 32 per launch:
latency and throughput per call.

It prints tables and writes everything, with GPU name, driver and package
versions, as JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import ml_dtypes
import numpy as np
import torch
from numba import cuda

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import rans  # noqa: E402
from rans import api, codec, container  # noqa: E402
from rans.gpu import decoder  # noqa: E402

GIB = 1 << 30


def make(kind: str, nbytes: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "bf16":
        return rng.normal(0, 0.02, nbytes // 2).astype(np.float32).astype(ml_dtypes.bfloat16)
    if kind == "fp16":
        return rng.normal(0, 0.02, nbytes // 2).astype(np.float16)
    if kind == "fp32":
        return rng.normal(0, 0.02, nbytes // 4).astype(np.float32)
    if kind == "fp8":
        return rng.normal(0, 1, nbytes).astype(np.float32).astype(ml_dtypes.float8_e4m3fn)
    return np.clip(np.round(rng.normal(0, 12, nbytes)), -128, 127).astype(np.int8)


def time_gpu(call, repeat: int) -> list[float]:
    """Seconds per call, timed with CUDA events on the current stream, after two warm-ups."""
    call()
    call()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return times


def compress_file(tensors: dict[str, np.ndarray], workers: int, prefer: str = "ratio") -> bytes:
    """The bytes ``rans.save_file`` would write for ``tensors`` (chunks shared among processes)."""
    out = io.BytesIO()
    container.write(out, *api.encode_tensors(tensors, workers=workers, prefer=prefer))
    return out.getvalue()


def repeat_file(array: np.ndarray, copies: int, workers: int) -> bytes:
    """A file of ``copies`` tensors with the same data (encoded once): a batch for one launch."""
    entry, blobs = codec.encode_tensor(array, "t0", 32768, workers)
    entries = []
    for i in range(copies):
        e = container.Entry(f"t{i}", entry.dtype, entry.shape, [container.Plane(p.mode, p.length, p.value) for p in entry.planes], entry.crc)
        entries.append(e)
    out = io.BytesIO()
    container.write(out, entries, [blobs] * copies, None)
    return out.getvalue()


def rans_case(data: bytes, reference: torch.Tensor, repeat: int) -> dict:
    buf = memoryview(data)
    header = container.read_header(buf)
    batch = decoder.Batch(buf, header.entries)
    storage = torch.empty(batch.nbytes, dtype=torch.uint8, device="cuda")
    out8 = cuda.as_cuda_array(storage)
    stream = cuda.external_stream(torch.cuda.current_stream().cuda_stream)
    storage.fill_(0xA5)
    batch.decode_into(out8, stream)
    exact = all(
        torch.equal(storage[off : off + reference.numel()], reference) for off in batch.offsets
    )
    times = time_gpu(lambda: batch.decode_into(out8, stream), repeat)
    return {"ratio": sum(batch.sizes) / len(data), "exact": bool(exact), "seconds": times}


def nvcomp_case(nvcomp, x_gpu: torch.Tensor, data_type: str, repeat: int) -> dict:
    codec_ = nvcomp.Codec(algorithm="ANS", data_type=data_type)
    source = x_gpu.view(torch.float16) if data_type == "<f2" else x_gpu
    array = nvcomp.as_array(source)
    compressed = codec_.encode(array)
    torch.cuda.synchronize()
    decoded = codec_.decode(compressed)
    torch.cuda.synchronize()
    back = torch.as_tensor(decoded, device="cuda").view(torch.uint8).reshape(-1)
    exact = torch.equal(back, x_gpu.view(torch.uint8).reshape(-1))
    size = compressed.buffer_size if hasattr(compressed, "buffer_size") else compressed.size
    encode_times = time_gpu(lambda: codec_.encode(array), max(3, repeat // 3))
    times = time_gpu(lambda: codec_.decode(compressed), repeat)
    return {"data_type": data_type, "ratio": x_gpu.numel() * x_gpu.element_size() / size, "exact": bool(exact), "seconds": times, "encode_seconds": encode_times}


def environment() -> dict:
    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception as e:  # noqa: BLE001
            return f"unavailable: {e}"

    import numba

    info = {
        "gpu": torch.cuda.get_device_name(),
        "driver": run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch": torch.__version__,
        "rans": rans.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        from importlib.metadata import version

        info["numba_cuda"] = version("numba-cuda")
        info["nvcomp"] = version("nvidia-nvcomp-cu13")
    except Exception as e:  # noqa: BLE001
        info["versions_error"] = str(e)
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--kinds", default="bf16,fp16,fp32,fp8,int8")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "gpu_decode.json"))
    args = parser.parse_args()
    try:
        from nvidia import nvcomp
    except ImportError:
        nvcomp = None
    results = {"environment": environment(), "dtypes": [], "sizes": []}
    print(f"{results['environment']['gpu']}, driver {results['environment']['driver']}")
    nbytes = int(args.gib * GIB)
    print(f"\n{'dtype':6} {'codec':22} {'ratio':>7} {'decode GB/s':>12} {'vs nvCOMP':>10} exact")
    for kind in args.kinds.split(","):
        x = make(kind, nbytes)
        x_gpu = torch.from_numpy(x.view(np.uint8)).cuda()
        row = {"dtype": kind, "bytes": x.nbytes, "nvcomp": []}
        for prefer in ("ratio", "speed") if x.itemsize == 1 else ("ratio",):
            started = time.perf_counter()
            data = compress_file({"w": x}, args.workers, prefer)
            encode_s = time.perf_counter() - started
            row["rans" if prefer == "ratio" else "rans_speed"] = {**rans_case(data, x_gpu, args.repeat), "host_encode_seconds": encode_s}
            del data
        if nvcomp is not None:
            for data_type in (["<f2", "|u1"] if x.itemsize == 2 else ["|u1"]):
                try:
                    row["nvcomp"].append(nvcomp_case(nvcomp, x_gpu, data_type, args.repeat))
                except Exception as e:  # noqa: BLE001 - a mode nvCOMP refuses is reported, not fatal
                    row["nvcomp"].append({"data_type": data_type, "error": repr(e)})
        peers = [p for p in row["nvcomp"] if "seconds" in p and p["exact"]]
        best = max(peers, key=lambda p: p["ratio"]) if peers else None
        row["nvcomp_best"] = best["data_type"] if best else None
        best_gbs = x.nbytes / statistics.median(best["seconds"]) / 1e9 if best else float("nan")
        for key, label in (("rans", "rans"), ("rans_speed", 'rans prefer="speed"')):
            if key in row:
                ours = row[key]
                ours_gbs = x.nbytes / statistics.median(ours["seconds"]) / 1e9
                print(f"{kind:6} {label:22} {ours['ratio']:7.4f} {ours_gbs:12.1f} {ours_gbs / best_gbs:10.2f} {ours['exact']}")
        for p in row["nvcomp"]:
            if "seconds" in p:
                gbs = x.nbytes / statistics.median(p["seconds"]) / 1e9
                enc = x.nbytes / statistics.median(p["encode_seconds"]) / 1e9
                print(f"{kind:6} {'nvCOMP ANS ' + p['data_type']:22} {p['ratio']:7.4f} {gbs:12.1f} {'':>10} {p['exact']}  (encode {enc:.0f} GB/s)")
            else:
                print(f"{kind:6} {'nvCOMP ANS ' + p['data_type']:22} error: {p['error'][:60]}")
        results["dtypes"].append(row)
        del x_gpu
        torch.cuda.empty_cache()

    print(f"\n{'weights':>8} {'tensors':>7} {'latency ms':>11} {'GB/s':>8} exact")
    for mi in (4, 16, 64):
        x = make("bf16", mi * (1 << 21), seed=mi)
        x_gpu = torch.from_numpy(x.view(np.uint8)).cuda()
        for copies in (1, 32):
            data = repeat_file(x, copies, args.workers)
            case = rans_case(data, x_gpu, args.repeat)
            median = statistics.median(case["seconds"])
            gbs = copies * x.nbytes / median / 1e9
            print(f"{mi:>6}Mi {copies:7} {median * 1e3:11.3f} {gbs:8.1f} {case['exact']}")
            results["sizes"].append({"weights": x.size, "tensors": copies, "seconds": case["seconds"], "exact": case["exact"], "ratio": case["ratio"]})
        del x_gpu
        torch.cuda.empty_cache()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
