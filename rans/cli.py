"""The rans command line: ``rans COMMAND`` or ``python -m rans COMMAND``.

Commands
--------
compress MODEL [-o OUT]
    A ``.safetensors`` file to a ``.rans`` file, or a checkpoint directory
    (shards, index, config, tokenizer) to a directory of ``.rans`` shards;
    naming and the reserved metadata key are described in
    :mod:`rans.checkpoint`.
decompress IN [-o OUT]
    Back to the original safetensors file or directory, byte for byte.
info IN
    Per tensor: dtype, shape, ratio, bits per weight, order-0 bound; totals.
verify IN
    Check every tensor (CRC-32 and full decode) and the original's size and CRC-32.
bench MODEL
    Time compress, decompress and loading against safetensors on your file.
demo
    Round-trip synthetic bf16 weights; print ratio and bound.

Exit status: see :class:`Exit`. Errors are one line on stderr, naming the
file and, where it applies, the tensor, field and chunk.

Examples
--------
>>> import numpy as np, os, tempfile, rans
>>> from rans import cli
>>> path = os.path.join(tempfile.mkdtemp(), "t.rans")
>>> rans.save_file({"w": np.zeros(8, np.float32)}, path)
>>> cli.main(["verify", path, "--quiet"])
0
>>> cli.main(["verify", path + ".missing", "--quiet"]) == cli.Exit.IO
True
"""

from __future__ import annotations

import argparse
import ctypes
import enum
import errno
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Sequence


from . import api, backends, checkpoint, demo, dtypes, entropy
from .checkpoint import RANS, RESERVED_KEY, SAFETENSORS
from .constants import DEFAULT_CHUNK
from .errors import CorruptDataError, NotRansDataError, NotSafetensorsError, RansError, UnsupportedVersionError
from .files import safe_open


class Exit(enum.IntEnum):
    """Exit statuses of the command line."""

    OK = 0
    FAILED = 1
    """The command refused (an output exists without ``--force``, a bad option value) or failed otherwise."""
    USAGE = 2
    """Bad command line (argparse)."""
    IO = 3
    """An input is missing or unreadable, or an output cannot be written (permission, disk full)."""
    FOREIGN = 4
    """An input is not what the command reads: not a rans file, or not a safetensors file."""
    CORRUPT = 5
    """An input is damaged: truncated, a checksum mismatch, a chunk that does not decode."""
    VERSION = 6
    """An input is a rans file of a format version this reader does not know."""
    INTERRUPTED = 130


class OutputExists(Exception):
    """The output path exists and ``--force`` was not given."""


def _progress(args: argparse.Namespace, total: int, what: str) -> Any:
    """A tqdm bar in bytes on stderr, off with ``--quiet`` or when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(
        total=total, desc=what, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
        disable=args.quiet or not sys.stderr.isatty(),
    )


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text)


def _input_bytes(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, n)) for n in checkpoint.listing(path))
    return os.path.getsize(path)


def _decoded_bytes(path: str) -> int:
    """Bytes a decompression of ``path`` produces: tensor bytes of rans files (headers only), other files' sizes."""
    if not os.path.isdir(path):
        with safe_open(path) as f:
            return sum(f.entry(name).nbytes for name in f.keys())
    names = [n for n in checkpoint.listing(path) if not n.endswith(RANS + checkpoint.INDEX_SUFFIX)]
    return sum(_decoded_bytes(os.path.join(path, n)) if n.endswith(RANS) else os.path.getsize(os.path.join(path, n)) for n in names)


def _output(args: argparse.Namespace, default: Callable[[str], str | None]) -> str:
    out = args.output or default(args.input.rstrip(os.sep))
    if out is None:
        raise RansError(f"give the output with -o: no default name for {args.input}")
    if os.path.abspath(out) == os.path.abspath(args.input):
        raise RansError("the output would replace the input")
    if os.path.lexists(out) and not args.force:
        raise OutputExists(f"{out} exists; give --force to replace it")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise FileNotFoundError(errno.ENOENT, "no such directory", parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), parent)
    args.output = out
    return out


def _default_compressed(path: str) -> str:
    return (path[: -len(SAFETENSORS)] if path.endswith(SAFETENSORS) else path) + RANS


def _default_decompressed(path: str) -> str | None:
    if not path.endswith(RANS):
        return None
    stem = path[: -len(RANS)]
    return stem if os.path.isdir(path) else stem + SAFETENSORS


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
"""glibc's ``mallopt`` parameters."""


