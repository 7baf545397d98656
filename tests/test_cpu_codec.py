"""The CPU backend (``rans.cpu``) against the reference: the same bytes, the same arrays, the same errors.

The reference defines format version 1, so every test here runs both and
compares: sections symbol for symbol across sizes, lane counts, chunk
sizes and distributions; whole files of every dtype through the public
API; and every corruption the reference rejects, which the CPU decoder
must reject with the same exception, message, field and chunk.
"""

from __future__ import annotations

import io
from typing import Any, Callable

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rans
from rans import backends, codec, container, cpu, dtypes
from rans.cpu import kernels, modes, tensors
from rans.cpu import planes as planes_module
from rans.constants import LANE_COUNTS
from rans.errors import CorruptDataError, InvalidArgumentError, RansError
from rans.reference import coder, tables
from rans_files import assert_identical, parse, sample_file
from test_malformed import HOSTILE_SECTIONS, Q_SYMBOLS, mutate, mutations, section_index

CHUNKS = st.sampled_from([128, 256, 384, 512, 1024, 4096])
LENIENT = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True, params=["threads", "one-thread"])
def paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: with every plane shared among threads, and with none (the small-plane code)."""
    smallest = 0 if request.param == "threads" else 1 << 62
    monkeypatch.setattr(kernels, "PARALLEL_MIN", smallest)
    monkeypatch.setattr(planes_module, "PARALLEL_MIN", smallest)
    return request.param


@st.composite
def planes(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """A plane and a chunk size: edge sizes around the chunk and the lane group, and varied symbol spreads."""
    chunk = draw(CHUNKS)
    n = draw(st.sampled_from([1, 31, 32, 33, 127, 128, 129, chunk - 1, chunk, chunk + 1, 3 * chunk + 5]) | st.integers(1, 5000))
    n = max(n, 1)
    kind = draw(st.sampled_from(["single", "two", "all256", "gaussian", "uniform", "skewed"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "single":
        plane = np.full(n, draw(st.integers(0, 255)), dtype=np.uint8)
    elif kind == "two":
        plane = rng.choice(np.array([draw(st.integers(0, 255)), draw(st.integers(0, 255))], dtype=np.uint8), n)
    elif kind == "all256":
        plane = rng.permutation(np.resize(np.arange(256, dtype=np.uint8), max(n, 256)))[:n]
    elif kind == "gaussian":
        plane = (rng.normal(128, draw(st.sampled_from([0.5, 3, 30])), n) % 256).astype(np.uint8)
    elif kind == "uniform":
        plane = rng.integers(0, 256, n, dtype=np.uint8)
    else:  # one symbol takes nearly all: the largest frequencies, the longest runs without a word
        plane = np.where(rng.random(n) < 0.999, 7, rng.integers(0, 256, n)).astype(np.uint8)
    return plane, chunk


@LENIENT
@given(planes(), st.sampled_from(LANE_COUNTS) | st.none())
def test_sections_equal_the_reference(case: tuple[np.ndarray, int], lanes: int | None) -> None:
    """Every plane, chunk size and lane count gives the reference's section, byte for byte, and decodes back."""
    plane, chunk = case
    section = cpu.encode(plane, chunk, lanes=lanes)
    assert bytes(section) == coder.encode(plane, chunk, lanes=lanes)
    assert np.array_equal(cpu.decode(section, plane.size), plane)


@LENIENT
@given(planes(), st.sampled_from(LANE_COUNTS))
def test_sections_with_a_given_table_equal_the_reference(case: tuple[np.ndarray, int], lanes: int) -> None:
    """A table wider than the plane (symbols of frequency 1 that never occur) codes as the reference does."""
    plane, chunk = case
    counts = tables.count(plane) + 1
    freq = tables.quantize(counts)
    assert bytes(cpu.encode(plane, chunk, freq, lanes)) == coder.encode(plane, chunk, freq, lanes=lanes)


