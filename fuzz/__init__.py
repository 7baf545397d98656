"""Fuzz targets for the rans decoders, runnable with Hypothesis (``python -m fuzz``) or
atheris (``python -m fuzz --engine atheris --target NAME --runs N``).

Each target takes arbitrary bytes and must either succeed or raise a
:class:`rans.RansError`; anything else (another exception, a failed oracle,
a hang, a crash) is a bug. ``fuzz.corpus`` writes corrupted files for the
GPU decoder, and ``fuzz.gpu_corpus`` decodes them.
"""

from typing import Any

__all__ = ["TARGETS"]


def __getattr__(name: str) -> Any:
    """``fuzz.TARGETS``, imported on first use, so that atheris can instrument ``rans`` before it is imported."""
    if name == "TARGETS":
        from .targets import TARGETS

        return TARGETS
    raise AttributeError(f"module 'fuzz' has no attribute {name!r}")
