"""Shared helpers for the benchmarks: machine info, entropy bounds, peers, anatomy of a rans file.

Nothing here changes rans; it only reads what rans writes.

Definitions used throughout
---------------------------
MB/s
    10**6 bytes of *uncompressed* data per second.
ratio
    uncompressed bytes / compressed bytes.
order-0 bound of a tensor
    total bytes / sum over the planes of the split rans chose of
    ``n_symbols * min(8, H0(plane)) / 8`` (a constant plane has H0 = 0).
    It ignores every cost but the payload: no table, no header, no names.
overhead (bits/weight)
    ``8 * (file bytes - sum of coded words bytes - sum of raw plane bytes) / n``:
    everything that is not payload (preamble, JSON, tables, states, word
    counts, padding).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.script, pulled in by zipnn

import rans  # noqa: E402
from rans import container, dtypes  # noqa: E402
from rans.constants import LANES, M  # noqa: E402
from rans.reference import coder, tables  # noqa: E402

MB = 1e6
MI = 1 << 20


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001
        return None


def machine_info() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "memory_bytes": mem,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "numba": _version("numba"),
        "zipnn": _version("zipnn"),
        "zstandard": _version("zstandard"),
        "safetensors": _version("safetensors"),
        "ml_dtypes": _version("ml_dtypes"),
        "rans": getattr(rans, "__version__", None),
    }


# --------------------------------------------------------------------------- entropy


def h0(plane: np.ndarray) -> float:
    """Empirical order-0 entropy of a uint8 plane, bits per symbol."""
    if plane.size == 0:
        return 0.0
    counts = np.bincount(plane.reshape(-1), minlength=256)
    p = counts[counts > 0] / plane.size
    return float(-(p * np.log2(p)).sum())


def bound_bytes(array: np.ndarray, split: str) -> float:
    """Order-0 payload bytes of ``array`` under ``split``: sum of n * min(8, H0) / 8 over its planes."""
    array = np.ascontiguousarray(array)
    return float(sum(p.size * min(8.0, h0(p)) / 8 for p in dtypes.split(array, split)))


# --------------------------------------------------------------------------- anatomy of a rans file


@dataclass
class PlaneAnatomy:
    mode: str
    symbols: int
    section: int = 0  # bytes of the section (0 for const)
    pad_before: int = 0  # zero bytes before the section
    table: int = 0  # frequency table bytes, with its padding to 4
    states: int = 0
    counts: int = 0
    words: int = 0  # bytes of coded words (payload of a coded plane)
    raw: int = 0  # bytes of a raw plane (payload of a raw plane)
    n_chunks: int = 0
    freq: np.ndarray | None = None


@dataclass
class EntryAnatomy:
    name: str
    dtype: str
    shape: tuple
    split: str
    json_bytes: int  # this tensor's object in the header JSON, plus its separating comma
    name_json_bytes: int  # of which the "name":"..." member
    planes: list[PlaneAnatomy] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * dtypes.DTYPES[self.dtype].itemsize

    @property
    def stored(self) -> int:
        """Bytes this tensor occupies in the file (JSON + its sections + padding before them)."""
        return self.json_bytes + sum(p.section + p.pad_before for p in self.planes)


@dataclass
class FileAnatomy:
    total: int
    preamble: int
    json_total: int
    header_pad: int
    trailing_pad: int
    entries: list[EntryAnatomy]

    @property
    def payload(self) -> int:
        return sum(p.words + p.raw for e in self.entries for p in e.planes)

    @property
    def overhead(self) -> int:
        return self.total - self.payload

    @property
    def n_elements(self) -> int:
        return sum(e.size for e in self.entries)

    def parts(self) -> dict[str, int]:
        planes = [p for e in self.entries for p in e.planes]
        return {
            "preamble": self.preamble,
            "json": self.json_total,
            "json_names": sum(e.name_json_bytes for e in self.entries),
            "tables": sum(p.table for p in planes),
            "states": sum(p.states for p in planes),
            "word_counts": sum(p.counts for p in planes),
            "padding": self.header_pad + self.trailing_pad + sum(p.pad_before for p in planes),
            "coded_words": sum(p.words for p in planes),
            "raw_planes": sum(p.raw for p in planes),
        }


def anatomy(data: bytes | memoryview) -> FileAnatomy:
    """Take a rans file apart: where every byte goes."""
    buf = memoryview(data)
    header = container.read_header(buf)
    header_length = container.PREAMBLE.unpack_from(buf)[3]
    header_end = container.PREAMBLE.size + header_length
    data_start = container.align(header_end)
    entries = []
    position = data_start
    for e in header.entries:
        text = json.dumps(e.to_json(), separators=(",", ":"), ensure_ascii=False).encode()
        name_text = json.dumps({"name": e.name}, separators=(",", ":"), ensure_ascii=False).encode()
        ea = EntryAnatomy(e.name, e.dtype, e.shape, e.split, len(text) + 1, len(name_text) - 2)
        symbols = dtypes.plane_length(e.dtype, e.split, e.size)
        for p in e.planes:
            pa = PlaneAnatomy(p.mode, symbols)
            if p.mode != "const":
                pa.pad_before = p.offset - position
                pa.section = p.length
                position = p.offset + p.length
                section = buf[p.offset : p.offset + p.length]
                if p.mode == "raw":
                    pa.raw = p.length
                else:
                    freq, table_bytes = tables.parse(section)
                    layout = coder.Layout.of(symbols, p.chunk, table_bytes)
                    words_per_chunk = np.frombuffer(section[layout.counts_at : layout.words_at], dtype="<u4")
                    pa.table = layout.states_at
                    pa.states = layout.counts_at - layout.states_at
                    pa.counts = layout.words_at - layout.counts_at
                    pa.words = p.length - layout.words_at
                    pa.n_chunks = layout.n_chunks
                    pa.freq = freq
                    assert pa.words == 2 * int(words_per_chunk.astype(np.int64).sum())
                    assert pa.states == 4 * LANES * layout.n_chunks
            ea.planes.append(pa)
        entries.append(ea)
    json_total = header_length  # the whole JSON text: entries, wrapper and metadata
    return FileAnatomy(
        total=len(buf),
        preamble=container.PREAMBLE.size,
        json_total=json_total,
        header_pad=data_start - header_end,
        trailing_pad=len(buf) - position,
        entries=entries,
    )


def cross_entropy_bits(plane: np.ndarray, freq: np.ndarray) -> float:
    """Bits to code ``plane`` with table ``freq`` (sum M), ignoring the coder's own slack."""
    counts = np.bincount(plane.reshape(-1), minlength=256)
    present = counts > 0
    return float((counts[present] * np.log2(M / freq[present])).sum())


