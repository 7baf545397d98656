"""Shared helpers for the benchmarks: machine info, entropy bounds, peers, anatomy of a rans file.

Nothing here changes rans; it only reads what rans writes.

Definitions used throughout
---------------------------
MB/s
    10**6 bytes of *uncompressed* data per second.
ratio
    uncompressed bytes / compressed bytes.
order-0 bound of a tensor
    total bytes / the least, over the splits its dtype allows (section 5 of
    docs/FORMAT.md: the byte or float planes, and the whole tensor as one
    plane), of the sum over the split's planes of
    ``n_symbols * min(8, H0(plane)) / 8`` (a constant plane has H0 = 0).
    It does not depend on the split rans chose (a tensor rans stores whole,
    raw, is still measured against its planes), and it ignores every cost
    but the payload: no table, no header, no names. The bound of a file is
    the sum of its tensors' bounds.
overhead (bits/weight)
    ``8 * (file bytes - sum of coded words bytes - sum of raw plane bytes) / n``:
    everything that is not payload: preamble, JSON header, alignment padding
    and, per coded plane, its section's side data: the 4-byte section header
    (lanes W, 0, chunk/128), the table, zero padding to a multiple of 4, the
    states (4*W*K bytes for K chunks of W lanes) and the stored word counts (4*(K-1)).
file ratio
    total tensor bytes (sum of nbytes) / size of the file that holds them:
    the .rans file for rans; for ZipNN the .znn.safetensors file its
    recommended safetensors recipe writes (:func:`zipnn_safetensors_file`).
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
from rans.constants import M  # noqa: E402
from rans.reference import coder  # noqa: E402

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


def bound_bytes(array: np.ndarray, split: str | None = None) -> float:
    """Order-0 payload bytes of ``array`` under ``split``: sum of n * min(8, H0) / 8 over its planes.

    ``split`` None: the least over the splits the dtype allows (the bound the benchmarks report).
    """
    array = np.ascontiguousarray(array)
    if split is None:
        return min(bound_bytes(array, s) for s in dtypes.splits_of(dtypes.name_of(array.dtype)))
    return float(sum(p.size * min(8.0, h0(p)) / 8 for p in dtypes.split(array, split)))


# --------------------------------------------------------------------------- anatomy of a rans file


@dataclass
class PlaneAnatomy:
    mode: str
    symbols: int
    section: int = 0  # bytes of the section (0 for const)
    pad_before: int = 0  # zero bytes before the section (4-byte alignment in the file)
    header: int = 0  # coded: the 4-byte section header (lanes W, 0, chunk/128)
    table: int = 0  # coded: serialized frequency table bytes
    table_pad: int = 0  # coded: zero bytes after the table, up to a multiple of 4
    states: int = 0  # coded: 4 * W * K
    counts: int = 0  # coded: 4 * (K - 1)
    words: int = 0  # bytes of coded words (payload of a coded plane)
    raw: int = 0  # bytes of a raw plane (payload of a raw plane)
    n_chunks: int = 0
    lanes: int = 0
    chunk: int = 0
    freq: np.ndarray | None = None

    @property
    def side(self) -> int:
        """Bytes of a coded section that are not words: header + table + pad + states + counts."""
        return self.header + self.table + self.table_pad + self.states + self.counts


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
        """Where the bytes go. Every byte of the file is in exactly one of these, but for
        ``json_names``, which is part of ``json``."""
        planes = [p for e in self.entries for p in e.planes]
        return {
            "preamble": self.preamble,
            "json": self.json_total,
            "json_names": sum(e.name_json_bytes for e in self.entries),
            "section_headers": sum(p.header for p in planes),
            "tables": sum(p.table for p in planes),
            "table_padding": sum(p.table_pad for p in planes),
            "states": sum(p.states for p in planes),
            "word_counts": sum(p.counts for p in planes),
            "padding": self.header_pad + self.trailing_pad + sum(p.pad_before for p in planes),
            "coded_words": sum(p.words for p in planes),
            "raw_planes": sum(p.raw for p in planes),
        }


def _entry_json_bytes(e: container.Entry) -> tuple[int, int]:
    text = json.dumps(e.to_json(), separators=(",", ":"), ensure_ascii=False).encode()
    name_text = json.dumps({"name": e.name}, separators=(",", ":"), ensure_ascii=False).encode()
    return len(text) + 1, len(name_text) - 2


def anatomy(data: bytes | memoryview) -> FileAnatomy:
    """Take a rans file (format v1 as of commit 6d820a4) apart: where every byte goes.

    A coded section is ``u8 W, u8 0, u16 C/128`` (4 B), the table, zero padding
    to a multiple of 4, ``u32 states[K][W]``, ``u32 counts[K]``, then the words;
    :func:`rans.reference.coder.read_section` parses and validates it.
    """
    buf = memoryview(data)
    header = container.read_header(buf)
    header_length = container.PREAMBLE.unpack_from(buf)[3]
    header_end = container.PREAMBLE.size + header_length
    data_start = container.align(header_end)
    entries = []
    position = data_start
    for e in header.entries:
        json_bytes, name_bytes = _entry_json_bytes(e)
        ea = EntryAnatomy(e.name, e.dtype, e.shape, e.split, json_bytes, name_bytes)
        symbols = dtypes.plane_length(e.dtype, e.split, e.size)
        for j, p in enumerate(e.planes):
            pa = PlaneAnatomy(p.mode, symbols)
            if p.mode != "const":
                pa.pad_before = p.offset - position
                pa.section = p.length
                position = p.offset + p.length
                section = buf[p.offset : p.offset + p.length]
                if p.mode == "raw":
                    pa.raw = p.length
                else:
                    sec = coder.read_section(section, symbols, f"{e.name}.planes[{j}]")
                    lay = sec.layout
                    pa.header = coder.HEADER_BYTES
                    pa.table = lay.table_bytes
                    pa.table_pad = lay.states_at - coder.HEADER_BYTES - lay.table_bytes
                    pa.states = lay.counts_at - lay.states_at
                    pa.counts = lay.words_at - lay.counts_at
                    pa.words = p.length - lay.words_at
                    pa.n_chunks = lay.n_chunks
                    pa.lanes = lay.lanes
                    pa.chunk = sec.chunk
                    pa.freq = sec.freq
                    assert pa.words == 2 * int(sec.counts.sum())
                    assert pa.states == 4 * lay.lanes * lay.n_chunks and pa.counts == 4 * (lay.n_chunks - 1)
                    assert pa.side + pa.words == p.length
            ea.planes.append(pa)
        entries.append(ea)
    an = FileAnatomy(
        total=len(buf),
        preamble=container.PREAMBLE.size,
        json_total=header_length,  # the whole JSON text: entries, wrapper and metadata
        header_pad=data_start - header_end,
        trailing_pad=len(buf) - position,
        entries=entries,
    )
    parts = an.parts()
    assert sum(v for k, v in parts.items() if k != "json_names") == an.total, "anatomy does not account for every byte"
    return an


def cross_entropy_bits(plane: np.ndarray, freq: np.ndarray) -> float:
    """Bits to code ``plane`` with table ``freq`` (sum M), ignoring the coder's own slack."""
    counts = np.bincount(plane.reshape(-1), minlength=256)
    present = counts > 0
    return float((counts[present] * np.log2(M / freq[present])).sum())


