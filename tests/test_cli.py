"""The command line and checkpoint files: byte-identical round trips, exit codes, bad inputs, safety, lazy loading.

The CLI runs in-process through :func:`rans.cli.main`; one test runs
``python -m rans`` and the console-script target in a subprocess.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tomllib
import zlib

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rans
from rans import api, checkpoint, cli, container, safetensors_file
from rans.cli import Exit

stn = pytest.importorskip("safetensors.numpy")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL = "/work/shared/data/real"
REAL_SMALL = sorted(p for p in glob.glob(os.path.join(REAL, "*.safetensors")) if os.path.getsize(p) < 400_000)


def sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(*argv: str) -> int:
    return cli.main([*argv])


def tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "embed.weight": rng.normal(0, 0.02, (64, 48)).astype(np.float32),
        "layer.0.bias": rng.normal(0, 0.02, 48).astype(np.float16),
        "layer.0.index": rng.integers(-5, 5, 100).astype(np.int64),
        "layer.0.mask": rng.integers(0, 2, 33).astype(np.bool_),
        "scalar": np.array(7, np.int32),
        "empty": np.zeros((0, 3), np.int8),
    }


def write_bf16_file(path: str) -> None:
    """A bf16 file as torch writes it (NumPy safetensors has no bf16)."""
    torch = pytest.importorskip("torch")
    import safetensors.torch as stt

    g = torch.Generator().manual_seed(0)
    stt.save_file({"w": (torch.randn(300, 70, generator=g) * 0.02).bfloat16(), "b": torch.zeros(70, dtype=torch.bfloat16)},
                  path, {"format": "pt"})


def raw_safetensors(path: str, header: dict | str, data: bytes, pad: int = 0) -> None:
    """A safetensors file with exactly this header text (JSON in any key order, any spacing)."""
    text = (header if isinstance(header, str) else json.dumps(header, indent=1)).encode() + b" " * pad
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


@pytest.fixture
def st_file(tmp_path):
    path = str(tmp_path / "model.safetensors")
    stn.save_file(tensors(), path, {"format": "np", "note": "ü"})
    return path


@pytest.fixture
def rans_file(st_file):
    assert run("compress", st_file, "-q") == 0
    return st_file[: -len(".safetensors")] + ".rans"


# --------------------------------------------------------------------------- round trips


def test_single_file_round_trip_is_byte_identical(st_file, tmp_path, capsys):
    assert run("compress", st_file) == 0
    packed = str(tmp_path / "model.rans")
    assert os.path.exists(packed)
    back = str(tmp_path / "back.safetensors")
    assert run("decompress", packed, "-o", back) == 0
    assert sha(back) == sha(st_file)
    loaded = rans.load_file(packed)
    assert sorted(loaded) == sorted(tensors())
    for name, value in tensors().items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape
        assert loaded[name].tobytes() == value.tobytes()
    metadata = rans.load_metadata(packed)
    assert metadata["format"] == "np" and metadata["note"] == "ü"
    record = json.loads(metadata[checkpoint.RESERVED_KEY])
    with open(st_file, "rb") as f:
        assert record["version"] == 2 and record["crc32"] == zlib.crc32(f.read())
    assert record["size"] == os.path.getsize(st_file)
    assert "header" not in record  # the safetensors library's layout is rebuilt, not stored
    assert capsys.readouterr().err == ""  # no progress bar when stderr is not a terminal


def test_default_decompressed_name(rans_file, st_file):
    os.rename(st_file, st_file + ".orig")
    assert run("decompress", rans_file, "-q") == 0
    assert sha(st_file) == sha(st_file + ".orig")


def test_bf16_round_trip(tmp_path):
    src = str(tmp_path / "w.safetensors")
    write_bf16_file(src)
    assert run("compress", src, "-o", str(tmp_path / "w.rans"), "-q", "--workers", "2") == 0
    assert run("decompress", str(tmp_path / "w.rans"), "-o", str(tmp_path / "back.safetensors"), "-q") == 0
    assert sha(str(tmp_path / "back.safetensors")) == sha(src)
    assert os.path.getsize(tmp_path / "w.rans") < os.path.getsize(src) / 1.4


def test_compress_for_speed(tmp_path):
    """``--prefer speed``: 1-byte tensors split "nibbles", the checkpoint back byte for byte."""
    rng = np.random.default_rng(5)
    src = str(tmp_path / "q.safetensors")
    stn.save_file({"q": np.clip(np.round(rng.normal(0, 12, 5001)), -127, 127).astype(np.int8),
             "b": rng.normal(0, 1, 300).astype(np.float32)}, src)
    packed = str(tmp_path / "q.rans")
    assert run("compress", src, "-o", packed, "-q", "--prefer", "speed") == 0
    with open(packed, "rb") as f:
        entries = {e.name: e for e in rans.container.read_header(memoryview(f.read())).entries}
    assert (entries["q"].split, [p.mode for p in entries["q"].planes]) == ("nibbles", ["coded", "raw"])
    assert run("decompress", packed, "-o", str(tmp_path / "back.safetensors"), "-q") == 0
    assert sha(str(tmp_path / "back.safetensors")) == sha(src)
    assert run("verify", packed, "-q") == 0


def test_header_out_of_offset_order_with_spaces_kept_verbatim(tmp_path):
    a, b = np.arange(6, dtype=np.float32), np.arange(4, dtype=np.int16)
    header = {  # listed in reverse of the data order, metadata last, indented, extra padding
        "b": {"shape": [4], "dtype": "I16", "data_offsets": [24, 32]},
        "a": {"dtype": "F32", "data_offsets": [0, 24], "shape": [2, 3]},
        "__metadata__": {"z": "1"},
    }
    src = str(tmp_path / "odd.safetensors")
    raw_safetensors(src, header, a.tobytes() + b.tobytes(), pad=5)
    packed, back = str(tmp_path / "odd.rans"), str(tmp_path / "back.safetensors")
    assert run("compress", src, "-o", packed, "-q") == 0
    assert "header" in json.loads(rans.load_metadata(packed)[checkpoint.RESERVED_KEY])
    assert run("decompress", packed, "-o", back, "-q") == 0
    assert sha(back) == sha(src)
    assert rans.load_file(packed)["a"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_dtype_rans_lacks_is_kept_as_bytes(tmp_path):
    src = str(tmp_path / "e8.safetensors")
    raw_safetensors(src, '{"s":{"dtype":"F8_E8M0","shape":[2,2],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
                    bytes([127, 128, 1, 254]) + np.float32(1.5).tobytes(), pad=2)
    packed, back = str(tmp_path / "e8.rans"), str(tmp_path / "back.safetensors")
    assert run("compress", src, "-o", packed, "-q") == 0
    assert rans.load_file(packed)["s"].tolist() == [127, 128, 1, 254]
    assert run("decompress", packed, "-o", back, "-q") == 0
    assert sha(back) == sha(src)


def test_rans_file_without_record_decompresses_to_safetensors(tmp_path):
    path = str(tmp_path / "plain.rans")
    rans.save_file({"x": np.arange(5, dtype=np.uint8), "y": np.ones((2, 2), np.float64)}, path, {"k": "v"})
    assert run("decompress", path, "-q") == 0
    back = stn.load_file(str(tmp_path / "plain.safetensors"))
    assert back["x"].tolist() == [0, 1, 2, 3, 4] and back["y"].tolist() == [[1, 1], [1, 1]]
    with safetensors_file.SafetensorsFile(str(tmp_path / "plain.safetensors")) as f:
        assert f.metadata == {"k": "v"} and f.is_canonical()


def make_checkpoint(root) -> str:
    """A small sharded Hugging Face-style directory: two shards, their index, config, a tokenizer folder."""
    d = root / "model"
    (d / "tokenizer").mkdir(parents=True)
    t = tensors(1)
    names = list(t)
    shards = {"model-00001-of-00002.safetensors": names[:3], "model-00002-of-00002.safetensors": names[3:]}
    for shard, keys in shards.items():
        stn.save_file({k: t[k] for k in keys}, str(d / shard), {"format": "pt"})
    index = {"metadata": {"total_size": sum(v.nbytes for v in t.values())},
             "weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (d / "config.json").write_text('{"model_type": "toy"}\n')
    (d / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    return str(d)


def tree(root: str) -> dict[str, str]:
    return {n: sha(os.path.join(root, n)) for n in checkpoint.listing(root)}


def test_sharded_directory_round_trip(tmp_path):
    src = make_checkpoint(tmp_path)
    assert run("compress", src, "-q") == 0
    packed = src + ".rans"
    names = set(checkpoint.listing(packed))
    assert names == {"model-00001-of-00002.rans", "model-00002-of-00002.rans", "model.safetensors.index.json",
                     "model.rans.index.json", "config.json", os.path.join("tokenizer", "vocab.txt")}
    index = json.loads((tmp_path / "model.rans" / "model.rans.index.json").read_text())
    assert set(index["weight_map"].values()) == {"model-00001-of-00002.rans", "model-00002-of-00002.rans"}
    assert index["metadata"]["total_size"] > 0
    assert run("verify", packed, "-q") == 0
    back = str(tmp_path / "back")
    assert run("decompress", packed, "-o", back, "-q") == 0
    assert tree(back) == tree(src)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporary directory left


def test_directory_without_index(tmp_path):
    d = tmp_path / "single"
    d.mkdir()
    stn.save_file(tensors(), str(d / "model.safetensors"))
    assert run("compress", str(d), "-o", str(tmp_path / "packed"), "-q") == 0
    assert run("decompress", str(tmp_path / "packed"), "-o", str(tmp_path / "back"), "-q") == 0
    assert tree(str(tmp_path / "back")) == tree(str(d))


@pytest.mark.skipif(not REAL_SMALL, reason=f"no real weights in {REAL}")
@pytest.mark.parametrize("path", REAL_SMALL, ids=os.path.basename)
def test_real_files_round_trip(path, tmp_path):
    packed, back = str(tmp_path / "r.rans"), str(tmp_path / "r.safetensors")
    assert run("compress", path, "-o", packed, "-q") == 0
    assert os.path.getsize(packed) < os.path.getsize(path)
    assert run("decompress", packed, "-o", back, "-q") == 0
    assert sha(back) == sha(path)


# --------------------------------------------------------------------------- info, verify, exit codes


def test_info_lists_every_tensor_and_totals(rans_file, capsys):
    assert run("info", rans_file) == 0
    out = capsys.readouterr().out
    for name in tensors():
        assert name in out
    assert "total: 6 tensors" in out and "order-0 bound" in out
    assert run("info", rans_file, "--no-bound") == 0
    assert "bound" not in capsys.readouterr().out


def test_verify_ok(rans_file, capsys):
    assert run("verify", rans_file) == 0
    assert "OK" in capsys.readouterr().out


def with_record(src: str, dst: str, change: dict) -> None:
    """``src`` written again as ``dst`` with its reserved key's object changed."""
    metadata = rans.load_metadata(src)
    record = json.loads(metadata[checkpoint.RESERVED_KEY]) | change
    rans.save_file(rans.load_file(src), dst, metadata | {checkpoint.RESERVED_KEY: json.dumps({k: v for k, v in record.items() if v is not None})})


