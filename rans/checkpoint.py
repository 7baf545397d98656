"""Checkpoints: safetensors files and Hugging Face-style directories to rans and back, byte for byte.

A ``.safetensors`` file becomes a rans file holding the same tensors (name,
dtype, shape) in the order of their data, with the file's ``__metadata__``
as user metadata, plus one reserved metadata key, :data:`RESERVED_KEY`,
whose value is a JSON object:

``version``
    2 (1 in older files, which record ``sha256`` instead of ``crc32``).
``size``, ``crc32``
    The size and CRC-32 (zlib's, as an integer) of the original file;
    decompressing checks both, as gzip checks its output. Version 1 records
    the SHA-256 (hex) instead, which readers still check: hashing a 1 GiB
    checkpoint took a core 0.5 s and made compressing it on two cores 0.3 s
    longer (1.3 s instead of 1.0; ``bench/NOTES.md``, entry C1), and it
    cannot be shared among cores; the CRC takes 0.08 s.
``metadata``
    Whether the original header had a ``__metadata__`` object.
``header``
    The original header text (JSON and padding spaces), verbatim; absent
    when the ``safetensors`` library's own layout (compact JSON,
    ``__metadata__`` first, tensors in data order, spaces to a multiple of
    8 bytes) rebuilds it exactly, as it does for files that library wrote.

Tensors of a dtype rans lacks are stored as their bytes (``U8``, 1-D) and
the header is then kept verbatim. A rans file without the key (one written
by :func:`rans.save_file`) decompresses to a safetensors file in that
library's layout.

A directory is copied file by file: each ``X.safetensors`` becomes
``X.rans``, every other file (config, tokenizer, the original
``*.safetensors.index.json``) is copied as it is, and each index
``X.safetensors.index.json`` gains a twin ``X.rans.index.json`` whose
``weight_map`` names the ``.rans`` shards. Decompressing reverses it and
leaves the ``.rans.index.json`` files out.

Outputs appear whole or not at all: files are written to a temporary name
beside the target and renamed, directories are built in a temporary
directory and renamed.

Examples
--------
>>> import numpy as np, os, tempfile, hashlib
>>> from rans import checkpoint, safetensors_file
>>> d = tempfile.mkdtemp()
>>> src, packed, back = (os.path.join(d, n) for n in ("m.safetensors", "m.rans", "m2.safetensors"))
>>> with open(src, "wb") as f:
...     _ = f.write(safetensors_file.canonical_header([safetensors_file.TensorInfo("w", "I32", (3,), 0, 12)], None))
...     _ = f.write(np.arange(3, dtype=np.int32).tobytes())
>>> checkpoint.compress(src, packed)
>>> checkpoint.decompress(packed, back)
>>> open(src, "rb").read() == open(back, "rb").read()
True
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import numpy as np

from . import backends, checksum, codec, container, dtypes
from .api import write_atomic
from .constants import DEFAULT_CHUNK
from .errors import CorruptDataError, InvalidArgumentError, NotSafetensorsError
from .files import safe_open
from .reference.coder import check_chunk
from .safetensors_file import SafetensorsFile, TensorInfo, canonical_header, parse_header

RESERVED_KEY = "rans.safetensors"
"""The user-metadata key under which a compressed checkpoint keeps what rebuilds the original file."""

SAFETENSORS, RANS = ".safetensors", ".rans"
INDEX_SUFFIX = ".index.json"
COPY_BLOCK = 1 << 24
IN_PLACE_SHARE = 1024
"""A file is written in place (each byte once, :func:`write_streamed`) when the room its header may need is
at most this share of the input, 0.1%; smaller files are spilled and copied, byte-identical to
:func:`rans.save_file`'s."""

Progress = Callable[[int], Any]
"""Called with a number of bytes (of input) done."""


def _nothing(_: int) -> None:
    return None


# --------------------------------------------------------------------------- writing


