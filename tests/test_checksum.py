"""The threaded CRC-32 against zlib's, on the pieces and joins it makes."""

from __future__ import annotations

import functools
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rans
from rans import checksum

crcs = st.integers(0, 2**32 - 1)


@given(st.binary(max_size=300), st.binary(max_size=300), crcs)
def test_combine_is_the_crc_of_the_concatenation(a, b, start):
    assert checksum.combine(zlib.crc32(a, start), zlib.crc32(b), len(b)) == zlib.crc32(a + b, start)


@pytest.mark.parametrize("length", [0, 1, 70000, 2**31 + 3, 2**40 + 12345])
def test_combine_over_lengths_past_any_buffer(length):
    """The CRC of ``length`` zero bytes, built from halves joined by ``combine``, equals the one
    built by continuing zlib's CRC from a start value."""

    @functools.lru_cache(maxsize=None)
    def zeros(n: int) -> int:
        if n <= 1 << 16:
            return zlib.crc32(bytes(n))
        return checksum.combine(zeros(n // 2), zeros(n - n // 2), n - n // 2)

    if length <= 1 << 20:
        assert checksum.combine(99, zeros(length), length) == zlib.crc32(bytes(length), 99)
    halves = checksum.combine(checksum.combine(99, zeros(length // 2), length // 2), zeros(length - length // 2), length - length // 2)
    assert halves == checksum.combine(99, zeros(length), length)


@given(st.binary(max_size=2000), crcs, st.integers(1, 5), st.integers(1, 64))
def test_threaded_crc_equals_zlib(data, start, threads, parallel_min):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checksum, "PARALLEL_MIN", parallel_min)
        mp.setattr(checksum, "_threads", lambda: threads)
        assert checksum.crc32(data, start) == zlib.crc32(data, start)
        assert checksum.crc32(memoryview(data)) == zlib.crc32(data)


def test_a_large_tensor_round_trips_through_the_threaded_crc():
    data = bytes(range(256)) * (checksum.PARALLEL_MIN // 256 + 1000)
    assert checksum.crc32(data) == zlib.crc32(data)
    w = np.frombuffer(data, dtype=np.uint8)
    blob = rans.compress(w)
    assert (rans.decompress(blob) == w).all()
    damaged = bytearray(blob)
    damaged[-5] ^= 1
    with pytest.raises(rans.ChecksumError):
        rans.decompress(bytes(damaged))