def test_records_of_version_1_are_checked_by_sha256(rans_file, st_file, tmp_path, capsys):
    """Files whose record holds the original's SHA-256 (version 1) still decompress, and are checked by it."""
    old = str(tmp_path / "old.rans")
    with_record(rans_file, old, {"version": 1, "crc32": None, "sha256": sha(st_file)})
    assert run("verify", old) == 0
    assert f"sha256 {sha(st_file)[:12]}" in capsys.readouterr().out
    assert run("decompress", old, "-o", str(tmp_path / "old.safetensors"), "-q") == 0
    assert sha(str(tmp_path / "old.safetensors")) == sha(st_file)
    with_record(rans_file, old, {"version": 1, "crc32": None, "sha256": "0" * 64})
    assert run("verify", old, "-q") == Exit.CORRUPT
    assert "is not the original" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change",
    [{"crc32": 12345}, {"size": 1}, {"crc32": "12345"}, {"crc32": 1 << 32}, {"version": 1}, {"version": 3}, {"crc32": None}],
    ids=["crc", "size", "crc-text", "crc-33-bits", "v1-without-sha256", "v3", "no-crc"],
)
def test_records_that_do_not_match_or_parse_are_corrupt(rans_file, tmp_path, change, capsys):
    bad = str(tmp_path / "bad.rans")
    with_record(rans_file, bad, change)
    assert run("verify", bad, "-q") == Exit.CORRUPT
    assert checkpoint.RESERVED_KEY in capsys.readouterr().err
    assert run("decompress", bad, "-o", str(tmp_path / "bad.safetensors"), "-q") == Exit.CORRUPT
    assert not os.path.exists(tmp_path / "bad.safetensors")


def flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


def section_of(path: str, name: str) -> int:
    with rans.safe_open(path) as f:
        return f.entry(name).span()[0]


@pytest.mark.parametrize("command", ["verify", "decompress", "info"])
def test_flipped_bit_in_a_tensor_names_it(rans_file, command, capsys):
    flip(rans_file, section_of(rans_file, "embed.weight") + 100)
    assert run(command, rans_file, "-q", *(["-o", rans_file + ".out"] if command == "decompress" else [])) == Exit.CORRUPT
    err = capsys.readouterr().err
    assert "embed.weight" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not os.path.exists(rans_file + ".out")


def test_flipped_bit_in_header(rans_file, capsys):
    flip(rans_file, 40)
    assert run("verify", rans_file) == Exit.CORRUPT
    assert "checksum" in capsys.readouterr().err


def test_truncated(rans_file, capsys):
    with open(rans_file, "r+b") as f:
        f.truncate(os.path.getsize(rans_file) - 9)
    assert run("verify", rans_file) == Exit.CORRUPT
    assert "sections end at byte" in capsys.readouterr().err


def test_unsupported_version(rans_file, capsys):
    with open(rans_file, "r+b") as f:
        head = bytearray(f.read(28))
        head[8:12] = struct.pack("<I", 99)
        f.seek(0)
        f.write(bytes(head) + struct.pack("<I", zlib.crc32(bytes(head))))
    assert run("verify", rans_file) == Exit.VERSION
    assert "version 99" in capsys.readouterr().err


