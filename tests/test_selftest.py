"""python -m rans.selftest passes on a good install and names what fails on a bad one."""

from __future__ import annotations

import numpy as np
import pytest

from rans import api, selftest


def test_selftest_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert selftest.main(["--backends", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "all round trips exact" in out
    assert all(name in out for name in ("BF16", "F8_E4M3", "C128", "BOOL", "I8/speed"))


def test_selftest_reports_a_broken_decoder(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A decoder that changes one byte of F16 tensors makes the self-test fail and say so."""
    real = api.decompress

    def broken(data: bytes, **options: object) -> np.ndarray:
        out = real(data, **options)
        if out.dtype == np.float16:
            out.view(np.uint8)[0] ^= 1
        return out

    monkeypatch.setattr(api, "decompress", broken)
    assert selftest.main(["--quiet", "--backends", "cpu"]) == 1
    assert "F16 (seed 0): the cpu round trip changed the tensor" in capsys.readouterr().err


def test_selftest_reports_backends_that_disagree(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A reference encoder that writes other bytes than the CPU one makes the self-test fail and say so."""
    from rans.reference import coder

    real = coder.encode

    def broken(*args: object, **options: object) -> bytes:
        section = bytearray(real(*args, **options))
        section[-1] ^= 1
        return bytes(section)

    monkeypatch.setattr(coder, "encode", broken)
    assert selftest.main(["--quiet", "--backends", "cpu"]) == 1
    assert "BF16 (seed 0): the reference encoder wrote other bytes than the cpu one" in capsys.readouterr().err