LOSS_CAUSES = ("json", "padding", "split_choice", "raw_plane", "section_header", "table", "table_pad", "states", "word_counts", "quantization", "coder")
"""Per-tensor causes of bytes above the order-0 bound (see :func:`loss_breakdown`)."""


def loss_breakdown(ea: EntryAnatomy, array: np.ndarray) -> dict[str, float]:
    """Bytes by which one tensor's storage exceeds its order-0 bound, by cause.

    The bound is :func:`bound_bytes` with the least split. ``json``: the
    tensor's header entry (with its comma); ``padding``: zero bytes before its
    sections (4-byte alignment); ``split_choice``: how far the bound of the split
    rans chose is above the least one (tensors stored whole, as one raw plane,
    whose byte planes have less entropy); ``raw_plane``: planes stored raw
    although H0 < 8 (n - n*H0/8); per coded plane, the side data of its section:
    ``section_header`` (4 B: lanes, 0, chunk/128), ``table`` (serialized
    frequencies), ``table_pad`` (zeros after the table up to a multiple of 4),
    ``states`` (4*W*K) and ``word_counts`` (4*(K-1)); ``quantization``:
    cross-entropy under the stored table minus n*H0 (the 12-bit precision,
    and the coarser tables writers give small planes); ``coder``: words bytes
    minus that cross-entropy (the rANS coder's slack; often negative, since
    the final states carry up to ~16 bits per lane).
    """
    out = {k: 0.0 for k in LOSS_CAUSES}
    out["json"] = float(ea.json_bytes)
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
            out["section_header"] += pa.header
            out["table"] += pa.table
            out["table_pad"] += pa.table_pad
            out["states"] += pa.states
            out["word_counts"] += pa.counts
            out["quantization"] += xent - b
            out["coder"] += pa.words - xent
    least = bound_bytes(array)
    out["split_choice"] = bound - least
    out["bound"] = least
    out["stored"] = float(ea.stored)
    out["excess"] = ea.stored - least
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