def _reuse_freed_memory() -> None:
    """Keep large freed blocks in the process for the next tensor's planes instead of unmapping them.

    glibc maps large blocks afresh and unmaps them when freed, so
    every tensor's planes were new pages to fault in and zero: 107,000
    page faults and 0.2 s of system time in compressing a 1 GiB checkpoint
    (``bench/NOTES.md``, entry C1). What was freed stays with the process
    until it exits (``python -m rans`` exits with the command), and blocks
    of other sizes than the next tensor's raise the peak a little: 553 ->
    658 MiB compressing that checkpoint (largest tensor 131 MB), 590 -> 631
    MiB decompressing it. Nothing is done where the C library is not glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return
    if mallopt(_M_MMAP_THRESHOLD, 1 << 30) or mallopt(_M_MMAP_THRESHOLD, 32 << 20):
        mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)


def compress(args: argparse.Namespace) -> int:
    """``compress MODEL [-o OUT]``."""
    _reuse_freed_memory()
    out = _output(args, _default_compressed)
    options = dict(chunk_size=args.chunk_size, workers=args.workers, backend=args.backend, prefer=args.prefer)
    with _progress(args, _input_bytes(args.input), "compress") as bar:
        if os.path.isdir(args.input):
            checkpoint.compress_dir(args.input, out, force=args.force, progress=bar.update, **options)
        else:
            checkpoint.compress(args.input, out, progress=bar.update, **options)
    before, after = _input_bytes(args.input), _input_bytes(out)
    _say(args, f"{args.input} -> {out}: {before:,} -> {after:,} bytes, ratio {before / max(after, 1):.4f}")
    return Exit.OK


def decompress(args: argparse.Namespace) -> int:
    """``decompress IN [-o OUT]``."""
    _reuse_freed_memory()
    out = _output(args, _default_decompressed)
    with _progress(args, _decoded_bytes(args.input), "decompress") as bar:
        if os.path.isdir(args.input):
            checkpoint.decompress_dir(args.input, out, force=args.force, progress=bar.update)
        else:
            checkpoint.decompress(args.input, out, progress=bar.update)
    _say(args, f"{args.input} -> {out}: {_input_bytes(out):,} bytes, checked against the original's size and checksum")
    return Exit.OK


def _rans_files(path: str) -> list[str]:
    if not os.path.isdir(path):
        return [path]
    found = [os.path.join(path, n) for n in checkpoint.listing(path) if n.endswith(RANS)]
    if not found:
        raise NotRansDataError(f"{path} holds no .rans file")
    return found


def verify(args: argparse.Namespace) -> int:
    """``verify IN``: every tensor decoded and checked; exit status 0 only if all is well."""
    paths = _rans_files(args.input)
    with _progress(args, sum(map(_decoded_bytes, paths)), "verify") as bar:
        for path in paths:
            with safe_open(path) as f:
                record = RESERVED_KEY in f.metadata()
                n = len(f.keys())
                digest = checkpoint.decompress_to(f, None, bar.update)
            what = f"the original's {digest} matches" if record else "no original recorded"
            _say(args, f"OK {path}: {n} tensors decode and match their checksums; {what}")
    return Exit.OK


def info(args: argparse.Namespace) -> int:
    """``info IN``: per tensor dtype, shape, ratio, bits per weight and order-0 bound, then totals."""
    paths = _rans_files(args.input)
    rows, tensor_bytes, stored_bytes, bound_bytes, file_bytes, elements = [], 0, 0, 0.0, 0, 0
    with _progress(args, sum(map(_decoded_bytes, paths)), "info") as bar:
        for path in paths:
            file_bytes += os.path.getsize(path)
            with safe_open(path) as f:
                for name in f.keys():
                    e = f.entry(name)
                    stored = sum(p.length for p in e.sections)
                    bound = None
                    if not args.no_bound:
                        bound = entropy.bound_bytes(f.get_tensor(name), e.split)
                        bound_bytes += bound
                    tensor_bytes, stored_bytes, elements = tensor_bytes + e.nbytes, stored_bytes + stored, elements + e.size
                    rows.append((name, e.dtype, "x".join(map(str, e.shape)) or "scalar", e.nbytes, stored, e.size, bound))
                    bar.update(e.nbytes)
    header = ["tensor", "dtype", "shape", "bytes", "stored", "ratio", "bits/weight"] + ([] if args.no_bound else ["bound"])
    table = [header]
    for name, dtype, shape, nbytes, stored, size, bound in rows:
        cells = [name, dtype, shape, f"{nbytes:,}", f"{stored:,}", _ratio(nbytes, stored), f"{8 * stored / size:.3f}" if size else "-"]
        table.append(cells + ([] if bound is None else [_ratio(nbytes, bound)]))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    total = f"total: {len(rows)} tensors, {tensor_bytes:,} bytes in {file_bytes:,} ({len(paths)} file{'s' * (len(paths) > 1)}), " \
            f"ratio {_ratio(tensor_bytes, file_bytes)}, {8 * file_bytes / max(elements, 1):.3f} bits/weight"
    if not args.no_bound:
        total += f"; order-0 bound {_ratio(tensor_bytes, bound_bytes)} ({100 * bound_bytes / max(file_bytes, 1):.1f}% of it reached)"
    print(total)
    return Exit.OK


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.4f}" if b else "inf"


def bench(args: argparse.Namespace) -> int:
    """``bench MODEL``: compress, decompress and load times of your file, against loading it with safetensors."""
    paths = [args.input] if not os.path.isdir(args.input) else [
        os.path.join(args.input, n) for n in checkpoint.listing(args.input) if n.endswith(SAFETENSORS)
    ]
    load_plain, plain_name = _plain_loader(args.device)
    results = []
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp:
        for path in paths:
            packed, back = os.path.join(tmp, "b.rans"), os.path.join(tmp, "b.safetensors")
            size = os.path.getsize(path)
            compress_s = _timed(lambda: checkpoint.compress(path, packed, workers=args.workers), 1)
            decompress_s = _timed(lambda: checkpoint.decompress(packed, back), 1)
            framework = "torch" if args.device == "cuda" else "numpy"
            load_s = _timed(lambda: _sync(api.load_file(packed, device=args.device, framework=framework)), args.repeats)
            plain_s = _timed(lambda: _sync(load_plain(path)), args.repeats)
            results.append(dict(
                file=path, bytes=size, rans_bytes=os.path.getsize(packed), ratio=size / os.path.getsize(packed),
                compress_s=compress_s, decompress_s=decompress_s, load_rans_s=load_s, load_safetensors_s=plain_s,
                device=args.device, safetensors_loader=plain_name, workers=args.workers, repeats=args.repeats,
            ))
            for p in (packed, back):
                os.unlink(p)
    print(f"{'file':<40} {'MB':>9} {'ratio':>7} {'compress MB/s':>14} {'decompress MB/s':>16} "
          f"{'load rans s':>12} {'load st s':>10} {'rans/st':>8}")
    for r in results:
        mb = r["bytes"] / 1e6
        print(f"{os.path.basename(r['file'])[:40]:<40} {mb:>9.1f} {r['ratio']:>7.4f} {mb / r['compress_s']:>14.1f} "
              f"{mb / r['decompress_s']:>16.1f} {r['load_rans_s']:>12.4f} {r['load_safetensors_s']:>10.4f} "
              f"{r['load_rans_s'] / r['load_safetensors_s']:>8.2f}")
    print(f"loads on {args.device}, median of {args.repeats} after a warm-up; safetensors side: {plain_name}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return Exit.OK


def _plain_loader(device: str) -> tuple[Callable[[str], Any], str]:
    """The safetensors loader to time against: torch's when there is torch, else NumPy's."""
    try:
        import safetensors.torch as st

        return (lambda p: st.load_file(p, device=device)), "safetensors.torch.load_file"
    except ImportError:
        if device == "cuda":
            raise RansError("bench --device cuda needs torch and safetensors") from None
    try:
        import safetensors.numpy as stn
    except ImportError:
        raise RansError("bench needs the safetensors package (pip install safetensors)") from None
    return stn.load_file, "safetensors.numpy.load_file"


def _sync(result: Any) -> Any:
    """Wait for the GPU when ``result`` holds CUDA tensors."""
    if any(getattr(getattr(v, "device", None), "type", None) == "cuda" for v in result.values()):
        import torch

        torch.cuda.synchronize()
    return result


def _timed(call: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one untimed call (warm caches), or of one call when ``repeats`` is 1."""
    if repeats > 1:
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_demo(args: argparse.Namespace) -> int:
    """``demo``."""
    return demo.run(args.weights, args.seed)


