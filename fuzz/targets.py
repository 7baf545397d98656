"""The fuzz targets: bytes in, nothing out, only :class:`rans.RansError` may escape."""

from __future__ import annotations

import io
from typing import Callable

import numpy as np

import rans
from rans import api, codec, container
from rans.reference import coder


def _seed_file() -> bytes:
    """A small valid file with a coded, a raw, a constant and an empty plane, several chunks and lanes."""
    rng = np.random.default_rng(0)
    tensors = {
        "w": rng.normal(0, 0.02, 3000).astype(np.float32).astype(np.float16),
        "e": rng.geometric(0.3, 5000).clip(0, 255).astype(np.uint8),
        "c": np.zeros(10, np.int32),
        "z": np.zeros((0, 3), np.float32),
    }
    out = io.BytesIO()
    container.write(out, *api.encode_tensors(tensors, {"seed": "fuzz"}, chunk_size=1024))
    return out.getvalue()


SEED = _seed_file()


def decompress(data: bytes) -> None:
    """Arbitrary bytes as a whole file."""
    try:
        rans.decompress(data)
    except rans.InvalidArgumentError:
        pass


def mutate(data: bytes) -> None:
    """The seed file with edits drawn from ``data``: each 5 bytes are an offset (4) and an XOR mask (1)."""
    mutated = bytearray(SEED)
    for i in range(0, len(data) - 4, 5):
        offset = int.from_bytes(data[i : i + 4], "little") % len(mutated)
        mutated[offset] ^= data[i + 4] or 1
    buf = memoryview(bytes(mutated))
    header = container.read_header(buf)
    for entry in header.entries:
        codec.decode_tensor(entry, buf, verify=bool(data[:1]) and data[0] % 2 == 0)


def section(data: bytes) -> None:
    """Arbitrary bytes as a coded section of 1 to 4096 symbols (the first two bytes pick the count)."""
    n = 1 + int.from_bytes(data[:2].ljust(2, b"\0"), "little") % 4096
    coder.decode(data[2:], n)


TARGETS: dict[str, Callable[[bytes], None]] = {"decompress": decompress, "mutate": mutate, "section": section}
