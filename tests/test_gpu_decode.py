"""The GPU decoder against the reference: same bytes out, same errors.

Without a GPU these tests run on the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``,
set by ``conftest.py``) at small sizes: a logic check. Tests marked ``gpu``
run only on a real GPU (``pytest -m gpu``), at realistic sizes; that is
where bit-exactness is judged.
"""

from __future__ import annotations

import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rans
from rans import container
from weights import weights

cuda = pytest.importorskip("numba.cuda")

SIMULATED = bool(__import__("numba").config.ENABLE_CUDASIM)
SMALL = settings(max_examples=3 if SIMULATED else 40, deadline=None, suppress_health_check=list(HealthCheck))


KINDS = ["bf16", "f32", "f32-bf16", "f16", "e4m3", "e5m2", "i8", "i16", "i32", "i64", "u8-few", "bool"]


def on_gpu(data: bytes, **options) -> np.ndarray:
    """Decode on the GPU into a numba array and bring the bytes back."""
    out = rans.decompress(data, device="cuda", framework="numba", **options)
    return out.copy_to_host()


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.tobytes() == b.tobytes()


SIM_KINDS = ["bf16", "f32", "f32-bf16", "f16", "e4m3", "i8", "i16", "u8-few", "bool"]
"""Under the simulator, one dtype per kernel path (every "fused" kind, the scratch path, bytes)."""


@pytest.mark.parametrize("kind", SIM_KINDS if SIMULATED else KINDS)
def test_every_dtype_matches_the_reference(kind: str) -> None:
    """Each dtype, at sizes that make several chunks, through the fused and the scratch paths."""
    n = 300 if SIMULATED else 300_001
    x = weights(kind, n, seed=len(kind))
    data = rans.compress(x, chunk_size=128 if SIMULATED else 32768)
    got = on_gpu(data)
    assert got.shape == x.shape and got.tobytes() == rans.decompress(data).tobytes() == x.tobytes()


@SMALL
@given(
    kind=st.sampled_from(SIM_KINDS if SIMULATED else KINDS),
    n=st.integers(0, 400 if SIMULATED else 200_000),
    chunk=st.sampled_from([128, 256, 1024]),
    seed=st.integers(0, 2**32 - 1),
    prefer=st.sampled_from(["ratio", "speed"]),
)
def test_drawn_tensors_match_the_reference(kind: str, n: int, chunk: int, seed: int, prefer: str) -> None:
    """Hypothesis-drawn dtype, size, chunk size, data and writer preference: GPU bytes equal reference bytes."""
    x = weights(kind, n, seed)
    data = rans.compress(x, chunk_size=chunk, prefer=prefer)
    assert on_gpu(data).tobytes() == rans.decompress(data).tobytes()


def fused_loops(n: int, seed: int) -> dict[str, tuple[np.ndarray, int, int, bool | None]]:
    """Tensors that take each specialized loop of the fused decoder (``n`` even), written with
    :func:`prefer` of their kind.

    name -> (tensor, kernel kind, shift, whether its first other plane is raw rather than constant;
    None for a kind without other planes).
    """
    from rans.gpu import kernels

    rng = np.random.default_rng(seed)

    def small() -> np.ndarray:
        return rng.integers(0, 40, n)

    def byte() -> np.ndarray:
        return rng.integers(0, 256, n)

    return {
        "bf16": (weights("bf16", n, seed), kernels.KIND_BF16, 0, True),
        "bf16, constant sign and mantissa": ((2.0 ** -rng.integers(1, 20, n)).astype(ml_dtypes.bfloat16), kernels.KIND_BF16, 0, False),
        "f32": (weights("f32", n, seed), kernels.KIND_F32, 0, True),
        "f32, constant low bytes": (weights("f32-bf16", n, seed), kernels.KIND_F32, 0, True),
        "i8": (weights("i8", n, seed), kernels.KIND_BYTES, 0, None),
        "u16, byte 0 coded": (small().astype(np.uint16), kernels.KIND_BYTES2, 0, False),
        "u16, byte 1 coded": (((small() % 8) << 8 | byte()).astype(np.uint16), kernels.KIND_BYTES2, 1, True),
        "f16": (weights("f16", n, seed), kernels.KIND_BYTES2, 1, True),
        **{f"u32, byte {s} coded": ((small() << (8 * s)).astype(np.uint32), kernels.KIND_BYTES4, s, False) for s in range(4)},
        "u32, byte 0 coded, raw others": ((small() | byte() << 8 | byte() << 16 | byte() << 24).astype(np.uint32), kernels.KIND_BYTES4, 0, True),
        "e4m3 nibbles": (weights("e4m3", n, seed), kernels.KIND_NIBBLES8, 0, True),
        "e5m2 nibbles": (weights("e5m2", n, seed), kernels.KIND_NIBBLES8, 0, True),
        "i8 nibbles": (weights("i8", n, seed), kernels.KIND_NIBBLES, 0, True),
        "u8 nibbles, constant low nibbles": ((small() % 3 << 4).astype(np.uint8), kernels.KIND_NIBBLES, 0, False),
    }


