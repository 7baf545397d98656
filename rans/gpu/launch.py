"""Kernel launches that skip Numba's per-launch typing and marshalling.

Numba types and marshals every argument of every launch: for the decode
kernel's ten arguments that is tens of microseconds of host time per call,
as much as the kernel takes on a small tensor. A :class:`Prepared` launch
does that work once, through the same Numba routines, and then only hands
the kept argument list to the driver (``bench/NOTES.md``, entry 5).
:func:`run` launches once on :class:`~rans.gpu.memory.Span` arguments,
marshalled as Numba marshals C-contiguous arrays (checked against Numba's
own marshalling the first time each kernel signature is seen). Under the
CUDA simulator, or with a Numba that lacks those routines, both launch the
ordinary way.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable

import numpy as np

from .memory import Span, handle
from .warp import SIMULATED


class Prepared:
    """``dispatcher[grid, block, stream](*args)`` for any ``stream``, with ``args`` marshalled once.

    Parameters
    ----------
    dispatcher
        A ``numba.cuda.jit`` kernel.
    grid, block : int
        Blocks in the grid and threads per block.
    args : tuple
        The kernel's arguments: device arrays and scalars that stay valid for
        as long as this object is used.
    """

    def __init__(self, dispatcher: Any, grid: int, block: int, args: tuple[Any, ...]) -> None:
        self._call: Callable[[Any], None] = self._marshalled(dispatcher, grid, block, args) or (
            lambda stream: dispatcher[grid, block, stream](*args)
        )

    def __call__(self, stream: Any) -> None:
        """Launch on ``stream`` (a Numba stream)."""
        self._call(stream)

    @staticmethod
    def _marshalled(dispatcher: Any, grid: int, block: int, args: tuple[Any, ...]) -> Callable[[Any], None] | None:
        if SIMULATED:
            return None
        try:
            from cuda.core import LaunchConfig, launch
        except ImportError:
            return None
        argtypes = tuple(dispatcher.typeof_pyval(a) for a in args)
        kernel = dispatcher.compile(argtypes)
        prepare = getattr(kernel, "_prepare_args", None)
        library = getattr(kernel, "_codelibrary", None)
        if prepare is None or library is None:
            return None
        values: list[Any] = []
        for argtype, value in zip(kernel.argument_types, args):
            prepare(argtype, value, 0, [], values)
        function = library.get_cufunc().kernel
        config = LaunchConfig(grid=grid, block=block, shmem_size=0)
        return lambda stream: launch(_core_stream(stream), config, function, *values)


_CORE_STREAMS: dict[int, Any] = {}


def _core_stream(stream: Any) -> Any:
    """A ``cuda.core`` stream on the handle of the Numba ``stream`` (made once per handle): ``cuda.core``
    deprecates being handed other libraries' stream objects."""
    key = handle(stream)
    core = _CORE_STREAMS.get(key)
    if core is None:
        from cuda.core import Stream

        core = _CORE_STREAMS[key] = Stream.from_handle(key)
    return core


_KERNELS: dict[tuple[Any, ...], Any] = {}


def _key(arg: Any) -> tuple[Any, ...]:
    if isinstance(arg, Span):
        return ("array", arg.dtype.str, len(arg.shape))
    if isinstance(arg, (int, np.integer)) and not isinstance(arg, bool):
        return ("int64",)
    raise TypeError(f"launch.run takes spans and integers, not {type(arg).__name__}")


def _marshal(args: tuple[Any, ...]) -> list[Any]:
    """The driver's argument list for spans and integers: Numba's layout of a C-contiguous array, an ``int64``."""
    values: list[Any] = []
    for a in args:
        if isinstance(a, Span):
            values += [0, 0, a.size, a.dtype.itemsize, a.ptr, *a.shape, *a.strides]
        else:
            values.append(ctypes.c_int64(int(a)))
    return values


def _numba_arguments(args: tuple[Any, ...]) -> list[Any]:
    """The same arguments as Numba's device arrays and Python integers."""
    from numba import cuda

    return [cuda.from_cuda_array_interface(a.__cuda_array_interface__, owner=a, sync=False) if isinstance(a, Span) else int(a) for a in args]


def _compiled(dispatcher: Any, key: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
    """The kernel function for ``key``, or ``None`` to launch through Numba: made and checked once per signature.

    The check marshals the same arguments through Numba's own routine and
    compares: a Numba whose array layout differs keeps its ordinary launches.
    """
    if key in _KERNELS:
        return _KERNELS[key]
    function = None
    try:
        from cuda.core import LaunchConfig  # noqa: F401  (present where launches go through cuda.core)

        values = _numba_arguments(args)
        kernel = dispatcher.compile(tuple(dispatcher.typeof_pyval(v) for v in values))
        theirs: list[Any] = []
        for argtype, value in zip(kernel.argument_types, values):
            kernel._prepare_args(argtype, value, 0, [], theirs)
        if [getattr(v, "value", v) for v in theirs] == [getattr(v, "value", v) for v in _marshal(args)]:
            function = kernel._codelibrary.get_cufunc().kernel
    except (ImportError, AttributeError, TypeError):
        function = None
    _KERNELS[key] = function
    return function


def run(dispatcher: Any, grid: int, block: int, stream: Any, *args: Any) -> None:
    """``dispatcher[grid, block, stream](*args)`` for :class:`~rans.gpu.memory.Span` and integer arguments.

    Under the simulator the arguments are Numba's arrays and the launch is Numba's.
    """
    if SIMULATED:
        dispatcher[grid, block, stream](*args)
        return
    key = (dispatcher, *(_key(a) for a in args))
    function = _compiled(dispatcher, key, args)
    if function is None:
        dispatcher[grid, block, stream](*_numba_arguments(args))
        return
    from cuda.core import LaunchConfig, launch

    launch(_core_stream(stream), LaunchConfig(grid=grid, block=block, shmem_size=0), function, *_marshal(args))
