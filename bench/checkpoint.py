"""Checkpoint benchmark: the rans command line on whole safetensors files, against ZipNN and safetensors.

Usage::

    python bench/checkpoint.py [--out bench/results/checkpoint.json] [--memory-mib 16] [--no-real]
    python bench/checkpoint.py --gpu [--gib 2] [--repeats 5] [--workdir DIR] [--out bench/results/checkpoint_gpu.json]

CPU mode (default)
------------------
1. Every ``/work/shared/data/real/*.safetensors``, as stored and with its F32
   tensors cast to bf16 (written with ``safetensors.torch``): ``rans compress``
   and ``rans decompress`` (in-process ``rans.cli.main``) times, the
   byte-identity of the round trip (sha256), the ratio (tensor bytes / file
   bytes, as in ``bench/results/reference.json``, and safetensors file bytes /
   rans file bytes), the order-0 bound of the planes rans chose, ZipNN 0.5.4's
   ``.znn.safetensors`` file ratio (``common.zipnn_safetensors_file``, same
   tensors), and the bytes the reserved metadata key costs.
2. Host memory: peak RSS (VmHWM) of a fresh process running ``rans compress``,
   ``rans.load_file`` and ``safetensors`` loading on files of 4 and of 16 bf16
   tensors of 16 MiB: what exceeds the tensors returned should not grow
   with the file. (``safetensors.torch.load_file`` on the CPU returns
   tensors over a memory map whose pages are read only when touched, so its
   peak stays low and its "extra" is negative.)

3. Speed (``--speed-gib``, default 1; 0 skips it): a bf16 checkpoint of that
   size built as in GPU mode (LLM shapes, N(0, 0.02)) is compressed with
   ``rans compress`` (``rans.cli.main``, ``--backend cpu``: the Numba CPU
   codec) and with ZipNN 0.5.4's safetensors path
   (``common.zipnn_safetensors_files``, threads=2) on the same file, and
   decompressed by both, file to file on tmpfs (ZipNN: its compress script
   reads the file, compresses, writes; its decompress reads every tensor through
   ``SafeOpen`` and writes a safetensors file); each tool in processes of its
   own, taking turns, imports and one warm-up run untimed, median of
   2 x ``--repeats`` (target, issue 5: rans compresses at least 2x as fast as ZipNN).

GPU mode (``--gpu``, on a CUDA machine)
---------------------------------------
Builds a bf16 checkpoint of ``--gib`` GiB (N(0, 0.02), LLM shapes: a
TinyLlama-like stack of layers, ~200 tensors), compresses it with the CLI
code, then times, with the page cache warm and in one process,
``rans.load_file(path, device="cuda")`` against
``safetensors.torch.load_file(path, device="cuda")`` on the uncompressed
file (each call ending in ``torch.cuda.synchronize()``), alternating, median
of ``--repeats``. Every tensor is compared bit for bit first. Target: rans
takes at most 0.8x safetensors' time. Anything off (no GPU, the CUDA
simulator, a mismatch) stops the run with a non-zero status.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's rans, not an installed one

import common as C  # noqa: E402
import ml_dtypes  # noqa: E402

import rans  # noqa: E402
from rans import checkpoint, cli, container, entropy  # noqa: E402

REAL_DIR = "/work/shared/data/real"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_TARGET = 0.8
GPU_WORKDIR: list[str] = []
"""The --gpu run's working directory, removed at the end unless given with --workdir."""


def sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def cli_ok(*argv: str) -> None:
    status = cli.main([*argv, "-q"])
    if status:
        raise SystemExit(f"rans {' '.join(argv)} exited with {status}")


# =========================================================================== CPU: real files


def bf16_copy(src: str, dst: str) -> bool:
    """Write ``src`` with its F32 tensors cast to bf16 (safetensors.torch layout); False if it has none."""
    import safetensors.numpy as stn
    import safetensors.torch as stt

    tensors = stn.load_file(src)
    if not any(t.dtype == np.float32 for t in tensors.values()):
        return False
    cast = {k: (t.astype(ml_dtypes.bfloat16) if t.dtype == np.float32 else t) for k, t in tensors.items()}
    stt.save_file(C.to_torch(cast), dst)
    return True


