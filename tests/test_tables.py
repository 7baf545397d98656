"""Frequency tables: quantization to M = 4096, and the canonical serialized form."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rans
from rans.constants import M
from rans.reference import tables


def quantize_by_the_book(counts: list[int]) -> list[int]:
    """``tables.quantize`` written again, plainly, from its documented steps."""
    total = sum(counts)
    freq = [c * M // total for c in counts]
    raised = [c > 0 and f == 0 for c, f in zip(counts, freq)]
    freq = [1 if r else f for r, f in zip(raised, freq)]
    missing = M - sum(freq)
    if missing > 0:
        candidates = [s for s in range(256) if counts[s] > 0 and not raised[s]]
        candidates.sort(key=lambda s: (-(counts[s] * M % total), s))
        for s in candidates[:missing]:
            freq[s] += 1
    while sum(freq) > M:
        largest = max(freq)
        freq[freq.index(largest)] -= 1
    return freq


@st.composite
def symbol_counts(draw: st.DrawFn) -> np.ndarray:
    """256 counts, at least one non-zero: few or many symbols, small or huge counts, many ties."""
    present = draw(st.lists(st.integers(0, 255), min_size=1, max_size=256, unique=True))
    magnitude = draw(st.sampled_from([3, 100, 10**6, 2**40]))
    values = st.one_of(st.integers(1, magnitude), st.sampled_from([1, 2, magnitude]))
    counts = np.zeros(256, dtype=np.int64)
    for s in present:
        counts[s] = draw(values)
    return counts


@st.composite
def valid_tables(draw: st.DrawFn) -> np.ndarray:
    """An arbitrary valid table: any non-empty set of symbols, frequencies >= 1 summing to M."""
    present = sorted(draw(st.lists(st.integers(0, 255), min_size=1, max_size=256, unique=True)))
    cuts = sorted(draw(st.lists(st.integers(1, M - 1), min_size=len(present) - 1, max_size=len(present) - 1, unique=True)))
    freq = np.zeros(256, dtype=np.int64)
    freq[present] = np.diff([0, *cuts, M])
    return freq


@given(symbol_counts())
def test_quantize_properties(counts: np.ndarray) -> None:
    """Frequencies sum to M; present symbols get at least 1, absent ones 0."""
    freq = tables.quantize(counts)
    assert freq.shape == (256,)
    assert int(freq.sum()) == M
    assert (freq[counts > 0] >= 1).all()
    assert (freq[counts == 0] == 0).all()


@given(symbol_counts())
def test_quantize_matches_its_specification(counts: np.ndarray) -> None:
    """quantize equals a plain re-implementation of its documented steps, and is deterministic."""
    freq = tables.quantize(counts)
    assert freq.tolist() == quantize_by_the_book(counts.tolist())
    assert tables.quantize(counts.copy()).tolist() == freq.tolist()


def test_quantize_single_symbol() -> None:
    """A plane of one symbol gives it all of M."""
    counts = np.zeros(256, dtype=np.int64)
    counts[77] = 5
    freq = tables.quantize(counts)
    assert freq[77] == M
    assert np.count_nonzero(freq) == 1


def test_quantize_ties_go_to_the_smaller_symbol() -> None:
    """Three equal counts leave one unit over (3 * 1365 = 4095): the smallest symbol gets it."""
    counts = np.zeros(256, dtype=np.int64)
    counts[[200, 7, 50]] = 10
    freq = tables.quantize(counts)
    assert freq[7] == 1366
    assert freq[50] == freq[200] == 1365


def test_quantize_largest_remainder_first() -> None:
    """Missing units go to the largest remainders, whatever their symbol value."""
    counts = np.zeros(256, dtype=np.int64)
    counts[[1, 2, 3]] = [1, 1, 2]  # scaled: 1024, 1024, 2048 exactly, nothing missing
    assert tables.quantize(counts)[[1, 2, 3]].tolist() == [1024, 1024, 2048]
    counts[[1, 2, 3]] = [1, 3, 3]  # 4096 / 7 = 585.14, 4096 * 3 / 7 = 1755.43 (x2): one unit missing
    assert tables.quantize(counts)[[1, 2, 3]].tolist() == [585, 1756, 1755]


def test_quantize_sum_above_m() -> None:
    """One huge count and 255 rare ones: the rare ones are raised to 1, the excess is taken from the largest."""
    counts = np.ones(256, dtype=np.int64)
    counts[0] = 10**6
    freq = tables.quantize(counts)
    assert (freq[1:] == 1).all()
    assert freq[0] == M - 255


def test_quantize_sum_above_m_ties() -> None:
    """Excess taken from tied largest frequencies alternates, starting at the smaller symbol."""
    counts = np.ones(256, dtype=np.int64)
    counts[[3, 9]] = 10**6
    freq = tables.quantize(counts)
    assert int(freq.sum()) == M
    assert freq[3] + freq[9] == M - 254
    assert freq[3] == freq[9]
    counts[200] = 0  # one rare symbol fewer, an odd excess: symbol 3 gives one more than symbol 9
    freq = tables.quantize(counts)
    assert freq[3] == freq[9] - 1


@given(valid_tables())
def test_serialize_parse_round_trip(freq: np.ndarray) -> None:
    """parse(serialize(f)) gives f back and reads exactly the serialized bytes, ignoring what follows."""
    blob = tables.serialize(freq)
    parsed, used = tables.parse(blob + b"\xff\x00\x13")
    assert parsed.tolist() == freq.tolist()
    assert used == len(blob)


@given(valid_tables())
def test_serialized_size(freq: np.ndarray) -> None:
    """The serialized size is 1 + 2 per run + 1 or 2 per present symbol (2 when freq - 1 >= 128)."""
    present = np.flatnonzero(freq)
    runs = 1 + int(np.count_nonzero(np.diff(present) != 1))
    expected = 1 + 2 * runs + sum(1 if f - 1 < 128 else 2 for f in freq[present].tolist())
    assert len(tables.serialize(freq)) == expected


@given(st.binary(min_size=0, max_size=600))
def test_parse_accepts_only_canonical_tables(data: bytes) -> None:
    """Any bytes either parse to a valid table whose serialization is exactly what was read, or are corrupt."""
    try:
        freq, used = tables.parse(data)
    except rans.CorruptDataError:
        return
    assert int(freq.sum()) == M
    assert (freq >= 0).all()
    assert tables.serialize(freq) == data[:used]


def table_bytes(runs: list[tuple[int, int]], values: list[int]) -> bytes:
    """A table from (gap, length) runs and raw ``freq - 1`` values (one or two bytes each)."""
    out = bytearray([len(runs)])
    for gap, length in runs:
        out += bytes([gap, length - 1])
    for v in values:
        out += bytes([v]) if v < 0x80 else bytes([0x80 | (v & 0x7F), v >> 7])
    return bytes(out)


def test_table_bytes_helper_matches_serialize() -> None:
    """The hand-made tables below use the same encoding as serialize."""
    freq = np.zeros(256, dtype=np.int64)
    freq[[3, 4, 10]] = [4000, 90, 6]
    assert table_bytes([(3, 2), (5, 1)], [3999, 89, 5]) == tables.serialize(freq)


NON_CANONICAL = {
    "empty": b"",
    "zero-runs": b"\x00",
    "129-runs": bytes([129]) + b"\x01\x00" * 129 + b"\x1f" * 129,
    "255-runs": bytes([255]) + b"\x00" * 600,
    "runs-touch": table_bytes([(0, 1), (0, 1)], [2047, 2047]),
    "run-past-255": table_bytes([(255, 2)], [2047, 2047]),
    "second-run-past-255": table_bytes([(0, 1), (200, 100)], [0] * 101),
    "non-minimal-leb128": bytes([1, 0, 1, 0x80 | 5, 0x00, 0xF9, 0x1F]),
    "freq-4097": table_bytes([(0, 1)], [4096]),
    "freq-max-leb128": bytes([1, 0, 0, 0xFF, 0xFF]),
    "sum-4095": table_bytes([(0, 1)], [4094]),
    "sum-4097": table_bytes([(0, 2)], [2047, 2048]),
    "sum-256": table_bytes([(0, 256)], [0] * 256),
    "truncated-runs": bytes([2, 0, 0]),
    "truncated-values": table_bytes([(0, 2)], [2047, 2047])[:-1],
    "truncated-leb128": table_bytes([(0, 1)], [4095])[:-1],
}


@pytest.mark.parametrize("data", list(NON_CANONICAL.values()), ids=list(NON_CANONICAL))
def test_parse_rejects_non_canonical(data: bytes) -> None:
    """Each malformed or non-canonical table raises CorruptDataError naming the field."""
    with pytest.raises(rans.CorruptDataError) as info:
        tables.parse(data, field="my.table")
    assert info.value.field == "my.table"


@given(valid_tables(), st.data())
def test_parse_rejects_every_truncation(freq: np.ndarray, data: st.DataObject) -> None:
    """Every proper prefix of a valid table is corrupt."""
    blob = tables.serialize(freq)
    size = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(rans.CorruptDataError):
        tables.parse(blob[:size])


def test_full_alphabet_tables() -> None:
    """All 256 symbols form one run; a frequency above 128 takes two LEB128 bytes."""
    freq = np.full(256, 16, dtype=np.int64)
    assert tables.serialize(freq) == bytes([1, 0, 255]) + bytes([15] * 256)
    freq[:] = 1
    freq[255] = M - 255
    blob = tables.serialize(freq)
    assert blob == bytes([1, 0, 255]) + bytes(255) + bytes([0x80 | (3840 & 0x7F), 3840 >> 7])
    assert tables.parse(blob)[0].tolist() == freq.tolist()


def test_lookups() -> None:
    """cumulative and slot_symbols agree: slot c(s) .. c(s)+f(s)-1 belongs to s."""
    freq = np.zeros(256, dtype=np.int64)
    freq[[0, 5, 255]] = [1, 4000, 95]
    cum = tables.cumulative(freq)
    assert cum[[0, 5, 6, 255]].tolist() == [0, 1, 4001, 4001]
    slots = tables.slot_symbols(freq)
    assert slots.shape == (M,)
    assert slots[0] == 0 and (slots[1:4001] == 5).all() and (slots[4001:] == 255).all()
