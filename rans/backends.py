"""The codecs that can encode and decode planes, by name, and how ``backend=`` picks one.

A backend is a module with ``encode(plane, chunk, freq, lanes=None)`` and
``decode(section, n, field)`` (the signatures of
:mod:`rans.reference.coder`), and optionally ``count``, ``split`` and
``join`` (those of :func:`rans.reference.tables.count`,
:func:`rans.dtypes.split` and :func:`rans.dtypes.join`) and
``available() -> bool``. Every backend writes the same bytes.

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
from .reference import coder, tables

MODULES: dict[str, str | None] = {
    "gpu": None,
    "cpu": "rans.cpu",
    "reference": "rans.reference.coder",
}
"""Each backend's module, ``None`` where there is none yet; ``"auto"`` takes the first available, in this order."""

NAMES = tuple(MODULES)


@dataclass(frozen=True)
class Backend:
    """The functions of one backend: plane coding, byte counts and plane splits."""

    name: str
    encode: Callable[..., Any]
    decode: Callable[..., Any]
    count: Callable[..., Any] = tables.count
    split: Callable[..., Any] = dtypes.split
    join: Callable[..., Any] = dtypes.join


def get(name: str = "auto") -> Backend:
    """The backend called ``name`` (``"auto"``: the fastest available).

    Raises
    ------
    rans.InvalidArgumentError
        ``name`` is not a backend, or that backend is not available here
        (its module or hardware is missing).
    """
    if name == "auto":
        for candidate in NAMES:
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
    if path is None:
        raise InvalidArgumentError(f"backend {name!r} is not available in this version")
    try:
        module = importlib.import_module(path)
    except ImportError as e:
        raise InvalidArgumentError(f"backend {name!r} is not available: {e}") from None
    if not getattr(module, "available", lambda: True)():
        raise InvalidArgumentError(f"backend {name!r} is not available on this machine")
    parts = {f: getattr(module, f) for f in ("count", "split", "join") if hasattr(module, f)}
    return Backend(name, module.encode, module.decode, **parts)