def write_streamed(
    out: BinaryIO,
    encoded: Iterable[tuple[container.Entry, list[bytes]]],
    metadata: Callable[[], dict[str, str] | None],
    spill_dir: str,
    room: int | None = None,
) -> None:
    """Write a rans file from tensors coded one at a time; memory holds one tensor's sections at a time.

    The header, which comes first, holds every section's length. With
    ``room`` (:func:`rans.container.header_room` of the tensors) and an
    ``out`` that can seek, the sections are written from byte ``room`` of
    ``out`` as they come and the header is filled into the room in front of
    them at the end (:func:`rans.container.encode_header_in`): every byte is
    written once. Otherwise the sections go to an unnamed temporary file in
    ``spill_dir``, then follow the header into ``out``, and the file is
    byte-identical to :func:`rans.container.write`'s. ``metadata()`` is
    called once every tensor has been coded.
    """
    if room is not None and out.seekable():
        start = out.tell()
        out.seek(start + room)
        entries, end = _write_sections(out, encoded, room)
        head = container.encode_header_in(entries, metadata(), room)
        _check_layout(entries, room, end)
        out.seek(start)
        out.write(head)
        out.seek(start + end)
        return
    with tempfile.TemporaryFile(dir=spill_dir) as spill:
        entries, end = _write_sections(spill, encoded, 0)
        head = container.encode_header(entries, metadata())
        _check_layout(entries, len(head), len(head) + end)
        out.write(head)
        _append(spill, end, out)


def _write_sections(f: BinaryIO, encoded: Iterable[tuple[container.Entry, list[bytes]]], position: int) -> tuple[list[container.Entry], int]:
    """Write each tensor's sections to ``f`` as they come, each at a multiple of 4 counting from ``position`` (``f``'s
    own position stands for it), the gaps zero; return the entries and the position after the last section."""
    entries = []
    for entry, blobs in encoded:
        for blob in blobs:
            gap = container.align(position) - position
            f.write(bytes(gap))
            f.write(blob)
            position += gap + len(blob)
        entries.append(entry)
    return entries, position


def _check_layout(entries: list[container.Entry], data_start: int, end: int) -> None:
    laid_out = container.layout(entries, data_start)
    if laid_out != end:
        raise AssertionError(f"sections laid out to end at {laid_out}, written to {end}")


def _append(spill: BinaryIO, length: int, out: BinaryIO) -> None:
    """Copy the first ``length`` bytes of ``spill`` to ``out`` at its position.

    In the kernel where both are files (``os.copy_file_range``: no trip through
    user space, a block-sharing clone on filesystems that can), else, or for
    whatever that leaves, through a buffer.
    """
    spill.flush()
    done = 0
    try:
        out.flush()
        target, at = out.fileno(), out.tell()
    except (AttributeError, OSError):  # io.BytesIO and other in-memory files, pipes
        target = None
    if target is not None and hasattr(os, "copy_file_range"):
        try:
            while done < length:
                copied = os.copy_file_range(spill.fileno(), target, length - done, done, at + done)
                if copied == 0:
                    break
                done += copied
        except OSError:  # not supported between these files: copy the rest through a buffer
            pass
        out.seek(at + done)
    spill.seek(done)
    shutil.copyfileobj(spill, out, COPY_BLOCK)


def _sync_write(path: str, fill: Callable[[BinaryIO], Any]) -> None:
    """Write a new file inside a temporary output directory, flushed to disk."""
    with open(path, "xb") as f:
        fill(f)
        f.flush()
        os.fsync(f.fileno())


# --------------------------------------------------------------------------- one file


