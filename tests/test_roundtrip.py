"""Lossless round trips: compress/decompress, save_file/load_file and the reference coder.

Outputs are compared byte for byte (``assert_identical``): dtype, shape and
the raw bytes of every element, so NaN payloads and -0.0 must survive.
Large inputs come from a seeded ``np.random.default_rng`` whose seed and
parameters Hypothesis draws; ``hypothesis.extra.numpy`` is used for small
shapes only.
"""

from __future__ import annotations

import math
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

import rans
from rans import container, dtypes
from rans.constants import DEFAULT_CHUNK, M, STATE_LOW
from rans.dtypes import DTYPES, NIBBLE_DTYPES, PREFERENCES
from rans.reference import coder, tables
from rans_files import (
    SECTION_HEADER,
    VALID_LANES,
    Coded,
    assert_identical,
    header_text,
    parse,
    plane_modes,
    read_table,
    store_header,
    table_length,
    tensor_crc,
    writer_lanes,
)

NAMES = list(DTYPES)
FLOATS = ["F8_E4M3", "F8_E5M2", "F16", "BF16", "F32", "F64", "C64", "C128"]
MULTI_BYTE = [n for n in NAMES if DTYPES[n].itemsize > 1]
KINDS = ["bits", "few", "gauss", "const"]
SMALL_CHUNKS = [128, 256]
EDGE_SIZES = sorted({0, 1, 31, 32, 33, 127, 128, 129} | {s for c in SMALL_CHUNKS for s in (c - 1, c, c + 1, 2 * c + 1)})


def make_tensor(name: str, shape: tuple[int, ...], seed: int, kind: str) -> np.ndarray:
    """A tensor of dtype ``name``: uniform random bits, a few distinct values, Gaussian-like, or constant."""
    rng = np.random.default_rng(seed)
    dtype = DTYPES[name]
    n = math.prod(shape)
    if name == "BOOL":
        p = {"bits": 0.5, "few": 0.9, "gauss": rng.random(), "const": float(rng.integers(0, 2))}[kind]
        return (rng.random(n) < p).reshape(shape)
    if kind == "gauss":
        return gaussian(rng, name, shape)
    if kind == "bits":
        return rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8).view(dtype).reshape(shape)
    values = rng.integers(0, 256, (int(rng.integers(1, 6)) if kind == "few" else 1) * dtype.itemsize, dtype=np.uint8)
    values = values.view(dtype)
    p = rng.dirichlet(np.full(len(values), 0.5))
    return values[rng.choice(len(values), n, p=p)].reshape(shape)