@pytest.mark.parametrize("lanes", LANE_COUNTS)
@pytest.mark.parametrize("n", [1, 2, 127, 128, 129, 1023, 1024, 1025, 70000])
def test_every_lane_count_at_edge_sizes(lanes: int, n: int) -> None:
    plane = (np.random.default_rng(n + lanes).normal(0, 4, n) % 256).astype(np.uint8)
    for chunk in (128, 1024):
        section = cpu.encode(plane, chunk, lanes=lanes)
        assert bytes(section) == coder.encode(plane, chunk, lanes=lanes)
        assert np.array_equal(cpu.decode(section, n), plane)


def test_the_division_by_reciprocal_is_exact() -> None:
    """x // f through a double reciprocal is exact for every f and every x below f << 20 that the encoder divides."""
    f = np.arange(1, 4097, dtype=np.int64)
    for x in (f * 0, f - 1, f, (f << 20) - 1, (f << 20) - f, ((f << 20) - 1) // f * f, np.full(f.size, 1 << 16)):
        x = np.minimum(x, (f << 20) - 1)
        assert np.array_equal((x * (1.0 / f) + 2.0**-16).astype(np.int64), x // f)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, f << 20)
        assert np.array_equal((x * (1.0 / f) + 2.0**-16).astype(np.int64), x // f)


def array_of(dtype: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype in ("BF16", "F16", "F32", "F64", "F8_E4M3", "F8_E5M2"):
        return rng.normal(0, 0.02, n).astype(dtypes.DTYPES[dtype])
    if dtype in ("C64", "C128"):
        return (rng.normal(0, 1, n) + 1j * rng.normal(0, 1, n)).astype(dtypes.DTYPES[dtype])
    if dtype == "BOOL":
        return rng.random(n) < 0.1
    info = np.iinfo(dtypes.DTYPES[dtype])
    return rng.integers(max(info.min, -300), min(info.max, 300), n, endpoint=True).astype(dtypes.DTYPES[dtype])


@LENIENT
@given(st.sampled_from(sorted(dtypes.DTYPES)), st.integers(0, 3000), st.integers(0, 2**32 - 1), CHUNKS,
       st.sampled_from(dtypes.PREFERENCES))
def test_compress_equals_the_reference_for_every_dtype(dtype: str, n: int, seed: int, chunk: int, prefer: str) -> None:
    x = array_of(dtype, n, seed)
    data = rans.compress(x, chunk_size=chunk, backend="cpu", prefer=prefer)
    assert data == rans.compress(x, chunk_size=chunk, backend="reference", prefer=prefer)
    assert_identical(x, rans.decompress(data, backend="cpu"))
    assert_identical(x, rans.decompress(data, backend="reference"))


def test_save_and_load_file_on_every_backend(tmp_path: Any) -> None:
    tensors = {name: array_of(name, 1000, i) for i, name in enumerate(sorted(dtypes.DTYPES))}
    files = {}
    for backend in ("cpu", "reference", "auto"):
        path = tmp_path / f"{backend}.rans"
        rans.save_file(tensors, path, {"k": "v"}, chunk_size=256, backend=backend)
        files[backend] = path.read_bytes()
        for decoder in ("cpu", "reference", "auto"):
            out = rans.load_file(path, backend=decoder)
            for name, x in tensors.items():
                assert_identical(x, out[name])
    assert files["cpu"] == files["reference"] == files["auto"]


@pytest.mark.parametrize("dtype", sorted(dtypes.DTYPES))
@pytest.mark.parametrize("n", [0, 1, 5, 1000])
def test_count_split_and_join_equal_the_reference(dtype: str, n: int) -> None:
    x = array_of(dtype, n, n)
    for split in dtypes.splits_of(dtype):
        ours, theirs = cpu.split(x, split), dtypes.split(x, split)
        assert [p.tolist() for p in ours] == [p.tolist() for p in theirs]
        for plane in ours:
            assert np.array_equal(cpu.count(plane), tables.count(plane))
        joined = cpu.join(ours, dtype, split, x.shape)
        assert joined.dtype == dtypes.join(theirs, dtype, split, x.shape).dtype
        assert joined.tobytes() == x.tobytes()


@given(st.sampled_from(["BF16", "F16", "F32", "I16", "I32", *dtypes.NIBBLE_DTYPES]), st.integers(0, 3000),
       st.binary(min_size=8, max_size=8))
def test_split_and_join_of_any_bits_equal_the_reference(dtype: str, n: int, seed: bytes) -> None:
    """Every bit pattern (NaNs, infinities, subnormals, negative zero) splits into the reference's planes and
    joins back, whether the compiled loops run on one thread or on all of them."""
    x = np.random.default_rng(list(seed)).integers(0, 256, n * dtypes.DTYPES[dtype].itemsize, dtype=np.uint8).view(dtypes.DTYPES[dtype])
    for split in dtypes.splits_of(dtype):
        ours = cpu.split(x, split)
        assert [p.tobytes() for p in ours] == [p.tobytes() for p in dtypes.split(x, split)]
        assert cpu.join(ours, dtype, split, x.shape).tobytes() == x.tobytes()


@LENIENT
@given(st.sampled_from(["BF16", "F16", "F32", "I16", "U16", "I32", "U32"]), st.integers(0, 3000), st.binary(min_size=8, max_size=8))
def test_counts_of_every_plane_from_the_elements_equal_the_reference(paths: str, dtype: str, n: int, seed: bytes) -> None:
    """Planes' byte counts from one histogram of the elements' 16-bit halves, for any bits: the reference's counts
    of each plane it gives (on the small-plane path, and for integers, the planes are counted one at a time: ``None``)."""
    x = np.random.default_rng(list(seed)).integers(0, 256, n * dtypes.DTYPES[dtype].itemsize, dtype=np.uint8).view(dtypes.DTYPES[dtype])
    for split in dtypes.splits_of(dtype):
        got = cpu.counts(x, split)
        if got is None:
            assert split == "none" or paths == "one-thread" or n == 0 or dtype.startswith(("I", "U"))
            continue
        assert dtype in ("BF16", "F16", "F32") and got[0] is not None and got[1] is not None
        expected = [tables.count(p).tolist() for p in dtypes.split(x, split)]
        assert [c.tolist() for c in got if c is not None] == expected[: sum(c is not None for c in got)]


@pytest.mark.parametrize("parts", [1, 2, 7])
def test_halves_counted_in_any_number_of_parts(parts: int) -> None:
    """The 16-bit histogram is the same whatever the number of parts (more than the threads past 2**30 halves)."""
    halves = np.random.default_rng(parts).integers(0, 1 << 16, 100_003).astype(np.uint16)
    assert np.array_equal(planes_module._count_halves(halves, parts), np.bincount(halves, minlength=1 << 16))


@pytest.mark.parametrize("start", [0, 1, 5, 8])
@pytest.mark.parametrize("kind", ["uniform", "runs"])
def test_count_of_a_long_plane(start: int, kind: str) -> None:
    """Planes of several blocks, starting anywhere in memory (counted 8 bytes at a time), of any spread."""
    rng = np.random.default_rng(3)
    n = (1 << 21) + 7 + start
    data = rng.integers(0, 256, n, dtype=np.uint8) if kind == "uniform" else np.where(rng.random(n) < 0.999, 120, 3).astype(np.uint8)
    plane = data[start:]
    assert np.array_equal(cpu.count(plane), tables.count(plane))


def outcome(decode: Callable[[], np.ndarray]) -> tuple[Any, ...]:
    """What a decode gives: its array, or its error's class, message, tensor, field and chunk."""
    try:
        return ("ok", decode().tobytes())
    except RansError as e:
        return (type(e), str(e), e.tensor, e.field, e.chunk)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return sample_file(tmp_path_factory.mktemp("sample") / "sample.rans")


@pytest.mark.parametrize("make", [c[1] for c in HOSTILE_SECTIONS], ids=[c[0] for c in HOSTILE_SECTIONS])
def test_hostile_sections_fail_as_in_the_reference(sample: bytes, make: Callable[[bytes], bytes]) -> None:
    """Each hostile section of ``test_malformed`` fails in the CPU decoder exactly as in the reference."""
    damaged = make(sample)
    section = parse(damaged).blobs[section_index(damaged, "q", 0)]
    expected = outcome(lambda: coder.decode(section, Q_SYMBOLS, field="f"))
    assert expected[0] != "ok"
    assert outcome(lambda: cpu.decode(section, Q_SYMBOLS, field="f")) == expected


@LENIENT
@given(st.data())
def test_mutated_sections_fail_as_in_the_reference(sample: bytes, data: st.DataObject) -> None:
    """Arbitrary edits of coded sections give the same array or the same error in both decoders."""
    parsed = parse(sample)
    coded = [s for s in parsed.sections if s.mode == "coded"]
    which = data.draw(st.sampled_from(coded))
    blob = parsed.blobs[which.index]
    symbols = dtypes.plane_length(*(lambda e: (e.dtype, e.split, e.size))(
        next(e for e in container.read_header(memoryview(sample)).entries if e.name == which.tensor)
    ))
    damaged = mutate(blob, data.draw(mutations(len(blob))))
    n = data.draw(st.sampled_from([symbols, symbols, max(1, symbols - 1), symbols + 1]))
    expected = outcome(lambda: coder.decode(damaged, n))
    assert outcome(lambda: cpu.decode(damaged, n)) == expected


@LENIENT
@given(st.integers(1, 4000), st.integers(0, 2**32 - 1), st.sampled_from(LANE_COUNTS), CHUNKS)
def test_word_and_state_damage_fails_as_in_the_reference(n: int, seed: int, lanes: int, chunk: int) -> None:
    """Random words and states overwritten in a section of many chunks: same outcome, same first chunk."""
    rng = np.random.default_rng(seed)
    plane = (rng.normal(0, 5, n) % 256).astype(np.uint8)
    section = bytearray(coder.encode(plane, chunk, lanes=lanes))
    layout = coder.read_section(bytes(section), n).layout
    for _ in range(rng.integers(1, 4)):
        at = int(rng.integers(layout.states_at, len(section)))
        if at < layout.counts_at or at >= layout.words_at:
            section[at] = int(rng.integers(0, 256))
    expected = outcome(lambda: coder.decode(bytes(section), n))
    assert outcome(lambda: cpu.decode(bytes(section), n)) == expected


@pytest.mark.parametrize("lanes", [4, 16, 32])
def test_counts_moved_between_chunks_never_read_past_the_section(lanes: int) -> None:
    """A chunk told to read far more words than it has takes zeros past its words and fails, as the reference does.

    The first chunk's stored count takes all but 300 of the last chunk's
    (implied) words, so the last chunk starts 300 words before the section's
    end and needs about 512: with 16 and 32 lanes it starts in the vector
    steps and reaches the end in them, where the scalar steps take over.
    """
    plane = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)
    section = bytearray(coder.encode(plane, 1024, lanes=lanes))
    parsed = coder.read_section(bytes(section), plane.size)
    layout = parsed.layout
    counts = parsed.counts.copy()
    counts[0] += counts[-1] - 300
    assert counts[0] <= 1024 and counts[-1] > 300  # still a valid section: the decoding finds the fault
    section[layout.counts_at : layout.words_at] = counts[:-1].astype("<u4").tobytes()
    expected = outcome(lambda: coder.decode(bytes(section), plane.size))
    assert expected[0] is CorruptDataError and expected[4] == 0
    assert outcome(lambda: cpu.decode(bytes(section), plane.size)) == expected


@LENIENT
@given(st.integers(1, 40), st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 8, 30]), st.data())
def test_wide_chunks_equal_the_reference(steps: int, seed: int, spread: int, data: st.DataObject) -> None:
    """Chunks of 8, 16 and 32 lanes of many full steps (the vector loops; 8 lanes encode only) and a
    ragged one: the reference's bytes, and back.

    Spreads from one symbol holding nearly every slot (no word for many
    steps) to near-uniform planes (a word from most lanes at every
    sub-step); a table may be given with frequency ``M`` for a plane's only
    symbol, the one case where the encoder's limit ``f << 20`` is 2**32.
    """
    rng = np.random.default_rng(seed)
    lanes = data.draw(st.sampled_from([8, 16, 32]))
    chunk = data.draw(st.sampled_from([128, 1024, 4096]))
    n = steps * 4 * lanes + data.draw(st.sampled_from([0, 0, 1, 77, 127]))
    plane = (rng.normal(0, spread, n) % 256).astype(np.uint8)
    freq = None
    if spread == 1 and data.draw(st.booleans()):
        plane[:] = plane[0]
        freq = np.zeros(256, dtype=np.int64)
        freq[plane[0]] = tables.M
    section = cpu.encode(plane, chunk, freq, lanes=lanes)
    assert bytes(section) == coder.encode(plane, chunk, freq, lanes=lanes)
    assert np.array_equal(cpu.decode(section, n), plane)


def test_decoding_into_an_array_needs_a_contiguous_one() -> None:
    plane = np.arange(1000, dtype=np.uint8) % 7
    section = cpu.encode(plane, 128, lanes=32)
    out = np.zeros(1000, dtype=np.uint8)
    assert cpu.decode(section, 1000, out=out) is out and np.array_equal(out, plane)
    with pytest.raises(InvalidArgumentError, match="C-contiguous"):
        cpu.decode(section, 1000, out=np.zeros(2000, dtype=np.uint8)[::2])


def test_backend_names() -> None:
    assert backends.get("auto").name == "cpu"
    assert backends.get("cpu").name == "cpu"
    assert backends.get("reference").encode is coder.encode
    for bad in ("CPU", "numba", "", None, 3, ["cpu"]):
        with pytest.raises(InvalidArgumentError, match="backend must be"):
            backends.get(bad)
    assert "gpu" in backends.NAMES and "gpu" not in backends.AUTO


@pytest.mark.parametrize("call", ["compress", "decompress", "save_file", "load_file", "encode_tensors"])
def test_public_functions_reject_bad_backends(call: str, tmp_path: Any) -> None:
    x = np.arange(10, dtype=np.int16)
    path = tmp_path / "x.rans"
    rans.save_file({"x": x}, path)
    run = {
        "compress": lambda b: rans.compress(x, backend=b),
        "decompress": lambda b: rans.decompress(path.read_bytes(), backend=b),
        "save_file": lambda b: rans.save_file({"x": x}, tmp_path / "y.rans", backend=b),
        "load_file": lambda b: rans.load_file(path, backend=b),
        "encode_tensors": lambda b: rans.api.encode_tensors({"x": x}, backend=b),
    }[call]
    with pytest.raises(InvalidArgumentError, match="backend must be"):
        run("fast")
    assert not (tmp_path / "y.rans").exists()


def test_workers_on_the_cpu_backend_give_the_same_bytes() -> None:
    """workers is for the reference backend's processes; the CPU backend ignores it."""
    x = np.random.default_rng(2).normal(0, 0.02, 5000).astype(ml_dtypes.bfloat16)
    one = rans.compress(x, chunk_size=1024, backend="reference")
    assert rans.compress(x, chunk_size=1024, workers=2, backend="cpu") == one


def test_sections_are_written_as_they_are() -> None:
    """The CPU encoder's sections (memoryviews) lay out into the same file as the reference's bytes."""
    x = np.random.default_rng(4).normal(0, 0.02, 3000).astype(np.float32)
    out = {}
    for backend in ("cpu", "reference"):
        buffer = io.BytesIO()
        container.write(buffer, *rans.api.encode_tensors({"x": x}, backend=backend))
        out[backend] = buffer.getvalue()
    assert out["cpu"] == out["reference"]


def test_calls_from_several_threads_at_once() -> None:
    """Python threads may code at the same time (the compiled loops release the GIL or share Numba's pool)."""
    from concurrent.futures import ThreadPoolExecutor

    arrays = [array_of("BF16", 20000 + 1000 * i, i) for i in range(8)]
    expected = [rans.compress(x, chunk_size=1024, backend="reference") for x in arrays]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: rans.compress(x, chunk_size=1024, backend="cpu"), arrays))
        back = list(pool.map(lambda d: rans.decompress(d, backend="cpu"), got))
    assert got == expected
    for x, y in zip(arrays, back):
        assert_identical(x, y)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.just(0) | st.integers(1, 5) | st.integers(1, 300) | st.integers(100, 10**7), min_size=256, max_size=256),
    st.integers(0, 255),
)
def test_table_choice_equals_the_reference(weights: list[int], anchor: int) -> None:
    """The compiled quantize picks the reference's table (every precision tried, the same costs and ties),
    and the compiled serialized_size gives the length the reference writes."""
    counts = np.array(weights, dtype=np.int64)
    counts[anchor] += 1
    freq = cpu.quantize(counts)
    assert freq.tolist() == tables.quantize(counts).tolist()
    assert cpu.serialized_size(freq) == len(tables.serialize(freq))
    exact = tables.scale(counts)
    assert cpu.serialized_size(exact) == len(tables.serialize(exact))