def evaluate(label: str, src: str, workdir: str) -> dict:
    packed, back = os.path.join(workdir, "f.rans"), os.path.join(workdir, "f.safetensors")
    compress_s = timed(lambda: cli_ok("compress", src, "-o", packed, "--force"))
    decompress_s = timed(lambda: cli_ok("decompress", packed, "-o", back, "--force"))
    exact = sha(back) == sha(src)
    size, st_size = os.path.getsize(packed), os.path.getsize(src)
    bound = 0.0
    nbytes = 0
    tensors = {}
    with rans.safe_open(packed) as f:
        metadata = f.metadata()
        entries = [f.entry(n) for n in f.keys()]
        for e in entries:
            array = f.get_tensor(e.name)
            tensors[e.name] = array
            bound += entropy.bound_bytes(array, e.split)
            nbytes += e.nbytes
    user = {k: v for k, v in metadata.items() if k != checkpoint.RESERVED_KEY}
    key_bytes = len(container.encode_header(entries, metadata)) - len(container.encode_header(entries, user or None))
    zst = C.zipnn_safetensors_file(tensors, os.path.join(workdir, "f.znn.safetensors"))
    os.unlink(os.path.join(workdir, "f.znn.safetensors"))
    for p in (packed, back):
        os.unlink(p)
    return dict(
        label=label, n_tensors=len(entries), tensor_bytes=nbytes, safetensors_bytes=st_size, rans_bytes=size,
        ratio=nbytes / size, file_ratio=st_size / size, bound_ratio=nbytes / bound if bound else None,
        pct_of_bound=bound / size, reserved_key_bytes=key_bytes, exact=exact,
        zipnn_file_ratio=nbytes / zst["bytes"], zipnn_exact=zst["exact"], zipnn_compressed=f"{zst['n_compressed']}/{zst['n_float']}",
        compress_s=compress_s, decompress_s=decompress_s, compress_MBps=st_size / compress_s / C.MB,
        decompress_MBps=st_size / decompress_s / C.MB, zipnn_compress_s=zst["compress_s"], zipnn_decompress_s=zst["decompress_s"],
    )


def real_files(files: list[str]) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory() as workdir:
        for path in files:
            name = os.path.basename(path).removesuffix(".safetensors")
            out.append(evaluate(name, path, workdir))
            cast = os.path.join(workdir, "bf16.safetensors")
            if bf16_copy(path, cast):
                out.append(evaluate(name + " [bf16]", cast, workdir))
                os.unlink(cast)
    rows = [[r["label"], r["n_tensors"], r["safetensors_bytes"] / C.MB, r["ratio"], r["bound_ratio"], 100 * r["pct_of_bound"],
             r["zipnn_file_ratio"], r["ratio"] >= r["zipnn_file_ratio"], r["reserved_key_bytes"], r["exact"],
             r["compress_MBps"], r["decompress_MBps"]] for r in out]
    for kind, chosen in (("as stored", [r for r in out if "[bf16]" not in r["label"]]), ("bf16 casts", [r for r in out if "[bf16]" in r["label"]])):
        if chosen:
            nb, rb, sb = (sum(r[k] for r in chosen) for k in ("tensor_bytes", "rans_bytes", "safetensors_bytes"))
            zb = sum(r["tensor_bytes"] / r["zipnn_file_ratio"] for r in chosen)
            bb = sum(r["tensor_bytes"] / r["bound_ratio"] for r in chosen if r["bound_ratio"])
            rows.append([f"TOTAL {kind}", sum(r["n_tensors"] for r in chosen), sb / C.MB, nb / rb, nb / bb, 100 * bb / rb, nb / zb,
                         nb / rb >= nb / zb, sum(r["reserved_key_bytes"] for r in chosen), all(r["exact"] for r in chosen),
                         sb / sum(r["compress_s"] for r in chosen) / C.MB, sb / sum(r["decompress_s"] for r in chosen) / C.MB])
    C.table("real files through the CLI (ratio = tensor bytes / file bytes; exact = decompressed sha256 equals the original)",
            ["file", "tensors", "MB", "rans", "bound", "% bound", "ZipNN file", ">= ZipNN", "key B", "exact", "comp MB/s", "decomp MB/s"],
            rows)
    return out


