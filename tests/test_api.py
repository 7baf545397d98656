"""The public functions' arguments, save_file's atomicity, metadata and torch tensors."""

from __future__ import annotations

import array
import os
import stat
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rans
import rans.container
from rans.constants import MAX_CHUNK
from rans_files import assert_identical


def small() -> np.ndarray:
    return np.random.default_rng(0).normal(0, 1, 600).astype(np.float16)


UNSUPPORTED = {
    "object": np.array([1, "a", None], dtype=object),
    "str": np.array(["ab", "c"]),
    "bytes": np.array([b"ab", b"c"]),
    "datetime64": np.array(["2024-01-01"], dtype="datetime64[D]"),
    "timedelta64": np.array([5], dtype="timedelta64[s]"),
    "void": np.zeros(3, dtype="V4"),
    "structured": np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")]),
    "longdouble": np.zeros(3, dtype=np.longdouble),
    "clongdouble": np.zeros(3, dtype=np.clongdouble),
    "float8_e4m3fnuz": np.zeros(3, dtype=ml_dtypes.float8_e4m3fnuz),
    "float8_e5m2fnuz": np.zeros(3, dtype=ml_dtypes.float8_e5m2fnuz),
    "int4": np.zeros(3, dtype=ml_dtypes.int4),
    "python-strings": ["a", "b"],
    "ragged": [[1, 2], [3]],
    "object-instance": object(),
}


@pytest.mark.parametrize("value", list(UNSUPPORTED.values()), ids=list(UNSUPPORTED))
def test_unsupported_dtypes(value: Any, tmp_path: Path) -> None:
    """compress and save_file reject what has no format dtype with InvalidArgumentError, writing nothing."""
    with pytest.raises(rans.InvalidArgumentError):
        rans.compress(value)
    with pytest.raises(rans.InvalidArgumentError):
        rans.save_file({"x": value}, tmp_path / "x.rans")
    assert list(tmp_path.iterdir()) == []


def test_invalid_argument_error_is_a_value_error() -> None:
    """Callers catching ValueError for bad arguments keep working."""
    assert issubclass(rans.InvalidArgumentError, ValueError)
    assert issubclass(rans.InvalidArgumentError, rans.RansError)


@pytest.mark.parametrize("value", [[1, 2, 3], [1.5, 2.5], [True, False], 7, 2.5, range(10)], ids=repr)
def test_array_likes(value: Any) -> None:
    """Anything np.asarray turns into a supported dtype is accepted."""
    expected = np.asarray(value)
    out = rans.decompress(rans.compress(value))
    assert out.dtype == expected.dtype
    assert out.reshape(-1).tolist() == expected.reshape(-1).tolist()


BAD_CHUNKS = [0, 64, 127, 129, 200, 255, MAX_CHUNK + 128, 2 * MAX_CHUNK, -128, 128.0, "128", None, True, [128]]


@pytest.mark.parametrize("chunk", BAD_CHUNKS, ids=repr)
def test_invalid_chunk_sizes(chunk: Any, tmp_path: Path) -> None:
    """Chunk sizes that are not multiples of 128 in [128, 2**22] are InvalidArgumentError."""
    with pytest.raises(rans.InvalidArgumentError):
        rans.compress(small(), chunk_size=chunk)
    with pytest.raises(rans.InvalidArgumentError):
        rans.save_file({"x": small()}, tmp_path / "x.rans", chunk_size=chunk)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("prefer", ["fast", "", None, 1, "Speed"], ids=repr)
def test_invalid_preferences(prefer: Any, tmp_path: Path) -> None:
    """``prefer`` other than "ratio" or "speed" is an InvalidArgumentError that names the choices; nothing is written."""
    with pytest.raises(rans.InvalidArgumentError, match="prefer must be one of 'ratio', 'speed'"):
        rans.compress(small(), prefer=prefer)
    with pytest.raises(rans.InvalidArgumentError, match="prefer"):
        rans.save_file({"x": small()}, tmp_path / "x.rans", prefer=prefer)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("chunk", [128, 256, 128 * 1000, MAX_CHUNK])
def test_valid_chunk_sizes(chunk: int) -> None:
    """Every multiple of 128 up to 2**22 is accepted."""
    x = small()
    assert_identical(x, rans.decompress(rans.compress(x, chunk_size=chunk)))


@pytest.mark.parametrize("kind", [np.int64, np.int32], ids=lambda k: k.__name__)
def test_numpy_integer_chunk_size(kind: Any, tmp_path: Path) -> None:
    """check_chunk accepts NumPy integers, so compress and save_file do too, with the same bytes."""
    x = np.random.default_rng(0).normal(0, 0.02, 4096).astype(ml_dtypes.bfloat16)
    assert rans.compress(x, chunk_size=kind(256)) == rans.compress(x, chunk_size=256)
    rans.save_file({"": x}, tmp_path / "x.rans", chunk_size=kind(256))
    assert (tmp_path / "x.rans").read_bytes() == rans.compress(x, chunk_size=256)