def test_foreign_inputs(st_file, tmp_path, capsys):
    assert run("decompress", st_file, "-o", str(tmp_path / "x"), "-q") == Exit.FOREIGN
    assert "not a rans file" in capsys.readouterr().err
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(100))
    assert run("compress", str(junk), "-q") == Exit.FOREIGN
    assert "safetensors" in capsys.readouterr().err
    empty = tmp_path / "empty.rans"
    empty.write_bytes(b"")
    assert run("verify", str(empty)) == Exit.FOREIGN


def test_truncated_safetensors_input(st_file, capsys):
    with open(st_file, "r+b") as f:
        f.truncate(os.path.getsize(st_file) - 3)
    assert run("compress", st_file, "-q") == Exit.FOREIGN
    assert "data" in capsys.readouterr().err
    assert not os.path.exists(st_file[: -len(".safetensors")] + ".rans")


def test_missing_input(tmp_path, capsys):
    for command in ("compress", "decompress", "info", "verify"):
        assert run(command, str(tmp_path / "nothing.rans"), "-o", str(tmp_path / "o"), "-q") == Exit.IO if command in (
            "compress", "decompress") else run(command, str(tmp_path / "nothing.rans")) == Exit.IO
        assert "No such file" in capsys.readouterr().err


def test_existing_output_needs_force(st_file, rans_file, capsys):
    before = sha(rans_file)
    os.truncate(rans_file, 10)
    assert run("compress", st_file) == Exit.FAILED
    assert "--force" in capsys.readouterr().err
    assert os.path.getsize(rans_file) == 10
    assert run("compress", st_file, "--force", "-q") == 0
    assert sha(rans_file) == before