def gaussian(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Weights: heavy (Student t) tails, per-row scales over five decades; integers rounded and clipped."""
    dtype = DTYPES[name]
    x = rng.standard_t(rng.uniform(1.5, 30), shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        spread = 10.0 ** rng.uniform(0, math.log10(info.max) - 1)
        return np.clip(np.round(x * spread), info.min, info.max // 2).astype(dtype)
    row_scales = 10.0 ** rng.uniform(-4, 1, (shape[0],) + (1,) * (len(shape) - 1) if len(shape) > 1 else ())
    x = x * row_scales
    if dtype.kind == "c":
        x = x + 1j * rng.standard_t(3, shape) * row_scales
    with np.errstate(over="ignore"):
        return x.astype(dtype)


@st.composite
def shapes(draw: st.DrawFn) -> tuple[int, ...]:
    """A 1-D edge or random size, or a small multi-dimensional shape (zero-size dims included)."""
    choice = draw(st.sampled_from(["edge", "random", "multi"]))
    if choice == "edge":
        return (draw(st.sampled_from(EDGE_SIZES)),)
    if choice == "random":
        return (draw(st.integers(0, 3000)),)
    return draw(array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=9))


@st.composite
def tensors(draw: st.DrawFn) -> np.ndarray:
    """A tensor of any dtype, shape and kind, made from a drawn seed."""
    return make_tensor(
        draw(st.sampled_from(NAMES)), draw(shapes()), draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from(KINDS))
    )


def header(data: bytes) -> dict:
    """The JSON entry of the single tensor of ``data``."""
    return parse(data).document["tensors"][0]


def modes(data: bytes) -> list[str]:
    return plane_modes(header(data))


def check_layout(data: bytes, chunk: int, prefer: str = "ratio") -> None:
    """Every entry and section of ``data`` is what FORMAT.md says a writer produces: the header as compact
    JSON, stored with zlib (level 9) exactly when that is shorter; keys, split, CRC-32, raw lengths, and
    each coded section's header (lanes from the plane's length, the chunk size given); for ``prefer``
    "speed", one coded plane at most and 1-byte dtypes split "nibbles" or "none"."""
    parsed = parse(data)
    assert parsed.text == header_text(parsed.document)
    assert (parsed.encoding, parsed.stored) == store_header(parsed.text)
    for t in parsed.document["tensors"]:
        planes = plane_modes(t)
        size = DTYPES[t["dtype"]].itemsize
        if prefer == "speed":
            assert planes.count("coded") <= 1
            assert len(planes) in (1, 2 if t["dtype"] in NIBBLE_DTYPES else size)
        else:
            assert len(planes) in (1, size)
        keys = {"name", "dtype", "shape", "planes"} | ({"coded"} if "coded" in planes else set())
        assert set(t) == keys | ({"crc32"} if set(planes) != {"const"} else set()), t
        indices = parsed.of_tensor(t["name"])
        if "crc32" in t:
            assert t["crc32"] == tensor_crc([parsed.blobs[i] for i in indices])
        for i in indices:
            section, blob = parsed.sections[i], parsed.blobs[i]
            if section.mode == "raw":
                assert len(blob) == section.symbols
                continue
            assert (section.lanes, section.chunk) == (writer_lanes(section.symbols), chunk)
            parts = Coded.split(blob, section.symbols)
            assert parts.zero == 0 and parts.join() == blob
            assert (parts.states >= STATE_LOW).all()
            assert len(parts.words) == int(parts.counts.sum())


# compress / decompress


@given(tensors(), st.sampled_from(SMALL_CHUNKS), st.sampled_from(PREFERENCES))
def test_round_trip(x: np.ndarray, chunk: int, prefer: str) -> None:
    """decompress(compress(x)) is x, for every dtype, shape, kind of data and writer preference; the file
    is laid out as specified."""
    data = rans.compress(x, chunk_size=chunk, prefer=prefer)
    check_layout(data, chunk, prefer)
    assert_identical(x, rans.decompress(data))


def nibbles_as_written(b: int, dtype: str) -> tuple[int, int]:
    """FORMAT.md section 5's high and low nibble of byte ``b`` of ``dtype``, one bit field at a time."""
    sign, bits = b >> 7, b & 0x7F
    if dtype.startswith("F8"):
        return bits >> 3, sign << 3 | (b & 0x7)
    return b >> 4, b & 0xF


@given(st.sampled_from(NIBBLE_DTYPES), st.binary(max_size=301))
def test_split_nibbles_is_the_format(dtype: str, raw: bytes) -> None:
    """Split "nibbles" of any bytes, element by element as FORMAT.md writes it (odd counts padded with a 0
    nibble), and joined back to the same bytes."""
    x = np.frombuffer(raw, np.uint8).view(DTYPES[dtype])
    pairs = [nibbles_as_written(b, dtype) for b in raw] + [(0, 0)] * (len(raw) % 2)
    high = [pairs[i][0] | pairs[i + 1][0] << 4 for i in range(0, len(pairs), 2)]
    low = [pairs[i][1] | pairs[i + 1][1] << 4 for i in range(0, len(pairs), 2)]
    planes = dtypes.split(x, "nibbles")
    assert [p.tolist() for p in planes] == [high, low]
    assert dtypes.join(planes, dtype, "nibbles", x.shape).tobytes() == raw


