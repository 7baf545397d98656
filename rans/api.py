"""The public functions: one tensor to bytes and back, many tensors to a file and back."""

from __future__ import annotations

import mmap
import os
import tempfile
from typing import Any, Mapping

import numpy as np

from . import backends, codec, container, dtypes, files
from .constants import DEFAULT_CHUNK
from .errors import InvalidArgumentError
from .reference.coder import check_chunk

PathLike = str | os.PathLike


def _as_array(obj: Any, what: str) -> np.ndarray:
    """A NumPy view of ``obj`` (an array, a CPU torch tensor, or anything ``np.asarray`` takes)."""
    if type(obj).__module__.startswith("torch"):
        obj = _torch_to_numpy(obj)
    try:
        array = np.asarray(obj)
    except Exception as e:  # noqa: BLE001 - whatever the object raises, the argument is bad
        raise InvalidArgumentError(f"{what} cannot be read as an array: {e}") from None
    dtypes.name_of(array.dtype)
    return array


def _torch_to_numpy(tensor: Any) -> np.ndarray:
    import torch

    tensor = tensor.detach().cpu().contiguous()
    for name in ("BF16", "F8_E4M3", "F8_E5M2"):  # dtypes NumPy has only through ml_dtypes
        if tensor.dtype == getattr(torch, dtypes.TORCH[name]):
            bits = torch.int16 if name == "BF16" else torch.uint8
            return tensor.view(bits).numpy().view(dtypes.DTYPES[name])
    return tensor.numpy()


def _buffer(data: Any) -> memoryview:
    try:
        view = memoryview(data)
    except TypeError:
        raise InvalidArgumentError(f"data must be bytes-like, not {type(data).__name__}") from None
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def compress(
    array: Any, *, chunk_size: int = DEFAULT_CHUNK, workers: int = 1, backend: str = "auto", prefer: str = "ratio"
) -> bytes:
    """Compress one tensor losslessly into bytes.

    Examples
    --------
    >>> import numpy as np, ml_dtypes, rans
    >>> w = (np.random.default_rng(0).normal(0, 0.02, 1 << 16)).astype(ml_dtypes.bfloat16)
    >>> data = rans.compress(w)
    >>> round(w.nbytes / len(data), 2)
    1.51
    >>> bool((rans.decompress(data).view(np.uint16) == w.view(np.uint16)).all())
    True

    Parameters
    ----------
    array : array-like
        A NumPy array (bf16 and fp8 through ``ml_dtypes``), a CPU torch
        tensor, or anything :func:`numpy.asarray` accepts, of a dtype in
        :data:`rans.dtypes.DTYPES`.
    chunk_size : int
        Symbols per chunk, a multiple of 128 (default 32768). Smaller chunks
        give more parallelism and a slightly larger output.
    workers : int
        Processes that share the encoding of large planes on the
        ``"reference"`` backend (default 1); the other backends ignore it
        (``"cpu"`` uses every core through Numba's threads). The output does
        not depend on it.
    backend : {"auto", "cpu", "reference", "gpu"}
        The codec that does the work (see :mod:`rans.backends`); every one
        writes the same bytes. ``"auto"`` (default) takes the fastest
        available: ``"cpu"`` (Numba) when it imports, else ``"reference"``.
    prefer : {"ratio", "speed"}
        ``"ratio"`` (default): the smallest file. ``"speed"``: the fastest
        decode on a GPU, at a ratio a little lower: 1-byte tensors (``U8``,
        ``I8``, fp8) are split into two planes of nibbles, two elements a
        coded symbol, and a tensor keeps one coded plane at most (the one
        that saves the most), its others raw, so that one fused pass decodes
        it (``docs/FORMAT.md``, section 5; ``README.md`` gives the figures).

    Returns
    -------
    bytes
        A rans file holding one tensor with an empty name.

    Raises
    ------
    rans.InvalidArgumentError
        The dtype is not supported, the chunk size, ``prefer`` or
        ``workers`` is invalid, or the backend is unknown or not available.
    """
    chunk_size = check_chunk(chunk_size)
    _check_workers(workers)
    dtypes.check_prefer(prefer)
    entry, sections = codec.encode_tensor(
        _as_array(array, "array"), "", chunk_size, workers, backends.get(backend), prefer
    )
    return container.to_bytes([entry], [sections], None)


