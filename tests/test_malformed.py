"""Malformed input: every damaged, truncated or hostile file must raise the
right :class:`rans.RansError` subclass, and nothing else (no IndexError,
ValueError, struct.error, MemoryError, BufferError, hang).

Files are taken apart and rebuilt by ``rans_files`` so that hostile content
can be given correct lengths and CRC-32s, which gets it past the checksums
and into the validation behind them. No test here makes rans allocate
memory in proportion to a length the file lies about: every lying length is
one the reader must reject before allocating.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import zlib
from datetime import timedelta
from typing import Any, Callable

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rans
from rans import (
    ChecksumError,
    CorruptDataError,
    InvalidArgumentError,
    NotRansDataError,
    RansError,
    TruncatedDataError,
    UnsupportedVersionError,
)
from rans.reference import coder, tables
from rans_files import (
    MAGIC,
    MAX_HEADER,
    PLAIN,
    SAMPLE_CHUNK,
    ZLIB,
    Coded,
    assemble,
    assemble_stored,
    assert_identical,
    crc32,
    header_text,
    load_bytes,
    parse,
    plane_modes,
    rebuild,
    rebuild_text,
    regions,
    replace_section,
    sample_file,
    sample_tensors,
    tensor_crc,
)

PREAMBLE_FIELDS = {"version", "encoding", "header_length", "header_crc", "preamble_crc"}
SECTION_PARTS = {"raw", "lanes", "lanes_zero", "chunk_size", "table", "table_padding", "states", "counts", "words"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The multi-tensor sample file (coded, raw and const planes, metadata, an empty tensor)."""
    return sample_file(tmp_path_factory.mktemp("sample") / "sample.rans")


@pytest.fixture(scope="module")
def singles() -> dict[str, bytes]:
    """Each sample tensor compressed alone, at the sample chunk size."""
    return {name: rans.compress(t, chunk_size=SAMPLE_CHUNK) for name, t in sample_tensors().items()}


@pytest.fixture(scope="module")
def big() -> bytes:
    """A larger single-tensor file: 128 Ki bf16 weights in chunks of 64 Ki symbols (32 lanes, 2 chunks)."""
    rng = np.random.default_rng(99)
    return rans.compress(rng.normal(0, 0.02, 1 << 17).astype(ml_dtypes.bfloat16), chunk_size=1 << 16)


def section_index(data: bytes, tensor: str, plane: int) -> int:
    return next(s.index for s in parse(data).sections if s.tensor == tensor and s.plane == plane)


def tensor(document: dict, name: str) -> dict:
    return next(t for t in document["tensors"] if t["name"] == name)


def raises(load: Callable[[bytes], Any], data: bytes) -> RansError:
    """The RansError ``load(data)`` raises; fails the test if it raises nothing or something else."""
    with pytest.raises(RansError) as info:
        load(data)
    return info.value


def check(error: RansError, kind: type, tensor: str | None = "?", field: str | None = "?", chunk: Any = "?") -> None:
    """Assert the error's class and, where given, its tensor, field and chunk."""
    assert isinstance(error, kind), f"{type(error).__name__}: {error}"
    if tensor != "?":
        assert error.tensor == tensor, str(error)
    if field != "?":
        assert error.field == field, str(error)
    if chunk != "?":
        assert error.chunk == chunk, str(error)


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise TimeoutError in the test if the body runs longer than ``seconds`` (guards against hangs)."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"decoding took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_sample_file_has_every_region(sample: bytes) -> None:
    """The sample covers every part of the format, so the exhaustive tests below see them all."""
    names = {r[2] for r in regions(sample)}
    assert names == {"magic", "header", "padding"} | PREAMBLE_FIELDS | SECTION_PARTS
    parsed = parse(sample)
    modes = {m for t in parsed.document["tensors"] for m in plane_modes(t)}
    assert modes == {"coded", "raw", "const"}
    assert {s.lanes for s in parsed.sections if s.mode == "coded"} == {1, 2}
    assert any(s.n_chunks > 2 and s.lanes > 1 for s in parsed.sections)
    # A tensor without sections (no crc32), one with an empty section, one with padding inside its CRC span.
    assert "crc32" not in tensor(parsed.document, "ones")
    assert [s.length for s in parsed.sections if s.tensor == "empty"] == [0]
    bias = [s for s in parsed.sections if s.tensor == "bias"]
    assert len(bias) == 2 and bias[1].offset > bias[0].offset + bias[0].length
    assert {n: t.shape for n, t in load_bytes(sample).items()} == {n: t.shape for n, t in sample_tensors().items()}


def test_sample_header_is_zlib(sample: bytes, singles: dict[str, bytes]) -> None:
    """The samples' headers are stored with zlib (shorter); the plain encoding is covered below by the
    sample rebuilt with a JSON header and by writer outputs small enough to stay plain."""
    assert parse(sample).encoding == ZLIB
    assert {parse(data).encoding for data in singles.values()} == {ZLIB}


def test_sample_header_entries_follow_the_format(sample: bytes) -> None:
    """Each entry has exactly the keys the format requires: coded iff a plane is coded, crc32 iff a section."""
    parsed = parse(sample)
    for t in parsed.document["tensors"]:
        modes = plane_modes(t)
        expected = {"name", "dtype", "shape", "planes"}
        if "coded" in modes:
            expected.add("coded")
        if set(modes) != {"const"}:
            expected.add("crc32")
        assert set(t) == expected, t
        if "crc32" in t:
            assert t["crc32"] == tensor_crc([parsed.blobs[i] for i in parsed.of_tensor(t["name"])])


# Truncation and extension


def test_truncation_at_every_offset(sample: bytes) -> None:
    """Every proper prefix of the sample fails: NotRansData below 8 bytes, TruncatedData after."""
    for size in range(len(sample)):
        error = raises(load_bytes, sample[:size])
        expected = NotRansDataError if size < len(MAGIC) else TruncatedDataError
        assert isinstance(error, expected), f"prefix of {size} bytes: {type(error).__name__}: {error}"


def test_truncation_of_single_tensor_files(singles: dict[str, bytes]) -> None:
    """Every proper prefix of every single-tensor file fails in decompress the same way."""
    for name, data in singles.items():
        for size in range(len(data)):
            error = raises(rans.decompress, data[:size])
            expected = NotRansDataError if size < len(MAGIC) else TruncatedDataError
            assert isinstance(error, expected), f"{name}, {size} bytes: {type(error).__name__}: {error}"


@pytest.mark.parametrize("tail", [b"\x00", bytes(7), bytes(8), b"\x01", b"garbage!" * 3])
def test_trailing_bytes(sample: bytes, tail: bytes) -> None:
    """Bytes after the last section are corruption (not truncation), zero or not."""
    error = raises(load_bytes, sample + tail)
    check(error, CorruptDataError, field="sections")
    assert not isinstance(error, TruncatedDataError)


# Bit flips


def expected_for_flip(region: str, section: Any) -> tuple[type, str | None, str | None]:
    """The error class, tensor and field a flipped bit in ``region`` must produce ('?' = any)."""
    if region == "magic":
        return NotRansDataError, None, None
    if region in PREAMBLE_FIELDS:
        return ChecksumError, None, "preamble"
    if region == "header":
        return ChecksumError, None, "header"
    if region == "padding":
        return CorruptDataError, "?", "padding"
    assert region in SECTION_PARTS
    return ChecksumError, section.tensor, "crc32"


def flip_failures(data: bytes, load: Callable[[bytes], Any], bits: Any) -> list[str]:
    """Flip each bit in ``bits``; describe every flip not reported as its region requires."""
    where = regions(data)
    failures = []
    for bit in bits:
        position = bit // 8
        region, section = next((r[2], r[3]) for r in where if r[0] <= position < r[1])
        kind, tensor_name, field = expected_for_flip(region, section)
        damaged = bytearray(data)
        damaged[position] ^= 1 << (bit % 8)
        try:
            load(bytes(damaged))
        except RansError as e:
            right_kind = isinstance(e, kind) and not (kind is CorruptDataError and isinstance(e, TruncatedDataError))
            right_place = tensor_name in ("?", e.tensor) and e.field == field and e.chunk is None
            if not (right_kind and right_place):
                failures.append(f"bit {bit} ({region}): {type(e).__name__}: {e}")
        else:
            failures.append(f"bit {bit} ({region}): not detected")
    return failures


def test_every_bit_flip_is_detected(sample: bytes) -> None:
    """Each of the sample's single-bit flips raises the error of the region it hits."""
    failures = flip_failures(sample, load_bytes, range(8 * len(sample)))
    assert not failures, f"{len(failures)} flips misreported, e.g. {failures[:5]}"


def test_every_bit_flip_of_single_tensor_files(singles: dict[str, bytes]) -> None:
    """decompress reports every single-bit flip of each single-tensor file by region."""
    failures = []
    for name, data in singles.items():
        failures += [f"{name}: {f}" for f in flip_failures(data, rans.decompress, range(8 * len(data)))]
    assert not failures, f"{len(failures)} flips misreported, e.g. {failures[:5]}"


