"""Kernel launches whose arguments are marshalled once, for launches repeated on the same buffers.

Numba types and marshals every argument of every launch: for the decode
kernel's ten arguments that is tens of microseconds of host time per call,
as much as the kernel takes on a small tensor. A :class:`Prepared` launch
does that work once, through the same Numba routines, and then only hands
the kept argument list to the driver (``bench/NOTES.md``, entry 5). Under
the CUDA simulator, or with a Numba that lacks those routines, it launches
the ordinary way.
"""

from __future__ import annotations

from typing import Any, Callable

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
    handle = int(stream.__cuda_stream__()[1])
    core = _CORE_STREAMS.get(handle)
    if core is None:
        from cuda.core import Stream

        core = _CORE_STREAMS[handle] = Stream.from_handle(handle)
    return core