def decompress(
    data: Any,
    *,
    device: str = "cpu",
    out: Any = None,
    stream: Any = None,
    framework: str | None = None,
    verify: bool = True,
    backend: str = "auto",
    max_bytes: int | None = None,
) -> Any:
    """Decompress bytes made by :func:`compress` into a NumPy array.

    Examples
    --------
    >>> import numpy as np, rans
    >>> rans.decompress(rans.compress(np.arange(6, dtype=np.int32).reshape(2, 3)))
    array([[0, 1, 2],
           [3, 4, 5]], dtype=int32)

    Parameters
    ----------
    data : bytes-like
        A rans file holding exactly one tensor.
    device : {"cpu", "cuda"}
        Where to decode. ``"cuda"`` decodes on the GPU (``rans[gpu]``) and
        returns a device array.
    out : device array, optional
        With ``device="cuda"``: a preallocated contiguous device array
        (torch, CuPy, numba: anything with ``__cuda_array_interface__``) of
        exactly the tensor's size in bytes, filled and returned.
    stream : optional
        With ``device="cuda"``: the stream to work on (numba, torch or CuPy
        stream, or a raw handle); the call returns once it is done.
    framework : {"torch", "numba"}, optional
        With ``device="cuda"``: the type of the returned array; by default
        torch when it is importable. Numba arrays hold BF16 and FP8 as their
        raw bits (``uint16``, ``uint8``).
    verify : bool
        Check every section's CRC-32 (default; with ``device="cuda"`` the
        GPU computes it). Coded chunks are checked by their final states
        either way; with ``verify=False`` damage to raw sections, and some
        damage to coded words, goes unnoticed.
    max_bytes : int, optional
        The most bytes the decoded tensor may take. By default
        ``max(256 MiB, 1024 * len(data))``, which keeps a small file from
        claiming a huge tensor (a decompression bomb: a constant plane
        stores nothing); pass a larger value to allow one.
    backend : {"auto", "cpu", "reference", "gpu"}
        With ``device="cpu"``: the decoder (see :func:`compress`; ``"gpu"``
        decodes there and copies the tensor back); all give the same arrays
        and raise the same errors.

    Returns
    -------
    numpy.ndarray or device array
        The tensor, with its dtype and shape.

    Raises
    ------
    rans.NotRansDataError, rans.UnsupportedVersionError, rans.CorruptDataError
        The data is not a rans file, is of another version, or is damaged.
    rans.InvalidArgumentError
        The data holds more or fewer than one tensor (use :func:`load_file`).
    rans.SizeLimitError
        The tensor would take more than ``max_bytes``.
    """
    buf = _buffer(data)
    files.check_framework(device, None)
    decoder = backends.get(backend)
    header = container.read_header(buf)
    if len(header.entries) != 1:
        raise InvalidArgumentError(f"data holds {len(header.entries)} tensors, not one; use rans.load_file")
    codec.check_size(header.entries, len(buf), max_bytes)
    if device == "cuda":
        return _decode_on_gpu(buf, header, verify, out=out, stream=stream, framework=framework)[0]
    return codec.decode_tensor(header.entries[0], buf, verify, decoder)


def _decode_on_gpu(buf: memoryview, header: container.Header, verify: bool, **options: Any) -> list[Any]:
    return files.gpu_decoder().decode(buf, header.entries, verify=verify, **options)


def save_file(
    tensors: Mapping[str, Any],
    path: PathLike,
    metadata: Mapping[str, str] | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    workers: int = 1,
    backend: str = "auto",
    prefer: str = "ratio",
) -> None:
    """Compress named tensors into a file, atomically.

    The file is written to a temporary name in the same directory and
    renamed over ``path`` only once complete, so an interrupted run never
    leaves a partial file behind.

    Examples
    --------
    >>> import numpy as np, rans, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "weights.rans")
    >>> rans.save_file({"w": np.ones((2, 2), np.float16)}, path, {"origin": "doc"})
    >>> rans.load_file(path)["w"]
    array([[1., 1.],
           [1., 1.]], dtype=float16)

    Parameters
    ----------
    tensors : mapping of str to array-like
        The tensors, by name; written in the mapping's order.
    path : str or os.PathLike
        Where to write.
    metadata : mapping of str to str, optional
        Free-form text metadata stored in the header.
    chunk_size : int
        Symbols per chunk, as in :func:`compress`.
    workers : int
        Processes that share the encoding, as in :func:`compress`.
    backend : {"auto", "cpu", "reference", "gpu"}
        The encoder, as in :func:`compress`.
    prefer : {"ratio", "speed"}
        The smallest file or the fastest GPU decode, as in :func:`compress`.
    """
    entries, sections, metadata = encode_tensors(
        tensors, metadata, chunk_size=chunk_size, workers=workers, backend=backend, prefer=prefer
    )
    write_atomic(path, lambda f: container.write(f, entries, sections, metadata))