@st.composite
def plan_planes(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """:func:`planes`, and near-uniform planes of a few distinct symbols to all 256 (whose order-0 entropy
    alone can settle that they stay raw)."""
    if draw(st.booleans()):
        return draw(planes())
    n = draw(st.integers(0, 70000))
    spread = draw(st.integers(2, 256))
    plane = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, spread, n, dtype=np.uint8)
    return plane, draw(CHUNKS | st.just(32768))


@given(plan_planes())
def test_plane_modes_equal_the_reference(case: tuple[np.ndarray, int]) -> None:
    """The compiled choice of a plane's mode and table is :func:`rans.codec.plan_counts`' on the reference's counts."""
    plane, chunk = case
    mode, freq = cpu.plan(plane, chunk)
    expected, table = codec.plan_counts(tables.count(plane), plane.size, chunk)
    assert mode == expected
    assert (freq is None) == (table is None)
    if table is not None:
        assert freq.tolist() == table.tolist()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.just(0) | st.integers(1, 5) | st.integers(1, 300) | st.integers(100, 10**5), min_size=256, max_size=256),
    st.integers(0, 255),
    st.integers(0, 255),
    st.sampled_from([128, 1024, 32768, 1 << 22]),
)
def test_the_entropy_floor_is_below_every_estimate(weights: list[int], first: int, second: int, chunk: int) -> None:
    """The bound that lets :func:`rans.cpu.plan` skip the table search never exceeds the estimate of the
    table the search picks, so skipping it cannot change a mode."""
    counts = np.array(weights, dtype=np.int64)
    counts[first] += 1
    counts[(first + 1 + second % 255) % 256] += 1
    n = int(counts.sum())
    freq = tables.quantize(counts)
    estimate = codec.estimate_coded(counts, freq, n, chunk, tables.serialized_size(freq))
    k = int(np.count_nonzero(counts))
    assert modes._floor_bytes(counts, n, chunk, coder.lanes_for(n), k, tables.COST_FRACTION_BITS, tables.PRECISION_BITS) <= estimate


