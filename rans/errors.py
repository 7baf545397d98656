"""The exceptions rans raises.

Every error is a :class:`RansError`; catch that to handle them all. Errors
about data carry the place they were found in: ``tensor`` (its name),
``field`` (a header field or section) and ``chunk`` (a chunk index), any of
which may be ``None``.
"""

from __future__ import annotations


class RansError(Exception):
    """Base class of every error raised by rans.

    Examples
    --------
    >>> import rans
    >>> try:
    ...     rans.decompress(b"not a rans file")
    ... except rans.RansError as e:
    ...     print(type(e).__name__)
    NotRansDataError
    """

    def __init__(
        self,
        message: str,
        *,
        tensor: str | None = None,
        field: str | None = None,
        chunk: int | None = None,
    ) -> None:
        self.tensor = tensor
        self.field = field
        self.chunk = chunk
        where = []
        if tensor is not None:
            where.append(f"tensor {tensor!r}")
        if field is not None:
            where.append(f"field {field!r}")
        if chunk is not None:
            where.append(f"chunk {chunk}")
        self.reason = message
        super().__init__(f"{', '.join(where)}: {message}" if where else message)

    def at(self, *, tensor: str | None = None, field: str | None = None) -> "RansError":
        """Return a copy of this error with the tensor or field filled in where unset."""
        return type(self)(
            self.reason,
            tensor=self.tensor if self.tensor is not None else tensor,
            field=self.field if self.field is not None else field,
            chunk=self.chunk,
        )


class InvalidArgumentError(RansError, ValueError):
    """An argument passed to a rans function is not acceptable (wrong type, dtype, option)."""


class NotRansDataError(RansError):
    """The data does not start with the rans magic bytes: it is not a rans file."""


class UnsupportedVersionError(RansError):
    """The data is a rans file of a format version this reader does not know."""


class CorruptDataError(RansError):
    """The data is a rans file, but some part of it is malformed or damaged."""


class TruncatedDataError(CorruptDataError):
    """The data ends before the header says it should."""


class ChecksumError(CorruptDataError):
    """A stored CRC-32 does not match the bytes it covers."""


class NotSafetensorsError(RansError):
    """A file given as safetensors is not one (bad length prefix, header or data offsets)."""


class SizeLimitError(RansError):
    """The decoded tensors would take more bytes than ``max_bytes`` allows.

    The guard against decompression bombs: a constant plane stores no data,
    so a file of a few bytes may describe a tensor of any size. Pass a larger
    ``max_bytes`` to load such a file on purpose.
    """