@pytest.mark.parametrize("kind", [np.uint16, np.uint32, np.uint64], ids=lambda k: k.__name__)
def test_unsigned_numpy_integer_chunk_size(kind: Any) -> None:
    """An unsigned NumPy integer chunk size passes check_chunk, so it must work like the int it holds."""
    x = np.random.default_rng(0).normal(0, 0.02, 4096).astype(ml_dtypes.bfloat16)
    try:
        data = rans.compress(x, chunk_size=kind(256))
    except rans.InvalidArgumentError:
        return
    assert data == rans.compress(x, chunk_size=256)


@pytest.mark.parametrize("tensors", [[("x", small())], None, "x", small(), 5], ids=["list", "None", "str", "array", "int"])
def test_tensors_must_be_a_mapping(tensors: Any, tmp_path: Path) -> None:
    """save_file's tensors must be a mapping of names to arrays."""
    with pytest.raises(rans.InvalidArgumentError):
        rans.save_file(tensors, tmp_path / "x.rans")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", [1, None, b"x", ("x",), 1.5], ids=repr)
def test_tensor_names_must_be_strings(name: Any, tmp_path: Path) -> None:
    """Tensor names that are not str are InvalidArgumentError."""
    with pytest.raises(rans.InvalidArgumentError):
        rans.save_file({"ok": small(), name: small()}, tmp_path / "x.rans")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "metadata",
    [{"a": 1}, {1: "a"}, {"a": None}, {"a": b"x"}, {"a": ["b"]}, ["a"], "abc", 5, [("a", "b")]],
    ids=repr,
)
def test_metadata_must_map_strings_to_strings(metadata: Any, tmp_path: Path) -> None:
    """Metadata that is not a mapping of str to str is InvalidArgumentError."""
    with pytest.raises(rans.InvalidArgumentError):
        rans.save_file({"x": small()}, tmp_path / "x.rans", metadata)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "tensors, metadata",
    [
        ({"\ud800": np.zeros(3)}, None),
        ({"x": np.zeros(3)}, {"k": "\udfff"}),
        ({"x": np.zeros(3)}, {"\udbff": "v"}),
        ({"ok": np.zeros(3), "a\udc00b": np.zeros(3)}, {"k": "v"}),
    ],
    ids=["name", "metadata-value", "metadata-key", "second-name"],
)
def test_unencodable_strings(tensors: dict, metadata: Any, tmp_path: Path) -> None:
    """Strings that cannot be UTF-8 encoded (lone surrogates) are InvalidArgumentError, and nothing is written."""
    with pytest.raises(rans.InvalidArgumentError):
        rans.save_file(tensors, tmp_path / "x.rans", metadata)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o000, 0o277])
def test_save_file_mode_follows_the_umask(tmp_path: Path, umask: int) -> None:
    """Files are created with mode 0o666 & ~umask, like open() would (not mkstemp's 0o600)."""
    previous = os.umask(umask)
    try:
        rans.save_file({"x": small()}, tmp_path / "new.rans")
        rans.save_file({"x": small()}, tmp_path / "new.rans")  # replacing a file, too
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.rans").stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["new.rans"]


def test_unknown_device(tmp_path: Path) -> None:
    """decompress and load_file accept device 'cpu' or 'cuda' only."""
    rans.save_file({"x": small()}, tmp_path / "x.rans")
    with pytest.raises(rans.InvalidArgumentError):
        rans.decompress(rans.compress(small()), device="tpu")
    with pytest.raises(rans.InvalidArgumentError):
        rans.load_file(tmp_path / "x.rans", device="gpu")


BYTES_LIKES = {
    "bytes": bytes,
    "bytearray": bytearray,
    "memoryview": memoryview,
    "array.array": lambda b: array.array("B", b),
    "ndarray": lambda b: np.frombuffer(b, dtype=np.uint8),
    "2-d-ndarray": lambda b: np.frombuffer(b, dtype=np.uint8).reshape(1, -1),
}


@pytest.mark.parametrize("kind", list(BYTES_LIKES.values()), ids=list(BYTES_LIKES))
def test_decompress_accepts_bytes_likes(kind: Any) -> None:
    """Any contiguous bytes-like object can be decompressed."""
    x = small()
    assert_identical(x, rans.decompress(kind(rans.compress(x))))


# save_file atomicity


class Interrupted(Exception):
    pass


def failing_write(nbytes: int, error: BaseException):
    """A stand-in for container.write that writes ``nbytes`` bytes and then raises ``error``."""

    def write(out: Any, *args: Any, **kwargs: Any) -> None:
        out.write(b"\x89RANS\r\n\x1a" + bytes(max(0, nbytes - 8)))
        raise error

    return write


@pytest.mark.parametrize("error", [Interrupted("disk full"), KeyboardInterrupt()], ids=["exception", "KeyboardInterrupt"])
@pytest.mark.parametrize("nbytes", [0, 100, 5000])
def test_save_file_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException, nbytes: int) -> None:
    """A write that fails midway leaves the existing file untouched and no temporary file behind."""
    path = tmp_path / "model.rans"
    rans.save_file({"old": np.arange(10, dtype=np.int8)}, path, {"version": "old"})
    before = path.read_bytes()
    monkeypatch.setattr(rans.container, "write", failing_write(nbytes, error))
    with pytest.raises(type(error)):
        rans.save_file({"new": small()}, path, {"version": "new"})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.rans"]
    monkeypatch.undo()
    assert rans.load_metadata(path) == {"version": "old"}


