"""The decoded-size limit (``max_bytes``): a small file cannot make rans allocate a huge tensor
unless the caller allows it."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest

import rans
from fuzz.files import assemble, take_apart
from rans import codec
from rans.constants import MAX_CHUNK, STATE_LOW
from rans.reference import coder, tables


def _bomb(shape: list[int], dtype: str = "F32", planes: list[Any] | None = None) -> bytes:
    """A valid file of one constant tensor whose header claims ``shape``."""
    parts = take_apart(rans.compress(np.zeros(4, np.float32)))
    parts.document["tensors"][0].update(shape=shape, dtype=dtype, planes=planes or [0, 0, 0, 0])
    return assemble(json.dumps(parts.document).encode(), b"")


def test_const_bomb_is_rejected_before_allocating() -> None:
    data = _bomb([1 << 20, 1 << 20])  # 4 TiB of zeros from a file of about 100 bytes
    start = time.perf_counter()
    with pytest.raises(rans.SizeLimitError) as e:
        rans.decompress(data)
    assert time.perf_counter() - start < 1
    assert e.value.tensor == "" and e.value.field == "shape" and "max_bytes" in str(e.value)


def test_bomb_through_load_file_names_the_tensor(tmp_path: Any) -> None:
    path = tmp_path / "bomb.rans"
    rans.save_file({"small": np.arange(3, dtype=np.int8), "big": np.zeros(8, np.float32)}, path)
    parts = take_apart(path.read_bytes())
    parts.document["tensors"][1]["shape"] = [1 << 40]
    path.write_bytes(assemble(json.dumps(parts.document).encode(), parts.body))
    with pytest.raises(rans.SizeLimitError) as e:
        rans.load_file(path)
    assert e.value.tensor == "big"
    with pytest.raises(rans.SizeLimitError):
        rans.load_file(path, device="cuda")


def test_default_limit_scales_with_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the floor everything loads; above it, up to MAX_RATIO bytes per byte of file."""
    monkeypatch.setattr(codec, "MIN_LIMIT", 1 << 16)
    data = _bomb([1 << 15])  # 128 KiB of zeros
    assert codec.default_max_bytes(len(data)) == max(1 << 16, codec.MAX_RATIO * len(data))
    with pytest.raises(rans.SizeLimitError):
        rans.decompress(data)
    assert rans.decompress(data, max_bytes=1 << 17).nbytes == 1 << 17
    with pytest.raises(rans.SizeLimitError):
        rans.decompress(data, max_bytes=(1 << 17) - 1)
    incompressible = np.random.default_rng(0).integers(0, 256, 1 << 17, dtype=np.uint8)
    assert rans.decompress(rans.compress(incompressible)).nbytes == 1 << 17


def test_legit_large_const_tensor_loads_when_allowed(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A zeros tensor above the floor (lowered to 1 MiB to keep the test small): refused by default
    (its file is tiny), loaded with max_bytes."""
    monkeypatch.setattr(codec, "MIN_LIMIT", 1 << 20)
    path = tmp_path / "zeros.rans"
    rans.save_file({"z": np.zeros(64 << 20, np.uint8)}, path)
    assert path.stat().st_size < 200
    with pytest.raises(rans.SizeLimitError):
        rans.load_file(path)
    z = rans.load_file(path, max_bytes=1 << 30)["z"]
    assert z.nbytes == 64 << 20 and not z.any()


@pytest.mark.parametrize("value", [-1, 1.5, "1", True])
def test_max_bytes_must_be_a_non_negative_integer(value: Any) -> None:
    with pytest.raises(rans.InvalidArgumentError):
        rans.decompress(rans.compress(np.zeros(2, np.int8)), max_bytes=value)


def test_zero_limit_allows_only_empty_tensors() -> None:
    assert rans.decompress(rans.compress(np.zeros((0, 3), np.int8)), max_bytes=0).shape == (0, 3)
    with pytest.raises(rans.SizeLimitError):
        rans.decompress(rans.compress(np.zeros(1, np.int8)), max_bytes=0)


def test_damaged_long_chunk_fails_early() -> None:
    """A one-lane chunk of 4 Mi symbols without words fails within a few hundred steps, not after
    a million (the reference sets aside chunks that read past their words as it goes), with the
    error every decoder gives."""
    freq = np.zeros(256, np.int64)
    freq[:2] = 2048
    head = coder.HEADER.pack(1, 0, MAX_CHUNK // 128) + tables.serialize(freq)
    head += bytes(-len(head) % 4)
    section = head + np.array([STATE_LOW, 0], "<u4").tobytes()
    with pytest.raises(rans.CorruptDataError, match="did not read exactly its words") as e:
        coder.decode(section, MAX_CHUNK)
    assert e.value.chunk == 0