def compress_to(
    src: str | os.PathLike,
    out: BinaryIO,
    *,
    spill_dir: str,
    chunk_size: int = DEFAULT_CHUNK,
    workers: int = 1,
    progress: Progress = _nothing,
    backend: str = "auto",
    prefer: str = "ratio",
) -> None:
    """Compress the safetensors file ``src`` into the open binary file ``out`` (see the module doc).

    ``backend`` codes the tensors (:func:`rans.backends.get`; every backend writes the same bytes);
    ``prefer`` favours the smallest file or the fastest GPU decode, as in :func:`rans.compress`.
    """
    chunk_size = check_chunk(chunk_size)
    dtypes.check_prefer(prefer)
    encoder = backends.get(backend)
    with SafetensorsFile(src) as st:
        user = dict(st.metadata or {})
        if RESERVED_KEY in user:
            raise InvalidArgumentError(f"the file's __metadata__ already has the reserved key {RESERVED_KEY!r}")
        record: dict[str, Any] = {"version": 2, "size": st.size, "metadata": st.metadata is not None}
        if not (st.is_canonical() and all(t.dtype in dtypes.DTYPES for t in st.tensors)):
            record["header"] = st.header_text
        digest = _Digest("crc32", st.header_bytes)
        hashing = ThreadPoolExecutor(1)  # zlib lets go of the GIL: a tensor is checksummed while it is coded

        def encoded() -> Iterator[tuple[container.Entry, list[bytes]]]:
            for t in st.tensors:
                array = st.array(t)
                hashed = hashing.submit(digest.update, array.reshape(-1).view(np.uint8))
                coded = codec.encode_tensor(array, t.name, chunk_size, workers, encoder, prefer)
                hashed.result()
                yield coded
                st.release(t)
                progress(t.nbytes)

        def metadata(crc: int) -> dict[str, str]:
            return {**user, RESERVED_KEY: json.dumps({**record, "crc32": crc}, ensure_ascii=False)}

        shapes = [(t.name, dtypes.name_of(a.dtype), a.shape) for t in st.tensors for a in [st.array(t)]]  # views: nothing read
        room = container.header_room(shapes, metadata(0xFFFFFFFF))
        with hashing:
            write_streamed(out, encoded(), lambda: metadata(digest.value()), spill_dir, room if room <= st.size // IN_PLACE_SHARE else None)
        progress(st.data_start)


def compress(src: str | os.PathLike, dst: str | os.PathLike, **options: Any) -> None:
    """Compress the safetensors file ``src`` to the rans file ``dst``, atomically.

    ``options`` are those of :func:`compress_to` but ``spill_dir``.
    """
    directory = os.path.dirname(os.path.abspath(dst))
    write_atomic(dst, lambda f: compress_to(src, f, spill_dir=directory, **options))


def _record(metadata: dict[str, str]) -> dict[str, Any] | None:
    """The reserved key's object, validated; None when the file has none."""
    if RESERVED_KEY not in metadata:
        return None
    try:
        record = json.loads(metadata[RESERVED_KEY])
    except ValueError as e:
        raise CorruptDataError(f"not JSON: {e}", field=RESERVED_KEY) from None
    ok = (
        isinstance(record, dict)
        and record.get("version") in _DIGESTS
        and type(record.get("size")) is int
        and isinstance(record.get("metadata"), bool)
        and isinstance(record.get("header", ""), str)
    )
    if ok:
        kind = _DIGESTS[record["version"]]
        value = record.get(kind)
        ok = isinstance(value, str) if kind == "sha256" else type(value) is int and 0 <= value <= 0xFFFFFFFF
    if not ok:
        raise CorruptDataError(
            "expected an object with version 2, size, crc32, metadata and an optional header "
            "(or version 1 with sha256 instead of crc32)",
            field=RESERVED_KEY,
        )
    return record


_DIGESTS = {1: "sha256", 2: "crc32"}
"""The check of the original file that each version of the reserved key's object records."""


class _Digest:
    """A running SHA-256 (hex) or CRC-32 (an integer) of the bytes given to :meth:`update`."""

    def __init__(self, kind: str, head: bytes) -> None:
        self.kind = kind
        self._sha = hashlib.sha256(head) if kind == "sha256" else None
        self._crc = checksum.crc32(head) if self._sha is None else 0

    def update(self, data: np.ndarray) -> None:
        if self._sha is not None:
            self._sha.update(data)
        else:
            self._crc = checksum.crc32(data, self._crc)

    def value(self) -> Any:
        return self._sha.hexdigest() if self._sha is not None else self._crc

    def describe(self, value: Any) -> str:
        return f"sha256 {value[:12]}..." if self.kind == "sha256" else f"crc32 {value:08x}"


def plan(f: safe_open) -> tuple[bytes, list[TensorInfo], dict[str, Any] | None]:
    """The safetensors header to write for the open rans file ``f``, its tensors in data order, and the record."""
    metadata = f.metadata()
    record = _record(metadata)
    entries = [f.entry(name) for name in f.keys()]
    if record is not None and "header" in record:
        head = record["header"].encode("utf-8")
        try:
            tensors, _ = parse_header(record["header"], record["size"] - 8 - len(head))
        except NotSafetensorsError as e:
            raise CorruptDataError(f"stored header: {e}", field=RESERVED_KEY) from None
        _match(tensors, {e.name: e for e in entries})
        return len(head).to_bytes(8, "little") + head, tensors, record
    tensors, position = [], 0
    for e in entries:
        tensors.append(TensorInfo(e.name, e.dtype, e.shape, position, position + e.nbytes))
        position += e.nbytes
    if record is None:
        return canonical_header(tensors, metadata or None), tensors, None
    user = {k: v for k, v in metadata.items() if k != RESERVED_KEY}
    return canonical_header(tensors, user if record["metadata"] else None), tensors, record


def _match(tensors: list[TensorInfo], entries: dict[str, container.Entry]) -> None:
    """Every tensor of the stored header must be a tensor of the file, of its dtype and shape (or its bytes as U8)."""
    if sorted(t.name for t in tensors) != sorted(entries):
        raise CorruptDataError("the stored header and the file name different tensors", field=RESERVED_KEY)
    for t in tensors:
        e = entries[t.name]
        same = (e.dtype, e.shape) == (t.dtype, t.shape) or (
            t.dtype not in dtypes.DTYPES and e.dtype == "U8" and e.shape == (t.nbytes,)
        )
        if not same:
            raise CorruptDataError(
                f"stored header says {t.dtype} {list(t.shape)}, the file holds {e.dtype} {list(e.shape)}",
                tensor=t.name,
                field=RESERVED_KEY,
            )


def decompress_to(f: safe_open, out: BinaryIO | None, progress: Progress = _nothing) -> str:
    """Rebuild the safetensors file of the open rans file ``f`` into ``out`` (or only check it, when None).

    Every tensor is checked (CRC-32 and full decode); with the reserved
    key, the size and the CRC-32 (SHA-256 in a record of version 1) of the
    rebuilt file must be the original's. Returns that check of the rebuilt
    file in words (``"crc32 1a2b3c4d"``).

    Raises
    ------
    rans.CorruptDataError
        Naming the tensor (or the reserved key) that is damaged.
    """
    head, tensors, record = plan(f)
    digest = _Digest(_DIGESTS[record["version"]] if record is not None else "crc32", head)
    size = len(head)
    if out is not None:
        out.write(head)
    for t in tensors:
        data = np.ascontiguousarray(f.get_tensor(t.name)).reshape(-1).view(np.uint8)
        digest.update(data)
        size += data.size
        if out is not None:
            out.write(memoryview(data))
        progress(t.nbytes)
    value = digest.value()
    if record is not None and (size, value) != (record["size"], record[digest.kind]):
        raise CorruptDataError(
            f"the rebuilt file ({size} bytes, {digest.describe(value)}) is not the original "
            f"({record['size']} bytes, {digest.describe(record[digest.kind])})",
            field=RESERVED_KEY,
        )
    return digest.describe(value)


def decompress(src: str | os.PathLike, dst: str | os.PathLike, progress: Progress = _nothing) -> None:
    """Rebuild the safetensors file of the rans file ``src`` at ``dst``, atomically."""
    with safe_open(src) as f:
        write_atomic(dst, lambda out: decompress_to(f, out, progress))


def verify(src: str | os.PathLike, progress: Progress = _nothing) -> str:
    """Check every tensor of the rans file ``src`` and, with the reserved key, the rebuilt file's size and checksum."""
    with safe_open(src) as f:
        return decompress_to(f, None, progress)


# --------------------------------------------------------------------------- directories


def rans_name(name: str) -> str:
    """The name a file gets in a compressed directory (``X.safetensors`` -> ``X.rans``, indexes too)."""
    if name.endswith(SAFETENSORS):
        return name[: -len(SAFETENSORS)] + RANS
    if name.endswith(SAFETENSORS + INDEX_SUFFIX):
        return name[: -len(SAFETENSORS + INDEX_SUFFIX)] + RANS + INDEX_SUFFIX
    return name


def safetensors_name(name: str) -> str:
    """The inverse of :func:`rans_name` for ``.rans`` files."""
    return name[: -len(RANS)] + SAFETENSORS if name.endswith(RANS) else name


def listing(root: str) -> list[str]:
    """The files under ``root``, as sorted paths relative to it (symbolic links to files followed)."""
    found = []
    for directory, subdirs, names in os.walk(root):
        subdirs.sort()
        for name in sorted(names):
            path = os.path.join(directory, name)
            if not os.path.isfile(path):
                raise InvalidArgumentError(f"{path} is neither a file nor a directory")
            found.append(os.path.relpath(path, root))
    return found


def _rans_index(src: str) -> bytes:
    """The ``.rans.index.json`` twin of a safetensors index: the same, with shard names renamed."""
    try:
        with open(src, encoding="utf-8") as f:
            index = json.load(f)
        index["weight_map"] = {k: rans_name(v) for k, v in index["weight_map"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InvalidArgumentError(f"{src} is not a safetensors index with a weight_map: {e}") from None
    return (json.dumps(index, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _copy(src: str, dst: str, progress: Progress) -> None:
    def fill(out: BinaryIO) -> None:
        with open(src, "rb") as f:
            while block := f.read(COPY_BLOCK):
                out.write(block)
                progress(len(block))

    _sync_write(dst, fill)
    shutil.copymode(src, dst)


def compress_dir(src: str, dst: str, *, force: bool = False, progress: Progress = _nothing, **options: Any) -> None:
    """Compress the checkpoint directory ``src`` into the directory ``dst`` (see the module doc)."""
    names = listing(src)
    clashes = [n for n in names if n.endswith(RANS) or n.endswith(RANS + INDEX_SUFFIX)]
    if clashes:
        raise InvalidArgumentError(f"{src} already holds rans files ({clashes[0]}); compress a directory of safetensors")
    if not any(n.endswith(SAFETENSORS) for n in names):
        raise InvalidArgumentError(f"{src} holds no .safetensors file")

    def fill(tmp: str) -> None:
        for name in names:
            target = os.path.join(tmp, rans_name(name))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            path = os.path.join(src, name)
            if name.endswith(SAFETENSORS):
                _sync_write(target, lambda f: compress_to(path, f, spill_dir=tmp, progress=progress, **options))
                continue
            _copy(path, os.path.join(tmp, name), progress)
            if name.endswith(SAFETENSORS + INDEX_SUFFIX):
                index = _rans_index(path)
                _sync_write(target, lambda f: f.write(index))

    write_dir(dst, fill, force)


def decompress_dir(src: str, dst: str, *, force: bool = False, progress: Progress = _nothing) -> None:
    """Rebuild the checkpoint directory of the compressed directory ``src`` at ``dst``."""
    names = listing(src)
    if not any(n.endswith(RANS) for n in names):
        raise InvalidArgumentError(f"{src} holds no .rans file")

    def fill(tmp: str) -> None:
        for name in names:
            if name.endswith(RANS + INDEX_SUFFIX):
                continue
            target = os.path.join(tmp, safetensors_name(name))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            path = os.path.join(src, name)
            if name.endswith(RANS):
                with safe_open(path) as f:
                    _sync_write(target, lambda out: decompress_to(f, out, progress))
            else:
                _copy(path, target, progress)

    write_dir(dst, fill, force)


def write_dir(dst: str, fill: Callable[[str], Any], force: bool) -> None:
    """Call ``fill(tmp)`` on a new temporary directory beside ``dst``, then rename it to ``dst``.

    An existing ``dst`` is replaced only with ``force`` (it is renamed away
    first and removed once the new one is in place); on any error the
    temporary directory is removed and ``dst`` is left as it was.
    """
    dst = os.path.abspath(dst)
    parent, base = os.path.split(dst)
    tmp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    old = None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        fill(tmp)
        if os.path.lexists(dst):
            if not force:
                raise FileExistsError(f"{dst} exists")
            old = tempfile.mkdtemp(prefix=f".{base}.", suffix=".old", dir=parent)
            os.rename(dst, os.path.join(old, base))
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            if not os.path.lexists(dst):
                os.rename(os.path.join(old, base), dst)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
