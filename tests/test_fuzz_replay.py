"""The fuzz targets, briefly, and every failure a fuzz campaign saved, replayed as ordinary tests.

Hypothesis failures are in ``.hypothesis/fuzz`` (replayed by the smoke test
of each target); atheris crashes in ``.hypothesis/atheris/NAME/crashes``,
and the fixed ones worth keeping in ``fuzz/regressions/NAME/`` (one test
each).
"""

from __future__ import annotations

import glob
import os

import pytest

import rans
from fuzz import TARGETS
from fuzz.__main__ import ATHERIS_DIR, hypothesis_test, main
from fuzz.files import Draw, take_apart
from fuzz.targets import SEED, SEED_INPUTS, SEEDS, checked
from rans import codec, container

REGRESSIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz", "regressions")
CRASHES = sorted(glob.glob(os.path.join(ATHERIS_DIR, "*", "crashes", "*")) + glob.glob(os.path.join(REGRESSIONS, "*", "*")))


@pytest.mark.parametrize("name", list(TARGETS))
def test_target_smoke_and_replay(name: str) -> None:
    """Replays the examples saved in .hypothesis/fuzz for the target, then runs 50 new ones (the same on every run)."""
    hypothesis_test(name, 50, derandomize=True)()


@pytest.mark.parametrize("path", CRASHES, ids=[os.path.basename(p) for p in CRASHES])
def test_atheris_crash_replay(path: str) -> None:
    """An input atheris saved as a crash (or one kept in fuzz/regressions/TARGET/) now succeeds or raises a RansError."""
    folder = os.path.dirname(path)
    name = os.path.basename(os.path.dirname(folder) if folder.endswith("crashes") else folder)
    with open(path, "rb") as f:
        checked(name)(f.read())


def test_seed_file_is_valid() -> None:
    """The mutation target starts from a file that decodes."""
    buf = memoryview(SEED)
    header = container.read_header(buf)
    assert [e.name for e in header.entries] == ["w", "e", "c", "z"]
    for entry in header.entries:
        codec.decode_tensor(entry, buf)


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_seeds_take_apart_and_decode(seed: int) -> None:
    parts = take_apart(SEEDS[seed])
    assert len(parts.spans) == len(parts.document["tensors"])
    assert len(rans.api.load_buffer(memoryview(SEEDS[seed]))) == len(parts.spans)


def test_container_seed_inputs_are_valid_files() -> None:
    """The atheris starting inputs of the container target parse without error."""
    for data in SEED_INPUTS["container"]:
        TARGETS["container"](data)


def test_draw_is_deterministic_and_total() -> None:
    d = Draw(b"\xff\x01")
    assert (d.below(256), d.below(1 << 16), d.take(3), d.below(7)) == (255, 1, b"", 0)


def test_oracles_reject_undetected_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the reader stopped checking section CRCs, the mutate oracle would fail."""
    raw = next(p for e in container.read_header(memoryview(SEED)).entries for p in e.planes if p.mode == "raw")
    monkeypatch.setattr(codec, "verify_sections", lambda entry, buf: None)
    flip_a_raw_byte = bytes([0, 1]) + raw.offset.to_bytes(4, "little") + b"\x01"
    with pytest.raises(AssertionError):
        TARGETS["mutate"](flip_a_raw_byte)


def test_runner_writes_a_summary(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "summary.json"
    assert main(["--runs", "20", "--target", "section", "--target", "container", "--json", str(path)]) == 0
    import json

    summary = json.loads(path.read_text())
    assert summary["executions"] >= 40 and summary["failing_targets"] == 0
    assert set(summary["targets"]) == {"section", "container"}
    assert "exec/s" in capsys.readouterr().out
