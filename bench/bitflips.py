"""Single-bit flips: does loading a damaged file always raise a RansError?

For each file (the fuzz seed file, a file with constant, raw, coded and
empty planes, a one-tensor file with a plain JSON header, and real weights
from ``shared/data/real`` converted with ``rans.save_file``) this flips one
bit at a time and loads the result as :func:`rans.load_file` does
(``verify=True``, the default): *detected* means a :class:`rans.RansError`
was raised, *undetected* that the load returned. Every bit of files up to
``--exhaustive-kib`` KiB is flipped; beyond that, ``--samples`` bit
positions are drawn uniformly over all the bits of all the files.

Fast path, equivalent to a full load: a flip inside a tensor's section span
cannot change the header or the other tensors, so only that tensor is
decoded; if it does not raise, the whole file is loaded again to be sure.
For flips inside sections, a subsample is also decoded with
``verify=False`` (the CRC-32 skipped) to show what the coder's own checks
catch alone.

Prints a table and writes ``bench/results/bitflips.json``::

    python bench/bitflips.py [--samples 100000] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import machine_info, table, to_jsonable  # noqa: E402

import rans  # noqa: E402
from rans import api, codec, container  # noqa: E402

REAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "real")
REAL_FILES = ("trained_lstm_int8", "micro_speech_lstm", "face_landmark")
NO_LIMIT = 1 << 62


def planes_file() -> bytes:
    """Every plane mode and layout: coded, raw, constant, empty, all-constant, several chunks, padding."""
    rng = np.random.default_rng(7)
    tensors = {
        "bias": np.array([0.5, -1.25, 3.0], np.float32),
        "ones": np.ones((2, 4), np.float32),
        "empty": np.zeros((0, 4), ml_dtypes.bfloat16),
        "q": np.clip(np.round(rng.normal(0, 1.6, 2100)), -127, 127).astype(np.int8),
        "w": rng.normal(0, 0.02, 2100).astype(ml_dtypes.bfloat16),
        "scales": (2.0 ** rng.integers(-8, 8, 96)).astype(np.float32),
        "flags": rng.random(40) < 0.5,
    }
    out = io.BytesIO()
    container.write(out, *api.encode_tensors(tensors, {"origin": "bitflips"}, chunk_size=256))
    return out.getvalue()


def real_file(name: str, directory: str) -> bytes:
    from safetensors.numpy import load_file

    path = os.path.join(directory, f"{name}.rans")
    rans.save_file(load_file(os.path.join(REAL, f"{name}.safetensors")), path)
    with open(path, "rb") as f:
        return f.read()


@dataclass
class Tally:
    flips: int = 0
    detected: int = 0
    undetected: list[int] = field(default_factory=list)
    regions: dict[str, list[int]] = field(default_factory=dict)  # region -> [flips, detected]
    no_verify: list[int] = field(default_factory=lambda: [0, 0])  # section flips loaded with verify=False: [flips, detected]


class Target:
    """A file held once, flipped in place, with its header parsed once for the fast path."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.buf = bytearray(data)
        header = container.read_header(memoryview(data))
        self.entries = header.entries
        _, _, _, length, _, _ = container.PREAMBLE.unpack_from(data)
        self.header_end = container.PREAMBLE.size + length
        self.data_start = container.align(self.header_end)
        spans = [(e.span(), e) for e in self.entries if e.sections]
        self.starts = np.array([s for (s, _), _ in spans], dtype=np.int64)
        self.ends = np.array([t for (_, t), _ in spans], dtype=np.int64)
        self.owners = [e for _, e in spans]
        self.tally = Tally()

    def region(self, byte: int) -> tuple[str, container.Entry | None]:
        if byte < container.PREAMBLE.size:
            return "preamble", None
        if byte < self.header_end:
            return "header", None
        if byte < self.data_start:
            return "padding", None
        i = int(np.searchsorted(self.starts, byte, side="right")) - 1
        if i >= 0 and byte < self.ends[i]:
            return "sections", self.owners[i]
        return "padding", None

    def load(self, verify: bool = True) -> bool:
        """True if loading the current bytes raises a RansError."""
        try:
            api.load_buffer(memoryview(self.buf), verify=verify, max_bytes=NO_LIMIT)
        except rans.RansError:
            return True
        return False

    def detected(self, entry: container.Entry | None, verify: bool = True) -> bool:
        """True if loading raises: for a flip in ``entry``'s span, decoding that tensor alone
        raising is enough (the header and the other tensors are unchanged); else a full load.
        With ``verify=False`` a tensor that decodes is followed by the header checks alone
        (the padding rule), which is what a full load adds for such a flip."""
        if entry is not None:
            try:
                codec.decode_tensor(entry, memoryview(self.buf), verify)
            except rans.RansError:
                return True
            if not verify:
                try:
                    container.read_header(memoryview(self.buf))
                except rans.RansError:
                    return True
                return False
        return self.load(verify)

    def flip(self, bit: int, no_verify: bool) -> None:
        byte = bit >> 3
        region, entry = self.region(byte)
        self.buf[byte] ^= 1 << (bit & 7)
        try:
            caught = self.detected(entry)
            if no_verify and entry is not None:
                self.tally.no_verify[0] += 1
                self.tally.no_verify[1] += self.detected(entry, verify=False)
        finally:
            self.buf[byte] ^= 1 << (bit & 7)
        t = self.tally
        t.flips += 1
        t.detected += caught
        counts = t.regions.setdefault(region, [0, 0])
        counts[0] += 1
        counts[1] += caught
        if not caught:
            t.undetected.append(bit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=100_000, help="uniformly drawn flips over all files")
    parser.add_argument("--exhaustive-kib", type=float, default=64, help="flip every bit of files up to this size")
    parser.add_argument("--no-verify-every", type=int, default=50, help="also load every k-th section flip with verify=False")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bitflips.json"))
    args = parser.parse_args(argv)

    from fuzz.targets import SEED

    with tempfile.TemporaryDirectory() as directory:
        files = [("fuzz seed", SEED), ("planes", planes_file()), ("plain header", rans.compress(np.arange(5, dtype=np.int16)))]
        files += [(name, real_file(name, directory)) for name in REAL_FILES if os.path.exists(os.path.join(REAL, f"{name}.safetensors"))]
    targets = [Target(name, data) for name, data in files]
    start = time.perf_counter()
    exhaustive = 0
    for t in targets:
        if len(t.buf) <= args.exhaustive_kib * 1024:
            for bit in range(8 * len(t.buf)):
                t.flip(bit, bit % args.no_verify_every == 0)
            exhaustive += 8 * len(t.buf)
    bits = np.array([8 * len(t.buf) for t in targets], dtype=np.int64)
    rng = np.random.default_rng(args.seed)
    draws = rng.integers(0, int(bits.sum()), args.samples)
    which = np.searchsorted(np.cumsum(bits), draws, side="right")
    offsets = draws - (np.cumsum(bits) - bits)[which]
    for i, (w, bit) in enumerate(zip(which.tolist(), offsets.tolist())):
        targets[w].flip(bit, i % args.no_verify_every == 0)
    seconds = time.perf_counter() - start

    rows, per_file = [], {}
    for t in targets:
        s = t.tally
        sections = s.regions.get("sections", [0, 0])
        rows.append([t.name, len(t.buf), len(t.entries), s.flips, s.detected, len(s.undetected),
                     100.0 * s.detected / max(1, s.flips),
                     f"{s.no_verify[1]}/{s.no_verify[0]}" if s.no_verify[0] else "-"])
        per_file[t.name] = {"bytes": len(t.buf), "tensors": len(t.entries), "flips": s.flips, "detected": s.detected,
                            "undetected_bits": s.undetected[:100], "by_region": s.regions,
                            "section_flips_verify_false": {"flips": s.no_verify[0], "detected": s.no_verify[1]},
                            "exhaustive": len(t.buf) <= args.exhaustive_kib * 1024, "section_flips": sections[0]}
    total = sum(t.tally.flips for t in targets)
    detected = sum(t.tally.detected for t in targets)
    nv = [sum(t.tally.no_verify[i] for t in targets) for i in (0, 1)]
    rows.append(["total", int(sum(len(t.buf) for t in targets)), "", total, detected, total - detected,
                 100.0 * detected / total, f"{nv[1]}/{nv[0]}"])
    table(f"single-bit flips, load with verify=True ({exhaustive} exhaustive + {args.samples} uniform samples, "
          f"{seconds:.0f} s)",
          ["file", "bytes", "tensors", "flips", "detected", "undetected", "detected %", "verify=False: sections"],
          rows, digits=4)
    result = {
        "command": "python bench/bitflips.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_info(),
        "seconds": round(seconds, 1),
        "exhaustive_flips": exhaustive,
        "sampled_flips": args.samples,
        "flips": total,
        "detected": detected,
        "undetected": total - detected,
        "section_flips_verify_false": {"flips": nv[0], "detected": nv[1]},
        "files": per_file,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(to_jsonable(result), f, indent=2)
        f.write("\n")
    return 0 if total == detected else 1


if __name__ == "__main__":
    sys.exit(main())
