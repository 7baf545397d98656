"""The GPU encoder against the reference encoder: the same file, byte for byte.

Without a GPU these tests run on the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``,
set by ``conftest.py``) at small sizes: a logic check. Tests marked ``gpu``
run only on a real GPU, at realistic sizes.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import zlib

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import rans
from rans import api, codec, container, dtypes
from rans.constants import M
from rans.reference import coder, tables
from weights import weights

cuda = pytest.importorskip("numba.cuda")
from rans.gpu import crc, encoder  # noqa: E402
from rans.gpu import tables as gpu_tables  # noqa: E402

SIMULATED = bool(__import__("numba").config.ENABLE_CUDASIM)
SMALL = settings(max_examples=4 if SIMULATED else 40, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(autouse=True, scope="module")
def quick_thread_switches():
    """The simulator runs a block's threads as Python threads: switching often makes its barriers 4x faster."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(before)


KINDS = ["bf16", "f32", "f32-bf16", "f16", "e4m3", "e5m2", "i8", "u8-few", "i16", "i32", "i64", "c64", "random-bf16", "zeros-f32", "bool"]


def reference_file(tensors: dict, chunk: int, metadata: dict | None = None) -> bytes:
    out = io.BytesIO()
    container.write(out, *api.encode_tensors(tensors, metadata, chunk_size=chunk))
    return out.getvalue()


@pytest.mark.parametrize("kind", KINDS)
def test_every_dtype_gives_the_reference_file(kind: str) -> None:
    """Each dtype family, each split and plane mode (coded, raw, const, all-raw "none"): the same bytes."""
    n = 150 if SIMULATED else 300_001
    x = weights(kind, n, seed=len(kind))
    chunk = 128 if SIMULATED else 32768
    assert encoder.compress(x, chunk_size=chunk).copy_to_host().tobytes() == rans.compress(x, chunk_size=chunk)


@SMALL
@given(
    kind=st.sampled_from(KINDS),
    n=st.sampled_from([0, 1, 3, 4, 5, 31, 127, 128, 129, 255, 257]) if SIMULATED else st.integers(0, 300_000),
    chunk=st.sampled_from([128, 256]) if SIMULATED else st.sampled_from([128, 1024, 32768]),
    seed=st.integers(0, 2**32 - 1),
    shape2=st.booleans(),
)
def test_drawn_tensors_give_the_reference_file(kind: str, n: int, chunk: int, seed: int, shape2: bool) -> None:
    """Hypothesis-drawn dtype, edge size, chunk size, data and shape: byte-identical files."""
    x = weights(kind, n, seed)
    if shape2 and n % 2 == 0 and n:
        x = x.reshape(2, -1)
    assert encoder.compress(x, chunk_size=chunk).copy_to_host().tobytes() == rans.compress(x, chunk_size=chunk)


