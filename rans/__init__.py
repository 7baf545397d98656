"""rans: lossless compression of tensors with interleaved rANS, decoded fast.

Examples
--------
>>> import numpy as np, rans
>>> x = np.arange(1000, dtype=np.int16)
>>> bool((rans.decompress(rans.compress(x)) == x).all())
True
"""

from .api import compress, decompress, load_file, load_metadata, save_file
from .errors import (
    ChecksumError,
    CorruptDataError,
    InvalidArgumentError,
    NotRansDataError,
    NotSafetensorsError,
    RansError,
    SizeLimitError,
    TruncatedDataError,
    UnsupportedVersionError,
)
from .files import safe_open

__version__ = "0.1.0"

__all__ = [
    "compress",
    "decompress",
    "save_file",
    "load_file",
    "load_metadata",
    "safe_open",
    "RansError",
    "InvalidArgumentError",
    "NotRansDataError",
    "NotSafetensorsError",
    "UnsupportedVersionError",
    "CorruptDataError",
    "TruncatedDataError",
    "ChecksumError",
    "SizeLimitError",
]