def prefer(kind: int) -> str:
    """The writer preference that gives a loop's tensor its split: ``"speed"`` for split "nibbles"."""
    from rans.gpu import kernels

    return "speed" if kind in (kernels.KIND_NIBBLES, kernels.KIND_NIBBLES8) else "ratio"


@pytest.mark.parametrize("name", list(fused_loops(8, 0)))
def test_every_fused_loop_matches_the_reference(name: str) -> None:
    """Each (kind, shift) loop of the fused kernel, with raw and constant other planes: the plan takes it, bytes agree."""
    from rans.gpu import decoder, kernels

    x, kind, shift, raw = fused_loops(260 if SIMULATED else 300_002, 7)[name]
    data = rans.compress(x, chunk_size=128 if SIMULATED else 32768, prefer=prefer(kind))
    buf = memoryview(data)
    [row] = decoder.plan(buf, container.read_header(buf).entries, [0]).fused.planes
    assert (row[kernels.P_KIND], row[kernels.P_SHIFT]) == (kind, shift)
    assert raw is None or (row[kernels.P_SRC1] >= 0) == raw
    assert on_gpu(data).tobytes() == rans.decompress(data).tobytes() == x.tobytes()


@SMALL
@given(
    name=st.sampled_from(list(fused_loops(8, 0))),
    n=st.integers(0, 300 if SIMULATED else 200_000),
    chunk=st.sampled_from([128, 256, 1024]),
    seed=st.integers(0, 2**32 - 1),
)
def test_drawn_tensors_of_every_fused_loop_match_the_reference(name: str, n: int, chunk: int, seed: int) -> None:
    """Hypothesis-drawn size (odd ones included: split "nibbles" then takes the join kernel), chunk size
    and data for the tensors of each fused loop: GPU bytes equal reference bytes."""
    x, kind, _, _ = fused_loops(n, seed)[name]
    data = rans.compress(x, chunk_size=chunk, prefer=prefer(kind))
    assert on_gpu(data).tobytes() == rans.decompress(data).tobytes()


@pytest.mark.parametrize("n", [259, 260])
def test_nibbles_the_fused_kernel_leaves_to_the_join_kernel(n: int) -> None:
    """Split "nibbles" with only its low plane coded, or of an odd count: the join kernel's bytes equal the reference's."""
    from rans.gpu import decoder

    rng = np.random.default_rng(n)
    low_coded = (rng.integers(0, 16, n) << 4 | rng.integers(0, 3, n)).astype(np.uint8)
    for x in (low_coded, weights("e4m3", n, n), weights("i8", n, n)):
        data = rans.compress(x, chunk_size=128, prefer="speed")
        buf = memoryview(data)
        [entry] = container.read_header(buf).entries
        assert entry.split == "nibbles"
        fused = decoder.plan(buf, [entry], [0]).fused.planes
        assert len(fused) == (0 if n % 2 or entry.planes[0].mode != "coded" else 1)
        assert on_gpu(data).tobytes() == rans.decompress(data).tobytes() == x.tobytes()