@pytest.mark.parametrize("dtype", NIBBLE_DTYPES)
@pytest.mark.parametrize("mode", ["raw", "coded"])
def test_readers_ignore_the_padding_nibble(dtype: str, mode: str) -> None:
    """An odd tensor split "nibbles" whose last symbols carry other nibbles than 0 where element n would be
    decodes to the same tensor."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, 301).astype(np.uint8).view(DTYPES[dtype])
    planes = dtypes.split(x, "nibbles")
    for plane in planes:
        plane[-1] |= 0xA0
    entry = container.Entry("t", dtype, x.shape)
    sections = []
    for plane in planes:
        blob = coder.encode(plane, 128) if mode == "coded" else plane.tobytes()
        entry.planes.append(container.Plane(mode, length=len(blob)))
        sections.append(blob)
    entry.crc = container.sections_crc(sections)
    data = container.to_bytes([entry], [sections], None)
    for backend in ("reference", "cpu"):
        assert rans.decompress(data, backend=backend).tobytes() == x.tobytes()


@given(tensors(), st.sampled_from(SMALL_CHUNKS))
def test_speed_codes_at_most_the_planes_ratio_codes(x: np.ndarray, chunk: int) -> None:
    """Written for speed, a tensor of a dtype of several bytes keeps its split (or "none") and codes one of
    the planes written for ratio codes, or none of them; the file is no smaller."""
    ratio, speed = rans.compress(x, chunk_size=chunk), rans.compress(x, chunk_size=chunk, prefer="speed")
    assert len(speed) >= len(ratio) or x.dtype.itemsize == 1
    if x.dtype.itemsize > 1 and len(modes(ratio)) == len(modes(speed)) > 1:
        coded = {j for j, m in enumerate(modes(ratio)) if m == "coded"}
        assert {j for j, m in enumerate(modes(speed)) if m == "coded"} <= coded


@pytest.mark.parametrize("name", NAMES)
def test_edge_sizes(name: str) -> None:
    """Sizes around the lane group (128) and small chunk sizes round-trip; some of them are coded."""
    seen = set()
    for chunk in SMALL_CHUNKS:
        for n in EDGE_SIZES:
            for kind in ("bits", "few", "const"):
                x = make_tensor(name, (n,), n * 7 + chunk, kind)
                data = rans.compress(x, chunk_size=chunk)
                seen.update(modes(data))
                assert_identical(x, rans.decompress(data))
    assert seen == {"raw", "const", "coded"}


@pytest.mark.parametrize("name", ["U8", "BF16", "F32"])
def test_default_chunk_edges(name: str) -> None:
    """Sizes around one, two and four default chunks (32 Ki) round-trip, with coded planes of 8, 16 and 32 lanes."""
    lanes = set()
    for n in (DEFAULT_CHUNK - 1, DEFAULT_CHUNK, DEFAULT_CHUNK + 1, 2 * DEFAULT_CHUNK + 1, 4 * DEFAULT_CHUNK + 1):
        x = make_tensor(name, (n,), n, "gauss")
        data = rans.compress(x)
        assert "coded" in modes(data)
        check_layout(data, DEFAULT_CHUNK)
        lanes |= {s.lanes for s in parse(data).sections if s.mode == "coded"}
        assert_identical(x, rans.decompress(data))
    assert {8, 16, 32} <= lanes


@pytest.mark.parametrize("n", [300, 4095, 4096, 8191, 8192, 16383, 16384, 32767, 32768, 65536, 131_071, 131_072])
def test_writer_lane_counts(n: int) -> None:
    """compress gives a coded plane of n symbols the lane count FORMAT.md 4.4 prescribes, and it round-trips."""
    x = np.random.default_rng(n).geometric(0.4, n).clip(0, 255).astype(np.uint8)
    x[0] = 0  # at least two symbols, so the plane is not constant
    x[-1] = 1
    data = rans.compress(x, chunk_size=1024)
    assert modes(data) == ["coded"]
    (section,) = parse(data).sections
    assert section.lanes == writer_lanes(n) == coder.lanes_for(n)
    check_layout(data, 1024)
    assert_identical(x, rans.decompress(data))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(0,), (0, 5), (5, 0, 3), (1, 1, 1), (3, 1, 2, 1)], ids=str)
def test_shapes(name: str, shape: tuple[int, ...]) -> None:
    """Zero-size and degenerate multi-dimensional shapes come back exactly."""
    x = make_tensor(name, shape, 1, "bits")
    assert_identical(x, rans.decompress(rans.compress(x, chunk_size=128)))


@pytest.mark.parametrize("name", NAMES)
def test_zero_dimensional(name: str, tmp_path: Path) -> None:
    """A 0-d array (a scalar tensor) keeps its empty shape, through compress and through save_file."""
    x = make_tensor(name, (), 3, "bits")
    data = rans.compress(x)
    assert header(data)["shape"] == []
    assert_identical(x, rans.decompress(data))
    rans.save_file({"scalar": x, "np-scalar": x[()]}, tmp_path / "s.rans")
    loaded = rans.load_file(tmp_path / "s.rans")
    assert_identical(x, loaded["scalar"])
    assert_identical(x, loaded["np-scalar"])


@given(st.sampled_from(NAMES), st.integers(1, 5000), st.integers(0, 2**32 - 1), st.sampled_from(SMALL_CHUNKS))
def test_constant_tensors_are_const_planes(name: str, n: int, seed: int, chunk: int) -> None:
    """A tensor of one repeated value has only const planes and no sections at all."""
    x = make_tensor(name, (n,), seed, "const")
    data = rans.compress(x, chunk_size=chunk)
    assert set(modes(data)) == {"const"}
    assert parse(data).sections == []
    assert set(header(data)) == {"name", "dtype", "shape", "planes"}
    assert len(data) == -(-(32 + parse(data).header_length) // 4) * 4
    assert_identical(x, rans.decompress(data))


@pytest.mark.parametrize("chunk", [256, DEFAULT_CHUNK])
def test_all_256_symbols(chunk: int) -> None:
    """A plane using all 256 byte values round-trips, coded (skewed) with a one-run table, and raw (uniform)."""
    rng = np.random.default_rng(chunk)
    skewed = np.where(rng.random(20 * chunk) < 0.95, 0, rng.integers(0, 256, 20 * chunk)).astype(np.uint8)
    skewed[:256] = np.arange(256)
    data = rans.compress(skewed, chunk_size=chunk)
    assert modes(data) == ["coded"]
    section = parse(data).blobs[0]
    assert SECTION_HEADER.unpack_from(section) == (writer_lanes(skewed.size), 0, chunk // 128)
    assert section[4:7] == bytes([3, 4, 0])  # bits 1 | 1 | 00000000 1 00000000: one run, from symbol 0, of 256
    assert sorted(read_table(section[4:])[0]) == list(range(256))
    assert_identical(skewed, rans.decompress(data))
    uniform = rng.permutation(np.tile(np.arange(256, dtype=np.uint8), 8))
    data = rans.compress(uniform, chunk_size=chunk)
    assert modes(data) == ["raw"]
    assert_identical(uniform, rans.decompress(data))


# Float payloads


def special_bits(name: str) -> np.ndarray:
    """Every bit pattern of 8- and 16-bit floats; for wider ones, each sign x exponent class x mantissa class."""
    dtype = DTYPES[name]
    if dtype.itemsize <= 2:
        return np.arange(1 << (8 * dtype.itemsize), dtype=f"<u{dtype.itemsize}").view(dtype)
    if dtype.kind == "c":
        parts = special_bits("F32" if name == "C64" else "F64").view(f"<u{dtype.itemsize // 2}")
        return np.stack(np.meshgrid(parts, parts), axis=-1).reshape(-1).view(dtype)
    bits = dtype.itemsize * 8
    mantissa_bits = np.finfo(dtype).nmant
    exponent_max = (1 << (bits - 1 - mantissa_bits)) - 1
    patterns = [
        (sign << (bits - 1)) | (exponent << mantissa_bits) | mantissa
        for sign in (0, 1)
        for exponent in (0, 1, exponent_max - 1, exponent_max)
        for mantissa in (0, 1, 1 << (mantissa_bits - 1), (1 << mantissa_bits) - 1)
    ]
    return np.array(patterns, dtype=f"<u{dtype.itemsize}").view(dtype)


@pytest.mark.parametrize("name", FLOATS)
def test_float_specials(name: str) -> None:
    """NaNs (payloads and signs kept), infinities, -0.0 and subnormals round-trip bit for bit."""
    x = special_bits(name)
    real = x.real if DTYPES[name].kind == "c" else x
    tiny = (ml_dtypes.finfo if name in ("BF16", "F8_E4M3", "F8_E5M2") else np.finfo)(real.dtype).smallest_normal
    with np.errstate(invalid="ignore"):
        assert np.isnan(real).any()
        assert ((real == 0) & np.signbit(real)).any()
        assert ((real != 0) & (np.abs(real.astype(np.float64)) < float(tiny))).any()
        assert np.isinf(real).any() or name == "F8_E4M3"
    for chunk in SMALL_CHUNKS:
        for arrangement in (x, np.random.default_rng(0).permutation(x), np.repeat(x, 5)):
            assert_identical(arrangement, rans.decompress(rans.compress(arrangement, chunk_size=chunk)))


@given(st.sampled_from(FLOATS), st.data())
def test_float_bit_patterns(name: str, data: st.DataObject) -> None:
    """Arrays of Hypothesis-drawn bit patterns, specials over-represented, round-trip bit for bit."""
    dtype = DTYPES[name]
    width = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
    specials = special_bits(name).view(f"<u{width}").tolist()
    patterns = data.draw(
        st.lists(st.one_of(st.sampled_from(specials), st.integers(0, (1 << (8 * width)) - 1)), max_size=400)
    )
    if dtype.kind == "c":
        patterns = patterns[: len(patterns) // 2 * 2]
    x = np.array(patterns, dtype=f"<u{width}").view(dtype)
    assert_identical(x, rans.decompress(rans.compress(x, chunk_size=128)))


# Layout of the input


@given(st.sampled_from(MULTI_BYTE), shapes(), st.integers(0, 2**32 - 1), st.sampled_from(KINDS))
def test_big_endian_input(name: str, shape: tuple[int, ...], seed: int, kind: str) -> None:
    """A big-endian array compresses to the same bytes as its little-endian copy and decodes to it."""
    x = make_tensor(name, shape, seed, kind)
    swapped = x.astype(x.dtype.newbyteorder(">"))
    assert swapped.dtype.byteorder == ">"
    data = rans.compress(swapped, chunk_size=256)
    assert data == rans.compress(x, chunk_size=256)
    assert_identical(x, rans.decompress(data))


def test_big_endian_float32_values() -> None:
    """'>f4' input decodes to '<f4' with the same values."""
    x = np.array([1.0, -2.5, np.inf, 3e-40], dtype=">f4")
    out = rans.decompress(rans.compress(x))
    assert out.dtype == np.dtype("<f4")
    assert out.tolist() == x.tolist()


VIEWS = {
    "every-other": lambda a: a[::2],
    "reversed-columns": lambda a: a[:, ::-1],
    "transposed": lambda a: a.T,
    "strided-both": lambda a: a[::-3, 1::2],
    "fortran": lambda a: np.asfortranarray(a),
    "broadcast": lambda a: np.broadcast_to(a[:1], a.shape),
}


@given(st.sampled_from(NAMES), st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1),
       st.sampled_from(KINDS), st.sampled_from(sorted(VIEWS)))
def test_non_contiguous_input(name: str, rows: int, cols: int, seed: int, kind: str, view: str) -> None:
    """A strided, transposed or broadcast view compresses like its contiguous copy and round-trips."""
    x = VIEWS[view](make_tensor(name, (rows, cols), seed, kind))
    data = rans.compress(x, chunk_size=128)
    assert data == rans.compress(np.ascontiguousarray(x), chunk_size=128)
    assert_identical(x, rans.decompress(data))


@given(
    st.sampled_from(["BF16", "F16", "F32", "F8_E4M3", "F8_E5M2"]),
    st.integers(1, 64),
    st.integers(1, 512),
    st.integers(0, 2**32 - 1),
    st.sampled_from(SMALL_CHUNKS + [DEFAULT_CHUNK]),
)
def test_gaussian_weights(name: str, rows: int, cols: int, seed: int, chunk: int) -> None:
    """Weight matrices with per-row scales and heavy tails round-trip."""
    x = gaussian(np.random.default_rng(seed), name, (rows, cols))
    assert_identical(x, rans.decompress(rans.compress(x, chunk_size=chunk)))


# Plane modes, ratio, determinism


@given(tensors(), st.sampled_from(SMALL_CHUNKS))
def test_compress_is_deterministic(x: np.ndarray, chunk: int) -> None:
    """The same input gives the same bytes, from the array or from a copy of it."""
    assert rans.compress(x, chunk_size=chunk) == rans.compress(x.copy(), chunk_size=chunk)


def test_bf16_gaussian_ratio() -> None:
    """1 Mi bf16 N(0, 0.02) weights: float split, exponent coded, sign+mantissa raw, ratio >= 1.510."""
    x = np.random.default_rng(2024).normal(0, 0.02, 1 << 20).astype(ml_dtypes.bfloat16)
    data = rans.compress(x)
    entry = header(data)
    assert len(entry["planes"]) == 2  # two planes: the float split
    assert modes(data) == ["coded", "raw"]
    assert entry["coded"] == [parse(data).sections[0].length]
    assert parse(data).sections[0].lanes == 32
    assert x.nbytes / len(data) >= 1.510
    assert_identical(x, rans.decompress(data))


@pytest.mark.slow
def test_bf16_gaussian_ratio_64mi() -> None:
    """64 Mi bf16 N(0, 0.02) weights reach about the ratio docs/FORMAT.md reports (1.513) and round-trip."""
    x = np.random.default_rng(7).normal(0, 0.02, 1 << 26).astype(ml_dtypes.bfloat16)
    data = rans.compress(x)
    assert x.nbytes / len(data) >= 1.5125
    assert rans.decompress(data).view(np.uint16).tobytes() == x.view(np.uint16).tobytes()


def test_uniform_bytes_are_raw() -> None:
    """Incompressible bytes are stored raw, with no more overhead than the header."""
    x = np.random.default_rng(3).integers(0, 256, 100_000, dtype=np.uint8)
    data = rans.compress(x)
    assert modes(data) == ["raw"]
    assert len(data) <= x.nbytes + 32 + parse(data).header_length + 8


def test_tiny_tensor_stays_tiny() -> None:
    """A 3-element bias is not coded and costs little more than its bytes and header."""
    x = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    data = rans.compress(x)
    assert "coded" not in modes(data)
    assert len(data) <= 32 + parse(data).header_length + 8 + 2 * 8 + x.nbytes


def test_low_entropy_plane_is_coded_and_smaller() -> None:
    """A skewed plane is coded and its section is well below the raw size."""
    x = np.where(np.random.default_rng(4).random(50_000) < 0.9, 0, 1).astype(np.uint8)
    data = rans.compress(x)
    assert modes(data) == ["coded"]
    assert parse(data).sections[0].length < x.size // 4


@pytest.mark.parametrize("byte", [2, 3, 128, 255])
@pytest.mark.parametrize("shape", [(4,), (2, 2), (5000,)], ids=str)
def test_non_canonical_bool_bytes(byte: int, shape: tuple[int, ...], tmp_path: Path) -> None:
    """A bool array holding a byte other than 0 or 1 is rejected by compress and save_file (writing nothing)."""
    raw = np.zeros(math.prod(shape), dtype=np.uint8)
    raw[1::3] = 1
    raw[-1] = byte
    x = raw.view(np.bool_).reshape(shape)
    with pytest.raises(rans.InvalidArgumentError):
        rans.compress(x)
    with pytest.raises(rans.InvalidArgumentError):
        rans.save_file({"ok": np.zeros(3, np.bool_), "flags": x}, tmp_path / "b.rans")
    assert list(tmp_path.iterdir()) == []
    raw[-1] = 1
    assert_identical(raw.view(np.bool_), rans.decompress(rans.compress(raw.view(np.bool_))))


# save_file / load_file

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(
    st.dictionaries(texts, tensors(), max_size=5),
    st.dictionaries(texts, texts, max_size=4),
    st.sampled_from(SMALL_CHUNKS),
)
def test_save_load_round_trip(tmp_path_factory: pytest.TempPathFactory, tensors_: dict, metadata: dict, chunk: int) -> None:
    """Every tensor comes back identical, in order, with the metadata."""
    path = tmp_path_factory.mktemp("roundtrip") / "t.rans"
    rans.save_file(tensors_, path, metadata, chunk_size=chunk)
    check_layout(path.read_bytes(), chunk)
    loaded = rans.load_file(path)
    assert list(loaded) == list(tensors_)
    for name, x in tensors_.items():
        assert_identical(x, loaded[name])
    assert rans.load_metadata(path) == metadata


def test_save_file_is_deterministic(tmp_path: Path) -> None:
    """Saving the same tensors twice gives identical files, equal to compress's for one tensor."""
    x = gaussian(np.random.default_rng(8), "BF16", (64, 300))
    rans.save_file({"": x}, tmp_path / "a.rans")
    rans.save_file({"": x}, tmp_path / "b.rans")
    assert (tmp_path / "a.rans").read_bytes() == (tmp_path / "b.rans").read_bytes() == rans.compress(x)


