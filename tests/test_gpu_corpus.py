"""The GPU memcheck corpus: deterministic corrupted files, decoded on the GPU (the CUDA simulator
where there is none) with the same outcome as the reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import rans
from fuzz import corpus, gpu_corpus
from fuzz.files import assemble, fix_tensor_crcs, header_text, take_apart


def test_corpus_is_deterministic(tmp_path: Any) -> None:
    a = corpus.write(str(tmp_path / "a"), 30, seed=5, scale=1)
    b = corpus.write(str(tmp_path / "b"), 30, seed=5, scale=1)
    blobs = [open(p, "rb").read() for p in a]
    assert blobs == [open(p, "rb").read() for p in b]
    assert len(set(blobs)) > 25


def test_corrupted_files_on_the_gpu_match_the_reference(tmp_path: Any) -> None:
    paths = corpus.write(str(tmp_path), 3, seed=1, scale=1)
    result = gpu_corpus.run(paths)
    assert result["failures"] == []
    for key in ("verify_true", "verify_false"):
        assert sum(result[key].values()) == 3


def test_gpu_rejects_a_bool_byte_other_than_0_or_1() -> None:
    """As the reference does (FORMAT.md, section 5), with the CRC-32 made right."""
    data = rans.compress(np.array([True, False, True]))
    parts = take_apart(data)
    parts.body = b"\x02" + parts.body[1:]
    fix_tensor_crcs(parts)
    bad = assemble(header_text(parts.document), parts.body, parts.encoding)
    for device in ("cpu", "cuda"):
        with pytest.raises(rans.CorruptDataError, match="BOOL") as e:
            rans.decompress(bad, device=device, framework="numba") if device == "cuda" else rans.decompress(bad)
        assert e.value.tensor == ""
