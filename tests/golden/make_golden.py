"""Make the golden files in this directory and their manifest.json.

Usage, from the repository root::

    PYTHONPATH=. python tests/golden/make_golden.py

The golden files pin the bytes rans writes (format version 1). Headers stored
with zlib depend on the zlib library (FORMAT.md, section 7); the test allows
another zlib's stream as long as the JSON and every section are identical.
``tests/test_golden.py`` checks that decoding each one gives the tensors
recorded in ``manifest.json`` (dtype, shape, SHA-256 of the decoded bytes)
and that encoding those tensors again with the same options gives the same
file, byte for byte. A failure there means the format or the writer's
choices changed. Rerun this script only for a deliberate change, and say so
in the commit message; the tensors are made from fixed seeds, so rerunning
it without a format change reproduces the same files.

Each entry of ``manifest.json`` records how the file was written: ``api``
(``"compress"`` for one unnamed tensor, ``"save_file"`` otherwise),
``chunk_size``, ``metadata``, the file's SHA-256 and its tensors in order.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

import rans
from rans.dtypes import name_of

HERE = Path(__file__).resolve().parent


def golden_files() -> dict[str, dict[str, Any]]:
    """What each golden file holds and how it is written."""
    rng = np.random.default_rng(20240601)
    bf16 = ml_dtypes.bfloat16
    return {
        "bf16_gaussian.rans": {
            "api": "compress",
            "chunk_size": 32768,
            "tensors": {"": rng.normal(0, 0.02, (64, 128)).astype(bf16)},
        },
        "f32_const_planes.rans": {
            "api": "compress",
            "chunk_size": 32768,
            "tensors": {"": rng.normal(0, 0.05, 2048).astype(bf16).astype(np.float32)},
        },
        "f16.rans": {"api": "compress", "chunk_size": 32768, "tensors": {"": rng.normal(0, 1, 4096).astype(np.float16)}},
        "f8_e4m3.rans": {
            "api": "compress",
            "chunk_size": 32768,
            "tensors": {"": (rng.normal(0, 1, 4096) * 8).astype(ml_dtypes.float8_e4m3fn)},
        },
        "f8_e5m2.rans": {
            "api": "compress",
            "chunk_size": 32768,
            "tensors": {"": rng.normal(0, 0.1, 4096).astype(ml_dtypes.float8_e5m2)},
        },
        "int8.rans": {
            "api": "compress",
            "chunk_size": 32768,
            "tensors": {"": np.clip(np.round(rng.normal(0, 20, (32, 128))), -127, 127).astype(np.int8)},
        },
        "bias.rans": {
            "api": "compress",
            "chunk_size": 32768,
            "tensors": {"": rng.normal(0, 0.1, 16).astype(np.float32)},
        },
        "multi.rans": {
            "api": "save_file",
            "chunk_size": 32768,
            "metadata": {"format": "golden", "note": "ünïcode ✓", "empty": ""},
            "tensors": {
                "model.embed.weight": rng.normal(0, 0.02, (40, 64)).astype(bf16),
                "model.norm.weight": np.ones(64, dtype=np.float32),
                "model.norm.bias": rng.normal(0, 0.01, 64).astype(np.float32),
                "attention_mask": rng.random((8, 16)) < 0.8,
                "position_ids": np.arange(256, dtype=np.int64),
                "rotary": np.exp(1j * np.linspace(0, np.pi, 32)).astype(np.complex64),
                "counts": rng.poisson(3, 500).astype(np.uint16),
                "nothing": np.zeros((0, 3), dtype=np.uint8),
            },
        },
        "chunk256_multichunk.rans": {
            "api": "compress",
            "chunk_size": 256,
            "tensors": {"": rng.normal(0, 0.02, 4000).astype(bf16)},
        },
        "chunk128_multichunk.rans": {
            "api": "compress",
            "chunk_size": 128,
            "tensors": {"": np.clip(np.round(rng.normal(0, 2, 1000)), -127, 127).astype(np.int8)},
        },
        # One coded plane of 140,000 symbols in chunks of 4096: 32 lanes, 35 chunks, the last one short
        # (760 symbols, so lanes sit out its last step).
        "u8_140000_chunk4096.rans": {
            "api": "compress",
            "chunk_size": 4096,
            "tensors": {"": np.minimum(rng.geometric(0.9, 140_000) - 1, 255).astype(np.uint8)},
        },
        # Headers small enough that the writer stores them as plain JSON (and a 0-d tensor).
        "scalar_u8.rans": {"api": "compress", "chunk_size": 32768, "tensors": {"": np.array(7, dtype=np.uint8)}},
        "no_tensors.rans": {"api": "save_file", "chunk_size": 32768, "metadata": None, "tensors": {}},
        # Coded planes of 16, 8, 4, 2 and 1 lanes in one file, each in several chunks of 4096 (but the last).
        "lanes_chunk4096.rans": {
            "api": "save_file",
            "chunk_size": 4096,
            "metadata": {"lanes": "16, 8, 4, 2, 1"},
            "tensors": {
                "w16": np.minimum(rng.geometric(0.95, 80_000) - 1, 255).astype(np.uint8),
                "w8": np.minimum(rng.geometric(0.9, 40_000) - 1, 255).astype(np.uint8),
                "w4": np.clip(np.round(rng.normal(0, 0.4, 18_000)), -127, 127).astype(np.int8),
                "w2": np.minimum(rng.geometric(0.7, 10_000) - 1, 255).astype(np.uint8),
                "w1": rng.normal(0, 0.02, 1500).astype(bf16),
            },
        },
        "nibbles_speed.rans": {
            "api": "save_file",
            "chunk_size": 1024,
            "prefer": "speed",
            "tensors": {
                "e4m3_odd": rng.normal(0, 1, 2049).astype(ml_dtypes.float8_e4m3fn),
                "e5m2": rng.normal(0, 0.1, (16, 64)).astype(ml_dtypes.float8_e5m2),
                "i8": np.clip(np.round(rng.normal(0, 12, 3000)), -127, 127).astype(np.int8),
                "u8_low_coded": (rng.integers(0, 16, 1500) << 4 | rng.integers(0, 3, 1500)).astype(np.uint8),
                "f16_one_coded": np.round(rng.normal(0, 40, 1000)).astype(np.float16),
            },
        },
    }


def encode(spec: dict[str, Any]) -> bytes:
    """The bytes of one golden file, written as ``spec`` says."""
    prefer = spec.get("prefer", "ratio")
    if spec["api"] == "compress":
        (array,) = spec["tensors"].values()
        return rans.compress(array, chunk_size=spec["chunk_size"], prefer=prefer)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "file.rans")
        rans.save_file(spec["tensors"], path, spec.get("metadata"), chunk_size=spec["chunk_size"], prefer=prefer)
        return Path(path).read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describe(name: str, array: np.ndarray) -> dict[str, Any]:
    """A tensor's manifest entry: its name, format dtype, shape and SHA-256 of its C-order bytes."""
    return {"name": name, "dtype": name_of(array.dtype), "shape": list(array.shape), "sha256": sha256(array.tobytes())}


def main() -> None:
    manifest = {}
    for filename, spec in golden_files().items():
        data = encode(spec)
        (HERE / filename).write_bytes(data)
        manifest[filename] = {
            "api": spec["api"],
            "chunk_size": spec["chunk_size"],
            "prefer": spec.get("prefer", "ratio"),
            "metadata": spec.get("metadata"),
            "sha256": sha256(data),
            "tensors": [describe(name, array) for name, array in spec["tensors"].items()],
        }
        print(f"{filename}: {len(data)} bytes")
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
