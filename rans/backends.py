"""The codecs that can encode and decode planes, by name, and how ``backend=`` picks one.

A backend is a module with ``encode(plane, chunk, freq, lanes=None)`` and
``decode(section, n, field)`` (the signatures of
:mod:`rans.reference.coder`), and optionally ``plan(plane, chunk)`` (a
plane's mode and table, as :func:`rans.codec.plan_counts` chooses them from
the plane's counts), ``split`` and ``join`` (those of
:func:`rans.dtypes.split` and :func:`rans.dtypes.join`), ``count`` (that of
:func:`rans.reference.tables.count`), ``counts(array, split)`` (every plane's
counts at once, or ``None``) and ``available() -> bool``. A backend that works on whole tensors instead
(the GPU's) has ``encode_tensor(array, name, chunk, workers, prefer)`` and
``decode_tensor(entry, buf, verify)``, those of :func:`rans.codec.encode_tensor`
and :func:`rans.codec.decode_tensor` without the backend. Every backend writes the same bytes.

``"auto"`` is the CPU backend (the reference where Numba is missing) and,
where a CUDA GPU is found, the GPU backend for the tensors it codes faster
from host memory (:meth:`Backend.pick`, :data:`GPU_FROM`), once a job is
large enough to repay starting the GPU (:data:`GPU_AFTER`) or at once where
rans already uses the GPU in the process; should the GPU fail for another
reason than the data (a broken CUDA toolchain, no memory left), ``"auto"``
warns once and goes on with the CPU.

Examples
--------
>>> from rans import backends
>>> backends.get("reference").name
'reference'
>>> backends.get("auto").name in backends.NAMES
True
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import functools
import importlib
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from . import dtypes
from .reference import tables
from .errors import InvalidArgumentError, RansError

MODULES: dict[str, str] = {
    "cpu": "rans.cpu",
    "reference": "rans.reference.coder",
    "gpu": "rans.gpu.backend",
}
"""Each backend's module."""

NAMES = tuple(MODULES)

AUTO = ("cpu", "reference")
"""The host backends ``"auto"`` tries, in this order; the GPU's joins the first one found for large tensors."""

GPU_FROM: dict[str, int | None] = {"encode": 16 << 20, "decode": None}
"""Per direction, the tensor size in bytes from which ``"auto"`` codes on a GPU, when there is one
(None: never). Host arrays in and out, against the CPU backend on the 16 cores of an H200 host
(``bench/backends.py``, ``bench/NOTES.md`` entries B1 and C1: since the CPU's vector steps it decodes
host arrays of 4 MiB to 1 GiB at 1.9-8.9 GB/s, the GPU at 0.75-3.1)."""

GPU_AFTER = 64 << 30
"""Bytes of tensors of :data:`GPU_FROM` or more that ``"auto"`` codes on the CPU before it starts the
GPU, in a process where rans has not used the GPU yet (where it has, a module of :mod:`rans.gpu` is
loaded, the GPU takes them at once). Starting it (numba-cuda's and torch's imports, the kernels
loaded or compiled) took 3.6 s with Numba's disk cache and 37 s without on an H200 host, against
about 0.05 s saved per GB once it runs (1 GiB: 1,369 MB/s on its 16 cores against 1,479;
``bench/NOTES.md`` entry C1; 0.2 s before the CPU's vector steps, when this was 16 GiB): a job repays
it only past some 65 GB, so a smaller one stays on the CPU."""


@dataclass(frozen=True)
class Backend:
    """The functions of one backend: plane coding, the planes' modes and plane splits."""

    name: str
    encode: Callable[..., Any] | None
    decode: Callable[..., Any] | None
    plan: Callable[..., Any] | None = None
    """``plan(plane, chunk, counts) -> (mode, table or None)`` (``counts`` the plane's byte counts, or ``None``: the
    backend counts); ``None``: :func:`rans.codec.plan_counts` on the reference's counts."""
    split: Callable[..., Any] = dtypes.split
    join: Callable[..., Any] = dtypes.join
    count: Callable[..., Any] = tables.count
    """``count(plane) -> int64[256]``, the byte counts of a plane."""
    counts: Callable[..., Any] | None = None
    """``counts(array, split) -> [int64[256] or None, ...] or None``: planes' byte counts from the elements, where
    the backend counts them so; ``None`` (a function, a result or an entry): the plane is counted on its own."""
    encode_tensor: Callable[..., Any] | None = None
    decode_tensor: Callable[..., Any] | None = None
    large: _Gpu | None = None
    """``"auto"`` only, where a driver is found: the GPU backend, for tensors from :data:`GPU_FROM` on."""

    def pick(self, work: str, nbytes: int) -> Backend:
        """The backend that does ``work`` (``"encode"`` or ``"decode"``) on a tensor of ``nbytes`` bytes:
        the GPU's from ``GPU_FROM[work]`` on once it is started (:data:`GPU_AFTER`), else this one.

        Examples
        --------
        >>> from rans import backends
        >>> backends.get("cpu").pick("encode", 1 << 30).name
        'cpu'
        """
        start = GPU_FROM[work]
        if self.large is None or start is None or nbytes < start:
            return self
        return self.large.take(nbytes) or self


