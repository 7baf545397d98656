"""The GPU memcheck corpus: deterministic corrupted files, decoded on the GPU (the CUDA simulator
where there is none) with the same outcome as the reference."""

from __future__ import annotations

from typing import Any

from fuzz import corpus, gpu_corpus


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
