"""``rans.hostbytes.join`` against ``b"".join``: the same bytes, a real ``bytes`` object."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rans
from rans import hostbytes

PIECES = st.lists(
    st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: np.frombuffer(b, dtype=np.uint8).data),
    max_size=8,
)


@pytest.fixture(params=["in place", "join"])
def threshold(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: with every result built in place (where the platform allows), and with none
    (the patch is the same for every example Hypothesis draws)."""
    monkeypatch.setattr(hostbytes, "MIN_BYTES", 0 if request.param == "in place" else 1 << 62)
    return request.param


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(PIECES)
def test_join_equals_bytes_join(threshold: str, pieces: list) -> None:
    out = hostbytes.join(pieces)
    expected = b"".join(pieces)
    assert type(out) is bytes
    assert out == expected and hash(out) == hash(expected) and len(out) == len(expected)


def test_a_large_result_spans_huge_pages(threshold: str) -> None:
    """Several 2 MiB pages, pieces straddling them, and a compressed tensor that decodes back."""
    rng = np.random.default_rng(0)
    pieces = [rng.integers(0, 256, size, dtype=np.uint8).data for size in (3, (5 << 20) + 1, 0, 1 << 21, 7)]
    assert hostbytes.join(pieces) == b"".join(pieces)
    x = rng.normal(0, 1, 1 << 20).astype(np.float32)
    assert np.array_equal(rans.decompress(rans.compress(x, backend="cpu")), x)
