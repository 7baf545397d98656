"""The GPU decoder's Batch as rans.torch uses it: deferred integrity checks and caller-allocated buffers.

Runs on the CUDA simulator where there is no GPU (``conftest.py``), and on
a real GPU as it is.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import rans
from rans import container

cuda = pytest.importorskip("numba.cuda")
from rans.gpu import decoder  # noqa: E402

SIMULATED = bool(__import__("numba").config.ENABLE_CUDASIM)
N = 300 if SIMULATED else 200_000
CHUNK = 128 if SIMULATED else 4096


def file_of(seed: int) -> tuple[memoryview, list[container.Entry], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    tensors = {
        "w": rng.normal(0, 0.02, N).astype(np.float32).astype(ml_dtypes.bfloat16),
        "f": rng.normal(0, 0.02, N // 3).astype(np.float16),
        "b": np.zeros(7, np.float32),
    }
    entries, sections, _ = rans.api.encode_tensors(tensors, chunk_size=CHUNK)
    import io

    out = io.BytesIO()
    container.write(out, entries, sections, None)
    buf = memoryview(out.getvalue())
    return buf, container.read_header(buf).entries, tensors


def decoded(out8, batch: decoder.Batch, tensors: dict[str, np.ndarray]) -> None:
    host = out8.copy_to_host()
    for entry, at, (name, array) in zip(batch.entries, batch.offsets, tensors.items()):
        assert entry.name == name
        assert host[at : at + entry.nbytes].tobytes() == array.tobytes(), name


def corrupt(batch: decoder.Batch, entry: container.Entry) -> None:
    """Swap the last two words of the entry's coded section on the GPU (the CRC is not checked there)."""
    coded = next(p for p in entry.planes if p.mode == "coded")
    end = coded.offset + coded.length
    words = batch.buffer[end - 4 : end].copy_to_host()
    batch.buffer[end - 4 : end].copy_to_device(np.concatenate([words[2:], words[:2]]) ^ np.uint8(0x21))


def test_unchecked_decodes_give_the_same_bytes() -> None:
    buf, entries, tensors = file_of(0)
    batch = decoder.Batch(buf, entries)
    out8 = cuda.device_array(batch.nbytes, dtype=np.uint8)
    for _ in range(2):
        batch.decode_into(out8, check=False)
    assert batch.unchecked
    batch.check()
    assert not batch.unchecked
    decoded(out8, batch, tensors)
    batch.check()


def test_failures_wait_for_the_check() -> None:
    buf, entries, _ = file_of(1)
    batch = decoder.Batch(buf, entries)
    out8 = cuda.device_array(batch.nbytes, dtype=np.uint8)
    corrupt(batch, entries[0])
    batch.decode_into(out8, check=False)
    with pytest.raises(rans.CorruptDataError) as caught:
        batch.check()
    assert caught.value.tensor == "w" and caught.value.field == "planes[0]"
    batch.check()
    with pytest.raises(rans.CorruptDataError):
        batch.decode_into(out8)


def test_a_failure_is_kept_across_later_unchecked_decodes() -> None:
    """Status is cleared only by a check: a failure followed by clean-looking decodes is still reported."""
    buf, entries, _ = file_of(2)
    batch = decoder.Batch(buf, entries)
    out8 = cuda.device_array(batch.nbytes, dtype=np.uint8)
    good = batch.buffer.copy_to_host()
    corrupt(batch, entries[0])
    batch.decode_into(out8, check=False)
    batch.buffer.copy_to_device(good)
    batch.decode_into(out8, check=False)
    with pytest.raises(rans.CorruptDataError) as caught:
        batch.check()
    assert caught.value.tensor == "w"
    batch.decode_into(out8)


def test_caller_allocated_buffers_and_their_size() -> None:
    buf, entries, tensors = file_of(3)
    made = []

    def allocate(nbytes: int):
        made.append(cuda.device_array(nbytes, dtype=np.uint8))
        return made[-1]

    batch = decoder.Batch(buf, entries, allocate=allocate)
    assert batch.buffer is made[0] and batch.scratch is made[1]
    assert made[0].nbytes >= len(buf)
    tables = sum(1 for e in entries for p in e.planes if p.mode == "coded") * 4096 * 4
    assert batch.device_nbytes >= len(buf) + tables
    assert batch.device_nbytes < len(buf) + tables + 64 * 1024
    out8 = cuda.device_array(batch.nbytes, dtype=np.uint8)
    batch.decode_into(out8)
    decoded(out8, batch, tensors)