# =========================================================================== CPU: memory


MEMORY_CHILD = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {root!r})
    def rss(field):
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field))
    import numpy, rans, rans.cli, safetensors.numpy, safetensors.torch, ml_dtypes
    base = rss("VmRSS:")
    task, src, out = sys.argv[1:4]
    if task == "compress":
        assert rans.cli.main(["compress", src, "-o", out, "-q", "--force"]) == 0
        kept = 0
    elif task == "rans.load_file":
        kept = sum(t.nbytes for t in rans.load_file(src).values())
    else:
        kept = sum(t.numel() * t.element_size() for t in safetensors.torch.load_file(src).values())
    print(json.dumps(dict(base=base, peak=rss("VmHWM:"), kept=kept)))
""")


def memory(tensor_mib: int, counts: tuple[int, ...] = (4, 16)) -> list[dict]:
    """Peak RSS of compress and load on files of ``counts`` bf16 tensors of ``tensor_mib`` MiB each.

    Memory bounded by the largest tensor shows as an ``extra`` (peak minus
    the tensors returned) that does not grow with the number of tensors.
    """
    import safetensors.torch as stt
    import torch

    out = []
    for n_tensors in counts:
        g = torch.Generator().manual_seed(0)
        tensors = {f"layer.{i}.weight": (torch.randn(tensor_mib * C.MI // 2, generator=g) * 0.02).bfloat16().reshape(-1, 1024)
                   for i in range(n_tensors)}
        largest = max(t.numel() * 2 for t in tensors.values())
        with tempfile.TemporaryDirectory() as workdir:
            src, packed = os.path.join(workdir, "m.safetensors"), os.path.join(workdir, "m.rans")
            stt.save_file(tensors, src)
            del tensors
            cli_ok("compress", src, "-o", packed)
            tasks = {}
            for task, path in (("compress", src), ("rans.load_file", packed), ("safetensors.torch.load_file", src)):
                done = subprocess.run([sys.executable, "-c", MEMORY_CHILD.format(root=ROOT), task, path, packed + ".2"],
                                      capture_output=True, text=True, check=True)
                r = json.loads(done.stdout)
                r["extra"] = r["peak"] - r["base"] - r["kept"]
                tasks[task] = r
            out.append(dict(n_tensors=n_tensors, safetensors_bytes=os.path.getsize(src), rans_bytes=os.path.getsize(packed),
                            largest_tensor_bytes=largest, tasks=tasks))
    rows = [[task, m["n_tensors"], m["safetensors_bytes"] / C.MI, r["kept"] / C.MI, (r["peak"] - r["base"]) / C.MI, r["extra"] / C.MI,
             r["extra"] / m["largest_tensor_bytes"]] for m in out for task, r in m["tasks"].items()]
    C.table(f"peak host memory (VmHWM - RSS after imports), bf16 tensors of {tensor_mib} MiB; extra = peak - tensors returned",
            ["task", "tensors", "file MiB", "returned MiB", "peak MiB", "extra MiB", "extra / tensor"], rows)
    return out


# =========================================================================== CPU: a checkpoint's speed


SPEED_CHILD = textwrap.dedent("""
    import json, os, sys, time
    sys.path[:0] = [sys.argv[1], os.path.join(sys.argv[1], "bench")]
    tool, src, work, repeats = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    if tool == "rans":
        from rans import cli
        packed, back = os.path.join(work, "m.rans"), os.path.join(work, "back.safetensors")

        def run(argv):
            if cli.main(argv + ["--force", "-q"]):
                raise SystemExit("rans " + " ".join(argv) + " failed")

        def once():
            t0 = time.perf_counter()
            run(["compress", src, "-o", packed, "--backend", "cpu"])
            t1 = time.perf_counter()
            run(["decompress", packed, "-o", back])
            return dict(compress_s=t1 - t0, decompress_s=time.perf_counter() - t1, bytes=os.path.getsize(packed))
    else:
        import common as C

        def once():
            return C.zipnn_safetensors_files(src, os.path.join(work, "m.znn.safetensors"), os.path.join(work, "back.safetensors"))
    once()  # not timed: caches, first touches
    print(json.dumps([once() for _ in range(repeats)]))
