"""Frequency tables: quantization to M = 4096, and the canonical serialized form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rans
from rans.constants import M
from rans.cpu import tables as fast_tables
from rans.reference import tables


def scale_by_the_book(counts: list[int]) -> list[int]:
    """``tables.scale`` written again, plainly, from its documented steps (FORMAT.md 3.1, steps 1-3)."""
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


def quantize_by_the_book(counts: list[int]) -> list[int]:
    """``tables.quantize`` written again from FORMAT.md 3.1: the cheapest of the rounded candidates."""
    exact = scale_by_the_book(counts)
    top = exact.index(max(exact))
    cost = [0] + [round(math.log2(M / f) * 2**16) for f in range(1, M + 1)]
    best, best_cost = None, None
    for precision in range(12, 0, -1):
        g = list(exact)
        for s, f in enumerate(exact):
            e = f.bit_length()
            if s != top and f and e > precision:
                g[s] = ((f >> (e - precision - 1)) + 1) >> 1 << (e - precision)
        g[top] = M - (sum(g) - g[top])
        if g[top] <= max(g[:top], default=0) or g[top] < max(g[top + 1 :], default=0):
            continue
        total = 8 * len(tables.serialize(np.array(g))) * 2**16 + sum(c * cost[f] for c, f in zip(counts, g))
        if best_cost is None or total < best_cost:
            best, best_cost = g, total
    return best


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
def test_scale_matches_its_specification(counts: np.ndarray) -> None:
    """scale equals a plain re-implementation of its documented steps, and is deterministic."""
    freq = tables.scale(counts)
    assert freq.tolist() == scale_by_the_book(counts.tolist())
    assert tables.scale(counts.copy()).tolist() == freq.tolist()


@given(symbol_counts())
def test_quantize_matches_its_specification(counts: np.ndarray) -> None:
    """quantize equals a plain re-implementation of FORMAT.md 3.1, and is deterministic."""
    freq = tables.quantize(counts)
    assert freq.tolist() == quantize_by_the_book(counts.tolist())
    assert tables.quantize(counts.copy()).tolist() == freq.tolist()


@given(symbol_counts())
def test_quantize_costs_no_more_than_the_exact_table(counts: np.ndarray) -> None:
    """The chosen table's bytes plus its coded bits never exceed those of the exact table."""

    def bits(freq: np.ndarray) -> int:
        return (8 * len(tables.serialize(freq)) << 16) + int((counts * tables.COST[freq]).sum())

    assert bits(tables.quantize(counts)) <= bits(tables.scale(counts))


def test_small_planes_get_coarse_tables_large_ones_exact() -> None:
    """A 2,000-symbol plane of 60 symbols gets a shorter, coarser table; 10 million symbols keep the exact one."""
    rng = np.random.default_rng(0)
    p = np.exp(-np.linspace(-3, 3, 60) ** 2)
    small = np.zeros(256, dtype=np.int64)
    small[40:100] = np.bincount(rng.choice(60, 2000, p=p / p.sum()), minlength=60)
    coarse, exact = tables.quantize(small), tables.scale(small)
    assert len(tables.serialize(coarse)) < len(tables.serialize(exact)) - 10
    assert (coarse != exact).any()
    large = np.zeros(256, dtype=np.int64)
    large[40:100] = np.round(1e7 * p / p.sum()).astype(np.int64) + 1
    assert tables.quantize(large).tolist() == tables.scale(large).tolist()


def test_scale_single_symbol() -> None:
    """A plane of one symbol gives it all of M."""
    counts = np.zeros(256, dtype=np.int64)
    counts[77] = 5
    freq = tables.scale(counts)
    assert freq[77] == M
    assert np.count_nonzero(freq) == 1


def test_scale_ties_go_to_the_smaller_symbol() -> None:
    """Three equal counts leave one unit over (3 * 1365 = 4095): the smallest symbol gets it."""
    counts = np.zeros(256, dtype=np.int64)
    counts[[200, 7, 50]] = 10
    freq = tables.scale(counts)
    assert freq[7] == 1366
    assert freq[50] == freq[200] == 1365


def test_scale_largest_remainder_first() -> None:
    """Missing units go to the largest remainders, whatever their symbol value."""
    counts = np.zeros(256, dtype=np.int64)
    counts[[1, 2, 3]] = [1, 1, 2]  # scaled: 1024, 1024, 2048 exactly, nothing missing
    assert tables.scale(counts)[[1, 2, 3]].tolist() == [1024, 1024, 2048]
    counts[[1, 2, 3]] = [1, 3, 3]  # 4096 / 7 = 585.14, 4096 * 3 / 7 = 1755.43 (x2): one unit missing
    assert tables.scale(counts)[[1, 2, 3]].tolist() == [585, 1756, 1755]


