"""``backend="auto"``: the CPU backend, joined by the GPU's for large tensors where a GPU is found.

A fake GPU backend (the CPU's codec behind the GPU's whole-tensor
interface, counting its calls) stands in for the real one, so the choice
and the hand-over on failure are checked on any machine; the test marked
``gpu`` checks the real choice on a real GPU.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterator

import ml_dtypes
import numpy as np
import pytest

import rans
from rans import backends, codec
from rans.errors import CorruptDataError


class FakeGpu:
    """A GPU backend that codes with the CPU backend, counts its calls and fails when told to."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: Exception | None = None
        self.loads = 0

    def encode_tensor(self, array: Any, name: str, chunk: int, workers: int = 1, prefer: str = "ratio") -> Any:
        self.calls.append("encode")
        if self.fail:
            raise self.fail
        return codec.encode_tensor(array, name, chunk, workers, backends.get("cpu"), prefer)

    def decode_tensor(self, entry: Any, buf: memoryview, verify: bool) -> Any:
        self.calls.append("decode")
        if self.fail:
            raise self.fail
        return codec.decode_tensor(entry, buf, verify, backends.get("cpu"))

    def backend(self) -> backends.Backend:
        return backends.Backend("gpu", None, None, encode_tensor=self.encode_tensor, decode_tensor=self.decode_tensor)


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGpu]:
    """A fake GPU that ``"auto"`` finds, used from 4 KiB on and started at once (its loads counted in ``loads``)."""
    fake = FakeGpu()
    load = backends._load

    def loader(name: str) -> backends.Backend:
        if name != "gpu":
            return load(name)
        fake.loads += 1
        return fake.backend()

    monkeypatch.setattr(backends, "_driver_present", lambda: True)
    monkeypatch.setattr(backends, "_load", loader)
    monkeypatch.setattr(backends, "GPU_AFTER", 0)
    monkeypatch.setattr(backends, "_gpu_in_use", lambda: False)
    monkeypatch.setitem(backends.GPU_FROM, "encode", 4096)
    monkeypatch.setitem(backends.GPU_FROM, "decode", 4096)
    backends._auto.cache_clear()
    yield fake
    backends._auto.cache_clear()


def tensor(nbytes: int) -> np.ndarray:
    return np.random.default_rng(nbytes).normal(0, 0.02, nbytes // 2).astype(ml_dtypes.bfloat16)


def test_auto_is_the_cpu_backend_without_a_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_driver_present", lambda: False)
    backends._auto.cache_clear()
    try:
        auto = backends.get("auto")
        assert auto.name == "cpu" and auto.large is None and auto.pick("encode", 1 << 40) is auto
    finally:
        backends._auto.cache_clear()


def test_the_simulator_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert not backends._driver_present()


def test_auto_codes_large_tensors_on_the_gpu(gpu: FakeGpu, tmp_path: Any) -> None:
    small, large = tensor(4094), tensor(4096)
    data = rans.compress(small)
    assert gpu.calls == [] and rans.decompress(data).tobytes() == small.tobytes()
    data = rans.compress(large)
    assert gpu.calls == ["encode"] and data == rans.compress(large, backend="cpu")
    assert rans.decompress(data).tobytes() == large.tobytes() and gpu.calls == ["encode", "decode"]
    rans.save_file({"small": small, "large": large}, tmp_path / "f.rans")
    loaded = rans.load_file(tmp_path / "f.rans")
    assert gpu.calls == ["encode", "decode", "encode", "decode"]
    assert loaded["small"].tobytes() == small.tobytes() and loaded["large"].tobytes() == large.tobytes()


def test_the_gpu_starts_once_a_job_repays_it(gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small tensors never load the GPU; large ones stay on the CPU until their bytes pass GPU_AFTER."""
    monkeypatch.setattr(backends, "GPU_AFTER", 3 * 4096)
    small, large = tensor(1024), tensor(4096)
    rans.compress(small)
    assert gpu.loads == 0
    files = [rans.compress(large) for _ in range(3)]
    assert gpu.calls == [] and gpu.loads == 0
    files.append(rans.compress(large))
    assert gpu.calls == ["encode"] and gpu.loads == 1
    assert len(set(files)) == 1 and files[0] == rans.compress(large, backend="cpu")


def test_a_gpu_already_in_use_starts_at_once(gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "GPU_AFTER", 1 << 60)
    monkeypatch.setattr(backends, "_gpu_in_use", lambda: True)
    rans.compress(tensor(4096))
    assert gpu.calls == ["encode"] and gpu.loads == 1


def test_a_failing_gpu_hands_over_to_the_cpu_once(gpu: FakeGpu) -> None:
    x = tensor(8192)
    expected = rans.compress(x, backend="cpu")
    gpu.fail = RuntimeError("no kernel image is available for execution on the device")
    with pytest.warns(RuntimeWarning, match="GPU backend failed .*RuntimeError: no kernel image.*CPU backend"):
        assert rans.compress(x) == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert rans.decompress(expected).tobytes() == x.tobytes()
        assert rans.compress(x) == expected
    assert gpu.calls == ["encode"]


def test_errors_in_the_data_are_not_a_gpu_failure(gpu: FakeGpu) -> None:
    x = tensor(8192)
    data = rans.compress(x)
    gpu.fail = CorruptDataError("chunk did not end in state L", tensor="", chunk=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(CorruptDataError, match="chunk 3"):
            rans.decompress(data)
    gpu.fail = None
    assert rans.decompress(data).tobytes() == x.tobytes()
    assert gpu.calls == ["encode", "decode", "decode"]


def test_each_direction_has_its_own_threshold(gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(backends.GPU_FROM, "decode", None)
    x = tensor(8192)
    data = rans.compress(x)
    assert rans.decompress(data).tobytes() == x.tobytes() and gpu.calls == ["encode"]


@pytest.mark.gpu
def test_auto_follows_the_thresholds_on_a_real_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the GPU started (as GPU_AFTER has it once a job is large), each direction's threshold holds."""
    monkeypatch.setattr(backends, "GPU_AFTER", 0)
    backends._auto.cache_clear()
    try:
        auto = backends.get("auto")
        x = tensor(16 << 20)
        for work, start in backends.GPU_FROM.items():
            if start is None:
                assert auto.pick(work, 1 << 40) is auto
            else:
                assert auto.pick(work, start).name == "gpu" and auto.pick(work, start - 1) is auto
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            data = rans.compress(x)
            assert data == rans.compress(x, backend="cpu")
            assert rans.decompress(data).tobytes() == x.tobytes()
    finally:
        backends._auto.cache_clear()