@settings(SMALL, max_examples=15 if SIMULATED else 100)
@given(
    dtype=st.sampled_from(sorted(dtypes.DTYPES)),
    data=st.binary(max_size=700 if SIMULATED else 100_000),
    chunk=st.sampled_from([128, 256]),
)
@example(dtype="BOOL", data=b"\x00\x01", chunk=128)  # one raw plane of 1-byte elements: no second pass
@example(dtype="U8", data=bytes(range(256)), chunk=128)
@example(dtype="BF16", data=bytes(range(256)), chunk=128)  # raw float planes: the bytes counted again
@example(dtype="I16", data=bytes.fromhex("020001000003010002000000000103000101000301000102"), chunk=128)  # raw byte planes, coded bytes
def test_arbitrary_bytes_of_every_dtype_give_the_reference_file(dtype: str, data: bytes, chunk: int) -> None:
    """Any bytes (NaN payloads, denormals, runs, one symbol, all 256) viewed as any dtype: the same file."""
    itemsize = dtypes.DTYPES[dtype].itemsize
    raw = np.frombuffer(data[: len(data) // itemsize * itemsize], np.uint8)
    if dtype == "BOOL":
        raw = raw & 1
    x = raw.view(dtypes.DTYPES[dtype])
    assert encoder.compress(x, chunk_size=chunk).copy_to_host().tobytes() == rans.compress(x, chunk_size=chunk)


@pytest.mark.parametrize("kind, n", [("random-bf16", 2601), ("random-bf16", 1), ("random-u8", 2051), ("random-u8", 4099)])
def test_raw_planes_over_several_crc_blocks(kind: str, n: int) -> None:
    """Raw planes longer than a CRC block (their CRC comes from split_raw), with and without a 1-3 byte tail."""
    rng = np.random.default_rng(n)
    x = rng.integers(0, 256, n, dtype=np.uint8)
    if kind == "random-bf16":
        x = rng.integers(0, 1 << 16, n, dtype=np.uint16).view(ml_dtypes.bfloat16)
    tensors = {"a": x, "b": np.arange(300, dtype=np.int16), "c": x[::-1].copy()}
    assert encoder.encode_file(tensors, chunk_size=128).to_bytes() == reference_file(tensors, 128)


@pytest.mark.parametrize("lanes", [2, 8, 32])
def test_every_lane_count_codes_a_plane_as_the_reference(lanes: int) -> None:
    """Forced lane counts: each coded section equals the reference coder's with the same lanes and table."""
    n = 300 if SIMULATED else 1_000_003
    x = weights("u8-few", n, seed=lanes)
    chunk = 128 if SIMULATED else 4096
    f = encoder.encode_file({"x": x}, chunk_size=chunk, lanes=lanes)
    data = f.to_bytes()
    plane = f.entries[0].planes[0]
    assert plane.mode == "coded"
    section = data[plane.offset : plane.offset + plane.length]
    assert section == coder.encode(x, chunk, lanes=lanes)
    assert np.array_equal(rans.decompress(data), x)


def test_a_file_of_many_tensors_is_the_reference_file() -> None:
    """Several tensors (host and device arrays), metadata, empty and 0-d tensors: save_file's bytes."""
    n = 100 if SIMULATED else 100_000
    tensors = {kind: weights(kind, n, seed=i) for i, kind in enumerate(["bf16", "f16", "i8", "f32", "bool"])}
    tensors["empty"] = np.zeros((0, 4), np.float32)
    tensors["scalar"] = np.array(2.5, np.float32)
    tensors["on device"] = cuda.to_device(weights("f16", n, 9))
    tensors["empty on device"] = cuda.to_device(np.zeros((3, 0), np.int16))
    expected = reference_file({k: (v.copy_to_host() if "device" in k else v) for k, v in tensors.items()}, 128, {"a": "b"})
    got = encoder.encode_file(tensors, {"a": "b"}, chunk_size=128)
    assert got.to_bytes() == expected
    assert [e.name for e in got.entries] == list(tensors)


@pytest.mark.parametrize("direct", [1, 300, 1 << 40])
def test_host_tensors_copied_directly_or_gathered(monkeypatch, direct: int) -> None:
    """Host tensors at or above DIRECT_BYTES are copied from where they lie, runs of smaller ones through one staging
    copy (a read-only array too, as a memory-mapped file gives): the same file either way."""
    monkeypatch.setattr(encoder, "DIRECT_BYTES", direct)
    tensors = {f"t{i}": weights(kind, n, seed=i) for i, (kind, n) in enumerate([("bf16", 300), ("i8", 20), ("f32", 90), ("i8", 700)])}
    tensors["t0"].flags.writeable = False
    expected = reference_file(tensors, 128)
    assert encoder.encode_file(tensors, chunk_size=128).to_bytes() == expected


def test_device_arrays_with_raw_bits_take_a_dtype() -> None:
    """A numba uint16 array holding bf16 bits, told its dtype, encodes like the bf16 array."""
    x = weights("bf16", 200, 4)
    bits = cuda.to_device(x.view(np.uint16))
    assert encoder.compress(bits, chunk_size=128, dtype="BF16").copy_to_host().tobytes() == rans.compress(x, chunk_size=128)


def test_encode_tensor_has_the_codec_contract() -> None:
    """encode_tensor returns what rans.codec.encode_tensor returns: the same entry and the same sections."""
    x = weights("f32", 200, 5)
    entry, sections = encoder.encode_tensor(x, "w", 128)
    expected_entry, expected_sections = codec.encode_tensor(x, "w", 128)
    assert sections == expected_sections
    assert entry == expected_entry


def test_bad_arguments_are_typed_errors() -> None:
    with pytest.raises(rans.InvalidArgumentError):
        encoder.compress(np.zeros(4, np.float32), chunk_size=100)
    with pytest.raises(rans.InvalidArgumentError):
        encoder.compress(np.array([0, 2], np.uint8).view(np.bool_), chunk_size=128)
    with pytest.raises(rans.InvalidArgumentError):
        encoder.encode_file({1: np.zeros(2)})  # type: ignore[dict-item]
    with pytest.raises(rans.InvalidArgumentError):
        encoder.encode_file({"x": np.zeros(2)}, {"k": 1})  # type: ignore[dict-item]
    with pytest.raises(rans.InvalidArgumentError):
        encoder.compress(np.zeros(2, np.float16), dtype="F17")
    with pytest.raises(rans.InvalidArgumentError):
        encoder.compress(cuda.to_device(np.zeros(2, np.uint8)), dtype="BF16")


@settings(max_examples=200, deadline=None)
@given(f=st.integers(1, M - 1), x=st.integers(0, 2**32 - 1))
def test_reciprocals_divide_exactly(f: int, x: int) -> None:
    """The encode table's reciprocal gives x // f for every 32-bit state (the kernel's arithmetic, in Python)."""
    freq = np.zeros(256, np.int64)
    freq[0], freq[1] = f, M - f
    table = gpu_tables.encode_table(freq)
    rcp, info = int(table[0]), int(table[256])
    x = 1 + x % ((f << 20) - 1)  # a state the encoder divides: renormalized, so from 1 to below f << 20
    t = (x * rcp) >> 32
    q = (t + ((x - t) >> 1)) >> (info >> 25)
    coded = (x + ((info >> 12) & 0x1FFF) + q * (info & 0xFFF)) & 0xFFFFFFFF
    assert coded == (x // f) * M + x % f
    assert (info & 0xFFF) == M - f


@st.composite
def histograms(draw: st.DrawFn) -> np.ndarray:
    """Symbol counts of a plane: a few or all 256 symbols present, counts from 1 to 2**40, or many rare
    symbols beside a common one (raised to a frequency of 1, they take more than M from the rest)."""
    counts = np.zeros(256, np.uint64)
    present = draw(st.lists(st.integers(0, 255), min_size=1, max_size=256, unique=True))
    shape = draw(st.sampled_from(["small", "wide", "rare"]))
    for k, s in enumerate(present):
        if shape == "rare" and k:
            counts[s] = draw(st.integers(1, 3))
        else:
            counts[s] = draw(st.integers(1, 50) if shape == "small" else st.integers(1, 2**40))
    if shape == "rare":
        counts[present[0]] = draw(st.integers(10**6, 2**40))
    return counts


@settings(SMALL, max_examples=12 if SIMULATED else 300)
@given(planes=st.lists(histograms(), min_size=1, max_size=3), chunk=st.sampled_from([128, 32768]), empty=st.booleans())
def test_tables_planned_on_the_gpu_are_the_hosts(planes: list[np.ndarray], chunk: int, empty: bool) -> None:
    """:func:`rans.gpu.tables.plan` picks each plane's mode and table as :func:`rans.codec.plan_counts` does with
    the reference quantizer, and lays out the encoder's table as :func:`rans.gpu.tables.encode_table`; a plane
    may be counted in several histograms (a split "none" plane in its byte planes'), whose sum it plans."""
    counts = np.stack(planes + ([np.zeros(256, np.uint64)] if empty else []))
    sums = [(j, 1) for j in range(len(counts))] + [(0, len(counts))]  # each histogram, then all of them summed
    n = [int(counts[first : first + rows].sum()) for first, rows in sums]
    rows = np.array([[first, k, n[j], coder.lanes_for(n[j]), chunk, j] for j, (first, k) in enumerate(sums)], np.int64)
    info, freq, table = (cuda.to_device(np.zeros((len(sums), w), t)) for w, t in ((4, np.int64), (256, np.int16), (512, np.uint32)))
    gpu_tables.plan[len(sums), gpu_tables.PLAN_THREADS](cuda.to_device(counts), cuda.to_device(rows), gpu_tables.cost_table(), info, freq, table)
    info, freq, table = info.copy_to_host(), freq.copy_to_host(), table.copy_to_host()
    for j, (first, k) in enumerate(sums):
        c = counts[first : first + k].sum(axis=0).astype(np.int64)
        mode, f = codec.plan_counts(c, n[j], chunk, tables.quantize, tables.serialized_size)
        assert gpu_tables.MODES[int(info[j, gpu_tables.I_MODE])] == mode
        symbols = np.flatnonzero(c)
        if symbols.size:
            assert (info[j, gpu_tables.I_LOW], info[j, gpu_tables.I_HIGH]) == (symbols[0], symbols[-1])
        if symbols.size > 1:
            assert info[j, gpu_tables.I_TABLE] == tables.serialized_size(tables.quantize(c))
        if mode == "coded":
            assert (freq[j] == f).all()
            assert (table[j] == gpu_tables.encode_table(f)).all()


@SMALL
@given(
    lengths=st.lists(st.integers(0, 9000 if SIMULATED else 3_000_000), min_size=1, max_size=3),
    offsets=st.lists(st.integers(0, 3), min_size=3, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_crc_kernel_matches_zlib(lengths: list[int], offsets: list[int], seed: int) -> None:
    """The block CRC-32 with zero-append matrices equals zlib's, for spans of any length and tail."""
    rng = np.random.default_rng(seed)
    spans, position = [], 8 + 8 * int(rng.integers(0, 4))
    for length, offset in zip(lengths, offsets):
        length = max(0, length - offset)
        spans.append((position, position + length))
        position = -(-(position + length) // 8) * 8 + 8
    data = rng.integers(0, 256, position + 8, dtype=np.uint8)
    got = crc.checksums(cuda.to_device(data), spans, cuda.default_stream())
    assert got.tolist() == [zlib.crc32(data[start:end].tobytes()) for start, end in spans]


def test_crc_operators_append_zero_bytes() -> None:
    """Operator k applied to a CRC register is the register after 2**k zero bytes."""
    operators = crc.crc_operators()
    for k in (0, 1, 5, 13):
        register = 0x1234ABCD
        expected = zlib.crc32(bytes(1 << k), register ^ 0xFFFFFFFF) ^ 0xFFFFFFFF
        image = 0
        for j in range(32):
            if register >> j & 1:
                image ^= int(operators[k, j])
        assert image == expected


COMPILE = textwrap.dedent(
    """
    import sys
    from numba import cuda, types as t
    from numba.cuda.cudadrv import nvrtc, nvvm
    if not nvvm.is_available():
        sys.exit(77)
    try:
        nvrtc.get_supported_ccs()
    except Exception:  # the NVRTC library is not installed
        sys.exit(77)
    from rans.gpu import crc, encode_kernels as ek, tables
    u8, u16, u32, i64 = (t.Array(x, 1, "C") for x in (t.uint8, t.uint16, t.uint32, t.int64))
    i2, u2, q2, h2 = (t.Array(x, 2, "C") for x in (t.int64, t.uint32, t.uint64, t.int16))
    signatures = {
        "histogram": (u8, u32, i2, i2, i64, q2),
        "plan": (q2, i2, i64, i2, h2, u2),
        "encode": (u8, u32, u2, i2, i2, i2, u16, u32, u32),
        "split_raw": (u8, u32, i2, i64, u8, u32, u2, u2, u2, u32),
        "compact": (i2, i64, i64, u16, u32, u32, u16, u32),
        "scatter": (u8, i2, u8),
        "crc_blocks": (u8, u32, i2, i64, u2, u2, u2, u32),
    }
    for name, signature in signatures.items():
        module = crc if name == "crc_blocks" else tables if name == "plan" else ek
        ptx, _ = cuda.compile_ptx(getattr(module, name).py_func, signature, cc=(9, 0))
        assert ".local" not in ptx, name
    """
)


@pytest.mark.skipif(not SIMULATED, reason="on a GPU the other tests compile the kernels")
def test_kernels_compile_for_the_gpu() -> None:
    """Without a GPU, the simulator runs the kernels as Python: type and compile them for sm_90 (needs NVVM and NVRTC)."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", COMPILE], env=env, cwd=root, capture_output=True, text=True, timeout=600)
    if done.returncode == 77:
        pytest.skip("NVVM or NVRTC is not installed")
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["bf16", "f16", "f32", "e4m3", "i8"])
def test_realistic_size_on_the_gpu(kind: str) -> None:
    """64 Mi bf16 weights (and 64 MiB of the other dtypes), from a torch CUDA tensor: the reference's bytes."""
    torch = pytest.importorskip("torch")
    x = weights(kind, (64 << 21) // np.dtype(weights(kind, 1, 0).dtype).itemsize, seed=7)
    source = torch.from_numpy(x.view(np.uint8)).cuda().view(getattr(torch, {"bf16": "bfloat16", "f16": "float16", "f32": "float32", "e4m3": "float8_e4m3fn", "i8": "int8"}[kind]))
    got = encoder.compress(source)
    expected = reference_file({"": x}, 32768)
    assert got.copy_to_host().tobytes() == expected


def test_the_gpu_backend_of_the_public_functions(tmp_path) -> None:
    """backend="gpu" on compress, save_file, decompress and load_file: the reference's bytes and tensors."""
    tensors = {"w": weights("bf16", 300, seed=1), "i": weights("i8", 200, seed=2), "z": np.zeros((0, 3), np.float32)}
    x = tensors["w"]
    data = rans.compress(x, chunk_size=128, backend="gpu")
    assert data == rans.compress(x, chunk_size=128, backend="reference")
    assert rans.decompress(data, backend="gpu").tobytes() == x.tobytes()
    rans.save_file(tensors, tmp_path / "g.rans", chunk_size=128, backend="gpu")
    rans.save_file(tensors, tmp_path / "r.rans", chunk_size=128, backend="reference")
    assert (tmp_path / "g.rans").read_bytes() == (tmp_path / "r.rans").read_bytes()
    loaded = rans.load_file(tmp_path / "g.rans", backend="gpu")
    assert {k: (v.dtype, v.shape, v.tobytes()) for k, v in loaded.items()} == {
        k: (v.dtype, v.shape, v.tobytes()) for k, v in tensors.items()
    }


def test_files_for_speed_on_the_gpu_backend(tmp_path) -> None:
    """prefer="speed" through backend="gpu" (coded on the host: the GPU encoder makes the files for ratio):
    the reference's bytes, and split "nibbles" where it applies."""
    tensors = {"w": weights("bf16", 300, seed=1), "i": weights("i8", 301, seed=2), "f": weights("e4m3", 400, seed=3)}
    rans.save_file(tensors, tmp_path / "g.rans", chunk_size=128, backend="gpu", prefer="speed")
    rans.save_file(tensors, tmp_path / "r.rans", chunk_size=128, backend="reference", prefer="speed")
    assert (tmp_path / "g.rans").read_bytes() == (tmp_path / "r.rans").read_bytes()
    entries = container.read_header(memoryview((tmp_path / "g.rans").read_bytes())).entries
    assert [e.split for e in entries] == ["float", "nibbles", "nibbles"]


@pytest.mark.gpu
def test_encoder_launches_skip_numba_marshalling() -> None:
    """On a GPU every encoder kernel launches through launch.run's own marshalling, which matched Numba's
    (a mismatch would leave the signature on Numba's launches), and spans copy to and from the host."""
    from rans.gpu import encode_kernels, launch, memory

    x = weights("bf16", 300_001, seed=3)
    assert encoder.compress(x).copy_to_host().tobytes() == rans.compress(x)
    used = {key[0] for key, function in launch._KERNELS.items() if function is not None}
    assert {encode_kernels.histogram, encode_kernels.encode, encode_kernels.split_raw, encode_kernels.compact, crc.crc_blocks} <= used
    assert all(function is not None for function in launch._KERNELS.values())
    host = np.arange(1000, dtype=np.uint32)
    storage = cuda.device_array(4000, dtype=np.uint8)
    span = memory.span(storage, 0, np.uint32, (1000,))
    stream = cuda.stream()
    memory.to_device(span.ptr, host, stream)
    (back,) = memory.to_host([span.view(400, np.uint32, (900,))], stream)
    assert (back == host[100:]).all()