class _Gpu:
    """``"auto"``'s GPU backend, loaded when the bytes offered to it pass :data:`GPU_AFTER` or rans
    already uses the GPU in the process; ``None`` until then, and for good where it cannot load."""

    def __init__(self, host: Backend) -> None:
        self.host = host
        self.offered = 0
        self.backend: Backend | None = None
        self.absent = False

    def take(self, nbytes: int) -> Backend | None:
        """The GPU backend for a tensor of ``nbytes`` bytes, or ``None``: the host backend codes it."""
        if self.backend is None and not self.absent:
            self.offered += nbytes
            if self.offered > GPU_AFTER or _gpu_in_use():
                try:
                    self.backend = _guarded(_load("gpu"), self.host)
                except InvalidArgumentError:
                    self.absent = True
        return self.backend


def get(name: str = "auto") -> Backend:
    """The backend called ``name`` (``"auto"``: the fastest available).

    Raises
    ------
    rans.InvalidArgumentError
        ``name`` is not a backend, or that backend is not available here
        (its module or hardware is missing).
    """
    if name == "auto":
        return _auto()
    if not isinstance(name, str) or name not in MODULES:
        raise InvalidArgumentError(f"backend must be 'auto' or one of {', '.join(map(repr, NAMES))}, not {name!r}")
    return _load(name)


@functools.cache
def host() -> Backend:
    """The first host backend of :data:`AUTO` that loads: the one ``"auto"`` codes small tensors with.

    Examples
    --------
    >>> from rans import backends
    >>> backends.host().name in backends.AUTO
    True
    """
    for candidate in AUTO:
        try:
            return _load(candidate)
        except InvalidArgumentError:
            continue
    raise AssertionError("the reference backend is always available")


@functools.cache
def _auto() -> Backend:
    base = host()
    if not _driver_present():
        return base
    return dataclasses.replace(base, large=_Gpu(base))


def _gpu_in_use() -> bool:
    """Whether rans has used the GPU in this process (a module of :mod:`rans.gpu` is loaded), so that
    starting it costs ``"auto"`` nothing more."""
    return "rans.gpu" in sys.modules


def _driver_present() -> bool:
    """Whether an NVIDIA driver is installed, checked without importing CUDA (which takes half a second);
    never under the CUDA simulator, which is for tests, not speed."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    if os.path.exists("/proc/driver/nvidia/version"):
        return True
    return sys.platform == "win32" and ctypes.util.find_library("nvcuda") is not None


def _guarded(gpu: Backend, host: Backend) -> Backend:
    """``gpu`` whose whole-tensor calls hand over to ``host`` for good, with a warning, once the GPU fails for
    another reason than the data (a :class:`~rans.RansError` is the data's, and propagates)."""
    failed: list[str] = []

    def guard(work: Callable[..., Any], fallback: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            if not failed:
                try:
                    return work(*args)
                except RansError:
                    raise
                except Exception as e:  # noqa: BLE001 - the GPU's own failure: the CPU does the work instead
                    failed.append(f"{type(e).__name__}: {e}")
                    warnings.warn(f"rans: the GPU backend failed ({failed[0]}); the CPU backend does the work from now on",
                                  RuntimeWarning, stacklevel=4)
            return fallback(*args)

        return call

    from . import codec

    return dataclasses.replace(
        gpu,
        encode_tensor=guard(
            gpu.encode_tensor, lambda a, name, chunk, workers=1, prefer="ratio": codec.encode_tensor(a, name, chunk, workers, host, prefer)
        ),
        decode_tensor=guard(gpu.decode_tensor, lambda entry, buf, verify=True: codec.decode_tensor(entry, buf, verify, host)),
    )


@functools.cache
def _load(name: str) -> Backend:
    path = MODULES[name]
    try:
        module = importlib.import_module(path)
    except ImportError as e:
        raise InvalidArgumentError(f"backend {name!r} is not available: {e}") from None
    if not getattr(module, "available", lambda: True)():
        raise InvalidArgumentError(f"backend {name!r} is not available on this machine")
    parts = {f: getattr(module, f) for f in ("plan", "split", "join", "count", "counts", "encode_tensor", "decode_tensor") if hasattr(module, f)}
    return Backend(name, getattr(module, "encode", None), getattr(module, "decode", None), **parts)