def to_torch(d: dict[str, np.ndarray]) -> dict:
    """NumPy tensors (ml_dtypes bf16/fp8 included) as torch tensors with the same bytes."""
    import torch

    special = {"BF16": (np.int16, torch.bfloat16), "F8_E4M3": (np.uint8, torch.float8_e4m3fn), "F8_E5M2": (np.uint8, torch.float8_e5m2)}
    out = {}
    for k, t in d.items():
        t = np.ascontiguousarray(t)
        name = dtypes.name_of(t.dtype)
        if name in special:
            view, tdt = special[name]
            out[k] = torch.from_numpy(t.view(view).copy()).view(tdt)
        else:
            out[k] = torch.from_numpy(t.copy())
    return out


def _torch_bytes(t) -> bytes:
    import torch

    return t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


ZIPNN_ST_SEED_METADATA = {"format": "pt"}
"""Metadata given to the ZipNN safetensors recipe when the source file has none (see below)."""


def _zipnn_compress_torch(src: dict, threads: int | None) -> tuple[dict, dict, int, int, list[str]]:
    """The loop of ZipNN's ``zipnn_compress_safetensors.py`` (see :func:`zipnn_safetensors_file`): the tensors
    to store, the ``znn_compressed_vectors`` records, the float tensors, those stored verbatim, ZipNN's errors."""
    import torch
    from zipnn import ZipNN
    from zipnn.util_header import EnumFormat
    from zipnn.util_safetensors import COMPRESSED_DTYPE, COMPRESSION_METHOD, build_compressed_tensor_info
    from zipnn.util_torch import zipnn_is_floating_point

    out: dict = {}
    infos: dict = {}
    n_float = n_verbatim_float = 0
    errors: list[str] = []
    for name, t in src.items():
        if not zipnn_is_floating_point(EnumFormat.TORCH.value, t, t.dtype):
            out[name] = t
            continue
        n_float += 1
        info = build_compressed_tensor_info(t)
        try:
            znn = ZipNN(input_format="torch", bytearray_dtype=t.dtype, method=COMPRESSION_METHOD, threads=threads)
            buf = znn.compress(t.clone())
        except Exception as e:  # noqa: BLE001 - ZipNN raising on a tensor: store it verbatim, report it
            errors.append(f"{name}: {type(e).__name__}: {e}")
            out[name] = t
            n_verbatim_float += 1
            continue
        if len(buf) >= t.element_size() * t.nelement():
            out[name] = t
            n_verbatim_float += 1
            continue
        out[name] = torch.frombuffer(bytearray(buf), dtype=COMPRESSED_DTYPE)
        infos[name] = info
    return out, infos, n_float, n_verbatim_float, errors