def test_scale_sum_above_m() -> None:
    """One huge count and 255 rare ones: the rare ones are raised to 1, the excess is taken from the largest."""
    counts = np.ones(256, dtype=np.int64)
    counts[0] = 10**6
    freq = tables.scale(counts)
    assert (freq[1:] == 1).all()
    assert freq[0] == M - 255


def test_scale_sum_above_m_ties() -> None:
    """Excess taken from tied largest frequencies alternates, starting at the smaller symbol."""
    counts = np.ones(256, dtype=np.int64)
    counts[[3, 9]] = 10**6
    freq = tables.scale(counts)
    assert int(freq.sum()) == M
    assert freq[3] + freq[9] == M - 254
    assert freq[3] == freq[9]
    counts[200] = 0  # one rare symbol fewer, an odd excess: symbol 3 gives one more than symbol 9
    freq = tables.scale(counts)
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
    """serialized_size, which quantize uses to compare candidates, is the length serialize writes."""
    assert tables.serialized_size(freq) == len(tables.serialize(freq))


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


class Bits:
    """A bit stream written field by field, least significant bit of each byte first (FORMAT.md 3.2)."""

    def __init__(self) -> None:
        self.out: list[int] = []

    def bits(self, value: int, width: int) -> "Bits":
        self.out += [(value >> i) & 1 for i in range(width)]
        return self

    def gamma(self, value: int) -> "Bits":
        n = value.bit_length()
        return self.bits(0, n - 1).bits(1, 1).bits(value - (1 << (n - 1)), n - 1)

    def bytes(self) -> bytes:
        padded = self.out + [0] * (-len(self.out) % 8)
        return bytes(sum(b << i for i, b in enumerate(padded[k : k + 8])) for k in range(0, len(padded), 8))


def table_bytes(runs: list[tuple[int, int]], precision: int = 0, implied: int = 0, values: list[int] = ()) -> Bits:
    """A table from (start - previous end, length) runs and, if ``values``, ``P``, ``t`` and the stored frequencies."""
    out = Bits().gamma(len(runs))
    for gap, length in runs:
        out.gamma(gap).gamma(length)
    symbols = sum(length for _, length in runs)
    if values:
        out.bits(precision - 1, 4).bits(implied, (symbols - 1).bit_length())
        previous = None
        for f in values:
            e = f.bit_length()
            if previous is None:
                out.gamma(e)
            else:
                change = e - previous
                out.gamma((2 * change if change >= 0 else -2 * change - 1) + 1)
            previous = e
            kept = min(e, precision) - 1
            out.bits((f >> (e - 1 - kept)) - (1 << kept), kept)
    return out


def test_table_bytes_helper_matches_serialize() -> None:
    """The hand-made tables below use the same encoding as serialize."""
    freq = np.zeros(256, dtype=np.int64)
    freq[[3, 4, 10]] = [4000, 90, 6]
    assert table_bytes([(4, 2), (5, 1)], 6, 0, [90, 6]).bytes() == tables.serialize(freq)
    freq[[3, 4, 10]] = [1024, 2048, 1024]
    assert table_bytes([(4, 2), (5, 1)], 1, 1, [1024, 1024]).bytes() == tables.serialize(freq)