def test_a_file_decodes_in_one_call() -> None:
    """load_file(device='cuda') gives every tensor of a mixed file, equal to the CPU's."""
    n = 200 if SIMULATED else 100_000
    tensors = {kind: weights(kind, n, seed=i) for i, kind in enumerate(SIM_KINDS if SIMULATED else KINDS)}
    tensors["empty"] = np.zeros((0, 4), np.float32)
    tensors["scalar"] = np.array(2.5, np.float32)
    import tempfile, os

    path = os.path.join(tempfile.mkdtemp(), "mixed.rans")
    rans.save_file(tensors, path, chunk_size=128 if SIMULATED else 32768)
    on_device = rans.load_file(path, device="cuda", framework="numba")
    on_host = rans.load_file(path)
    assert list(on_device) == list(tensors)
    for name, array in on_host.items():
        got = on_device[name].copy_to_host()
        assert got.shape == array.shape and got.tobytes() == array.tobytes(), name


@SMALL
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 4), kind=st.sampled_from(["bf16", "e4m3"]))
def test_corrupt_words_fail_like_the_reference(seed: int, flips: int, kind: str) -> None:
    """With CRCs off, damaged coded data gives the reference's error (same tensor and chunk) or its bytes
    (e4m3 written for speed: split "nibbles", through the fused kernel)."""
    rng = np.random.default_rng(seed)
    x = weights(kind, 400 if SIMULATED else 200_000, seed)
    data = bytearray(rans.compress(x, chunk_size=128 if SIMULATED else 4096, prefer="speed"))
    header = container.read_header(memoryview(bytes(data)))
    coded = header.entries[0].planes[0]
    assert coded.mode == "coded"
    for at in rng.integers(coded.offset + 8, coded.offset + coded.length, flips):
        data[at] ^= 1 << int(rng.integers(0, 8))
    data = bytes(data)
    try:
        expected = rans.decompress(data, verify=False)
    except rans.CorruptDataError as e:
        with pytest.raises(rans.CorruptDataError) as got:
            on_gpu(data, verify=False)
        assert (got.value.tensor, got.value.field, got.value.chunk) == (e.tensor, e.field, e.chunk)
    else:
        assert on_gpu(data, verify=False).tobytes() == expected.tobytes()


def test_crc_mismatch_is_caught_on_the_gpu() -> None:
    """With verify on (the default), a flipped bit anywhere in a section is a ChecksumError."""
    data = bytearray(rans.compress(weights("bf16", 300, 1), chunk_size=128))
    data[-3] ^= 0x10
    with pytest.raises(rans.ChecksumError) as e:
        rans.decompress(bytes(data), device="cuda", framework="numba")
    assert e.value.tensor == ""


