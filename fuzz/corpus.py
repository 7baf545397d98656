"""A corpus of corrupted rans files for the GPU decoder: ``python -m fuzz.corpus DIR [--count 2000] [--seed 0]``.

The valid files it starts from have coded planes of every kind the GPU
decodes fused (BF16 and F32 exponents, F16 and 4-byte ``bytes`` splits,
F8, U8 and I8 single planes) and through scratch (several coded planes,
8-byte elements), alone and several to a file, with up to 32 lanes. Each
corrupted file is one of them with mutations drawn from a seeded
generator, so a seed always gives the same files:

* bit flips and byte edits anywhere (the CRC-32 then catches them unless
  ``verify=False``);
* edits inside coded sections with the tensor CRC-32 recomputed, so that
  they pass verification and reach the GPU: states, word counts (moved
  between chunks, so the total still fits), words, table bytes, the lane
  count and chunk size;
* header edits with every CRC-32 recomputed: coded lengths, shapes, plane
  modes;
* truncation, appended bytes, splices of two files.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import struct
import ml_dtypes
import numpy as np

from rans import api, container, dtypes
from rans.reference import coder

from .files import Parts, assemble, fix_tensor_crcs, header_text, take_apart


def _file(tensors: dict[str, np.ndarray], chunk: int, prefer: str = "ratio") -> bytes:
    out = io.BytesIO()
    container.write(out, *api.encode_tensors(tensors, None, chunk_size=chunk, prefer=prefer))
    return out.getvalue()


def base_files(scale: int = 8) -> list[bytes]:
    """Valid files with coded planes of every GPU kind; ``scale`` multiplies the element counts
    (8: up to 32 lanes; 1: small enough for the CUDA simulator)."""
    rng = np.random.default_rng(2024)
    n = 1024 * scale

    def normal(dtype: object, count: int = n, sigma: float = 0.02) -> np.ndarray:
        return rng.normal(0, sigma, count).astype(np.float32).astype(dtype)

    singles = {
        "bf16": normal(ml_dtypes.bfloat16, 4 * n),
        "f16": normal(np.float16, 2 * n),
        "f32": normal(np.float32),
        "f32_pow2": (2.0 ** rng.integers(-8, 8, n)).astype(np.float32),
        "f8": normal(ml_dtypes.float8_e4m3fn, 2 * n, 1.0),
        "u8": rng.geometric(0.2, 2 * n).clip(0, 255).astype(np.uint8),
        "i8": np.clip(np.round(rng.normal(0, 3, 2 * n)), -127, 127).astype(np.int8),
        "i32": rng.geometric(0.05, n).astype(np.int32),
        "i16_small": rng.integers(-3, 4, n).astype(np.int16) * 257,
        "i64": rng.geometric(0.1, n).astype(np.int64),
        "bool": rng.random(n) < 0.1,
    }
    files = [_file({name: array}, 256 if i % 2 else 1024) for i, (name, array) in enumerate(singles.items())]
    several = {name: array[: n // 2] for name, array in singles.items()}
    several["const"] = np.zeros(100, np.float32)
    several["empty"] = np.zeros((0, 2), ml_dtypes.bfloat16)
    files.append(_file(several, 256))
    files.append(_file({f"layer{i}.{name}": singles[name][: 256 * (i + 1)] for i in range(4) for name in ("bf16", "f16", "u8")}, 128))
    files.append(_file({"f8": singles["f8"], "i8_odd": singles["i8"][:-1], "u8": singles["u8"]}, 256, "speed"))
    return files


def _coded_sections(parts: Parts, data: bytes) -> list[tuple[int, int, int, coder.Section]]:
    """(tensor index, section start in body, symbols, parsed section) of every coded plane."""
    header = container.read_header(memoryview(data))
    start = len(data) - len(parts.body)
    out = []
    for i, entry in enumerate(header.entries):
        symbols = dtypes.plane_length(entry.dtype, entry.split, entry.size)
        for plane in entry.planes:
            if plane.mode == "coded":
                section = coder.read_section(memoryview(data)[plane.offset : plane.offset + plane.length], symbols)
                out.append((i, plane.offset - start, symbols, section))
    return out


def _section_edit(rng: np.random.Generator, coded: list, body: bytearray) -> None:
    """One edit inside a coded section (the caller recomputes the tensor CRC-32s)."""
    _, at, _, section = coded[rng.integers(len(coded))]
    layout = section.layout
    kind = rng.integers(7)
    if kind == 0:  # a state
        i = at + layout.states_at + 4 * int(rng.integers(layout.counts_at - layout.states_at) // 4)
        value = int(rng.choice([0, 1, 0xFFFF, 0x10000, 0x10001, 0xFFFFFFFF, int(rng.integers(1 << 32))]))
        body[i : i + 4] = struct.pack("<I", value)
    elif kind == 1 and layout.n_chunks > 1:  # words moved from one chunk to another: the total still fits
        counts = section.counts.copy()
        a, b = rng.choice(layout.n_chunks, 2, replace=False)
        k = int(rng.integers(1, 1 + max(1, int(counts[a]))))
        counts[a] -= min(k, int(counts[a]))
        counts[b] += min(k, int(section.counts[a]))
        body[at + layout.counts_at : at + layout.words_at] = counts.astype("<u4").tobytes()
    elif kind == 2:  # a word count, any value
        i = at + layout.counts_at + 4 * int(rng.integers(layout.n_chunks))
        body[i : i + 4] = struct.pack("<I", int(rng.choice([0, 1, 1 << 31, 0xFFFFFFFF, int(rng.integers(1 << 16))])))
    elif kind == 3 and section.words.size:  # words
        for _ in range(int(rng.integers(1, 9))):
            i = at + layout.words_at + 2 * int(rng.integers(section.words.size))
            body[i] ^= int(rng.integers(1, 256))
    elif kind == 4:  # the table
        i = at + 4 + int(rng.integers(layout.table_bytes))
        body[i] ^= int(rng.integers(1, 256))
    elif kind == 5:  # lane count
        body[at] = int(rng.choice([0, 1, 2, 3, 4, 8, 16, 32, 33, 64, 255]))
    else:  # chunk size
        body[at + 2 : at + 4] = struct.pack("<H", int(rng.choice([0, 1, 2, 8, 255, 256, 0x7FFF, 0x8000, 0xFFFF])))


def _header_edit(rng: np.random.Generator, parts: Parts) -> None:
    tensors = parts.document["tensors"]
    tensor = tensors[rng.integers(len(tensors))]
    kind = rng.integers(4)
    if kind == 0 and "coded" in tensor:
        tensor["coded"][0] += int(rng.integers(-64, 65))
    elif kind == 1 and tensor["shape"]:
        j = int(rng.integers(len(tensor["shape"])))
        tensor["shape"][j] = int(rng.choice([0, 1, tensor["shape"][j] - 1, tensor["shape"][j] + 1, 2 * tensor["shape"][j]]))
    elif kind == 2:
        j = int(rng.integers(len(tensor["planes"])))
        tensor["planes"][j] = [0, 255, "r", "c"][int(rng.integers(4))]
    else:
        tensor["dtype"] = ["BF16", "F16", "F32", "U8", "I8", "F8_E4M3", "I32", "I64", "BOOL"][int(rng.integers(9))]


def corrupt(rng: np.random.Generator, files: list[bytes]) -> bytes:
    """One corrupted file: a base file with mutations drawn from ``rng``."""
    data = files[rng.integers(len(files))]
    kind = rng.integers(10)
    if kind == 0:  # bit flips anywhere
        out = bytearray(data)
        for _ in range(int(rng.integers(1, 9))):
            bit = int(rng.integers(8 * len(out)))
            out[bit >> 3] ^= 1 << (bit & 7)
        return bytes(out)
    if kind == 1:  # truncated, or bytes appended
        cut = int(rng.integers(len(data)))
        return data[:cut] if rng.integers(2) else data + rng.bytes(int(rng.integers(1, 64)))
    if kind == 2:  # splice
        other = files[rng.integers(len(files))]
        return data[: int(rng.integers(len(data) + 1))] + other[int(rng.integers(len(other) + 1)) :]
    parts = take_apart(data)
    coded = _coded_sections(parts, data)
    body = bytearray(parts.body)
    if kind <= 8 and coded:  # edits in coded sections, CRCs made right
        for _ in range(int(rng.integers(1, 4))):
            _section_edit(rng, coded, body)
    else:
        _header_edit(rng, parts)
    parts.body = bytes(body)
    fix_tensor_crcs(parts)
    return assemble(header_text(parts.document), parts.body, parts.encoding)


def write(directory: str, count: int = 2000, seed: int = 0, scale: int = 8) -> list[str]:
    """Write ``count`` corrupted files (``NNNNN.rans``) and ``manifest.json`` to ``directory``; return the paths."""
    os.makedirs(directory, exist_ok=True)
    files = base_files(scale)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = os.path.join(directory, f"{i:05d}.rans")
        with open(path, "wb") as f:
            f.write(corrupt(rng, files))
        paths.append(path)
    with open(os.path.join(directory, "manifest.json"), "w") as f:
        json.dump({"count": count, "seed": seed, "scale": scale, "base_files": len(files)}, f, indent=2)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fuzz.corpus", description=__doc__.split("\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=8, help="element counts of the base files, in units of 1024")
    args = parser.parse_args(argv)
    paths = write(args.directory, args.count, args.seed, args.scale)
    print(f"wrote {len(paths)} corrupted files to {args.directory}")


if __name__ == "__main__":
    main()