def test_the_entropy_floor_settles_near_uniform_planes() -> None:
    """A near-uniform plane is settled by the floor (raw), as the table search settles it."""
    plane = np.random.default_rng(5).integers(0, 256, 20000, dtype=np.uint8)
    counts = tables.count(plane)
    assert modes._floor_bytes(counts, plane.size, 32768, coder.lanes_for(plane.size), 256, tables.COST_FRACTION_BITS, tables.PRECISION_BITS) >= plane.size
    assert cpu.plan(plane, 32768) == ("raw", None) and codec.plan_counts(counts, plane.size, 32768) == ("raw", None)


@st.composite
def float_tensors(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """A float tensor whose planes are coded, raw and constant in varied mixes, and a chunk size."""
    dtype = draw(st.sampled_from(["BF16", "F16", "F32"]))
    chunk = draw(CHUNKS)
    n = draw(st.sampled_from([1, chunk - 1, chunk, chunk + 1, 5 * chunk + 77]) | st.integers(1, 4000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["weights", "few values", "bf16 in f32", "small integers", "bits"]))
    if kind == "weights":  # exponents coded, the rest raw
        x = rng.normal(0, 0.02, n)
    elif kind == "few values":  # every plane coded
        x = rng.choice(rng.normal(0, 1, 5), n)
    elif kind == "bf16 in f32":  # low planes constant
        x = rng.normal(0, 1, n).astype(ml_dtypes.bfloat16)
    elif kind == "small integers":
        x = rng.integers(-3, 4, n)
    else:
        return rng.integers(0, 256, n * dtypes.DTYPES[dtype].itemsize, dtype=np.uint8).view(dtypes.DTYPES[dtype]), chunk
    return np.asarray(x).astype(dtypes.DTYPES[dtype]), chunk


@LENIENT
@given(float_tensors(), st.integers(0, 2**32 - 1), st.integers(0, 3))
def test_float_tensors_decoded_chunk_by_chunk_equal_the_reference(case: tuple[np.ndarray, int], seed: int, damage: int) -> None:
    """``rans.cpu.tensors`` (chunks decoded and joined in one pass) gives the reference's array or its error.

    ``damage`` bytes of the tensor's coded sections (states, counts or words) are overwritten first.
    """
    x, chunk = case
    data = bytearray(rans.compress(x, chunk_size=chunk, backend="reference"))
    entry = container.read_header(memoryview(bytes(data))).entries[0]
    coded = [p for p in entry.planes if p.mode == "coded"]
    fused = entry.split != "none" and bool(coded) and kernels.PARALLEL_MIN <= entry.size
    assert (tensors._prepare(entry, memoryview(bytes(data))) is not None) == fused
    rng = np.random.default_rng(seed)
    for _ in range(damage if coded else 0):
        plane = coded[rng.integers(len(coded))]
        layout = coder.read_section(bytes(data[plane.offset : plane.offset + plane.length]), entry.size).layout
        data[plane.offset + int(rng.integers(layout.states_at, plane.length))] = int(rng.integers(0, 256))
    buf = memoryview(bytes(data))
    expected = outcome(lambda: codec.decode_planes(entry, buf, False, backends.get("reference")))
    assert outcome(lambda: tensors.decode_tensor(entry, buf, verify=False)) == expected
    if not damage:
        assert expected == ("ok", x.tobytes())


def test_a_damaged_second_plane_is_named() -> None:
    """Both planes of a float tensor coded, a chunk of the second damaged: the error names that plane and chunk."""
    x = np.random.default_rng(3).choice(np.random.default_rng(4).normal(0, 1, 7), 5000).astype(np.float16)
    data = bytearray(rans.compress(x, chunk_size=1024, backend="cpu"))
    entry = container.read_header(memoryview(bytes(data))).entries[0]
    assert [p.mode for p in entry.planes] == ["coded", "coded"]
    second = entry.planes[1]
    layout = coder.read_section(bytes(data[second.offset : second.offset + second.length]), entry.size).layout
    data[second.offset + layout.states_at + 4 * layout.lanes * 2] ^= 0x40  # chunk 2's first state
    with pytest.raises(CorruptDataError) as e:
        tensors.decode_tensor(entry, memoryview(bytes(data)), verify=False)
    assert (e.value.tensor, e.value.field, e.value.chunk) == (entry.name, "planes[1]", 2)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(["BF16", "F16", "F32"]),
    st.sampled_from([1 << 16, 1 << 17]),
    st.integers(0, 3000),
    st.sampled_from([1024, 4096, 8192]),
    st.integers(0, 2**32 - 1),
    st.integers(0, 3),
)
def test_wide_chunks_decoded_two_at_a_time_equal_the_reference(dtype: str, base: int, extra: int, chunk: int, seed: int, damage: int) -> None:
    """Tensors whose coded planes have 16 or 32 lanes (their vector steps taken two chunks at a time by
    ``rans.cpu.kernels._decode_pair``), their words damaged or not: the reference's array or error."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.02, base + extra).astype(dtypes.DTYPES[dtype])
    data = bytearray(rans.compress(x, chunk_size=chunk, backend="cpu"))
    entry = container.read_header(memoryview(bytes(data))).entries[0]
    plane = next(p for p in entry.planes if p.mode == "coded")
    layout = coder.read_section(bytes(data[plane.offset : plane.offset + plane.length]), entry.size).layout
    assert layout.lanes in (16, 32)
    for _ in range(damage):
        data[plane.offset + int(rng.integers(layout.words_at, plane.length))] ^= 1 << int(rng.integers(8))
    buf = memoryview(bytes(data))
    expected = outcome(lambda: codec.decode_planes(entry, buf, False, backends.get("reference")))
    assert outcome(lambda: tensors.decode_tensor(entry, buf, verify=False)) == expected
    if not damage:
        assert expected == ("ok", x.tobytes())