def test_every_bit_flip_of_a_plain_header(sample: bytes) -> None:
    """The sample with its header stored as plain JSON: every flip in the preamble, header and
    padding after it is reported by region (flips in sections are the same as above)."""
    plain = rebuild(sample, lambda document: None, encoding=PLAIN)
    assert parse(plain).encoding == PLAIN
    end = parse(plain).sections[0].offset
    failures = flip_failures(plain, load_bytes, range(8 * end))
    assert not failures, f"{len(failures)} flips misreported, e.g. {failures[:5]}"


def test_every_bit_flip_of_small_plain_files(tmp_path: Any) -> None:
    """Files small enough that the writer stores their header as plain JSON: every flip is reported."""
    rans.save_file({}, tmp_path / "none.rans")
    files = {"scalar": rans.compress(np.uint8(3)), "no-tensors": (tmp_path / "none.rans").read_bytes()}
    for name, data in files.items():
        assert parse(data).encoding == PLAIN, name
        load = load_bytes if name == "no-tensors" else rans.decompress
        failures = flip_failures(data, load, range(8 * len(data)))
        assert not failures, f"{name}: {len(failures)} flips misreported, e.g. {failures[:5]}"


@given(st.data())
def test_bit_flips_in_a_larger_file(big: bytes, data: st.DataObject) -> None:
    """Hypothesis-drawn bit flips of a 128 Ki-element bf16 file are reported by region."""
    bits = data.draw(st.lists(st.integers(0, 8 * len(big) - 1), min_size=1, max_size=8))
    assert flip_failures(big, rans.decompress, bits) == []


def test_larger_file_has_32_lanes(big: bytes) -> None:
    """The larger file's coded plane uses 32 lanes in 2 chunks, so the flips above hit a full-width section."""
    exponent = next(s for s in parse(big).sections if s.mode == "coded" and s.plane == 0)
    assert (exponent.lanes, exponent.n_chunks) == (32, 2)


@pytest.mark.parametrize("position, field", [(9, "preamble"), (20, "preamble"), (28, "preamble"), (40, "header")])
def test_header_checksum_mismatch_is_a_checksum_error(sample: bytes, position: int, field: str) -> None:
    """ChecksumError is 'a stored CRC-32 does not match the bytes it covers': that includes preamble and header."""
    damaged = bytearray(sample)
    damaged[position] ^= 0x10
    check(raises(load_bytes, bytes(damaged)), ChecksumError, tensor=None, field=field, chunk=None)


