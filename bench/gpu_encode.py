"""GPU encode throughput: rans against nvCOMP 6.0 ANS compress, same process, same GPU, same device buffers.

Usage (on a CUDA machine, with ``nvidia-nvcomp-cu13`` installed for the peer)::

    python bench/gpu_encode.py [--mib 1024] [--out bench/results/gpu_encode.json]

For each dtype it makes ``--mib`` MiB of weights (``bench/gpu_decode.py``'s
data: bf16, fp16 and fp32 drawn N(0, 0.02), fp8 e4m3 N(0, 1), int8 rounded
N(0, 12)) in GPU memory and times, with CUDA events after two warm-ups, the
median of ``--repeat`` calls of

* rans: :func:`rans.gpu.encoder.compress_device`, device to device: input a
  torch CUDA tensor, output the whole ``.rans`` file in a GPU buffer; a call
  includes its host work (planning, header) and its three small
  device-to-host copies;
* nvCOMP ANS ``Codec.encode`` with every data type that applies (``<f2`` for
  2-byte dtypes, ``|u1`` always) on the same tensor.

Throughput is uncompressed bytes per second. Checks: the GPU file of the
first ``--check-mib`` MiB equals the reference encoder's file byte for byte,
and the full GPU file decodes (GPU decoder) back to the input bit for bit.
A per-round breakdown of one rans call (histogram, encode, layout + CRC,
header) is printed too.

Without a GPU (``NUMBA_ENABLE_CUDASIM=1``) it runs on the simulator with
wall-clock timing and no nvCOMP: use a tiny size (``--mib 0.01``); the
numbers mean nothing, the checks still do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
from numba import config, cuda

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

import rans  # noqa: E402
from gpu_decode import make  # noqa: E402
from rans import dtypes  # noqa: E402
from rans.gpu import encoder  # noqa: E402

MIB = 1 << 20
SIMULATED = bool(config.ENABLE_CUDASIM)
FORMAT = {"bf16": "BF16", "fp16": "F16", "fp32": "F32", "fp8": "F8_E4M3", "int8": "I8"}


def timer(call, repeat: int) -> list[float]:
    """Seconds per call: CUDA events after two warm-ups on a GPU; wall clock, once, under the simulator."""
    if SIMULATED:
        started = time.perf_counter()
        call()
        return [time.perf_counter() - started]
    from gpu_decode import time_gpu

    return time_gpu(call, repeat)


def on_device(x: np.ndarray):
    """The array in GPU memory: a torch CUDA tensor on a GPU, a numba array under the simulator."""
    if SIMULATED:
        return cuda.to_device(x.view(np.uint8).reshape(-1) if x.dtype.itemsize == 1 else x.view(f"<u{x.dtype.itemsize}"))
    import torch

    kind = dtypes.TORCH[dtypes.name_of(x.dtype)]
    return torch.from_numpy(x.view(np.uint8)).cuda().view(getattr(torch, kind))


def phases(x_gpu, kind: str) -> dict[str, float]:
    """Seconds of each round of one call (with a synchronization after each)."""
    out: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        cuda.synchronize()
        now = time.perf_counter()
        out[name] = now - mark
        mark = now

    call = encoder._Call({"": x_gpu}, 32768, FORMAT[kind], None, None)
    call.plan_and_encode()
    lap("histogram, plan, encode")
    data = call.lay_out(None)
    lap("layout")
    crcs = call.assemble(data)
    lap("raw, compact, CRC")
    call.finish(crcs, None, data)
    lap("header")
    return out


def nvcomp_case(nvcomp, x_gpu, data_type: str, repeat: int) -> dict:
    import torch

    codec = nvcomp.Codec(algorithm="ANS", data_type=data_type)
    source = x_gpu.view(torch.float16) if data_type == "<f2" else x_gpu.view(torch.uint8)
    array = nvcomp.as_array(source)
    compressed = codec.encode(array)
    torch.cuda.synchronize()
    back = torch.as_tensor(codec.decode(compressed), device="cuda").view(torch.uint8).reshape(-1)
    exact = torch.equal(back, x_gpu.view(torch.uint8).reshape(-1))
    size = compressed.buffer_size if hasattr(compressed, "buffer_size") else compressed.size
    times = timer(lambda: codec.encode(array), repeat)
    return {"data_type": data_type, "ratio": x_gpu.numel() * x_gpu.element_size() / size, "exact": bool(exact), "seconds": times}


def environment() -> dict:
    import numba

    info = {
        "simulated": SIMULATED,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "rans": rans.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if not SIMULATED:
        from gpu_decode import environment as gpu_environment

        info.update(gpu_environment())
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=float, default=1024.0)
    parser.add_argument("--check-mib", type=float, default=64.0, help="leading MiB compared with the reference encoder's file")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes of the reference encoder")
    parser.add_argument("--kinds", default="bf16,fp16,fp32,fp8,int8")
    parser.add_argument("--no-nvcomp", action="store_true", help="skip the peer (also skipped when it is not installed)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "gpu_encode.json"))
    args = parser.parse_args()
    if SIMULATED:
        sys.setswitchinterval(1e-4)  # the simulator's block barriers are 4x faster with frequent thread switches
    nvcomp = None
    if not (args.no_nvcomp or SIMULATED):
        try:
            from nvidia import nvcomp
        except ImportError:
            print("nvCOMP not installed: rans only")
    results = {"environment": environment(), "mib": args.mib, "dtypes": []}
    print(results["environment"].get("gpu", "CUDA simulator"), results["environment"].get("driver", ""))
    print(f"\n{'dtype':6} {'codec':22} {'ratio':>7} {'compress GB/s':>14} {'rans speedup':>13} exact")
    for kind in args.kinds.split(","):
        x = make(kind, int(args.mib * MIB))
        x_gpu = on_device(x)
        encoded = encoder.compress_device(x_gpu, dtype=FORMAT[kind])
        ours = {"ratio": x.nbytes / encoded.nbytes, "bytes": encoded.nbytes}
        if SIMULATED:
            back = rans.decompress(encoded.to_bytes())
            ours["round_trip"] = bool(back.tobytes() == x.tobytes())
        else:
            import torch

            data = encoded.to_bytes()
            back = rans.decompress(data, device="cuda")
            ours["round_trip"] = bool(torch.equal(back.reshape(-1).view(torch.uint8), x_gpu.reshape(-1).view(torch.uint8)))
            del back, data
        m = min(x.size, int(args.check_mib * MIB) // x.dtype.itemsize)
        started = time.perf_counter()
        reference = rans.compress(x[:m], workers=args.workers)
        ours["reference_encode_seconds"] = time.perf_counter() - started
        ours["check_elements"] = m
        ours["same_bytes"] = encoder.compress(on_device(x[:m]), dtype=FORMAT[kind]).copy_to_host().tobytes() == reference
        del encoded
        ours["seconds"] = timer(lambda: encoder.compress_device(x_gpu, dtype=FORMAT[kind]), args.repeat)
        ours["phases"] = phases(x_gpu, kind)
        row = {"dtype": kind, "bytes": x.nbytes, "rans": ours, "nvcomp": []}
        if nvcomp is not None:
            for data_type in (["<f2", "|u1"] if x.itemsize == 2 else ["|u1"]):
                try:
                    row["nvcomp"].append(nvcomp_case(nvcomp, x_gpu, data_type, args.repeat))
                except Exception as e:  # noqa: BLE001 - a mode nvCOMP refuses is reported, not fatal
                    row["nvcomp"].append({"data_type": data_type, "error": repr(e)})
        gbs = x.nbytes / statistics.median(ours["seconds"]) / 1e9
        exact = ours["same_bytes"] and ours["round_trip"]
        print(f"{kind:6} {'rans GPU':22} {ours['ratio']:7.4f} {gbs:14.1f} {'':>13} {exact}")
        for p in row["nvcomp"]:
            if "seconds" in p:
                peer = x.nbytes / statistics.median(p["seconds"]) / 1e9
                print(f"{kind:6} {'nvCOMP ANS ' + p['data_type']:22} {p['ratio']:7.4f} {peer:14.1f} {gbs / peer:12.2f}x {p['exact']}")
            else:
                print(f"{kind:6} {'nvCOMP ANS ' + p['data_type']:22} error: {p['error'][:60]}")
        print("       rounds of one call (ms): " + ", ".join(f"{k} {v * 1e3:.3f}" for k, v in ours["phases"].items()))
        results["dtypes"].append(row)
        x_gpu = None  # frees the GPU copy before the next dtype
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