def loss_breakdown(ea: EntryAnatomy, array: np.ndarray) -> dict[str, float]:
    """Bytes by which one tensor's storage exceeds its order-0 bound, by cause.

    ``raw_plane``: planes stored raw although H0 < 8 (n - n*H0/8);
    ``table``, ``states_counts``: the coded planes' side data;
    ``quantization``: cross-entropy under the 12-bit table minus n*H0;
    ``coder``: words bytes minus that cross-entropy (the rANS coder's slack;
    often negative, since the final states carry up to ~16 bits per lane);
    ``json``, ``padding``: the header entry and the alignment bytes.
    """
    out = dict(json=float(ea.json_bytes), padding=0.0, raw_plane=0.0, table=0.0, states_counts=0.0, quantization=0.0, coder=0.0)
    bound = 0.0
    planes = dtypes.split(np.ascontiguousarray(array), ea.split)
    for pa, plane in zip(ea.planes, planes):
        b = plane.size * min(8.0, h0(plane)) / 8
        bound += b
        out["padding"] += pa.pad_before
        if pa.mode == "raw":
            out["raw_plane"] += pa.raw - b
        elif pa.mode == "coded":
            xent = cross_entropy_bits(plane, pa.freq) / 8
            out["table"] += pa.table
            out["states_counts"] += pa.states + pa.counts
            out["quantization"] += xent - b
            out["coder"] += pa.words - xent
    out["bound"] = bound
    out["stored"] = float(ea.stored)
    out["excess"] = ea.stored - bound
    return out


# --------------------------------------------------------------------------- peers

ZIPNN_DTYPES = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}
"""rans dtype name -> ZipNN 0.5.4 ``bytearray_dtype``. Other dtypes: ZipNN 0.5.4's byte mode
raises ("Support only uint32 with NumPy format"), so they are reported as n/a."""


def zipnn_dtype(array: np.ndarray) -> str | None:
    return ZIPNN_DTYPES.get(dtypes.name_of(array.dtype))


def _zipnn(dt: str):
    import zipnn

    return zipnn.ZipNN(bytearray_dtype=dt, threads=2)


def zipnn_compress_owned(buf: bytearray, dt: str):
    """ZipNN 0.5.4 byte mode on a buffer the caller gives up: ZipNN 0.5.4 modifies its
    input in place (seen for bfloat16 and float32), so never pass it data you still need."""
    return _zipnn(dt).compress(buf)


def zipnn_compress(raw: bytes, dt: str) -> bytes:
    """ZipNN 0.5.4 byte mode on a private copy of ``raw``."""
    return bytes(zipnn_compress_owned(bytearray(raw), dt))


def zipnn_decompress(blob, dt: str):
    return _zipnn(dt).decompress(blob)


def zstd_compress(raw: bytes, level: int = 3) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level, threads=2).compress(raw)


def zstd_decompress(blob: bytes, size: int) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(blob, max_output_size=size)


# --------------------------------------------------------------------------- timing and printing


def median_time(fn: Callable[[], Any], reps: int = 3, prepare: Callable[[], Any] | None = None) -> tuple[float, Any]:
    """Median wall time of ``reps`` calls of ``fn(prepared)`` (or ``fn()``); returns (seconds, last result)."""
    times, result = [], None
    for _ in range(reps):
        arg = prepare() if prepare else None
        t = time.perf_counter()
        result = fn(arg) if prepare else fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "PASS" if v else "FAIL"
    if isinstance(v, float):
        if v != v:
            return "nan"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(title: str, headers: list[str], rows: list[list[Any]], digits: int = 4) -> str:
    cells = [[fmt(c, digits) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = [f"\n== {title}", "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths))), line]
    for r in cells:
        out.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    text = "\n".join(out)
    print(text, flush=True)
    return text


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj
