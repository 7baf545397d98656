"""The codecs that can encode and decode planes, by name, and how ``backend=`` picks one.

A backend is a module with ``encode(plane, chunk, freq, lanes=None)`` and
``decode(section, n, field)`` (the signatures of
:mod:`rans.reference.coder`), and optionally ``count``, ``quantize``,
``serialized_size``, ``split`` and ``join`` (those of
:func:`rans.reference.tables.count`, :func:`rans.reference.tables.quantize`,
:func:`rans.reference.tables.serialized_size`, :func:`rans.dtypes.split` and
:func:`rans.dtypes.join`) and
``available() -> bool``. A backend that works on whole tensors instead
(the GPU's) has ``encode_tensor`` and ``decode_tensor`` with the
signatures of :func:`rans.codec.encode_tensor` and
:func:`rans.codec.decode_tensor`. Every backend writes the same bytes.

Examples
--------
>>> from rans import backends
>>> backends.get("reference").name
'reference'
>>> backends.get("auto").name in backends.NAMES
True
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any, Callable

from . import dtypes
from .errors import InvalidArgumentError
from .reference import tables

MODULES: dict[str, str] = {
    "cpu": "rans.cpu",
    "reference": "rans.reference.coder",
    "gpu": "rans.gpu.backend",
}
"""Each backend's module."""

NAMES = tuple(MODULES)

AUTO = ("cpu", "reference")
"""What ``"auto"`` tries, in this order. The GPU backend is used only when asked for (``backend="gpu"``)."""


@dataclass(frozen=True)
class Backend:
    """The functions of one backend: plane coding, byte counts and plane splits."""

    name: str
    encode: Callable[..., Any] | None
    decode: Callable[..., Any] | None
    count: Callable[..., Any] = tables.count
    quantize: Callable[..., Any] = tables.quantize
    serialized_size: Callable[..., Any] = tables.serialized_size
    split: Callable[..., Any] = dtypes.split
    join: Callable[..., Any] = dtypes.join
    encode_tensor: Callable[..., Any] | None = None
    decode_tensor: Callable[..., Any] | None = None


def get(name: str = "auto") -> Backend:
    """The backend called ``name`` (``"auto"``: the fastest available).

    Raises
    ------
    rans.InvalidArgumentError
        ``name`` is not a backend, or that backend is not available here
        (its module or hardware is missing).
    """
    if name == "auto":
        for candidate in AUTO:
            try:
                return _load(candidate)
            except InvalidArgumentError:
                continue
    if not isinstance(name, str) or name not in MODULES:
        raise InvalidArgumentError(f"backend must be 'auto' or one of {', '.join(map(repr, NAMES))}, not {name!r}")
    return _load(name)


@functools.cache
def _load(name: str) -> Backend:
    path = MODULES[name]
    try:
        module = importlib.import_module(path)
    except ImportError as e:
        raise InvalidArgumentError(f"backend {name!r} is not available: {e}") from None
    if not getattr(module, "available", lambda: True)():
        raise InvalidArgumentError(f"backend {name!r} is not available on this machine")
    parts = {f: getattr(module, f) for f in ("count", "quantize", "serialized_size", "split", "join", "encode_tensor", "decode_tensor") if hasattr(module, f)}
    return Backend(name, getattr(module, "encode", None), getattr(module, "decode", None), **parts)