EPILOG = "exit status: " + ", ".join(f"{int(e)} {e.name.lower()}" for e in Exit)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command line."""
    parser = argparse.ArgumentParser(prog="rans", description="Lossless compression of tensors with rANS.", epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary line")

    p = commands.add_parser("compress", parents=[common], help="a .safetensors file or checkpoint directory to rans",
                            epilog="X.safetensors -> X.rans; a directory D -> D.rans, each shard X.safetensors -> X.rans, "
                                   "other files copied, an X.rans.index.json beside each index. " + EPILOG)
    p.add_argument("input", metavar="MODEL")
    p.add_argument("-o", "--output", metavar="OUT")
    p.add_argument("-f", "--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("-j", "--workers", type=int, default=1,
                   help="processes that share the encoding with --backend reference (default 1; unused by the others)")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, help=f"symbols per chunk (default {DEFAULT_CHUNK})")
    p.add_argument("--backend", choices=("auto", *backends.NAMES), default="auto",
                   help="the codec: auto (default: the CPU; where a GPU is found, it joins for tensors of 16 MiB or more "
                        "once 64 GiB of them have passed, which repays starting it), cpu, reference or gpu; all write the same bytes")
    p.add_argument("--prefer", choices=dtypes.PREFERENCES, default="ratio",
                   help="ratio (default): the smallest file; speed: the fastest GPU decode, a ratio 1-2%% lower on "
                        "int8, uint8 and fp8 tensors (split into nibble planes, docs/FORMAT.md section 5)")
    p.set_defaults(run=compress)

    p = commands.add_parser("decompress", parents=[common], help="back to the original safetensors, byte for byte",
                            epilog="X.rans -> X.safetensors; a directory D.rans -> D. " + EPILOG)
    p.add_argument("input", metavar="IN")
    p.add_argument("-o", "--output", metavar="OUT")
    p.add_argument("-f", "--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(run=decompress)

    p = commands.add_parser("info", parents=[common], help="per tensor dtype, shape, ratio, bits/weight, order-0 bound",
                            epilog=EPILOG)
    p.add_argument("input", metavar="IN", help="a .rans file or a directory of them")
    p.add_argument("--no-bound", action="store_true", help="read the header only; skip decoding for the bound")
    p.set_defaults(run=info)

    p = commands.add_parser("verify", parents=[common], help="decode and check every tensor; non-zero exit on any fault",
                            epilog=EPILOG)
    p.add_argument("input", metavar="IN", help="a .rans file or a directory of them")
    p.set_defaults(run=verify)

    p = commands.add_parser("bench", parents=[common], help="time compress, decompress and loading against safetensors",
                            epilog=EPILOG)
    p.add_argument("input", metavar="MODEL", help="a .safetensors file or a directory of them")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to load (default cpu)")
    p.add_argument("--repeats", type=int, default=3, help="timed loads, after one warm-up (default 3)")
    p.add_argument("-j", "--workers", type=int, default=1,
                   help="processes that share the encoding on the reference backend (default 1; unused by the others)")
    p.add_argument("--tmpdir", help="where to write the compressed copy (default: the system's temporary directory)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.set_defaults(run=bench)

    p = commands.add_parser("demo", help="round-trip synthetic bf16 weights; print ratio and bound")
    p.add_argument("--weights", type=int, default=1 << 24, help="number of weights (default 16 Mi)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run_demo)
    return parser


def _status(error: BaseException) -> Exit:
    if isinstance(error, UnsupportedVersionError):
        return Exit.VERSION
    if isinstance(error, (NotRansDataError, NotSafetensorsError)):
        return Exit.FOREIGN
    if isinstance(error, CorruptDataError):
        return Exit.CORRUPT
    if isinstance(error, OSError) and not isinstance(error, FileExistsError):
        return Exit.IO
    return Exit.FAILED


def _message(error: BaseException, args: argparse.Namespace) -> str:
    """One line: the file (an output when an unnamed write failed) and what is wrong with it."""
    if isinstance(error, OSError) and error.strerror:
        where = error.filename or getattr(args, "output", None) or args.input
        return f"{where}: {error.strerror}"
    if isinstance(error, RansError):
        return f"{args.input}: {error}"
    return str(error)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (RansError, OSError, OutputExists) as e:
        print(f"rans {args.command}: error: {_message(e, args)}", file=sys.stderr)
        return int(_status(e))
    except KeyboardInterrupt:
        print(f"rans {args.command}: interrupted", file=sys.stderr)
        return int(Exit.INTERRUPTED)
