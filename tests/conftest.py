"""Test configuration: Hypothesis profiles and the ``slow`` and ``gpu`` markers.

Hypothesis profiles, chosen with the environment variable
``HYPOTHESIS_PROFILE``:

``ci`` (the default)
    A modest number of examples per test, no deadline (shared CI machines
    have erratic timings), failing examples printed as reproduction blobs.
``long``
    Many more examples, for a soak run: ``HYPOTHESIS_PROFILE=long pytest``.

Tests marked ``slow`` run only with ``--runslow``; tests marked ``gpu`` run
only where a CUDA GPU is present. Where there is none (no ``nvidia-smi``),
the GPU kernels run on Numba's CUDA simulator: ``NUMBA_ENABLE_CUDASIM=1``
is set here, before anything imports Numba.
"""

from __future__ import annotations

import os
import shutil

if "NUMBA_ENABLE_CUDASIM" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import sys
import threading
import traceback

import numpy as np
import pytest
from hypothesis import settings


def _lock_simulated_shared_arrays() -> None:
    """Make the CUDA simulator give every thread of a block the same shared array.

    numba-cuda 0.30's ``FakeCUDAShared.array`` looks up the array made at the
    calling line, and makes it if there is none, without a lock: two threads
    of a block that reach the line together each make one, and their writes
    never meet. On a 2-core Intel VM that made 2 of 3 runs of
    ``tests/test_gpu_encode.py`` fail at random (a CRC or a plane's mode wrong;
    the same tests on the H200 and alone here pass). This is the same lookup
    under a lock; the frame it keys on is still the caller's.
    """
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    unlocked = kernelapi.FakeCUDAShared.array
    lock = threading.Lock()

    def array(self: kernelapi.FakeCUDAShared, shape: object, dtype: object, alignment: object = None) -> np.ndarray:
        if shape == 0 or alignment is not None:  # dynamic shared memory (one buffer), or the simulator's error
            return unlocked(self, shape, dtype, alignment)
        caller = tuple(traceback.extract_stack(sys._getframe())[-2][0:2])
        with lock:
            made = self._allocations.get(caller)
            if made is None:
                made = self._allocations[caller] = np.empty(shape, numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else dtype)
        return made

    kernelapi.FakeCUDAShared.array = array


if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    _lock_simulated_shared_arrays()

# The default profile draws the same examples on every run (seeded by each
# test's name), so a test run is reproducible and CI cannot fail by chance;
# "random" draws fresh examples each run and "long" many more of them. The
# open-ended search belongs to the fuzz campaigns (``python -m fuzz``).
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("random", max_examples=100, deadline=None, derandomize=False, print_blob=True)
settings.register_profile("long", max_examples=2000, deadline=None, derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def _cuda_available() -> bool:
    try:
        from numba import config, cuda

        return not config.ENABLE_CUDASIM and bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - no numba, no driver, no device: all mean no GPU
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--runslow"):
        skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip_slow)
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not _cuda_available():
        skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in gpu_items:
            item.add_marker(skip_gpu)