def test_existing_output_directory_needs_force(tmp_path):
    src = make_checkpoint(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("x")
    assert run("compress", src, "-o", str(out), "-q") == Exit.FAILED
    assert os.listdir(out) == ["keep"]
    assert run("compress", src, "-o", str(out), "-q", "--force") == 0
    assert "keep" not in os.listdir(out) and "config.json" in os.listdir(out)


def test_every_backend_writes_the_same_file(tmp_path):
    src = str(tmp_path / "w.safetensors")
    write_bf16_file(src)
    outputs = []
    for backend in ("auto", "cpu", "reference"):
        outputs.append(str(tmp_path / f"{backend}.rans"))
        assert run("compress", src, "-o", outputs[-1], "-q", "--backend", backend) == 0
    assert len({sha(path) for path in outputs}) == 1


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as e:
        cli.main(["compress"])
    assert e.value.code == Exit.USAGE
    with pytest.raises(SystemExit) as e:
        cli.main(["compress", "m.safetensors", "--backend", "numba"])
    assert e.value.code == Exit.USAGE
    with pytest.raises(SystemExit) as e:
        cli.main(["frobnicate"])
    assert e.value.code == Exit.USAGE


# --------------------------------------------------------------------------- safety: nothing partial is left


class FullDisk:
    """A file object that takes ``room`` bytes, then fails with ENOSPC."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        if n > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= n
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


@pytest.fixture
def full_disk(monkeypatch):
    """Every output file fails with ENOSPC after 300 bytes."""
    monkeypatch.setattr(checkpoint, "write_atomic", lambda path, fill: api.write_atomic(path, lambda f: fill(FullDisk(f, 300))))
    sync_write = checkpoint._sync_write
    monkeypatch.setattr(checkpoint, "_sync_write", lambda path, fill: sync_write(path, lambda f: fill(FullDisk(f, 300))))


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_disk_full_leaves_nothing(command, st_file, rans_file, tmp_path, full_disk, capsys):
    source = st_file if command == "compress" else rans_file
    before = sorted(os.listdir(tmp_path))
    out = str(tmp_path / "out")
    assert run(command, source, "-o", out, "-q") == Exit.IO
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == before


def test_disk_full_directory_leaves_nothing(tmp_path, full_disk, capsys):
    src = make_checkpoint(tmp_path)
    assert run("compress", src, "-q") == Exit.IO
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_unwritable_output_directory(st_file, tmp_path, capsys):
    assert run("compress", st_file, "-o", str(tmp_path / "no" / "such" / "dir.rans"), "-q") == Exit.IO
    assert f"{tmp_path / 'no' / 'such'}: no such directory" in capsys.readouterr().err


def test_permission_denied(st_file, tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root ignores the mode: deny the way the kernel would
        def denied(*args, dir=None, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)

        monkeypatch.setattr(api.tempfile, "mkstemp", denied)
    assert run("compress", st_file, "-o", str(locked / "m.rans"), "-q") == Exit.IO
    assert "Permission denied" in capsys.readouterr().err
    assert os.listdir(locked) == []


# --------------------------------------------------------------------------- library loading


def test_safe_open_is_lazy(rans_file):
    flip(rans_file, section_of(rans_file, "embed.weight") + 100)
    with rans.safe_open(rans_file, framework="numpy") as f:
        assert sorted(f.keys()) == sorted(tensors())
        assert f.metadata()["format"] == "np"
        assert f.get_tensor("layer.0.bias").tobytes() == tensors()["layer.0.bias"].tobytes()
        with pytest.raises(rans.ChecksumError) as e:
            f.get_tensor("embed.weight")
        assert e.value.tensor == "embed.weight"
        assert f.get_tensor("layer.0.index").tolist() == tensors()["layer.0.index"].tolist()
        with pytest.raises(KeyError):
            f.get_tensor("nope")


def test_safe_open_header_errors(tmp_path):
    bad = tmp_path / "bad.rans"
    bad.write_bytes(b"PK\x03\x04 zip")
    with pytest.raises(rans.NotRansDataError):
        rans.safe_open(str(bad))


def test_load_file_torch_on_cpu(tmp_path):
    torch = pytest.importorskip("torch")
    w = np.random.default_rng(0).normal(0, 0.02, (40, 30)).astype(ml_dtypes.bfloat16)
    path = str(tmp_path / "t.rans")
    rans.save_file({"w": w, "i": np.arange(3, dtype=np.int64)}, path)
    loaded = rans.load_file(path, framework="torch")
    assert loaded["w"].dtype == torch.bfloat16 and tuple(loaded["w"].shape) == (40, 30)
    assert loaded["w"].view(torch.int16).numpy().tobytes() == w.tobytes()
    assert loaded["i"].tolist() == [0, 1, 2]
    with rans.safe_open(path, framework="torch") as f:
        assert f.get_tensor("w").dtype == torch.bfloat16
    with pytest.raises(rans.InvalidArgumentError):
        rans.load_file(path, framework="jax")
    with pytest.raises(rans.InvalidArgumentError):
        rans.safe_open(path, framework="numpy", device="tpu")


# --------------------------------------------------------------------------- bit-exact building blocks


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
# ``__metadata__`` is reserved in a safetensors header: ``safetensors`` writes a
# tensor of that name without complaint into a file that no reader accepts.
tensor_names = names.filter(lambda k: k != "__metadata__")
small_arrays = st.sampled_from([np.float32, np.float16, np.int8, np.int64, np.uint16, np.bool_]).flatmap(
    lambda dt: st.integers(0, 300).map(lambda n: np.random.default_rng(n).integers(0, 2, n).astype(dt))
)


@settings(max_examples=30)
@given(st.dictionaries(tensor_names, small_arrays, min_size=1, max_size=5), st.none() | st.dictionaries(tensor_names, names, max_size=3))
def test_canonical_header_is_what_safetensors_writes(d, metadata):
    data = stn.save(d, metadata=metadata)
    n = struct.unpack("<Q", data[:8])[0]
    found, md = safetensors_file.parse_header(data[8 : 8 + n].decode(), len(data) - 8 - n)
    assert safetensors_file.canonical_header(found, md) == data[: 8 + n]


@settings(max_examples=20)
@given(st.dictionaries(names, small_arrays, min_size=0, max_size=4), st.none() | st.dictionaries(names, names, max_size=2))
def test_streamed_writer_matches_container_write(tmp_path_factory, d, metadata):
    entries, sections, metadata = api.encode_tensors(d, metadata)
    expected = io.BytesIO()
    container.write(expected, entries, sections, metadata)
    spill_dir = str(tmp_path_factory.getbasetemp())
    entries2, sections2, _ = api.encode_tensors(d, metadata)
    streamed = io.BytesIO()
    checkpoint.write_streamed(streamed, zip(entries2, sections2), lambda: metadata, spill_dir)
    assert streamed.getvalue() == expected.getvalue()
    # To a file the sections are copied in the kernel (os.copy_file_range) where it can.
    entries3, sections3, _ = api.encode_tensors(d, metadata)
    path = os.path.join(spill_dir, "streamed.rans")
    with open(path, "wb") as f:
        checkpoint.write_streamed(f, zip(entries3, sections3), lambda: metadata, spill_dir)
        assert f.tell() == len(expected.getvalue())
    with open(path, "rb") as f:
        assert f.read() == expected.getvalue()


@settings(max_examples=20)
@given(st.dictionaries(names, small_arrays, min_size=0, max_size=4), st.none() | st.dictionaries(names, names, max_size=2),
       st.sampled_from(["ratio", "speed"]))
def test_streamed_writer_in_place(tmp_path_factory, d, metadata, prefer):
    """With room for the header, the sections are written once, after it: the same sections, a padded header
    (files written for speed included: 1-byte tensors of two planes)."""
    entries, sections, metadata = api.encode_tensors(d, metadata, prefer=prefer)
    expected = container.to_bytes(entries, sections, metadata)
    reference = container.read_header(memoryview(expected))
    start = reference.entries
    room = container.header_room([(e.name, e.dtype, e.shape) for e in entries], metadata)
    entries2, sections2, _ = api.encode_tensors(d, metadata, prefer=prefer)
    path = os.path.join(str(tmp_path_factory.getbasetemp()), "in_place.rans")
    with open(path, "wb") as f:
        checkpoint.write_streamed(f, zip(entries2, sections2), lambda: metadata, "/nonexistent", room)
    with open(path, "rb") as f:
        data = f.read()
    header = container.read_header(memoryview(data))
    assert [e.to_json() for e in header.entries] == [e.to_json() for e in start] and header.metadata == reference.metadata
    first = min([p.offset for e in start for p in e.sections], default=len(expected))
    assert data[room:] == expected[first:]
    assert struct.unpack_from("<I", data, 12)[0] == container.ZLIB and 32 + struct.unpack_from("<Q", data, 16)[0] == room
    loaded = api.load_buffer(memoryview(data))
    assert {k: v.tobytes() for k, v in loaded.items()} == {k: np.asarray(v).tobytes() for k, v in d.items()}


def test_header_room_too_small_is_an_argument_error():
    entry = container.Entry("w", "I8", (3,), [container.Plane("raw", 3)], 7)
    with pytest.raises(rans.InvalidArgumentError, match="does not fill a room"):
        container.encode_header_in([entry], None, 40)


def test_large_checkpoints_are_written_in_place(tmp_path, monkeypatch):
    """A checkpoint whose header room is a small share of it is written once, in place; it round-trips the same."""
    src = str(tmp_path / "w.safetensors")
    write_bf16_file(src)
    spilled, in_place = str(tmp_path / "spilled.rans"), str(tmp_path / "in_place.rans")
    assert run("compress", src, "-o", spilled, "-q") == 0
    monkeypatch.setattr(checkpoint, "IN_PLACE_SHARE", 1)
    monkeypatch.setattr(checkpoint, "_append", None)  # the spill path would fail
    assert run("compress", src, "-o", in_place, "-q") == 0
    a, b = (open(p, "rb").read() for p in (spilled, in_place))
    room = 32 + struct.unpack_from("<Q", b, 16)[0]
    assert room > 32 + struct.unpack_from("<Q", a, 16)[0] and a[-(len(b) - room):] == b[room:]
    assert rans.load_metadata(spilled) == rans.load_metadata(in_place)
    assert run("verify", in_place, "-q") == 0
    back = str(tmp_path / "back.safetensors")
    assert run("decompress", in_place, "-o", back, "-q") == 0
    assert sha(back) == sha(src)


def test_streamed_writer_to_a_pipe(tmp_path):
    """An output that cannot seek (a pipe) gets the sections through a buffer, the same bytes."""
    import threading

    d = {"a": np.arange(1000, dtype=np.float32), "b": np.full(50000, 3, dtype=np.int8)}
    entries, sections, metadata = api.encode_tensors(d, None)
    expected = io.BytesIO()
    container.write(expected, entries, sections, metadata)
    entries, sections, _ = api.encode_tensors(d, None)
    read_end, write_end = os.pipe()
    received = []

    def read() -> None:
        with os.fdopen(read_end, "rb") as f:
            received.append(f.read())

    reader = threading.Thread(target=read)
    reader.start()
    with os.fdopen(write_end, "wb") as f:
        checkpoint.write_streamed(f, zip(entries, sections), lambda: metadata, str(tmp_path))
    reader.join()
    assert received == [expected.getvalue()]


# --------------------------------------------------------------------------- processes


def test_python_m_rans_and_console_script(st_file, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-m", "rans", "compress", st_file, "-o", str(tmp_path / "s.rans")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ratio" in done.stdout and done.stderr == ""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        module, function = tomllib.load(f)["project"]["scripts"]["rans"].split(":")
    script = f"import sys; from {module} import {function} as main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", script, "verify", str(tmp_path / "s.rans"), "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    done = subprocess.run([sys.executable, "-c", script, "verify", st_file], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == Exit.FOREIGN and "Traceback" not in done.stderr


def test_bench_and_demo_commands(st_file, tmp_path, capsys):
    pytest.importorskip("torch")
    report = tmp_path / "bench.json"
    assert run("bench", st_file, "--repeats", "1", "--tmpdir", str(tmp_path), "--json", str(report)) == 0
    result = json.loads(report.read_text())[0]
    assert result["ratio"] > 1 and result["compress_s"] > 0 and result["load_safetensors_s"] > 0
    assert "ratio" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["bench.json", "model.safetensors"]
    assert run("demo", "--weights", "4096") == 0
    assert "round trip exact" in capsys.readouterr().out


def test_safe_open_on_cuda_decodes_one_tensor(tmp_path):
    """The GPU path of safe_open uploads only the tensor's own sections (on the simulator where there is no GPU)."""
    pytest.importorskip("numba.cuda")
    rng = np.random.default_rng(3)
    d = {"a": rng.normal(0, 0.02, 700).astype(ml_dtypes.bfloat16), "b": rng.normal(0, 1, 400).astype(np.float32),
         "c": np.full(10, 3, np.int16)}
    path = str(tmp_path / "g.rans")
    rans.save_file(d, path)
    with rans.safe_open(path, framework="numba", device="cuda") as f:
        for name in ("b", "a", "c"):
            back = f.get_tensor(name).copy_to_host()
            assert back.tobytes() == d[name].tobytes()
