"""Decode a corpus of corrupted files on the GPU and compare with the reference.

``python -m fuzz.gpu_corpus DIR [--make N] [--seed S] [--shard K/N] [--json PATH]``;
meant to run under ``compute-sanitizer --tool memcheck`` (``--shard`` splits
a long run over several calls). With ``--make N`` it
first writes ``N`` files to ``DIR`` with :mod:`fuzz.corpus`. Each file is
loaded with ``rans.load_file(path, device="cuda", framework="numba")``,
once with ``verify=True`` and once with ``verify=False`` (so that corrupt
coded data reaches the kernel), and the outcome is compared with the CPU
reference's on the same file and setting:

``rejected``
    the GPU raised a :class:`rans.RansError` and so did the reference;
``equal``
    both decoded, to the same bytes;
``differs``
    the GPU decoded and the reference raised, or the bytes differ (a failure);
``rejected_gpu_only``
    the GPU raised a RansError where the reference decoded (a failure);
``other_exception``
    any other exception (a failure).

Exit status 1 if any failure. Prints a summary and writes JSON.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
import traceback
from typing import Any

import numpy as np

import rans

OUTCOMES = ("rejected", "equal", "differs", "rejected_gpu_only", "other_exception")
FAILURES = ("differs", "rejected_gpu_only", "other_exception")


def _reference(path: str, verify: bool) -> dict[str, np.ndarray] | None:
    try:
        return rans.load_file(path, verify=verify, max_bytes=1 << 34)
    except rans.RansError:
        return None


def _host_bytes(array: Any) -> bytes:
    return array.copy_to_host().tobytes()


def check(path: str, verify: bool) -> tuple[str, str]:
    """The outcome of one file with one setting, and a note for failures."""
    expected = _reference(path, verify)
    try:
        decoded = rans.load_file(path, device="cuda", framework="numba", verify=verify, max_bytes=1 << 34)
    except rans.RansError as e:
        return ("rejected", "") if expected is None else ("rejected_gpu_only", f"{type(e).__name__}: {e}")
    except Exception:  # noqa: BLE001 - every other exception is what this run looks for
        return "other_exception", traceback.format_exc(limit=3)
    if expected is None:
        return "differs", "the GPU decoded a file the reference rejects"
    if list(decoded) != list(expected):
        return "differs", "tensor names differ"
    for name, array in expected.items():
        if _host_bytes(decoded[name]) != array.tobytes():
            return "differs", f"tensor {name!r}: bytes differ"
    return "equal", ""


def run(paths: list[str]) -> dict[str, Any]:
    counts = {verify: dict.fromkeys(OUTCOMES, 0) for verify in (True, False)}
    failures = []
    start = time.monotonic()
    for path in paths:
        for verify in (True, False):
            outcome, note = check(path, verify)
            counts[verify][outcome] += 1
            if outcome in FAILURES:
                failures.append({"file": os.path.basename(path), "verify": verify, "outcome": outcome, "note": note})
    return {
        "files": len(paths),
        "seconds": round(time.monotonic() - start, 1),
        "verify_true": counts[True],
        "verify_false": counts[False],
        "failures": failures,
    }


def summary(result: dict[str, Any]) -> str:
    lines = [f"{'verify':8} " + " ".join(f"{o:>17}" for o in OUTCOMES)]
    for key, label in (("verify_true", "True"), ("verify_false", "False")):
        lines.append(f"{label:8} " + " ".join(f"{result[key][o]:>17}" for o in OUTCOMES))
    lines.append(f"{result['files']} files in {result['seconds']} s, {len(result['failures'])} failures")
    lines += [f"  {f['file']} verify={f['verify']}: {f['outcome']}: {f['note'].strip()[:300]}" for f in result["failures"][:20]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.gpu_corpus", description=__doc__.split("\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--make", type=int, metavar="N", help="first write N corrupted files to the directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=8, help="base file size for --make (see fuzz.corpus)")
    parser.add_argument("--limit", type=int, help="decode only the first files")
    parser.add_argument("--shard", default="0/1", metavar="K/N", help="decode only files K, K + N, K + 2N, ... (0-based)")
    parser.add_argument("--json", metavar="PATH", default="gpu_corpus.json")
    args = parser.parse_args(argv)
    if args.make:
        from . import corpus

        corpus.write(args.directory, args.make, args.seed, args.scale)
    k, n = (int(v) for v in args.shard.split("/"))
    paths = sorted(glob.glob(os.path.join(args.directory, "*.rans")))[: args.limit][k::n]
    if not paths:
        raise SystemExit(f"no .rans files in {args.directory}")
    result = run(paths)
    result["command"] = "python -m fuzz.gpu_corpus " + " ".join(sys.argv[1:] if argv is None else argv)
    print(summary(result))
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
