"""One fuzz target under atheris: ``python -m fuzz.atheris_engine NAME [libFuzzer flags] [corpus dirs]``.

``python -m fuzz --engine atheris`` starts this once per target (libFuzzer
ends the process when it is done). The ``rans`` package is instrumented for
coverage guidance, but for its Numba-compiled modules (``rans.cpu.kernels``
and ``rans.cpu.planes``: Numba cannot compile instrumented bytecode); a
:class:`rans.RansError` counts as success, anything else is a crash that
atheris reports and saves.
"""

from __future__ import annotations

import sys

NUMBA_MODULES = ["rans.cpu.kernels", "rans.cpu.planes"]
"""Modules of Numba-compiled functions, left uninstrumented."""


def main() -> None:
    import atheris
    import numpy  # noqa: F401 - imported before the instrumentation, which covers rans only

    with atheris.instrument_imports(include=["rans"], exclude=NUMBA_MODULES):
        from .targets import checked

    target = checked(sys.argv[1])
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