""")


def speed(gib: float, repeats: int, rounds: int = 2) -> dict:
    """Compress and decompress a ``gib`` GiB bf16 checkpoint, file to file on tmpfs, with the rans CLI and
    with ZipNN's safetensors recipe (:func:`common.zipnn_safetensors_files`); medians.

    Each tool runs in a process of its own (``rounds`` processes each, taking turns, ``repeats`` timed
    runs in each after one untimed), as a user runs it: the rans CLI sets the C library's memory reuse
    for its process (``rans.cli._reuse_freed_memory``), which sped ZipNN up from 2.4 s to 1.1 s a compress
    when both ran in one process (``bench/NOTES.md``, entry C1).
    """
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as workdir:
        src = os.path.join(workdir, "m.safetensors")
        built = build_checkpoint(src, gib)
        original = sha(src)
        runs: dict[str, list[dict]] = {"rans": [], "zipnn": []}
        for _ in range(rounds):
            for tool in runs:
                work = tempfile.mkdtemp(dir=workdir)
                child = subprocess.run([sys.executable, "-c", SPEED_CHILD, ROOT, tool, src, work, str(repeats)],
                                       capture_output=True, text=True, check=True)
                runs[tool] += json.loads(child.stdout.strip().splitlines()[-1])
                if tool == "rans" and sha(os.path.join(work, "back.safetensors")) != original:
                    raise SystemExit("rans decompress did not give the original file back")
                shutil.rmtree(work)
        nbytes = built["bytes"]
        out = dict(built, workdir=base or tempfile.gettempdir(), repeats=repeats, rounds=rounds, processes="one per tool and round",
                   rans_bytes=runs["rans"][-1]["bytes"], zipnn_bytes=runs["zipnn"][-1]["bytes"], exact=True,
                   zipnn_exact=all(r["exact"] for r in runs["zipnn"]))
    for tool, rows in runs.items():
        for what in ("compress", "decompress"):
            seconds = [r[f"{what}_s"] for r in rows]
            out[f"{tool}_{what}_runs_s"] = seconds
            out[f"{tool}_{what}_s"] = statistics.median(seconds)
            out[f"{tool}_{what}_MBps"] = nbytes / statistics.median(seconds) / C.MB
    out["compress_vs_zipnn"] = out["rans_compress_MBps"] / out["zipnn_compress_MBps"]
    out["decompress_vs_zipnn"] = out["rans_decompress_MBps"] / out["zipnn_decompress_MBps"]
    rows = [["rans (CLI, cpu backend)", nbytes / out["rans_bytes"], out["rans_compress_MBps"], out["rans_decompress_MBps"], True],
            ["ZipNN 0.5.4 safetensors recipe, threads=2", nbytes / out["zipnn_bytes"], out["zipnn_compress_MBps"],
             out["zipnn_decompress_MBps"], out["zipnn_exact"]],
            ["rans / ZipNN", None, out["compress_vs_zipnn"], out["decompress_vs_zipnn"], None]]
    C.table(f"a {nbytes / C.MB / 1000:.2f} GB bf16 checkpoint ({built['n_tensors']} tensors), file to file on tmpfs, each tool in "
            f"processes of its own, median of {rounds * repeats}; ratio = file bytes / compressed file bytes; target: compress >= 2x ZipNN",
            ["codec", "ratio", "compress MB/s", "decompress MB/s", "exact"], rows)
    return out


# =========================================================================== GPU


def llm_shapes(target_bytes: int) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of a TinyLlama-like model (hidden 2048, MLP 5632, 4 KV heads of 64, vocabulary 32000)
    of about ``target_bytes`` in bf16: as many layers as fit, or one layer with every dimension shrunk for tiny sizes."""

    def model(layers: int, shrink: int) -> list[tuple[str, tuple[int, ...]]]:
        hidden, mlp, kv, vocab = (max(1, d // shrink) for d in (2048, 5632, 256, 32000))
        layer = [("self_attn.q_proj.weight", (hidden, hidden)), ("self_attn.k_proj.weight", (kv, hidden)),
                 ("self_attn.v_proj.weight", (kv, hidden)), ("self_attn.o_proj.weight", (hidden, hidden)),
                 ("mlp.gate_proj.weight", (mlp, hidden)), ("mlp.up_proj.weight", (mlp, hidden)),
                 ("mlp.down_proj.weight", (hidden, mlp)), ("input_layernorm.weight", (hidden,)),
                 ("post_attention_layernorm.weight", (hidden,))]
        return ([("model.embed_tokens.weight", (vocab, hidden))]
                + [(f"model.layers.{i}.{n}", s) for i in range(layers) for n, s in layer]
                + [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))])

    def size(shapes: list[tuple[str, tuple[int, ...]]]) -> int:
        return 2 * sum(int(np.prod(s)) for _, s in shapes)

    one, two = size(model(1, 1)), size(model(2, 1))
    if target_bytes < one:
        return model(1, int(np.ceil(np.sqrt(one / max(target_bytes, 1)))))
    return model(1 + round((target_bytes - one) / (two - one)), 1)