@pytest.mark.parametrize("name", ["q", "w", "flags"])
def test_coded_section_flips_without_verification(singles: dict[str, bytes], name: str) -> None:
    """With verify=False a flip in a coded section's lane count, zero byte, stored word counts or table
    padding is still caught, by the coder (each of these flips is certain to break the layout)."""
    data = singles[name]
    parts = {"lanes", "lanes_zero", "counts", "table_padding"}
    spans = [(a, b, region) for a, b, region, _ in regions(data) if region in parts]
    # q has table padding and several chunks; a one-chunk section stores no word count
    assert {region for _, _, region in spans} >= ({"lanes", "lanes_zero"} | ({"counts", "table_padding"} if name == "q" else set()))
    spans = [(a, b) for a, b, _ in spans]
    for start, end in spans:
        for bit in range(8 * start, 8 * end):
            damaged = bytearray(data)
            damaged[bit // 8] ^= 1 << (bit % 8)
            error = raises(lambda d: rans.decompress(d, verify=False), bytes(damaged))
            check(error, CorruptDataError, tensor="", field="planes[0]")
            assert not isinstance(error, ChecksumError)


def test_section_flip_caught_by_crc_and_coder(singles: dict[str, bytes]) -> None:
    """A flip in a state of q is a ChecksumError with verification, and a chunk's integrity failure without."""
    data = singles["q"]
    start = next(a for a, _, region, _ in regions(data) if region == "states")
    damaged = bytearray(data)
    damaged[start + 4 * 2 + 3] ^= 0x40  # chunk 1, lane 0, top byte
    check(raises(rans.decompress, bytes(damaged)), ChecksumError, tensor="", field="crc32", chunk=None)
    error = raises(lambda d: rans.decompress(d, verify=False), bytes(damaged))
    check(error, CorruptDataError, tensor="", field="planes[0]", chunk=1)
    assert not isinstance(error, ChecksumError)


# Preamble


def with_preamble(data: bytes, *, magic: bytes = MAGIC, version: int = 1, encoding: int | None = None,
                  header_length: int | None = None, header_crc: int | None = None, fix_crc: bool = True) -> bytes:
    """The file with preamble fields replaced; the preamble CRC recomputed unless ``fix_crc`` is false."""
    _, _, old_encoding, old_length, old_crc, old_preamble_crc = struct.unpack_from("<8sIIQII", data)
    head = struct.pack(
        "<8sIIQI", magic, version, old_encoding if encoding is None else encoding,
        old_length if header_length is None else header_length,
        old_crc if header_crc is None else header_crc,
    )
    return head + struct.pack("<I", crc32(head) if fix_crc else old_preamble_crc) + data[32:]


@pytest.mark.parametrize("magic", [b"\x89RANS\r\n\x1b", b"\x89rans\r\n\x1a", b"PK\x03\x04\x00\x00\x00\x00", bytes(8)])
def test_wrong_magic(sample: bytes, magic: bytes) -> None:
    """A file whose magic bytes differ is not a rans file, whatever follows."""
    check(raises(load_bytes, with_preamble(sample, magic=magic)), NotRansDataError)
    check(raises(rans.decompress, magic + sample[8:]), NotRansDataError)


@pytest.mark.parametrize("version", [0, 2, 3, 255, 2**32 - 1])
def test_other_version_with_valid_crc(sample: bytes, singles: dict[str, bytes], version: int) -> None:
    """Another version with a correct preamble CRC is unsupported, even with garbage after the preamble."""
    check(raises(load_bytes, with_preamble(sample, version=version)), UnsupportedVersionError)
    check(raises(rans.decompress, with_preamble(singles["w"], version=version)), UnsupportedVersionError)
    future = with_preamble(sample, version=version)[:32] + b"\xff" * 10
    check(raises(load_bytes, future), UnsupportedVersionError)


@pytest.mark.parametrize("version", [0, 2, 2**32 - 1])
def test_other_version_without_crc_fix(sample: bytes, version: int) -> None:
    """A changed version field whose CRC was not fixed is damage (a checksum error), not a new version."""
    error = raises(load_bytes, with_preamble(sample, version=version, fix_crc=False))
    check(error, ChecksumError, field="preamble")
    assert not isinstance(error, UnsupportedVersionError)


@pytest.mark.parametrize("encoding", [2, 3, 0x100, 2**31, 2**32 - 1])
def test_unknown_header_encoding(sample: bytes, singles: dict[str, bytes], encoding: int) -> None:
    """A header encoding other than 0 (JSON) or 1 (zlib) is rejected, even with a correct CRC
    (so not as a checksum error), whatever the header holds."""
    for data in (sample, singles["ones"]):
        error = raises(load_bytes, with_preamble(data, encoding=encoding))
        check(error, CorruptDataError, tensor=None, field="preamble", chunk=None)
        assert not isinstance(error, ChecksumError)


@pytest.mark.parametrize("past_end", [1, 8, 1000, 2**40, 2**64 - 1], ids=str)
def test_header_length_too_long(sample: bytes, past_end: int) -> None:
    """A header length past the end of the file is truncation, and allocates nothing."""
    length = min(len(sample) - 32 + past_end, 2**64 - 1)
    check(raises(load_bytes, with_preamble(sample, header_length=length)), TruncatedDataError, field="header")


@pytest.mark.parametrize("encoding", [PLAIN, ZLIB])
def test_header_length_too_short_with_matching_crc(sample: bytes, encoding: int) -> None:
    """A header cut short (its CRC made to match) is not valid JSON, or a zlib stream that ends early."""
    data = rebuild(sample, lambda document: None, encoding=encoding)
    length = parse(data).header_length - 10
    damaged = with_preamble(data, header_length=length, header_crc=crc32(data[32 : 32 + length]))
    error = raises(load_bytes, damaged)
    check(error, CorruptDataError, field="header")
    assert not isinstance(error, ChecksumError)


def test_header_crc_wrong_preamble_crc_right(sample: bytes) -> None:
    """A header CRC that does not match the header is caught even when the preamble CRC covers it."""
    damaged = with_preamble(sample, header_crc=crc32(b"something else"))
    check(raises(load_bytes, damaged), ChecksumError, tensor=None, field="header")


# The zlib header encoding


def with_stored_header(sample: bytes, stored: bytes, encoding: int = ZLIB) -> bytes:
    """The sample with its stored header replaced by ``stored`` under ``encoding``, every checksum correct."""
    return assemble_stored(stored, encoding, parse(sample).blobs)


def zlib_stream(total: int, *, level: int = 9, block: int = 1 << 20) -> bytes:
    """A zlib stream of ``total`` zero bytes, made a block at a time (no ``total``-byte buffer)."""
    packer = zlib.compressobj(level)
    zeros = bytes(min(total, block))
    parts = []
    while total:
        parts.append(packer.compress(zeros[: min(total, block)]))
        total -= min(total, block)
    return b"".join(parts) + packer.flush()


def gzip_stream(text: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return packer.compress(text) + packer.flush()


def raw_deflate(text: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(text) + packer.flush()


def with_dictionary(text: bytes) -> bytes:
    packer = zlib.compressobj(9, zdict=b'{"tensors":[{"name":')
    return packer.compress(text) + packer.flush()


def bad_adler(text: bytes) -> bytes:
    packed = bytearray(zlib.compress(text, 9))
    packed[-1] ^= 1
    return bytes(packed)


HOSTILE_ZLIB = {
    "plain-json-claimed-zlib": lambda text: (text, ZLIB),
    "zlib-claimed-plain-json": lambda text: (zlib.compress(text, 9), PLAIN),
    "truncated-stream": lambda text: (zlib.compress(text, 9)[:-5], ZLIB),
    "stream-without-adler32": lambda text: (zlib.compress(text, 9)[:-4], ZLIB),
    "only-the-stream-header": lambda text: (zlib.compress(text, 9)[:2], ZLIB),
    "empty": lambda text: (b"", ZLIB),
    "trailing-zero-byte": lambda text: (zlib.compress(text, 9) + b"\x00", ZLIB),
    "trailing-garbage": lambda text: (zlib.compress(text, 9) + b"garbage", ZLIB),
    "two-streams": lambda text: (zlib.compress(text, 9) * 2, ZLIB),
    "adler32-wrong": lambda text: (bad_adler(text), ZLIB),
    "gzip-stream": lambda text: (gzip_stream(text), ZLIB),
    "raw-deflate": lambda text: (raw_deflate(text), ZLIB),
    "preset-dictionary": lambda text: (with_dictionary(text), ZLIB),
    "inflates-to-nothing": lambda text: (zlib.compress(b"", 9), ZLIB),
    "inflates-to-invalid-utf8": lambda text: (zlib.compress(b'{"tensors": [], "metadata": {"a": "\xff"}}'), ZLIB),
    "inflates-to-truncated-json": lambda text: (zlib.compress(text[:-1], 9), ZLIB),
    "inflates-to-json-and-trailing-data": lambda text: (zlib.compress(text + b" {}", 9), ZLIB),
    "inflates-to-a-zlib-stream": lambda text: (zlib.compress(zlib.compress(text, 9), 9), ZLIB),
}


@pytest.mark.parametrize("make", list(HOSTILE_ZLIB.values()), ids=list(HOSTILE_ZLIB))
def test_hostile_zlib_header(sample: bytes, make: Callable[[bytes], tuple[bytes, int]]) -> None:
    """A stored header that is not a valid zlib stream of the JSON (all checksums correct) is corrupt."""
    stored, encoding = make(parse(sample).text)
    error = raises(load_bytes, with_stored_header(sample, stored, encoding))
    check(error, CorruptDataError, tensor=None, field="header", chunk=None)
    assert not isinstance(error, (ChecksumError, TruncatedDataError))


@pytest.mark.parametrize("make", list(HOSTILE_ZLIB.values())[:6], ids=list(HOSTILE_ZLIB)[:6])
def test_hostile_zlib_header_through_load_metadata(sample: bytes, tmp_path: Any, make: Callable) -> None:
    """load_metadata, which reads only the header, rejects the same headers."""
    stored, encoding = make(parse(sample).text)
    path = tmp_path / "hostile.rans"
    path.write_bytes(with_stored_header(sample, stored, encoding))
    with pytest.raises(CorruptDataError) as info:
        rans.load_metadata(path)
    check(info.value, CorruptDataError, field="header")


def test_zlib_header_inflating_past_2_28_bytes(sample: bytes) -> None:
    """A header that inflates to 2**28 + 1 bytes (a 256 KiB bomb) is rejected, in bounded time."""
    stored = zlib_stream(MAX_HEADER + 1)
    assert len(stored) < 300_000
    with time_limit(20):
        error = raises(load_bytes, with_stored_header(sample, stored))
    check(error, CorruptDataError, tensor=None, field="header", chunk=None)


@pytest.mark.parametrize("spare", [1000, 1, 0, -1, -200])
def test_zlib_header_size_limit_boundary(sample: bytes, monkeypatch: pytest.MonkeyPatch, spare: int) -> None:
    """The reader inflates at most MAX_HEADER bytes: a header of exactly that many loads, one more does not
    (checked with the limit lowered to the sample's header, rather than with 256 MiB of JSON)."""
    text = parse(sample).text
    assert len(text) + spare > 0
    monkeypatch.setattr(rans.container, "MAX_HEADER", len(text) + spare)
    damaged = with_stored_header(sample, zlib.compress(text, 9))
    if spare >= 0:
        assert list(load_bytes(damaged)) == list(sample_tensors())
    else:
        check(raises(load_bytes, damaged), CorruptDataError, tensor=None, field="header")


def test_writer_header_size_limit(sample: bytes, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer refuses a header whose JSON would exceed MAX_HEADER (InvalidArgumentError, nothing written);
    exactly MAX_HEADER is allowed (checked with the limit lowered to the sample's header)."""
    size = len(parse(sample).text)
    monkeypatch.setattr(rans.container, "MAX_HEADER", size)
    assert sample_file(tmp_path / "ok.rans") == sample
    monkeypatch.setattr(rans.container, "MAX_HEADER", size - 1)
    with pytest.raises(InvalidArgumentError):
        sample_file(tmp_path / "big.rans")
    single = rans.compress(sample_tensors()["q"], chunk_size=SAMPLE_CHUNK)
    monkeypatch.setattr(rans.container, "MAX_HEADER", len(parse(single).text) - 1)
    with pytest.raises(InvalidArgumentError):
        rans.compress(sample_tensors()["q"], chunk_size=SAMPLE_CHUNK)
    assert [p.name for p in tmp_path.iterdir()] == ["ok.rans"]


def zlib_variants(text: bytes) -> dict[str, bytes]:
    out = {f"level-{level}": zlib.compress(text, level) for level in range(10)}
    for wbits in (9, 12, 15):
        for strategy in (zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED, zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE, zlib.Z_FIXED):
            packer = zlib.compressobj(6, zlib.DEFLATED, wbits, 1, strategy)
            out[f"wbits-{wbits}-strategy-{strategy}"] = packer.compress(text) + packer.flush()
    packer = zlib.compressobj(9)
    half = len(text) // 2
    out["full-flush-midway"] = packer.compress(text[:half]) + packer.flush(zlib.Z_FULL_FLUSH) + packer.compress(
        text[half:]
    ) + packer.flush()
    packer = zlib.compressobj(9)
    out["sync-flush-per-byte"] = b"".join(packer.compress(text[i : i + 1]) + packer.flush(zlib.Z_SYNC_FLUSH)
                                          for i in range(len(text))) + packer.flush()
    return out


def test_reader_accepts_any_valid_zlib_stream(sample: bytes) -> None:
    """Readers accept any valid zlib stream of the JSON (levels, window sizes, strategies, flushes)."""
    text = parse(sample).text
    expected = load_bytes(sample)
    for name, stored in zlib_variants(text).items():
        assert zlib.decompress(stored) == text
        out = load_bytes(with_stored_header(sample, stored))
        assert list(out) == list(expected), name
        for key in expected:
            assert_identical(expected[key], out[key])


def test_reader_accepts_plain_json_with_whitespace(sample: bytes) -> None:
    """Readers accept any valid JSON: whitespace, escaped characters, other key order, as JSON or zlib."""
    document = parse(sample).document
    reordered = {"metadata": document["metadata"], "tensors": [dict(reversed(t.items())) for t in document["tensors"]]}
    text = json.dumps(reordered, indent=4, ensure_ascii=True).encode("ascii")
    expected = load_bytes(sample)
    for encoding in (PLAIN, ZLIB):
        out = load_bytes(rebuild_text(sample, text, encoding))
        assert list(out) == list(expected)
        for key in expected:
            assert_identical(expected[key], out[key])


# Hostile headers with correct checksums


def set_in(name: str, key: str, value: Any) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        tensor(document, name)[key] = value

    return edit


def set_plane(name: str, plane: int, value: Any) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        tensor(document, name)["planes"][plane] = value

    return edit


def drop_key(name: str, key: str) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        del tensor(document, name)[key]

    return edit


def edit_planes(name: str, change: Callable[[list], list]) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        t = tensor(document, name)
        t["planes"] = change(t["planes"])

    return edit


def edit_key(name: str, key: str, change: Callable[[Any], Any]) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        t = tensor(document, name)
        t[key] = change(t[key])

    return edit


def edits(*steps: Callable[[dict], None]) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        for step in steps:
            step(document)

    return edit


def set_metadata(value: Any) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        document["metadata"] = value

    return edit


def coded_plus(name: str, delta: int) -> Callable[[dict], None]:
    return edit_key(name, "coded", lambda coded: [coded[0] + delta] + coded[1:])


def drop_top(key: str) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        del document[key]

    return edit


def swap_crcs(a: str, b: str) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        ta, tb = tensor(document, a), tensor(document, b)
        ta["crc32"], tb["crc32"] = tb["crc32"], ta["crc32"]

    return edit


class TextEdit:
    """An edit of the header's JSON text itself (for what a parsed document cannot express)."""

    def __init__(self, change: Callable[[bytes], bytes]) -> None:
        self.change = change


def duplicate_key(key: str, occurrence: int = 0, value: Any = "same") -> TextEdit:
    """Repeat the ``occurrence``-th ``"key": value`` pair of the header text, with its value or ``value``."""

    def change(text: bytes) -> bytes:
        decoded = text.decode("utf-8")
        pattern = json.dumps(key) + ":"
        at = -1
        for _ in range(occurrence + 1):
            at = decoded.index(pattern, at + 1)
        old, end = json.JSONDecoder().raw_decode(decoded, at + len(pattern))
        new = old if value == "same" else value
        repeated = f",{pattern}{json.dumps(new, separators=(',', ':'), ensure_ascii=False)}"
        return (decoded[:end] + repeated + decoded[end:]).encode("utf-8")

    return TextEdit(change)


BIG = 2**48
HOSTILE_HEADERS = [
    # shapes
    ("shape-2**60-elements", set_in("w", "shape", [2**30, 2**30]), CorruptDataError, "w", "shape"),
    ("shape-product-above-2**48", set_in("q", "shape", [2**24 + 1, 2**24]), CorruptDataError, "q", "shape"),
    ("shape-dim-2**48+1", set_in("q", "shape", [BIG + 1]), CorruptDataError, "q", "shape"),
    ("shape-dim-2**48+1-times-zero", set_in("empty", "shape", [0, BIG + 1]), CorruptDataError, "empty", "shape"),
    ("shape-dim-2**62-times-zero", set_in("empty", "shape", [2**62, 0]), CorruptDataError, "empty", "shape"),
    ("shape-dim-2**64", set_in("q", "shape", [2**64]), CorruptDataError, "q", "shape"),
    ("shape-negative-dim", set_in("w", "shape", [-1, 512]), CorruptDataError, "w", "shape"),
    ("shape-two-negative-dims", set_in("w", "shape", [-2, -256]), CorruptDataError, "w", "shape"),
    ("shape-65-dims", set_in("w", "shape", [1] * 64 + [512]), CorruptDataError, "w", "shape"),
    ("shape-float-dim", set_in("w", "shape", [512.0]), CorruptDataError, "w", "shape"),
    ("shape-nan-dim", set_in("w", "shape", [float("nan")]), CorruptDataError, "w", "shape"),
    ("shape-string-dim", set_in("w", "shape", ["512"]), CorruptDataError, "w", "shape"),
    ("shape-null-dim", set_in("w", "shape", [None]), CorruptDataError, "w", "shape"),
    ("shape-bool-dim", set_in("flags", "shape", [True] * 40), CorruptDataError, "flags", "shape"),
    ("shape-bool-dims-as-ints", set_in("flags", "shape", [40, True]), CorruptDataError, "flags", "shape"),
    ("shape-not-a-list", set_in("w", "shape", 512), CorruptDataError, "w", "shape"),
    ("shape-object", set_in("w", "shape", {"0": 512}), CorruptDataError, "w", "shape"),
    ("shape-null", set_in("w", "shape", None), CorruptDataError, "w", "shape"),
    ("shape-2**48-coded-cannot-hold", set_in("q", "shape", [BIG]), CorruptDataError, "q", "planes[0]"),
    ("shape-larger-than-coded-plane", set_in("q", "shape", [20000]), CorruptDataError, "q", "planes[0]"),
    ("shape-larger-raw-planes-move-the-crc-span", set_in("bias", "shape", [4]), ChecksumError, "bias", "crc32"),
    ("shape-smaller-raw-planes-leave-padding", set_in("bias", "shape", [2]), CorruptDataError, "bias", "padding"),
    ("shape-larger-raw-plane-spills", set_in("w", "shape", [1000]), TruncatedDataError, None, "sections"),
    ("dtype-wider-coded-plane-cannot-hold", set_in("q", "dtype", "I16"), CorruptDataError, "q", "planes[0]"),
    # coded lengths that lie
    ("coded-length-huge", set_in("q", "coded", [2**62]), CorruptDataError, "q", "planes[0]"),
    ("coded-length-2**64", set_in("q", "coded", [2**64]), CorruptDataError, "q", "planes[0]"),
    ("coded-length-plus-8", coded_plus("q", 8), TruncatedDataError, None, "sections"),
    ("coded-length-minus-2-leaves-data-in-padding", coded_plus("q", -2), CorruptDataError, "w", "padding"),
    ("coded-length-minus-4-shifts-later-sections", coded_plus("q", -4), CorruptDataError, None, "sections"),
    ("coded-length-minus-8", coded_plus("q", -8), CorruptDataError, None, "sections"),
    ("coded-length-11", set_in("q", "coded", [11]), CorruptDataError, "q", "planes[0]"),
    ("coded-length-zero", set_in("q", "coded", [0]), CorruptDataError, "q", "planes[0]"),
    ("coded-length-negative", set_in("q", "coded", [-1]), CorruptDataError, "q", "planes[0]"),
    # the 'coded' list
    ("coded-missing", drop_key("q", "coded"), CorruptDataError, "q", "coded"),
    ("coded-extra-length", edit_key("q", "coded", lambda c: c + [16]), CorruptDataError, "q", "coded"),
    ("coded-empty-list", set_in("q", "coded", []), CorruptDataError, "q", "coded"),
    ("coded-int", edit_key("q", "coded", lambda c: c[0]), CorruptDataError, "q", "coded"),
    ("coded-null", set_in("q", "coded", None), CorruptDataError, "q", "coded"),
    ("coded-object", edit_key("q", "coded", lambda c: {"0": c[0]}), CorruptDataError, "q", "coded"),
    ("coded-string-length", edit_key("q", "coded", lambda c: [str(c[0])]), CorruptDataError, "q", "coded"),
    ("coded-float-length", edit_key("q", "coded", lambda c: [float(c[0])]), CorruptDataError, "q", "coded"),
    ("coded-bool-length", set_in("q", "coded", [True]), CorruptDataError, "q", "coded"),
    ("coded-null-length", set_in("q", "coded", [None]), CorruptDataError, "q", "coded"),
    ("coded-nested-list", edit_key("q", "coded", lambda c: [c]), CorruptDataError, "q", "coded"),
    ("coded-on-raw-only-tensor", set_in("bias", "coded", [16]), CorruptDataError, "bias", "coded"),
    ("coded-on-const-only-tensor", set_in("ones", "coded", [16]), CorruptDataError, "ones", "coded"),
    ("coded-missing-for-w", drop_key("w", "coded"), CorruptDataError, "w", "coded"),
    ("coded-plane-without-length", set_plane("scales", 1, "c"), CorruptDataError, "scales", "coded"),
    ("raw-plane-made-coded", set_plane("bias", 0, "c"), CorruptDataError, "bias", "coded"),
    ("coded-plane-made-raw-length-left", set_plane("q", 0, "r"), CorruptDataError, "q", "coded"),
    ("coded-plane-made-raw", edits(set_plane("q", 0, "r"), drop_key("q", "coded")),
     TruncatedDataError, None, "sections"),
    ("coded-on-empty-tensor", edits(set_plane("empty", 0, "c"), set_in("empty", "coded", [300])),
     CorruptDataError, "empty", "planes[0]"),
    # crc32
    ("crc32-missing", drop_key("q", "crc32"), CorruptDataError, "q", "crc32"),
    ("crc32-missing-raw-only", drop_key("bias", "crc32"), CorruptDataError, "bias", "crc32"),
    ("crc32-missing-empty-section", drop_key("empty", "crc32"), CorruptDataError, "empty", "crc32"),
    ("crc32-without-sections", set_in("ones", "crc32", 0), CorruptDataError, "ones", "crc32"),
    ("crc32-negative", set_in("q", "crc32", -1), CorruptDataError, "q", "crc32"),
    ("crc32-2**32", set_in("q", "crc32", 2**32), CorruptDataError, "q", "crc32"),
    ("crc32-2**64", set_in("bias", "crc32", 2**64), CorruptDataError, "bias", "crc32"),
    ("crc32-string", edit_key("q", "crc32", str), CorruptDataError, "q", "crc32"),
    ("crc32-float", edit_key("q", "crc32", float), CorruptDataError, "q", "crc32"),
    ("crc32-bool", set_in("empty", "crc32", False), CorruptDataError, "empty", "crc32"),
    ("crc32-null", set_in("q", "crc32", None), CorruptDataError, "q", "crc32"),
    ("crc32-list", edit_key("q", "crc32", lambda c: [c]), CorruptDataError, "q", "crc32"),
    ("crc32-wrong-value", edit_key("q", "crc32", lambda c: c ^ 1), ChecksumError, "q", "crc32"),
    ("crc32-swapped", swap_crcs("w", "q"), ChecksumError, "q", "crc32"),
    # dtype
    ("dtype-unknown", set_in("w", "dtype", "F128"), CorruptDataError, "w", "dtype"),
    ("dtype-lowercase", set_in("w", "dtype", "bf16"), CorruptDataError, "w", "dtype"),
    ("dtype-number", set_in("w", "dtype", 5), CorruptDataError, "w", "dtype"),
    ("dtype-null", set_in("w", "dtype", None), CorruptDataError, "w", "dtype"),
    ("dtype-list", set_in("w", "dtype", ["BF16"]), CorruptDataError, "w", "dtype"),
    ("dtype-object", set_in("w", "dtype", {"BF16": 1}), CorruptDataError, "w", "dtype"),
    # the split is implied, no longer a key
    ("split-key-now-unknown", set_in("w", "split", "float"), CorruptDataError, "w", "header"),
    ("split-none-key-now-unknown", set_in("bias", "split", "none"), CorruptDataError, "bias", "header"),
    # plane counts
    ("planes-3-for-bf16", edit_planes("w", lambda p: p + [0]), CorruptDataError, "w", "planes"),
    ("planes-2-for-f32", edit_planes("scales", lambda p: p[:2]), CorruptDataError, "scales", "planes"),
    ("planes-3-for-f32", edit_planes("bias", lambda p: p[:3]), CorruptDataError, "bias", "planes"),
    ("planes-5-for-f32", edit_planes("ones", lambda p: p + [0]), CorruptDataError, "ones", "planes"),
    ("planes-3-for-int8", edit_planes("q", lambda p: p + [0, 0]), CorruptDataError, "q", "planes"),
    ("planes-2-for-bool", edit_planes("flags", lambda p: p + [0]), CorruptDataError, "flags", "planes"),
    ("planes-none", edit_planes("q", lambda p: []), CorruptDataError, "q", "planes"),
    ("planes-object", edit_planes("q", lambda p: {"0": p[0]}), CorruptDataError, "q", "planes"),
    ("planes-string", set_in("q", "planes", "c"), CorruptDataError, "q", "planes"),
    ("planes-null", set_in("q", "planes", None), CorruptDataError, "q", "planes"),
    ("planes-one-for-bf16-moves-sections", edit_planes("w", lambda p: p[:1]), CorruptDataError, None, "sections"),
    # plane entries
    ("plane-unknown-letter", set_plane("bias", 1, "x"), CorruptDataError, "bias", "planes[1]"),
    ("plane-uppercase-R", set_plane("bias", 0, "R"), CorruptDataError, "bias", "planes[0]"),
    ("plane-uppercase-C", set_plane("scales", 2, "C"), CorruptDataError, "scales", "planes[2]"),
    ("plane-old-word-raw", set_plane("bias", 0, "raw"), CorruptDataError, "bias", "planes[0]"),
    ("plane-old-word-coded", set_plane("bias", 1, "coded"), CorruptDataError, "bias", "planes[1]"),
    ("plane-old-word-const", set_plane("scales", 1, "const"), CorruptDataError, "scales", "planes[1]"),
    ("plane-old-list-raw", set_plane("bias", 0, ["raw", 3, 0]), CorruptDataError, "bias", "planes[0]"),
    ("plane-old-list-const", set_plane("ones", 1, ["const", 0]), CorruptDataError, "ones", "planes[1]"),
    ("plane-old-list-coded", set_plane("q", 0, ["coded", 820, 0, 256]), CorruptDataError, "q", "coded"),
    ("plane-list", set_plane("bias", 0, ["r"]), CorruptDataError, "bias", "planes[0]"),
    ("plane-object", set_plane("bias", 0, {"mode": "r"}), CorruptDataError, "bias", "planes[0]"),
    ("plane-empty-string", set_plane("bias", 0, ""), CorruptDataError, "bias", "planes[0]"),
    ("plane-rr", set_plane("bias", 0, "rr"), CorruptDataError, "bias", "planes[0]"),
    ("plane-null", set_plane("bias", 1, None), CorruptDataError, "bias", "planes[1]"),
    ("plane-true", set_plane("ones", 0, True), CorruptDataError, "ones", "planes[0]"),
    ("plane-false", set_plane("scales", 1, False), CorruptDataError, "scales", "planes[1]"),
    ("const-256", set_plane("scales", 1, 256), CorruptDataError, "scales", "planes[1]"),
    ("const-negative", set_plane("scales", 1, -1), CorruptDataError, "scales", "planes[1]"),
    ("const-2**64", set_plane("ones", 3, 2**64), CorruptDataError, "ones", "planes[3]"),
    ("const-float", set_plane("scales", 1, 0.0), CorruptDataError, "scales", "planes[1]"),
    ("const-fraction", set_plane("ones", 0, 127.5), CorruptDataError, "ones", "planes[0]"),
    ("const-string", set_plane("scales", 1, "0"), CorruptDataError, "scales", "planes[1]"),
    ("raw-plane-made-const", set_plane("bias", 0, 0), CorruptDataError, None, "sections"),
    # names and keys
    ("duplicate-names", set_in("bias", "name", "w"), CorruptDataError, "w", "name"),
    ("duplicate-names-without-sections", set_in("ones", "name", "q"), CorruptDataError, "q", "name"),
    ("name-number", set_in("w", "name", 1), CorruptDataError, None, "header"),
    ("name-null", set_in("w", "name", None), CorruptDataError, None, "header"),
    ("name-missing", drop_key("w", "name"), CorruptDataError, None, "header"),
    ("tensor-unknown-key", set_in("w", "extra", 1), CorruptDataError, "w", "header"),
    ("tensor-old-key-chunk", set_in("q", "chunk", 256), CorruptDataError, "q", "header"),
    ("tensor-missing-dtype", drop_key("q", "dtype"), CorruptDataError, "q", "header"),
    ("tensor-missing-shape", drop_key("q", "shape"), CorruptDataError, "q", "header"),
    ("tensor-missing-planes", drop_key("q", "planes"), CorruptDataError, "q", "header"),
    ("tensor-not-object", lambda d: d["tensors"].__setitem__(0, ["w"]), CorruptDataError, None, "header"),
    ("top-unknown-key", lambda d: d.__setitem__("extra", {}), CorruptDataError, None, "header"),
    ("top-missing-tensors", drop_top("tensors"), CorruptDataError, None, "header"),
    ("tensors-object", lambda d: d.__setitem__("tensors", {"w": 1}), CorruptDataError, None, "header"),
    ("tensors-null", lambda d: d.__setitem__("tensors", None), CorruptDataError, None, "header"),
    # the same key twice in one object, same value or not
    ("duplicate-key-name", duplicate_key("name"), CorruptDataError, None, "header"),
    ("duplicate-key-dtype", duplicate_key("dtype", 2), CorruptDataError, None, "header"),
    ("duplicate-key-shape-other-value", duplicate_key("shape", value=[1]), CorruptDataError, None, "header"),
    ("duplicate-key-planes", duplicate_key("planes", 3), CorruptDataError, None, "header"),
    ("duplicate-key-coded", duplicate_key("coded", 2), CorruptDataError, None, "header"),
    ("duplicate-key-crc32", duplicate_key("crc32", 2), CorruptDataError, None, "header"),
    ("duplicate-key-crc32-other-value", duplicate_key("crc32", value=0), CorruptDataError, None, "header"),
    ("duplicate-key-tensors", duplicate_key("tensors", value=[]), CorruptDataError, None, "header"),
    ("duplicate-key-metadata", duplicate_key("metadata"), CorruptDataError, None, "header"),
    ("duplicate-key-in-metadata", duplicate_key("origin"), CorruptDataError, None, "header"),
    # the document itself
    ("json-array", header_text([]), CorruptDataError, None, "header"),
    ("json-string", header_text("tensors"), CorruptDataError, None, "header"),
    ("json-number", header_text(1), CorruptDataError, None, "header"),
    ("json-null", header_text(None), CorruptDataError, None, "header"),
    ("json-true", header_text(True), CorruptDataError, None, "header"),
    ("json-empty-text", b"", CorruptDataError, None, "header"),
    ("json-unclosed", b'{"tensors": [', CorruptDataError, None, "header"),
    ("json-trailing-data", b'{"tensors": []} {}', CorruptDataError, None, "header"),
    ("json-nul", b"\x00", CorruptDataError, None, "header"),
    ("json-nested-100000", b"[" * 100_000 + b"]" * 100_000, CorruptDataError, None, "header"),
    ("json-nested-objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, CorruptDataError, None, "header"),
    ("json-5000-digit-int", b'{"tensors": [], "metadata": {"a": ' + b"9" * 5000 + b"}}",
     CorruptDataError, None, "header"),
    ("json-duplicate-top-keys", b'{"tensors": [], "tensors": []}', CorruptDataError, None, "header"),
    ("utf8-invalid-byte", b'{"tensors": [], "metadata": {"a": "\xff"}}', CorruptDataError, None, "header"),
    ("utf8-overlong", b'{"tensors": [], "metadata": {"a": "\xc0\xaf"}}', CorruptDataError, None, "header"),
    ("utf8-surrogate", b'{"tensors": [], "metadata": {"a": "\xed\xa0\x80"}}', CorruptDataError, None, "header"),
    ("utf8-truncated", b'{"tensors": [], "metadata": {"a": "\xe2\x9c"}}', CorruptDataError, None, "header"),
    ("utf16", '{"tensors": []}'.encode("utf-16"), CorruptDataError, None, "header"),
    ("utf8-bom", b'\xef\xbb\xbf{"tensors": []}', CorruptDataError, None, "header"),
    # metadata
    ("metadata-int-value", set_metadata({"a": 1}), CorruptDataError, None, "metadata"),
    ("metadata-null-value", set_metadata({"a": None}), CorruptDataError, None, "metadata"),
    ("metadata-list-value", set_metadata({"a": ["b"]}), CorruptDataError, None, "metadata"),
    ("metadata-object-value", set_metadata({"a": {"b": "c"}}), CorruptDataError, None, "metadata"),
    ("metadata-list", set_metadata(["a", "b"]), CorruptDataError, None, "metadata"),
    ("metadata-string", set_metadata("a"), CorruptDataError, None, "metadata"),
    ("metadata-null", set_metadata(None), CorruptDataError, None, "metadata"),
]


def apply_header_edit(sample: bytes, edit: Callable | bytes | TextEdit, encoding: int) -> bytes:
    if isinstance(edit, bytes):
        return rebuild_text(sample, edit, encoding)
    if isinstance(edit, TextEdit):
        return rebuild_text(sample, edit.change(parse(sample).text), encoding)
    return rebuild(sample, edit, encoding)


@pytest.mark.parametrize("encoding", [PLAIN, ZLIB], ids=["json", "zlib"])
@pytest.mark.parametrize(
    "edit, kind, tensor_name, field", [case[1:] for case in HOSTILE_HEADERS], ids=[case[0] for case in HOSTILE_HEADERS]
)
def test_hostile_header(
    sample: bytes, edit: Any, kind: type, tensor_name: str | None, field: str, encoding: int
) -> None:
    """A header edited with correct checksums, stored as JSON or zlib, is rejected with the right
    class, tensor and field."""
    damaged = apply_header_edit(sample, edit, encoding)
    assert struct.unpack_from("<I", damaged, 12)[0] == encoding
    assert damaged != sample
    with time_limit(10):
        error = raises(load_bytes, damaged)
    check(error, kind, tensor=tensor_name, field=field)
    if kind is CorruptDataError:
        assert not isinstance(error, (ChecksumError, TruncatedDataError)), f"{type(error).__name__}: {error}"


def test_hostile_header_ids_are_unique() -> None:
    names = [case[0] for case in HOSTILE_HEADERS]
    assert len(names) == len(set(names))


def test_duplicate_key_helper_makes_valid_json_with_a_repeated_key(sample: bytes) -> None:
    """The text edits above only repeat a key: the JSON stays valid and parses to the same document."""
    text = parse(sample).text
    edited = duplicate_key("crc32", 2).change(text)
    assert edited.count(b'"crc32"') == text.count(b'"crc32"') + 1
    assert json.loads(edited) == json.loads(text)


def test_rebuild_without_edits_is_identity(sample: bytes) -> None:
    """The helper that rebuilds files reproduces rans's output exactly (so edits are all that differ)."""
    assert rebuild(sample, lambda document: None) == sample
    for index, blob in enumerate(parse(sample).blobs):
        assert replace_section(sample, index, blob) == sample


def test_64_dims_are_accepted(singles: dict[str, bytes]) -> None:
    """The limit is 64 dimensions: a 64-dimensional shape with the right size decodes."""
    data = rebuild(singles["w"], lambda d: d["tensors"][0].__setitem__("shape", [1] * 63 + [512]))
    out = rans.decompress(data)
    assert out.shape == (1,) * 63 + (512,)
    assert_identical(sample_tensors()["w"].reshape(out.shape), out)


@pytest.mark.parametrize("dtype", [[], {}, ["BF16"]], ids=repr)
def test_unhashable_dtype(sample: bytes, dtype: Any) -> None:
    """A dtype that is a JSON array or object is an unknown dtype."""
    check(raises(load_bytes, rebuild(sample, set_in("w", "dtype", dtype))), CorruptDataError, tensor="w", field="dtype")


@pytest.mark.parametrize("shape", [[0, 2**62], [0, 2**63], [2**70, 0], [0, BIG + 1], [BIG + 1, 0, 0]], ids=str)
def test_zero_size_shape_with_dims_above_2_48(sample: bytes, shape: list[int]) -> None:
    """A zero-element shape with a dimension above 2**48 is rejected in the shape field."""
    check(raises(load_bytes, rebuild(sample, set_in("empty", "shape", shape))), CorruptDataError,
          tensor="empty", field="shape")


@pytest.mark.parametrize("shape", [[BIG, 0], [0, BIG], [0, 2**20, 2**20], [1, 0, BIG]], ids=str)
def test_zero_size_shape_with_dims_at_the_limit(sample: bytes, shape: list[int]) -> None:
    """Zero-element shapes whose dimensions are all within 2**48 are valid and decode to that shape."""
    out = load_bytes(rebuild(sample, set_in("empty", "shape", shape)))["empty"]
    assert out.shape == tuple(shape)
    assert out.dtype == ml_dtypes.bfloat16


@pytest.mark.parametrize("shape", [[0, 2**40, 2**40], [BIG, BIG, 0]], ids=str)
def test_zero_size_shape_numpy_cannot_make(sample: bytes, shape: list[int]) -> None:
    """A zero-element shape NumPy cannot make (valid per the format) fails as a RansError, if not decoded."""
    try:
        out = load_bytes(rebuild(sample, set_in("empty", "shape", shape)))["empty"]
    except RansError as e:
        check(e, CorruptDataError, tensor="empty")
        return
    assert out.shape == tuple(shape)


@pytest.mark.parametrize("name", ["bias", "ones", "empty"])
def test_empty_coded_list_without_coded_planes(sample: bytes, name: str) -> None:
    """'coded': [] on a tensor with no coded plane is a key that must be absent."""
    check(raises(load_bytes, rebuild(sample, set_in(name, "coded", []))), CorruptDataError, tensor=name, field="coded")


@pytest.mark.parametrize("value", [1, 2**32 - 1])
def test_crc32_of_an_empty_span_is_checked(sample: bytes, value: int) -> None:
    """A tensor whose only section is empty has crc32 0 (the CRC-32 of no bytes); another value is a mismatch."""
    assert tensor(parse(sample).document, "empty")["crc32"] == crc32(b"") == 0
    damaged = rebuild(sample, set_in("empty", "crc32", value))
    check(raises(load_bytes, damaged), ChecksumError, tensor="empty", field="crc32")


def test_crc32_covers_the_padding_between_sections(sample: bytes) -> None:
    """The tensor CRC-32 covers the span with its padding: the sections' CRCs joined without it do not match."""
    parsed = parse(sample)
    blobs = [parsed.blobs[i] for i in parsed.of_tensor("bias")]
    entry = tensor(parsed.document, "bias")
    assert entry["crc32"] == tensor_crc(blobs) != crc32(b"".join(blobs))
    damaged = rebuild(sample, set_in("bias", "crc32", crc32(b"".join(blobs))))
    check(raises(load_bytes, damaged), ChecksumError, tensor="bias", field="crc32")


# Hostile coded sections with correct CRCs

Q_SYMBOLS = 8244
Q_LAST = 32


def q_section(sample: bytes) -> tuple[int, Coded]:
    """Index and parts of the coded section of ``q`` (8244 symbols, 2 lanes: 32 chunks of 256 and one of 52)."""
    index = section_index(sample, "q", 0)
    return index, Coded.split(parse(sample).blobs[index], Q_SYMBOLS)


def test_q_section_shape(sample: bytes) -> None:
    """The section the hostile-section tests edit has 2 lanes, 33 chunks with words in each, and table padding."""
    _, parts = q_section(sample)
    assert (parts.lanes, parts.zero, parts.chunk) == (2, 0, SAMPLE_CHUNK)
    assert parts.states.shape == (Q_LAST + 1, 2)
    assert parts.counts.min() > 0
    assert len(parts.padding) > 0
    assert len(parts.words) == parts.counts.sum()


def edit_parts(change: Callable[[Coded], None]) -> Callable[[bytes], bytes]:
    def make(sample: bytes) -> bytes:
        index, parts = q_section(sample)
        change(parts)
        return replace_section(sample, index, parts.join())

    return make


def set_field(name: str, value: Any) -> Callable[[Coded], None]:
    def change(parts: Coded) -> None:
        setattr(parts, name, value)

    return change


def set_array(name: str, key: Any, value: Any) -> Callable[[Coded], None]:
    def change(parts: Coded) -> None:
        getattr(parts, name)[key] = value

    return change


def garble_words(first: int) -> Callable[[Coded], None]:
    def change(parts: Coded) -> None:
        rng = np.random.default_rng(5)
        start = int(parts.counts[:first].sum())
        parts.words[start:] = rng.integers(0, 1 << 16, len(parts.words) - start)

    return change


def shift_count(parts: Coded) -> None:
    parts.counts[0] += 1
    parts.counts[1] -= 1


def drop_last_word(parts: Coded) -> None:
    parts.counts[-1] -= 1
    parts.words = parts.words[:-1]


def extra_last_word(parts: Coded) -> None:
    parts.counts[-1] += 1
    parts.words = np.append(parts.words, np.uint16(0x1234))


def other_table(parts: Coded) -> None:
    """The same symbols with other frequencies: every symbol codes differently."""
    freq, _ = tables.parse(parts.table)
    present = np.flatnonzero(freq)
    other = np.zeros(256, dtype=np.int64)
    other[present] = 1
    other[present[-1]] += 4096 - len(present)
    parts.table = tables.serialize(other)
    parts.padding = bytes(-len(parts.table) % 4)


def set_table(table: bytes) -> Callable[[Coded], None]:
    def change(parts: Coded) -> None:
        parts.table = table
        parts.padding = bytes(-len(table) % 4)

    return change


def set_padding(parts: Coded) -> None:
    parts.padding = b"\x01" + parts.padding[1:]


def last_count(count: int) -> Callable[[Coded], None]:
    """Give the last chunk (whose word count is implied by the section's length) ``count`` words."""

    def change(parts: Coded) -> None:
        extra = count - int(parts.counts[-1])
        parts.words = np.append(parts.words, np.full(extra, 0x1234, dtype=np.uint16)) if extra > 0 else parts.words[: len(parts.words) + extra]
        parts.counts[-1] = count

    return change


def count_plus_one(parts: Coded) -> None:
    parts.counts[0] += 1


def shorten_to_states(parts: Coded) -> None:
    """Keep the table and states but drop most of the counts and all words."""
    parts.counts = parts.counts[:1]
    parts.words = parts.words[:0]


def keep_lanes(lanes: int) -> Callable[[Coded], None]:
    """Claim ``lanes`` lanes and lay the states out to match: drop lanes, or add lanes in state L."""

    def change(parts: Coded) -> None:
        k, w = parts.states.shape
        if lanes <= w:
            parts.states = parts.states[:, :lanes]
        else:
            parts.states = np.hstack([parts.states, np.full((k, lanes - w), 1 << 16, dtype=parts.states.dtype)])
        parts.lanes = lanes

    return change


HOSTILE_SECTIONS = [
    # word counts and words
    ("count-exceeds-chunk-0", edit_parts(set_array("counts", 0, 257)), 0),
    ("count-exceeds-short-last-chunk", edit_parts(last_count(53)), Q_LAST),
    ("count-2**32-1", edit_parts(set_array("counts", Q_LAST - 1, 2**32 - 1)), Q_LAST - 1),
    ("counts-sum-mismatch", edit_parts(count_plus_one), "any"),
    ("counts-shifted-between-chunks", edit_parts(shift_count), 0),
    ("word-missing", edit_parts(drop_last_word), Q_LAST),
    ("word-extra", edit_parts(extra_last_word), Q_LAST),
    ("words-garbage-chunk-1", edit_parts(garble_words(1)), 1),
    ("words-garbage-all", edit_parts(garble_words(0)), 0),
    ("section-too-short-for-counts", edit_parts(shorten_to_states), None),
    # states
    ("state-below-L", edit_parts(set_array("states", (1, 1), 0xFFFF)), 1),
    ("states-zero", edit_parts(set_array("states", 0, 0)), 0),
    ("state-changed", edit_parts(set_array("states", (0, 1), 0x12345678)), 0),
    ("state-changed-last-chunk-lane-1", edit_parts(set_array("states", (Q_LAST, 1), 0x12345678)), Q_LAST),
    ("states-all-max", edit_parts(set_array("states", slice(None), 2**32 - 1)), 0),
    # table
    ("table-other-valid", edit_parts(other_table), "any"),
    ("table-padding-nonzero", edit_parts(set_padding), None),
    # the section header: lane count
    ("lanes-0", edit_parts(set_field("lanes", 0)), None),
    ("lanes-3", edit_parts(set_field("lanes", 3)), None),
    ("lanes-6", edit_parts(set_field("lanes", 6)), None),
    ("lanes-33", edit_parts(set_field("lanes", 33)), None),
    ("lanes-64", edit_parts(set_field("lanes", 64)), None),
    ("lanes-255", edit_parts(set_field("lanes", 255)), None),
    ("lanes-1-states-reinterpreted", edit_parts(set_field("lanes", 1)), "?"),
    ("lanes-4-states-reinterpreted", edit_parts(set_field("lanes", 4)), "?"),
    ("lanes-1-consistent-layout", edit_parts(keep_lanes(1)), "any"),
    ("lanes-4-consistent-layout", edit_parts(keep_lanes(4)), "any"),
    ("lanes-32-consistent-layout", edit_parts(keep_lanes(32)), "any"),
    # the section header: zero byte
    ("zero-byte-1", edit_parts(set_field("zero", 1)), None),
    ("zero-byte-128", edit_parts(set_field("zero", 0x80)), None),
    ("zero-byte-255", edit_parts(set_field("zero", 0xFF)), None),
    # the section header: chunk size / 128
    ("chunk-field-0", edit_parts(set_field("groups", 0)), None),
    ("chunk-field-above-2**22", edit_parts(set_field("groups", (1 << 15) + 1)), None),
    ("chunk-field-65535", edit_parts(set_field("groups", 0xFFFF)), None),
    ("chunk-field-128", edit_parts(set_field("groups", 1)), "?"),
    ("chunk-field-384", edit_parts(set_field("groups", 3)), "?"),
    ("chunk-field-512", edit_parts(set_field("groups", 4)), "?"),
    ("chunk-field-2**22", edit_parts(set_field("groups", 1 << 15)), "?"),
]


@pytest.mark.parametrize("make, chunk", [c[1:] for c in HOSTILE_SECTIONS], ids=[c[0] for c in HOSTILE_SECTIONS])
def test_hostile_coded_section(sample: bytes, make: Callable[[bytes], bytes], chunk: Any) -> None:
    """A coded section with hostile content and a correct CRC is corrupt data naming tensor and chunk
    (None for a section whose header or layout is wrong, "any" for some chunk, "?" unchecked)."""
    damaged = make(sample)
    assert damaged != sample
    with time_limit(10):
        error = raises(load_bytes, damaged)
    check(error, CorruptDataError, tensor="q", field="planes[0]")
    assert not isinstance(error, (ChecksumError, TruncatedDataError))
    if chunk == "any":
        assert error.chunk in range(Q_LAST + 1)
    elif chunk != "?":
        assert error.chunk == chunk


@pytest.mark.parametrize("make", [c[1] for c in HOSTILE_SECTIONS], ids=[c[0] for c in HOSTILE_SECTIONS])
def test_hostile_coded_section_in_the_coder(sample: bytes, make: Callable[[bytes], bytes]) -> None:
    """The coder alone (no container, no CRC) rejects the same sections, in the field it is given."""
    damaged = make(sample)
    section = parse(damaged).blobs[section_index(damaged, "q", 0)]
    with pytest.raises(CorruptDataError) as info:
        coder.decode(section, Q_SYMBOLS, field="my.plane")
    assert info.value.field in ("my.plane", "my.plane.table")


@pytest.mark.parametrize("length", range(12))
def test_coder_rejects_short_sections(sample: bytes, length: int) -> None:
    """Every prefix of a coded section shorter than the smallest valid one (12 bytes) is corrupt."""
    section = parse(sample).blobs[section_index(sample, "q", 0)]
    for n in (1, Q_SYMBOLS):
        with pytest.raises(CorruptDataError):
            coder.read_section(section[:length], n)
        with pytest.raises(CorruptDataError):
            coder.decode(section[:length], n)


@pytest.mark.parametrize(
    "table",
    [bytes(8), b"\x01\xf5\x1c", b"k!\x03\x00", b"\x87"],
    ids=["gamma-too-long", "run-past-255", "implied-not-largest", "fill-bits"],
)
def test_hostile_table(sample: bytes, table: bytes) -> None:
    """A non-canonical frequency table (CRC correct) is reported in the table's field."""
    damaged = edit_parts(set_table(table))(sample)
    check(raises(load_bytes, damaged), CorruptDataError, tensor="q", field="planes[0].table", chunk=None)


def test_shape_smaller_than_coded(sample: bytes) -> None:
    """A coded plane decoded as fewer symbols (same chunk count) fails in its last chunk."""
    damaged = rebuild(sample, set_in("q", "shape", [Q_SYMBOLS - 10]))
    check(raises(load_bytes, damaged), CorruptDataError, tensor="q", field="planes[0]", chunk=Q_LAST)


def test_bool_plane_with_other_bytes(sample: bytes) -> None:
    """A BOOL element stored as a byte other than 0 or 1 is corrupt (CRC correct), coded or raw."""
    flags = sample_tensors()["flags"].view(np.uint8).copy()
    flags[7] = 2
    index = section_index(sample, "flags", 0)
    coded = replace_section(sample, index, coder.encode(flags, SAMPLE_CHUNK))
    check(raises(load_bytes, coded), CorruptDataError, tensor="flags", field="planes[0]")

    parsed = parse(sample)
    document = json.loads(header_text(parsed.document))
    entry = tensor(document, "flags")
    entry["planes"], entry["crc32"] = ["r"], crc32(flags.tobytes())
    del entry["coded"]
    blobs = list(parsed.blobs)
    blobs[index] = flags.tobytes()
    raw = assemble(header_text(document), blobs)
    check(raises(load_bytes, raw), CorruptDataError, tensor="flags", field="planes[0]")
    flags[7] = 1
    blobs[index] = flags.tobytes()
    entry["crc32"] = crc32(flags.tobytes())
    assert load_bytes(assemble(header_text(document), blobs))["flags"].view(np.uint8).tolist() == flags.tolist()


# Arguments and random data


@pytest.mark.parametrize(
    "data",
    [None, 1, 1.5, "a rans file", ["\x89RANS"], object(), {"a": 1}],
    ids=["None", "int", "float", "str", "list", "object", "dict"],
)
def test_decompress_rejects_non_bytes(data: Any) -> None:
    """Arguments that are not bytes-like are InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError):
        rans.decompress(data)


def test_decompress_rejects_multi_tensor_files(sample: bytes) -> None:
    """decompress wants exactly one tensor; a multi-tensor file is an argument error."""
    with pytest.raises(InvalidArgumentError):
        rans.decompress(sample)


def test_decompress_rejects_a_file_without_tensors() -> None:
    """A valid file of no tensors is an argument error for decompress, and loads as {}."""
    empty = assemble(header_text({"tensors": []}), [])
    with pytest.raises(InvalidArgumentError):
        rans.decompress(empty)
    assert load_bytes(empty) == {}


@pytest.mark.parametrize("name", ["bias", "q", "w"])
def test_decompress_non_contiguous_buffer(singles: dict[str, bytes], name: str) -> None:
    """A strided view of a valid file (a NumPy slice, a memoryview slice) is copied and decodes."""
    data = singles[name]
    doubled = np.frombuffer(data, dtype=np.uint8).repeat(2)
    strided = doubled[::2]
    assert not strided.flags.c_contiguous
    assert_identical(sample_tensors()[name], rans.decompress(strided))
    view = memoryview(bytes(doubled))[1::2]
    assert not view.c_contiguous
    assert_identical(sample_tensors()[name], rans.decompress(view))
    reversed_view = np.frombuffer(data[::-1], dtype=np.uint8)[::-1]
    assert_identical(sample_tensors()[name], rans.decompress(reversed_view))


def test_decompress_non_contiguous_damaged_buffer(singles: dict[str, bytes]) -> None:
    """A strided view of a damaged file raises the same error as the contiguous bytes."""
    damaged = bytearray(singles["q"])
    damaged[-1] ^= 1
    strided = np.frombuffer(bytes(damaged), dtype=np.uint8).repeat(2)[::2]
    check(raises(rans.decompress, strided), ChecksumError, tensor="", field="crc32")


@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    """Random bytes are not a rans file, unless they start with the magic."""
    error = raises(rans.decompress, data)
    if not data.startswith(MAGIC):
        assert isinstance(error, NotRansDataError)


@given(st.binary(max_size=300))
def test_random_bytes_after_magic(data: bytes) -> None:
    """Random bytes behind the magic are damage, truncation or an unknown version, never 'not rans'."""
    error = raises(rans.decompress, MAGIC + data)
    assert isinstance(error, (CorruptDataError, UnsupportedVersionError))


@st.composite
def mutations(draw: st.DrawFn, size: int) -> list[tuple]:
    """A list of edits to a file of ``size`` bytes: overwrites, insertions, deletions, splices."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "splice", "move"]))
        at = draw(st.integers(0, size))
        if kind == "set":
            edits.append(("set", at, draw(st.binary(min_size=1, max_size=8))))
        elif kind == "insert":
            edits.append(("insert", at, draw(st.binary(min_size=1, max_size=16))))
        elif kind == "delete":
            edits.append(("delete", at, draw(st.integers(1, 64))))
        else:
            edits.append((kind, at, (draw(st.integers(0, size)), draw(st.integers(1, 512)))))
    return edits


def mutate(data: bytes, edits: list[tuple]) -> bytes:
    out = bytearray(data)
    for kind, at, arg in edits:
        at = min(at, len(out))
        if kind == "set":
            out[at : at + len(arg)] = arg
        elif kind == "insert":
            out[at:at] = arg
        elif kind == "delete":
            del out[at : at + arg]
        else:
            start, length = arg
            piece = bytes(out[start : start + length])
            if kind == "splice":
                out[at : at + len(piece)] = piece
            else:
                out[at:at] = piece
    return bytes(out)


@settings(deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutations_raise_only_rans_errors(sample: bytes, singles: dict[str, bytes], data: st.DataObject) -> None:
    """Arbitrary edits of valid files raise only RansErrors; a file that still loads is unchanged."""
    multi = data.draw(st.booleans())
    original = sample if multi else singles[data.draw(st.sampled_from(sorted(singles)))]
    damaged = mutate(original, data.draw(mutations(len(original))))
    load = load_bytes if multi else rans.decompress
    with time_limit(5):
        try:
            out = load(damaged)
        except RansError:
            return
    expected = load(original)
    if multi:
        assert list(out) == list(expected)
        for name in expected:
            assert_identical(expected[name], out[name])
    else:
        assert_identical(expected, out)


@settings(deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_section_mutations_with_fixed_crc(sample: bytes, data: st.DataObject) -> None:
    """Edits of one section behind a correct CRC (so only the coder can catch them) raise only RansErrors;
    a coded section that still decodes gives some array of the right dtype and shape."""
    parsed = parse(sample)
    index = data.draw(st.sampled_from([s.index for s in parsed.sections if s.mode == "coded"]))
    blob = parsed.blobs[index]
    damaged = replace_section(sample, index, mutate(blob, data.draw(mutations(len(blob)))))
    with time_limit(5):
        try:
            out = load_bytes(damaged)
        except RansError as e:
            assert not isinstance(e, ChecksumError)
            return
    expected = sample_tensors()
    for name, x in out.items():
        assert x.shape == expected[name].shape and x.dtype == expected[name].dtype


# load_file and load_metadata on damaged files


def damaged_copies(sample: bytes) -> dict[str, bytes]:
    def flipped(position: int) -> bytes:
        out = bytearray(sample)
        out[position] ^= 1
        return bytes(out)

    padding = next(a for a, b, region, _ in regions(sample) if region == "padding" and a > 32)
    return {
        "preamble-flip": flipped(10),
        "header-flip": flipped(40),
        "padding-flip": flipped(padding),
        "section-flip": flipped(len(sample) - 1),
        "truncated": sample[:-3],
        "extended": sample + b"\x00",
    }


DAMAGE = {
    "preamble-flip": (ChecksumError, "preamble"),
    "header-flip": (ChecksumError, "header"),
    "padding-flip": (CorruptDataError, "padding"),
    "section-flip": (ChecksumError, "crc32"),
    "truncated": (TruncatedDataError, "sections"),
    "extended": (CorruptDataError, "sections"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_load_file_reports_damage_as_rans_error(sample: bytes, tmp_path: Any, kind: str) -> None:
    """load_file raises the same RansError for a damaged file as decoding its bytes does (not BufferError)."""
    data = damaged_copies(sample)[kind]
    path = tmp_path / "damaged.rans"
    path.write_bytes(data)
    expected = raises(load_bytes, data)
    check(expected, DAMAGE[kind][0], field=DAMAGE[kind][1])
    with pytest.raises(RansError) as info:
        rans.load_file(path)
    assert type(info.value) is type(expected)
    assert str(info.value) == str(expected)
    # The map was released: the file can be replaced and read again.
    path.write_bytes(sample)
    assert list(rans.load_file(path)) == list(sample_tensors())


@pytest.mark.parametrize("kind", ["preamble-flip", "header-flip", "truncated"])
def test_load_metadata_reports_damage_as_rans_error(sample: bytes, tmp_path: Any, kind: str) -> None:
    """load_metadata of a file with a damaged preamble or header raises the documented RansError."""
    path = tmp_path / "damaged.rans"
    path.write_bytes(damaged_copies(sample)[kind])
    with pytest.raises(RansError) as info:
        rans.load_metadata(path)
    check(info.value, DAMAGE[kind][0], field=DAMAGE[kind][1])


def test_load_metadata_reads_the_header_only(sample: bytes, tmp_path: Any) -> None:
    """load_metadata of a file whose sections are damaged (CRC mismatch) still returns the metadata."""
    path = tmp_path / "damaged.rans"
    path.write_bytes(damaged_copies(sample)["section-flip"])
    assert rans.load_metadata(path) == json.loads(parse(sample).text)["metadata"]


@pytest.mark.parametrize("data", [b"", b"\x89RAN", b"not a rans file at all"], ids=["empty", "magic-prefix", "text"])
def test_load_file_of_non_rans_files(tmp_path: Any, data: bytes) -> None:
    """load_file and load_metadata of an empty or foreign file are NotRansDataError."""
    path = tmp_path / "other.bin"
    path.write_bytes(data)
    with pytest.raises(NotRansDataError):
        rans.load_file(path)
    with pytest.raises(NotRansDataError):
        rans.load_metadata(path)


def test_load_metadata_of_empty_file(tmp_path: Any) -> None:
    """load_metadata of an empty file is NotRansDataError, like load_file's."""
    path = tmp_path / "empty.rans"
    path.write_bytes(b"")
    assert os.path.getsize(path) == 0
    with pytest.raises(NotRansDataError):
        rans.load_metadata(path)