def test_save_file_failure_without_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed first write leaves no file at all."""
    monkeypatch.setattr(rans.container, "write", failing_write(100, Interrupted()))
    with pytest.raises(Interrupted):
        rans.save_file({"x": small()}, tmp_path / "new.rans")
    assert list(tmp_path.iterdir()) == []


def test_save_file_replaces_and_cleans_up(tmp_path: Path) -> None:
    """A successful save replaces the old file and leaves only it in the directory."""
    path = tmp_path / "model.rans"
    rans.save_file({"a": np.zeros(5, np.int8)}, path)
    rans.save_file({"b": small()}, str(path))
    assert list(rans.load_file(path)) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["model.rans"]


def test_path_types(tmp_path: Path) -> None:
    """Paths may be str or os.PathLike, for save_file, load_file and load_metadata."""
    x = small()
    rans.save_file({"x": x}, os.fspath(tmp_path / "a.rans"), {"k": "v"})
    assert_identical(x, rans.load_file(tmp_path / "a.rans")["x"])
    assert rans.load_metadata(os.fspath(tmp_path / "a.rans")) == {"k": "v"}


# Metadata


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(st.dictionaries(texts, texts, max_size=8))
def test_metadata_round_trip(tmp_path_factory: pytest.TempPathFactory, metadata: dict[str, str]) -> None:
    """load_metadata returns exactly the metadata saved (any Unicode, empty strings, JSON syntax)."""
    path = tmp_path_factory.mktemp("meta") / "m.rans"
    rans.save_file({"x": np.arange(3, dtype=np.uint8)}, path, metadata)
    assert rans.load_metadata(path) == metadata


def test_metadata_absent_and_empty(tmp_path: Path) -> None:
    """No metadata and empty metadata both read back as {}."""
    rans.save_file({"x": small()}, tmp_path / "a.rans")
    rans.save_file({"x": small()}, tmp_path / "b.rans", {})
    assert rans.load_metadata(tmp_path / "a.rans") == rans.load_metadata(tmp_path / "b.rans") == {}


def test_metadata_mapping_types(tmp_path: Path) -> None:
    """Any Mapping works for metadata and tensors, not only dict."""
    from types import MappingProxyType

    rans.save_file(MappingProxyType({"x": small()}), tmp_path / "a.rans", MappingProxyType({"k": "v"}))
    assert rans.load_metadata(tmp_path / "a.rans") == {"k": "v"}


def test_empty_file_of_no_tensors(tmp_path: Path) -> None:
    """save_file({}) writes a valid file that loads as {}."""
    rans.save_file({}, tmp_path / "none.rans", {"k": "v"})
    assert rans.load_file(tmp_path / "none.rans") == {}
    assert rans.load_metadata(tmp_path / "none.rans") == {"k": "v"}


# torch


@pytest.fixture(scope="module")
def torch() -> Any:
    return pytest.importorskip("torch")


def torch_bits(t: Any, torch: Any) -> np.ndarray:
    """The raw bytes of a CPU torch tensor, as uint8."""
    t = t.detach().contiguous()
    if t.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):
        t = t.view(torch.uint8)
    return t.numpy().reshape(-1).view(np.uint8)


@pytest.mark.parametrize(
    "dtype, name",
    [("bfloat16", "BF16"), ("float16", "F16"), ("float32", "F32"), ("float8_e4m3fn", "F8_E4M3"),
     ("float8_e5m2", "F8_E5M2"), ("int8", "I8"), ("int64", "I64"), ("bool", "BOOL")],
)
def test_torch_tensors(torch: Any, dtype: str, name: str) -> None:
    """CPU torch tensors round-trip bit for bit into the matching NumPy dtype."""
    generator = torch.Generator().manual_seed(0)
    t = (torch.randn(64, 48, generator=generator) * 0.02).to(getattr(torch, dtype))
    out = rans.decompress(rans.compress(t, chunk_size=256))
    assert out.dtype == rans.dtypes.DTYPES[name]
    assert out.shape == tuple(t.shape)
    assert out.reshape(-1).view(np.uint8).tobytes() == torch_bits(t, torch).tobytes()


def test_torch_bf16_non_contiguous_and_requires_grad(torch: Any, tmp_path: Path) -> None:
    """A transposed bf16 parameter (requires_grad) saves and loads with its values."""
    w = torch.nn.Parameter(torch.randn(32, 80).to(torch.bfloat16))
    view = w.t()
    rans.save_file({"w.T": view, "w": w}, tmp_path / "t.rans")
    loaded = rans.load_file(tmp_path / "t.rans")
    assert loaded["w.T"].shape == (80, 32)
    assert loaded["w.T"].tobytes() == torch_bits(view, torch).tobytes()
    assert loaded["w"].tobytes() == torch_bits(w, torch).tobytes()