def zipnn_safetensors_file(tensors: dict[str, np.ndarray], path: str, metadata: dict[str, str] | None = None,
                           threads: int | None = None) -> dict[str, Any]:
    """Compress ``tensors`` the way ZipNN 0.5.4's users compress a safetensors file, write ``path``.

    This is ZipNN's recommended safetensors path (README: "We recommend using
    safetensors compression when possible: python3 zipnn_compress_safetensors.py
    safetensors_path"), i.e. ``scripts/zipnn_compress_safetensors.py`` of the
    zipnn repository, which is not in the 0.5.4 wheel but only calls what is:
    for each tensor, floating ones (``zipnn.util_torch.zipnn_is_floating_point``)
    go through ``ZipNN(input_format="torch", bytearray_dtype=t.dtype,
    method=COMPRESSION_METHOD="HUFFMAN", threads)`` and are stored as a uint8
    vector, with ``{dtype, shape}`` recorded in the file metadata key
    ``znn_compressed_vectors`` (``build_compressed_tensor_info`` /
    ``set_compressed_tensors_metadata``); a float tensor whose blob is not
    smaller, and every non-float tensor, is stored verbatim;
    ``safetensors.torch.save_file(tensors, path, metadata)`` writes the
    ``.znn.safetensors`` file. Readers use ``zipnn.zipnn_safetensors()`` (a
    patched ``safe_open``, :class:`zipnn.zipnn.SafeOpen`).

    Two deviations, both for correctness, none in ZipNN's favour or against it:

    * ``set_compressed_tensors_metadata`` writes nothing when the file's metadata
      is empty (``if metadata:``), and safetensors files without metadata (all of
      ``shared/data/real``) would then lose the record of which tensors are
      compressed: the file is smaller but undecodable. So ``metadata`` None is
      seeded with :data:`ZIPNN_ST_SEED_METADATA` (``{"format": "pt"}``, what
      ``save_pretrained`` writes, i.e. what HF-saved files ZipNN targets carry).
      The as-is size is reported too (``asis_bytes``, ``asis_decodable``).
      Nothing is seeded when no tensor is compressed (the file is then readable as is).
    * ZipNN 0.5.4's torch mode modifies F32 and BF16 input tensors in place (seen
      here; F16 not), and the script stores that same tensor when the blob is not
      smaller, i.e. scrambled bytes; here ZipNN gets a clone and the verbatim
      case stores the original (same size either way).

    Returns sizes, counts and ``exact``: every tensor read back through
    ``zipnn.zipnn.SafeOpen`` equals the input, bytes, dtype and shape.
    """
    import safetensors.torch as stt
    from zipnn.util_safetensors import set_compressed_tensors_metadata
    from zipnn.zipnn import SafeOpen

    src = to_torch(tensors)
    t0 = time.perf_counter()
    out, infos, n_float, n_verbatim_float, errors = _zipnn_compress_torch(src, threads)
    compress_s = time.perf_counter() - t0
    asis_bytes = len(stt.save(out, metadata))  # the script verbatim: metadata as the source file has it
    seeded = dict(metadata) if metadata else (dict(ZIPNN_ST_SEED_METADATA) if infos else None)
    set_compressed_tensors_metadata(infos, seeded)
    stt.save_file(out, path, seeded)
    size = os.path.getsize(path)
    exact = True
    t0 = time.perf_counter()
    with SafeOpen(path, "pt") as f:
        for name, t in src.items():
            back = f.get_tensor(name)
            exact &= back.dtype == t.dtype and tuple(back.shape) == tuple(t.shape) and _torch_bytes(back) == _torch_bytes(t)
    decompress_s = time.perf_counter() - t0
    return dict(
        bytes=size, asis_bytes=asis_bytes, asis_decodable=not infos or bool(metadata), exact=bool(exact),
        n_tensors=len(src), n_float=n_float, n_compressed=len(infos), n_float_verbatim=n_verbatim_float,
        errors=errors, compress_s=compress_s, decompress_s=decompress_s,
        metadata_key_bytes=len(json.dumps(infos)),
    )


def zipnn_safetensors_files(src_path: str, znn_path: str, back_path: str, threads: int | None = None) -> dict[str, Any]:
    """ZipNN's safetensors recipe file to file, timed: compress reads ``src_path`` (``safetensors.torch``),
    compresses its float tensors (:func:`zipnn_safetensors_file`'s loop) and writes ``znn_path``; decompress
    reads every tensor through ``zipnn.zipnn.SafeOpen`` and writes them to ``back_path`` with
    ``safetensors.torch``. ``exact``: the tensors of ``back_path`` equal those of ``src_path``."""
    import safetensors.torch as stt
    import torch
    from zipnn.util_safetensors import set_compressed_tensors_metadata
    from zipnn.zipnn import SafeOpen

    t0 = time.perf_counter()
    out, infos, *_ = _zipnn_compress_torch(stt.load_file(src_path), threads)
    metadata = dict(ZIPNN_ST_SEED_METADATA)
    set_compressed_tensors_metadata(infos, metadata)
    stt.save_file(out, znn_path, metadata)
    compress_s = time.perf_counter() - t0
    del out
    t0 = time.perf_counter()
    with SafeOpen(znn_path, "pt") as f:
        back = {name: f.get_tensor(name) for name in f.keys()}
    stt.save_file(back, back_path, dict(ZIPNN_ST_SEED_METADATA))
    decompress_s = time.perf_counter() - t0
    del back
    original, restored = stt.load_file(src_path), stt.load_file(back_path)
    exact = original.keys() == restored.keys() and all(
        original[k].dtype == restored[k].dtype and torch.equal(original[k].view(torch.uint8), restored[k].view(torch.uint8)) for k in original
    )
    return dict(bytes=os.path.getsize(znn_path), compress_s=compress_s, decompress_s=decompress_s, exact=bool(exact))


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