def build_checkpoint(path: str, gib: float) -> dict:
    import safetensors.torch as stt
    import torch

    shapes = llm_shapes(int(gib * (1 << 30)))
    g = torch.Generator().manual_seed(0)
    tensors = {name: (torch.randn(shape, generator=g) * 0.02).bfloat16() for name, shape in shapes}
    stt.save_file(tensors, path, {"format": "pt"})
    return dict(n_tensors=len(tensors), bytes=os.path.getsize(path))


def gpu(args: argparse.Namespace) -> dict:
    import torch

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        raise SystemExit("--gpu: NUMBA_ENABLE_CUDASIM=1 is set; unset it to time the real GPU")
    if not torch.cuda.is_available():
        raise SystemExit("--gpu: torch sees no CUDA device")
    from numba import cuda

    if not cuda.is_available():
        raise SystemExit("--gpu: numba sees no CUDA device")
    import safetensors.torch as stt

    workdir = args.workdir or tempfile.mkdtemp(prefix="rans-ckpt-")
    GPU_WORKDIR.append(workdir)
    os.makedirs(workdir, exist_ok=True)
    src, packed = os.path.join(workdir, "model.safetensors"), os.path.join(workdir, "model.rans")
    stamp = os.path.join(workdir, "stamp.json")
    want = dict(gib=args.gib, rans=rans.__version__)
    info = None
    if os.path.exists(stamp) and os.path.exists(packed):
        with open(stamp) as f:
            saved = json.load(f)
        if saved.get("want") == want:
            info = saved
            print(f"reusing {src} and {packed}", flush=True)
    if info is None:
        t = time.perf_counter()
        built = build_checkpoint(src, args.gib)
        build_s = time.perf_counter() - t
        workers = os.cpu_count() or 1
        command = [sys.executable, "-m", "rans", "compress", src, "-o", packed, "--force", "--quiet", "--workers", str(workers)]
        env = {**os.environ, "PYTHONPATH": ROOT}  # a fresh process: its encoding workers fork from one without CUDA
        compress_s = timed(lambda: subprocess.run(command, cwd=ROOT, env=env, check=True))
        info = dict(want=want, built=built, build_s=build_s, compress_s=compress_s, compress_workers=workers)
        with open(stamp, "w") as f:
            json.dump(info, f)
    size, plain = os.path.getsize(packed), os.path.getsize(src)
    print(f"checkpoint {plain / C.MI:.0f} MiB, {info['built']['n_tensors']} tensors; rans {size / C.MI:.0f} MiB, "
          f"ratio {plain / size:.4f}; compress {info['compress_s']:.1f} s on {info['compress_workers']} workers", flush=True)

    for path in (src, packed):  # warm the page cache
        with open(path, "rb") as f:
            while f.read(1 << 26):
                pass

    def load_rans():
        out = rans.load_file(packed, device="cuda")
        torch.cuda.synchronize()
        return out

    def load_plain():
        out = stt.load_file(src, device="cuda")
        torch.cuda.synchronize()
        return out

    a, b = load_rans(), load_plain()
    if sorted(a) != sorted(b):
        raise SystemExit(f"--gpu: rans has {len(a)} tensors, safetensors {len(b)}")
    for name, t in b.items():
        r = a[name]
        if not (isinstance(r, torch.Tensor) and r.is_cuda and r.dtype == t.dtype == torch.bfloat16 and r.shape == t.shape):
            raise SystemExit(f"--gpu: tensor {name}: rans gave {type(r).__name__} {getattr(r, 'dtype', None)} "
                             f"{tuple(getattr(r, 'shape', ()))} on {getattr(r, 'device', None)}, safetensors {t.dtype} {tuple(t.shape)}")
        if not torch.equal(r.view(torch.int16), t.view(torch.int16)):
            raise SystemExit(f"--gpu: tensor {name} differs between rans and safetensors")
    del a, b, r, t
    torch.cuda.empty_cache()

    times: dict[str, list[float]] = {"rans": [], "safetensors": []}
    for _ in range(args.repeats):
        for label, load in (("rans", load_rans), ("safetensors", load_plain)):
            start = time.perf_counter()
            out = load()
            times[label].append(time.perf_counter() - start)
            del out
            torch.cuda.empty_cache()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["rans"] / med["safetensors"]
    C.table(f"load {plain / C.MI:.0f} MiB of bf16 onto {torch.cuda.get_device_name()}, page cache warm, median of {args.repeats}",
            ["loader", "median s", "min s", "GB/s of bf16", "vs safetensors"],
            [["rans.load_file(device='cuda')", med["rans"], min(times["rans"]), plain / med["rans"] / 1e9, ratio],
             ["safetensors.torch.load_file(device='cuda')", med["safetensors"], min(times["safetensors"]), plain / med["safetensors"] / 1e9, 1.0]])
    print(f"rans / safetensors = {ratio:.3f} (target <= {GPU_TARGET}): {'PASS' if ratio <= GPU_TARGET else 'FAIL'}")
    return dict(info, rans_bytes=size, safetensors_bytes=plain, ratio=plain / size, times_s=times, median_s=med,
                rans_over_safetensors=ratio, target=GPU_TARGET, passed=ratio <= GPU_TARGET, device=torch.cuda.get_device_name(),
                torch=torch.__version__, workdir=workdir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpu", action="store_true", help="time loading onto a CUDA GPU against safetensors (see the module doc)")
    ap.add_argument("--gib", type=float, default=2.0, help="--gpu: checkpoint size in GiB (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed loads (--gpu) or round trips (CPU speed) of each (default 5)")
    ap.add_argument("--workdir", help="--gpu: where to build the checkpoint, kept and reused when built with the same --gib "
                                      "(default: a temporary directory, removed at the end)")
    ap.add_argument("--memory-mib", type=int, default=16, help="CPU: size of each tensor of the memory test files (default 16)")
    ap.add_argument("--no-real", action="store_true", help="CPU: skip the real files")
    ap.add_argument("--speed-gib", type=float, default=1.0, help="CPU: size of the checkpoint timed against ZipNN (default 1; 0 skips)")
    ap.add_argument("--out", help="JSON output (default bench/results/checkpoint.json, or checkpoint_gpu.json with --gpu)")
    args = ap.parse_args(argv)
    results = dict(machine=C.machine_info(), argv=sys.argv[1:])
    print("machine:", ", ".join(f"{k}={v}" for k, v in results["machine"].items()), flush=True)
    if args.gpu:
        try:
            results["gpu_load"] = gpu(args)
        finally:
            if args.workdir is None and GPU_WORKDIR:
                shutil.rmtree(GPU_WORKDIR[0], ignore_errors=True)
    else:
        if not args.no_real:
            results["real_files"] = real_files(sorted(glob.glob(os.path.join(REAL_DIR, "*.safetensors"))))
        results["memory"] = memory(args.memory_mib)
        if args.speed_gib:
            results["speed"] = speed(args.speed_gib, args.repeats)
    out = args.out or os.path.join(ROOT, "bench", "results", "checkpoint_gpu.json" if args.gpu else "checkpoint.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(C.to_jsonable(results), f, indent=1)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