def encode_tensors(
    tensors: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    workers: int = 1,
    backend: str = "auto",
    prefer: str = "ratio",
) -> tuple[list[container.Entry], list[list[bytes | memoryview]], dict[str, str] | None]:
    """Validate and code named tensors: what :func:`save_file` writes, before it is laid out.

    Returns the header entries, each tensor's sections and the metadata, ready
    for :func:`rans.container.write` (to a file or an ``io.BytesIO``); the
    sections are bytes-like (``bytes`` or ``memoryview``). ``backend``,
    ``workers`` and ``prefer`` are as in :func:`compress`.
    """
    chunk_size = check_chunk(chunk_size)
    _check_workers(workers)
    dtypes.check_prefer(prefer)
    encoder = backends.get(backend)
    if not isinstance(tensors, Mapping):
        raise InvalidArgumentError("tensors must be a mapping of names to arrays")
    if metadata is not None and not (
        isinstance(metadata, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise InvalidArgumentError("metadata must map strings to strings")
    entries, sections = [], []
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise InvalidArgumentError(f"tensor names must be strings, not {type(name).__name__}")
        entry, blobs = codec.encode_tensor(_as_array(value, f"tensor {name!r}"), name, chunk_size, workers, encoder, prefer)
        entries.append(entry)
        sections.append(blobs)
    return entries, sections, dict(metadata) if metadata else None


def _check_workers(workers: int) -> None:
    if not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
        raise InvalidArgumentError(f"workers must be a positive integer, not {workers!r}")


def write_atomic(path: PathLike, fill: Any) -> None:
    """Call ``fill(file)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def load_file(
    path: PathLike,
    *,
    device: str = "cpu",
    framework: str | None = None,
    verify: bool = True,
    max_bytes: int | None = None,
    backend: str = "auto",
) -> dict[str, Any]:
    """Read every tensor of a file written by :func:`save_file`.

    Examples
    --------
    >>> import numpy as np, rans, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.rans")
    >>> rans.save_file({"a": np.arange(3, dtype=np.uint8)}, path)
    >>> rans.load_file(path)
    {'a': array([0, 1, 2], dtype=uint8)}

    Parameters
    ----------
    path : str or os.PathLike
        The file; it is memory-mapped, not read whole.
    device : {"cpu", "cuda"}
        ``"cuda"`` decodes every tensor on the GPU in one launch and returns
        device arrays (see :func:`decompress`).
    framework : {"numpy", "torch", "numba"}, optional
        The type of the returned arrays: ``"numpy"`` (default) or ``"torch"``
        on the CPU, ``"torch"`` (default) or ``"numba"`` with ``device="cuda"``.
    verify : bool
        Check every section's CRC-32 (default; with ``device="cuda"`` the
        GPU computes it, once the file is there).
    max_bytes : int, optional
        The most bytes the decoded tensors may take together; by default
        ``max(256 MiB, 1024 * file size)`` (see :func:`decompress`).
    backend : {"auto", "cpu", "reference", "gpu"}
        With ``device="cpu"``: the decoder, as in :func:`decompress`.

    Returns
    -------
    dict of str to array
        The tensors in file order. On the CPU they are decoded one at a
        time, so host memory beyond them stays near the largest tensor's size.

    Raises
    ------
    rans.RansError
        A :class:`~rans.SizeLimitError` naming the tensor that would pass
        ``max_bytes``, or the errors of :func:`decompress`.
    """
    files.check_framework(device, framework)
    if device == "cpu":
        return files.load_cpu(path, framework, verify, backend, max_bytes)
    return _with_mapped(path, lambda view: load_buffer(view, device=device, framework=framework, verify=verify, max_bytes=max_bytes))


def _with_mapped(path: PathLike, read: Any) -> Any:
    """Call ``read(view)`` on a read-only memory map of the file at ``path``, then unmap it.

    An error raised inside is re-raised without its traceback, whose frames
    would otherwise keep views of the map alive and make unmapping fail.
    """
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return read(memoryview(b""))
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            error = None
            try:
                return read(view)
            except BaseException as e:  # noqa: BLE001 - re-raised below, once the map is released
                error = e
                error.__traceback__ = None
                error.__context__ = None
            finally:
                view.release()
        raise error


def load_metadata(path: PathLike) -> dict[str, str]:
    """The user metadata stored in a file's header (reads the header only).

    Examples
    --------
    >>> import numpy as np, rans, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "m.rans")
    >>> rans.save_file({"a": np.zeros(2, np.int8)}, path, {"license": "MIT"})
    >>> rans.load_metadata(path)
    {'license': 'MIT'}
    """
    return _with_mapped(path, lambda view: container.read_header(view).metadata)


def load_buffer(
    buf: memoryview,
    *,
    device: str = "cpu",
    framework: str | None = None,
    verify: bool = True,
    max_bytes: int | None = None,
    backend: str = "auto",
) -> dict[str, Any]:
    """What :func:`load_file` does with a whole file held in ``buf``: every tensor, decoded."""
    files.check_framework(device, framework)
    header = container.read_header(buf)
    codec.check_size(header.entries, len(buf), max_bytes)
    if device == "cuda":
        arrays = _decode_on_gpu(buf, header, verify, framework=framework)
        return {entry.name: array for entry, array in zip(header.entries, arrays)}
    decoder = backends.get(backend)
    tensors = {entry.name: codec.decode_tensor(entry, buf, verify, decoder) for entry in header.entries}
    return {name: files.to_torch(a) for name, a in tensors.items()} if framework == "torch" else tensors
