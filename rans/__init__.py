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
    RansError,
    SizeLimitError,
    TruncatedDataError,
    UnsupportedVersionError,
)

__version__ = "0.1.0"

__all__ = [
    "compress",
    "decompress",
    "save_file",
    "load_file",
    "load_metadata",
    "RansError",
    "InvalidArgumentError",
    "NotRansDataError",
    "UnsupportedVersionError",
    "CorruptDataError",
    "TruncatedDataError",
    "ChecksumError",
    "SizeLimitError",
]