@SMALL
@given(sizes=st.lists(st.integers(0, 500), min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_a_flipped_bit_names_its_tensor(tmp_path_factory, sizes: list[int], seed: int, data) -> None:
    """A bit flipped in any tensor's sections: the GPU's CRC check names that tensor, as the CPU's does."""
    tensors = {f"t{i}": weights(["bf16", "i8", "f32"][i % 3], n, seed + i) for i, n in enumerate(sizes)}
    path = tmp_path_factory.mktemp("flip") / "f.rans"
    rans.save_file(tensors, path, chunk_size=128)
    blob = bytearray(path.read_bytes())
    entries = container.read_header(memoryview(bytes(blob))).entries
    sections = [(e.name, p.offset, p.offset + p.length) for e in entries for p in e.sections if p.length]
    assert rans.load_file(path, device="cuda", framework="numba").keys() == tensors.keys()
    if not sections:
        return
    name, start, end = data.draw(st.sampled_from(sections))
    blob[data.draw(st.integers(start, end - 1))] ^= 1 << data.draw(st.integers(0, 7))
    path.write_bytes(bytes(blob))
    with pytest.raises(rans.ChecksumError) as on_cpu:
        rans.load_file(path)
    with pytest.raises(rans.ChecksumError) as e:
        rans.load_file(path, device="cuda", framework="numba")
    assert e.value.tensor == on_cpu.value.tensor == name and e.value.field == "crc32"


def test_files_larger_than_a_staging_buffer(monkeypatch, tmp_path) -> None:
    """A file copied to the GPU in many pieces through the pinned ring decodes to the same tensors."""
    from rans.gpu import upload

    monkeypatch.setattr(upload, "PIECE", 128)
    monkeypatch.setattr(upload, "DIRECT_MAX", 256)
    monkeypatch.setattr(upload, "_state", {})
    tensors = {"a": weights("bf16", 600, 1), "b": weights("i8", 301, 2)}
    rans.save_file(tensors, tmp_path / "m.rans", chunk_size=128)
    got = rans.load_file(tmp_path / "m.rans", device="cuda", framework="numba")
    assert {k: v.copy_to_host().tobytes() for k, v in got.items()} == {k: v.view(np.uint8 if k == "b" else np.uint16).tobytes() for k, v in tensors.items()}


def test_out_and_stream_are_used() -> None:
    """A preallocated output is filled and returned; a numba stream is accepted."""
    x = weights("f16", 300, 3)
    data = rans.compress(x, chunk_size=128)
    out = cuda.device_array(x.shape, dtype=np.float16)
    stream = cuda.stream()
    got = rans.decompress(data, device="cuda", out=out, stream=stream)
    assert got is out
    assert same_bytes(out.copy_to_host(), x)


def test_bad_out_is_an_argument_error() -> None:
    data = rans.compress(weights("f32", 100, 4))
    with pytest.raises(rans.InvalidArgumentError):
        rans.decompress(data, device="cuda", out=cuda.device_array(99, dtype=np.float32))
    with pytest.raises(rans.InvalidArgumentError):
        rans.decompress(data, device="cuda", framework="jax")
    with pytest.raises(rans.InvalidArgumentError):
        rans.decompress(data, device="tpu")


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["bf16", "f16", "f32", "e4m3", "i8"])
def test_large_tensors_on_the_gpu(kind: str) -> None:
    """16 Mi elements (several hundred chunks) decode bit-exactly, into torch tensors by default."""
    torch = pytest.importorskip("torch")
    x = weights(kind, 16 << 20, seed=7)
    data = rans.compress(x, workers=8)
    got = rans.decompress(data, device="cuda")
    assert isinstance(got, torch.Tensor) and got.is_cuda and tuple(got.shape) == x.shape
    again = torch.as_tensor(got, device="cuda")
    host = again.view(torch.uint8).cpu().numpy() if got.element_size() == 1 else again.cpu().view(torch.uint8).numpy()
    assert host.tobytes() == x.tobytes()


@pytest.mark.gpu
def test_torch_stream_and_out() -> None:
    torch = pytest.importorskip("torch")
    x = weights("bf16", 1 << 20, seed=9)
    data = rans.compress(x)
    out = torch.empty(x.shape, dtype=torch.bfloat16, device="cuda")
    stream = torch.cuda.Stream()
    assert rans.decompress(data, device="cuda", out=out, stream=stream) is out
    assert out.cpu().view(torch.int16).numpy().tobytes() == x.tobytes()


@pytest.mark.gpu
def test_launches_hand_cuda_core_its_own_streams() -> None:
    """cuda.core deprecates being handed Numba's stream objects (a DeprecationWarning, then an error)."""
    torch = pytest.importorskip("torch")
    x = weights("bf16", 1 << 16, seed=10)
    data = rans.compress(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for stream in (None, torch.cuda.Stream()):
            got = rans.decompress(data, device="cuda", stream=stream)
            torch.cuda.synchronize()
            assert got.cpu().view(torch.int16).numpy().tobytes() == x.tobytes()
