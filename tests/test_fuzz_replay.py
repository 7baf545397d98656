"""The fuzz targets, briefly, and every failure a fuzz campaign saved, replayed as ordinary tests."""

from __future__ import annotations

import pytest

from fuzz import TARGETS
from fuzz.__main__ import hypothesis_test
from fuzz.targets import SEED
from rans import codec, container


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_smoke_and_replay(name: str) -> None:
    """Replays the examples saved in .hypothesis/fuzz for the target, then runs 50 new ones."""
    hypothesis_test(name, 50)()


def test_seed_file_is_valid() -> None:
    """The mutation target starts from a file that decodes."""
    buf = memoryview(SEED)
    header = container.read_header(buf)
    assert [e.name for e in header.entries] == ["w", "e", "c", "z"]
    for entry in header.entries:
        codec.decode_tensor(entry, buf)