# The reference coder


@st.composite
def planes_and_tables(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    """A plane of 1..3000 symbols, a chunk size (multiple of 128) and any valid table covering the plane."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.one_of(st.integers(1, 3000), st.sampled_from([e for e in EDGE_SIZES if e])))
    chunk = 128 * draw(st.integers(1, 24))
    alphabet = draw(st.lists(st.integers(0, 255), min_size=1, max_size=256, unique=True))
    p = rng.dirichlet(np.full(len(alphabet), draw(st.sampled_from([0.05, 0.5, 5.0]))))
    plane = np.array(alphabet, dtype=np.uint8)[rng.choice(len(alphabet), n, p=p)]
    extra = draw(st.lists(st.integers(0, 255), max_size=20))
    present = np.union1d(plane, np.array(extra, dtype=np.uint8)).astype(np.int64)
    weights = rng.integers(1, draw(st.sampled_from([2, 50, 10_000])), len(present))
    freq = np.zeros(256, dtype=np.int64)
    freq[present] = 1
    spare = M - len(present)
    share = weights * spare // weights.sum()
    freq[present] += share
    freq[present[0]] += spare - int(share.sum())
    return plane, freq, chunk


def check_section(section: bytes, plane: np.ndarray, chunk: int, freq: np.ndarray, lanes: int) -> None:
    """The section is laid out as FORMAT.md 4.4 says: header, table, padding, states [K][W], counts, words."""
    n_chunks = -(-plane.size // chunk)
    assert SECTION_HEADER.unpack_from(section) == (lanes, 0, chunk // 128)
    parts = Coded.split(section, plane.size)
    assert parts.join() == section
    assert parts.table == tables.serialize(freq)
    assert parts.padding == bytes(len(parts.padding)) and (4 + len(parts.table + parts.padding)) % 4 == 0
    assert parts.states.shape == (n_chunks, lanes)
    assert (parts.states >= STATE_LOW).all()
    lengths = [min(chunk, plane.size - i * chunk) for i in range(n_chunks)]
    assert (parts.counts <= np.array(lengths)).all()
    assert len(parts.words) == int(parts.counts.sum())
    parsed = coder.read_section(section, plane.size)
    assert (parsed.chunk, parsed.layout.lanes, parsed.layout.n_chunks) == (chunk, lanes, n_chunks)
    assert parsed.freq.tolist() == freq.tolist()


@given(planes_and_tables())
def test_coder_round_trip_any_table(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    """decode(encode(x)) == x with any valid table and chunk size, and the section is laid out as specified."""
    plane, freq, chunk = case
    section = coder.encode(plane, chunk, freq)
    assert (coder.decode(section, plane.size) == plane).all()
    check_section(section, plane, chunk, freq, writer_lanes(plane.size))


@given(planes_and_tables(), st.sampled_from(VALID_LANES))
def test_coder_round_trip_any_lanes(case: tuple[np.ndarray, np.ndarray, int], lanes: int) -> None:
    """encode(..., lanes=W) round-trips through decode for every lane count W, whatever the plane's length."""
    plane, freq, chunk = case
    section = coder.encode(plane, chunk, freq, lanes=lanes)
    assert (coder.decode(section, plane.size) == plane).all()
    check_section(section, plane, chunk, freq, lanes)


@pytest.mark.parametrize("lanes", VALID_LANES)
@pytest.mark.parametrize("chunk", [128, 256, 1024])
def test_coder_lanes_edge_sizes(lanes: int, chunk: int) -> None:
    """Every lane count round-trips at sizes where lanes or whole steps sit out (around W * 4 and the chunk)."""
    rng = np.random.default_rng(lanes * chunk)
    step = 4 * lanes
    sizes = {1, 3, 4, 5, step - 1, step, step + 1, chunk - 1, chunk, chunk + 1, chunk + step - 1, 3 * chunk + 5}
    for n in sorted(sizes):
        plane = rng.geometric(0.3, n).clip(0, 255).astype(np.uint8)
        freq = tables.quantize(tables.count(plane))
        section = coder.encode(plane, chunk, lanes=lanes)
        assert (coder.decode(section, n) == plane).all(), n
        check_section(section, plane, chunk, freq, lanes)


def test_coder_lanes_change_the_bytes() -> None:
    """The lane count is part of the bitstream: each W gives different bytes for the same plane, all decodable."""
    plane = np.random.default_rng(1).geometric(0.2, 5000).clip(0, 255).astype(np.uint8)
    sections = {w: coder.encode(plane, 1024, lanes=w) for w in VALID_LANES}
    assert len(set(sections.values())) == len(VALID_LANES)
    assert sections[writer_lanes(plane.size)] == coder.encode(plane, 1024)
    for w, section in sections.items():
        assert section[0] == w
        assert (coder.decode(section, plane.size) == plane).all()


@given(st.integers(0, 2**48))
def test_lanes_for_matches_the_format(n: int) -> None:
    """coder.lanes_for is FORMAT.md's rule: the largest power of two W <= 32 with W * 4096 <= n, else 1."""
    assert coder.lanes_for(n) == writer_lanes(n)


@pytest.mark.parametrize("lanes", [0, 3, 5, 6, 12, 33, 64, 128, 256, -1, -32, "4", [4]], ids=repr)
def test_coder_rejects_invalid_lanes(lanes: object) -> None:
    """A lane count other than 1, 2, 4, 8, 16 or 32 is InvalidArgumentError."""
    with pytest.raises(rans.InvalidArgumentError):
        coder.encode(np.arange(300, dtype=np.uint8) % 7, 128, lanes=lanes)


@pytest.mark.parametrize("lanes", [2.0, True], ids=repr)
def test_coder_rejects_non_integer_lanes(lanes: object) -> None:
    """A lane count that is not an integer (a float, a bool) is InvalidArgumentError, as for the chunk size."""
    with pytest.raises(rans.InvalidArgumentError):
        coder.encode(np.arange(300, dtype=np.uint8) % 7, 128, lanes=lanes)


def test_coder_workers_give_the_same_bytes() -> None:
    """encode(..., workers=2) splits the chunks between processes and gives exactly the workers=1 bytes."""
    rng = np.random.default_rng(11)
    plane = rng.geometric(0.25, 17 * 1024 + 300).clip(0, 255).astype(np.uint8)  # 18 chunks, 4 lanes, a short one
    freq = tables.quantize(tables.count(plane))
    one = coder.encode(plane, 1024)
    assert coder.encode(plane, 1024, workers=2) == one
    check_section(one, plane, 1024, freq, 4)
    narrow = coder.encode(plane, 512, lanes=1)
    assert coder.encode(plane, 512, lanes=1, workers=3) == narrow
    assert (coder.decode(narrow, plane.size) == plane).all()


def test_compress_workers_give_the_same_bytes() -> None:
    """compress(..., workers=2) gives the same file as workers=1 (its 9-chunk exponent plane is split)."""
    x = gaussian(np.random.default_rng(12), "BF16", (8, 1100))
    assert rans.compress(x, chunk_size=1024, workers=2) == rans.compress(x, chunk_size=1024)


@given(planes_and_tables())
def test_coder_default_table(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    """Without a table, encode uses quantize(count(plane)), and still round-trips."""
    plane, _, chunk = case
    section = coder.encode(plane, chunk)
    assert section == coder.encode(plane, chunk, tables.quantize(tables.count(plane)))
    assert (coder.decode(section, plane.size) == plane).all()


@pytest.mark.parametrize("chunk", [128, 256, 384, 1024])
def test_coder_edge_sizes(chunk: int) -> None:
    """Plane sizes around the lane group and the chunk size round-trip through the coder."""
    rng = np.random.default_rng(chunk)
    for n in sorted({1, 31, 32, 33, 127, 128, 129, chunk - 1, chunk, chunk + 1, 2 * chunk + 1, 5 * chunk, 2048, 4100}):
        plane = rng.geometric(0.3, n).clip(0, 255).astype(np.uint8)
        section = coder.encode(plane, chunk)
        assert (coder.decode(section, n) == plane).all()
        parts = Coded.split(section, n)
        assert len(parts.table) == table_length(section[4:])
        assert len(parts.words) == int(parts.counts.sum())
        assert parts.states.shape == (-(-n // chunk), writer_lanes(n))


def test_coder_single_symbol_table() -> None:
    """A table giving one symbol all of M codes a constant plane in zero words."""
    plane = np.full(1000, 42, dtype=np.uint8)
    freq = np.zeros(256, dtype=np.int64)
    freq[42] = M
    section = coder.encode(plane, 256, freq)
    parts = Coded.split(section, 1000)
    assert (parts.states == STATE_LOW).all()
    assert parts.counts.tolist() == [0, 0, 0, 0]
    assert (coder.decode(section, 1000) == plane).all()


@pytest.mark.parametrize("chunk", [0, 64, 127, 129, 200, (1 << 22) + 128, -128, 128.0, "128", None])
def test_coder_rejects_invalid_chunk(chunk: object) -> None:
    """The coder checks its chunk size like the API does."""
    with pytest.raises(rans.InvalidArgumentError):
        coder.encode(np.zeros(10, dtype=np.uint8), chunk)
