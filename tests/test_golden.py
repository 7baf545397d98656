"""Golden files: the format must not change by accident.

``tests/golden/`` holds small files written by ``tests/golden/make_golden.py``
and a ``manifest.json`` of what they contain. Decoding each must give the
recorded tensors, and encoding those tensors again with the recorded options
must give the file back byte for byte. If a change to rans is meant to alter
the bytes, regenerate with ``PYTHONPATH=. python tests/golden/make_golden.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rans
from rans.dtypes import name_of, split_for
from rans_files import PLAIN, ZLIB, assemble, load_bytes, parse, plane_modes, store_header

GOLDEN = Path(__file__).resolve().parent / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text(encoding="utf-8"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(filename: str, entry: dict[str, Any]) -> dict[str, np.ndarray]:
    path = GOLDEN / filename
    if entry["api"] == "compress":
        return {"": rans.decompress(path.read_bytes())}
    return rans.load_file(path)


def test_manifest_lists_every_golden_file() -> None:
    """Every .rans file in tests/golden is in the manifest, and the other way round; all are small."""
    files = sorted(p.name for p in GOLDEN.glob("*.rans"))
    assert files == sorted(MANIFEST)
    sizes = [(GOLDEN / f).stat().st_size for f in files]
    assert max(sizes) < 20_000 and sum(sizes) < 100_000


@pytest.mark.parametrize("filename", sorted(MANIFEST))
def test_golden_file_is_intact(filename: str) -> None:
    """The stored file is the one the manifest describes (guards against edited golden data)."""
    assert sha256((GOLDEN / filename).read_bytes()) == MANIFEST[filename]["sha256"]


@pytest.mark.parametrize("filename", sorted(MANIFEST))
def test_golden_file_decodes_to_recorded_tensors(filename: str) -> None:
    """Decoding gives the recorded names (in order), dtypes, shapes and bytes."""
    entry = MANIFEST[filename]
    tensors = decode(filename, entry)
    assert list(tensors) == [t["name"] for t in entry["tensors"]]
    for recorded in entry["tensors"]:
        array = tensors[recorded["name"]]
        assert name_of(array.dtype) == recorded["dtype"]
        assert list(array.shape) == recorded["shape"]
        assert sha256(array.tobytes()) == recorded["sha256"]


def zlib_differs(golden: bytes) -> bool:
    """Whether this machine's zlib compresses the golden file's header JSON to other bytes than stored
    (FORMAT.md: the compressed bytes depend on the zlib library, readers accept any valid stream)."""
    parsed = parse(golden)
    return parsed.encoding == ZLIB and store_header(parsed.text) != (ZLIB, parsed.stored)


@pytest.mark.parametrize("filename", sorted(MANIFEST))
def test_golden_file_reencodes_identically(filename: str, tmp_path: Path) -> None:
    """Encoding the decoded tensors with the recorded options reproduces the file byte for byte.

    The one allowed exception is a zlib library that deflates the header JSON differently: then the
    JSON and every section must still be identical."""
    entry = MANIFEST[filename]
    tensors = decode(filename, entry)
    if entry["api"] == "compress":
        data = rans.compress(tensors[""], chunk_size=entry["chunk_size"], prefer=entry["prefer"])
    else:
        rans.save_file(tensors, tmp_path / filename, entry["metadata"], chunk_size=entry["chunk_size"], prefer=entry["prefer"])
        data = (tmp_path / filename).read_bytes()
    golden = (GOLDEN / filename).read_bytes()
    if data != golden and zlib_differs(golden):
        again, recorded = parse(data), parse(golden)
        assert again.text == recorded.text
        assert again.blobs == recorded.blobs
        return
    assert data == golden


@pytest.mark.parametrize("filename", sorted(MANIFEST))
def test_golden_file_decodes_with_either_header_encoding(filename: str) -> None:
    """The golden file with its header stored the other way (JSON or zlib) decodes to the same tensors."""
    golden = (GOLDEN / filename).read_bytes()
    parsed = parse(golden)
    other = assemble(parsed.text, parsed.blobs, encoding=PLAIN if parsed.encoding == ZLIB else ZLIB)
    tensors = rans.load_file(GOLDEN / filename) if MANIFEST[filename]["api"] == "save_file" else None
    if tensors is None:
        assert rans.decompress(other).tobytes() == rans.decompress(golden).tobytes()
    else:
        again = load_bytes(other)
        assert list(again) == list(tensors)
        for name in tensors:
            assert again[name].tobytes() == tensors[name].tobytes()


@pytest.mark.parametrize("filename", sorted(f for f in MANIFEST if MANIFEST[f]["api"] == "save_file"))
def test_golden_metadata(filename: str) -> None:
    """load_metadata returns the recorded metadata."""
    assert rans.load_metadata(GOLDEN / filename) == (MANIFEST[filename]["metadata"] or {})


def test_golden_files_cover_the_format() -> None:
    """Between them the golden files use every plane mode, every split (implied by the plane count),
    every lane count, multi-chunk coded planes of fewer than 32 lanes and of 32, and both header
    encodings."""
    modes, splits, lanes, chunked_lanes, encodings = set(), set(), set(), set(), set()
    for filename in MANIFEST:
        parsed = parse((GOLDEN / filename).read_bytes())
        encodings.add(parsed.encoding)
        for tensor in parsed.document["tensors"]:
            planes = plane_modes(tensor)
            modes.update(planes)
            splits.add(split_for(tensor["dtype"], len(planes)))
        for section in parsed.sections:
            if section.mode == "coded":
                lanes.add(section.lanes)
                if section.n_chunks > 1:
                    chunked_lanes.add(section.lanes)
    assert modes == {"coded", "raw", "const"}
    assert splits == {"float", "bytes", "nibbles", "none"}
    assert lanes == {1, 2, 4, 8, 16, 32}
    assert encodings == {PLAIN, ZLIB}
    assert 32 in chunked_lanes and min(chunked_lanes) < 32


def test_golden_multichunk_32_lanes() -> None:
    """The 140,000-symbol plane: 32 lanes, 35 chunks of 4096, the last one short, as the manifest says."""
    parsed = parse((GOLDEN / "u8_140000_chunk4096.rans").read_bytes())
    (section,) = parsed.sections
    assert (section.symbols, section.lanes, section.chunk, section.n_chunks) == (140_000, 32, 4096, 35)
    assert MANIFEST["u8_140000_chunk4096.rans"]["chunk_size"] == 4096