NON_CANONICAL = {
    "empty": b"",
    "zero-bytes": bytes(8),
    "129-runs": table_bytes([(1, 1)] + [(1, 1)] * 128, 1, 0, [1] * 128 + [M - 2 * 128 + 1]).bytes(),
    "run-past-255": table_bytes([(250, 7)]).bytes(),
    "second-run-past-255": table_bytes([(1, 1), (200, 100)], 1, 0, [1] * 100).bytes(),
    "precision-13": table_bytes([(1, 2)], 13, 0, [2047]).bytes(),
    "precision-not-least": table_bytes([(1, 2)], 3, 0, [1024]).bytes(),
    "implied-out-of-range": table_bytes([(1, 3)], 1, 3, [1, 1]).bytes(),
    "implied-not-largest": table_bytes([(1, 2)], 12, 0, [2049]).bytes(),
    "implied-tie-not-first": table_bytes([(1, 2)], 1, 1, [2048]).bytes(),
    "implied-below-1": table_bytes([(1, 3)], 1, 0, [2048, 2048]).bytes(),
    "bit-length-13": table_bytes([(1, 2)], 1, 0, [4096]).bytes(),
    "bit-length-0": Bits().gamma(1).gamma(1).gamma(3).bits(0, 4).bits(0, 2).gamma(1).gamma(2).bytes(),
    "gamma-too-long": Bits().bits(0, 9).bits(1, 1).bits(0, 9).bytes(),
    "fill-bits": bytes([tables.serialize(np.array([M] + [0] * 255))[0] | 0x80]),
    "truncated-runs": Bits().gamma(2).gamma(1).gamma(1).bytes(),
    "truncated-values": table_bytes([(1, 2)], 12, 0, [2047]).bytes()[:-1],
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
    """All 256 symbols form one run; equal frequencies cost a few bits each, precision 1 when all are powers of two."""
    freq = np.full(256, 16, dtype=np.int64)
    blob = tables.serialize(freq)
    assert blob == table_bytes([(1, 256)], 1, 0, [16] * 255).bytes()
    assert len(blob) == 37  # 1 + 1 + 17 + 4 + 8 + 5 + 254 bits
    freq[:] = 1
    freq[255] = M - 255
    blob = tables.serialize(freq)
    assert blob == table_bytes([(1, 256)], 1, 255, [1] * 255).bytes()
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


# --------------------------------------------------------------------------- the compiled bit stream (rans.cpu.tables)


def _same_parse(data: bytes) -> None:
    """The compiled parse accepts what the reference accepts, with the same table and length, and
    raises the reference's error (message and field) for the rest."""
    try:
        expected = tables.parse(data, field="t")
    except rans.CorruptDataError as e:
        with pytest.raises(rans.CorruptDataError) as info:
            fast_tables.parse(data, field="t")
        assert (str(info.value), info.value.field) == (str(e), e.field)
        return
    freq, used = fast_tables.parse(data, field="t")
    assert freq.tolist() == expected[0].tolist() and used == expected[1]


@given(valid_tables())
def test_compiled_serialize_writes_the_reference_bytes(freq: np.ndarray) -> None:
    assert fast_tables.serialize(freq) == tables.serialize(freq)


@given(valid_tables(), st.binary(max_size=4))
def test_compiled_parse_reads_valid_tables(freq: np.ndarray, tail: bytes) -> None:
    _same_parse(tables.serialize(freq) + tail)


@given(valid_tables(), st.lists(st.integers(0, 8 * 1300), min_size=1, max_size=3), st.integers(0, 1400))
def test_compiled_parse_agrees_on_damaged_tables(freq: np.ndarray, flips: list[int], keep: int) -> None:
    """Flipped bits and truncations reach every check of the parser; both parsers must agree on each."""
    blob = bytearray(tables.serialize(freq))
    for bit in flips:
        if bit // 8 < len(blob):
            blob[bit // 8] ^= 1 << (bit % 8)
    _same_parse(bytes(blob))
    _same_parse(bytes(blob[:keep]))


@given(st.binary(max_size=64))
def test_compiled_parse_agrees_on_random_bytes(data: bytes) -> None:
    _same_parse(data)


@pytest.mark.parametrize("data", list(NON_CANONICAL.values()), ids=list(NON_CANONICAL))
def test_compiled_parse_rejects_non_canonical(data: bytes) -> None:
    _same_parse(data)


@given(symbol_counts())
def test_compiled_scale_and_quantize_equal_the_reference(counts: np.ndarray) -> None:
    """Ties in remainders and in the largest frequency, huge counts, one symbol or all 256."""
    assert fast_tables.scale(counts).tolist() == tables.scale(counts).tolist()
    assert fast_tables.quantize(counts).tolist() == tables.quantize(counts).tolist()


@given(valid_tables())
def test_compiled_slot_table_packs_symbol_frequency_and_offset(freq: np.ndarray) -> None:
    from rans.cpu import kernels

    slots = kernels.slot_table(freq)
    symbol = tables.slot_symbols(freq).astype(np.int64)
    offset = np.arange(M) - tables.cumulative(freq)[symbol]
    assert slots.dtype == np.uint32
    assert ((slots & 0xFF) == symbol).all()
    assert (((slots >> 8) & 0xFFF) + 1 == freq[symbol]).all()
    assert ((slots >> 20) == offset).all()
