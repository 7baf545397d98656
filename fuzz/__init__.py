"""Fuzz targets for the rans decoders, runnable with Hypothesis (``python -m fuzz``) or atheris.

Each target takes arbitrary bytes and must either succeed or raise a
:class:`rans.RansError`; anything else (another exception, a hang, a crash)
is a bug. With atheris::

    import atheris, fuzz
    atheris.Setup(sys.argv, fuzz.TARGETS["decompress"])
    atheris.Fuzz()
"""

from .targets import TARGETS

__all__ = ["TARGETS"]
