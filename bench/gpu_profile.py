"""Where the GPU decoder's time goes: per-call against kernel-only time, registers, SASS, occupancy.

Usage (on a CUDA machine)::

    python bench/gpu_profile.py [--mib 1024] [--kinds bf16,int8] [--sass DIR]

For each dtype it prints the median time of a whole ``Batch.decode_into``
call (launch, integrity check, synchronization) and of the decode kernel
alone (back-to-back launches timed with CUDA events, no synchronization in
between), the registers per thread, and optionally writes the SASS of the
kernel. Run it under ``ncu`` for stall reasons.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import sys

import numpy as np
import torch
from numba import cuda

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from gpu_decode import compress_file, make  # noqa: E402

from rans import container  # noqa: E402
from rans.gpu import decoder, kernels  # noqa: E402


def events(call, repeat: int) -> float:
    call()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / repeat


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--kinds", default="bf16,int8")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--sass", default=None)
    parser.add_argument("--max-registers", default="", help="comma-separated register caps to try, e.g. 40,48")
    args = parser.parse_args()
    for kind in args.kinds.split(","):
        x = make(kind, args.mib << 20)
        data = compress_file({"w": x}, os.cpu_count() or 1)
        buf = memoryview(data)
        batch = decoder.Batch(buf, container.read_header(buf).entries)
        storage = torch.empty(batch.nbytes, dtype=torch.uint8, device="cuda")
        out8 = cuda.as_cuda_array(storage)
        stream = cuda.external_stream(torch.cuda.current_stream().cuda_stream)
        batch.decode_into(out8, stream)
        views = decoder._views(out8)
        fused = batch.plan.fused
        per_call = statistics.median(events(lambda: batch.decode_into(out8, stream), 1) for _ in range(args.repeat))
        kernel = events(lambda: fused.run(batch.buf16, batch.buf32, views, stream), args.repeat)
        print(f"{kind}: {x.nbytes / 2**20:.0f} MiB, per call {per_call * 1e3:.3f} ms ({x.nbytes / per_call / 1e9:.0f} GB/s), "
              f"kernel only {kernel * 1e3:.3f} ms ({x.nbytes / kernel / 1e9:.0f} GB/s), overhead {(per_call - kernel) * 1e6:.0f} us")
        original = kernels.decode
        for cap in filter(None, args.max_registers.split(",")):
            kernels.decode = cuda.jit(max_registers=int(cap))(original.py_func)
            fused.prepared = None
            batch.decode_into(out8, stream)
            exact = torch.equal(storage[: x.nbytes], torch.from_numpy(x.view(np.uint8)).cuda())
            capped = events(lambda: fused.run(batch.buf16, batch.buf32, views, stream), args.repeat)
            print(f"  max_registers={cap}: kernel only {capped * 1e3:.3f} ms ({x.nbytes / capped / 1e9:.0f} GB/s), exact {exact}")
        kernels.decode = original
        fused.prepared = None
    for signature, overload in kernels.decode.overloads.items():
        print("registers per thread:", overload.regs_per_thread, "shared bytes:", overload.shared_mem_per_block,
              "local bytes:", overload.local_mem_per_thread)
        if args.sass:
            os.makedirs(args.sass, exist_ok=True)
            sass = kernels.decode.inspect_sass(signature)
            with open(os.path.join(args.sass, "decode.sass"), "w") as f:
                f.write(sass)
            ops = collections.Counter(m.group(1).split(".")[0] for m in re.finditer(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9.]+)", sass))
            print("SASS instructions:", sum(ops.values()), dict(ops.most_common(25)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
