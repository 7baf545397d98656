"""The fuzz targets: bytes in, nothing out, only :class:`rans.RansError` may escape.

Each target takes arbitrary bytes. Decoding targets must either succeed or
raise a :class:`rans.RansError`; any other exception, a hang or a crash is a
bug. Some targets also check an oracle and raise ``AssertionError`` when it
fails: ``mutate`` that a changed file is never decoded with ``verify=True``,
``roundtrip`` that every backend gives the reference's bytes and the input
back.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import zlib
from typing import Any, Callable

import ml_dtypes
import numpy as np

import rans
from rans import api, container, cpu, dtypes
from rans.reference import coder

from .files import Draw, Parts, assemble, fix_tensor_crcs, header_text, preamble, take_apart

FUZZ_MAX_BYTES = 1 << 24
"""The decoded-size limit the targets decode under: keeps each execution small, and bombs are rejected."""


def _file(tensors: dict[str, np.ndarray], chunk: int, prefer: str = "ratio") -> bytes:
    out = io.BytesIO()
    container.write(out, *api.encode_tensors(tensors, {"seed": "fuzz"}, chunk_size=chunk, prefer=prefer))
    return out.getvalue()


def _seed_file() -> bytes:
    """A small valid file with a coded, a raw, a constant and an empty plane, several chunks and lanes."""
    rng = np.random.default_rng(0)
    tensors = {
        "w": rng.normal(0, 0.02, 3000).astype(np.float32).astype(np.float16),
        "e": rng.geometric(0.3, 5000).clip(0, 255).astype(np.uint8),
        "c": np.zeros(10, np.int32),
        "z": np.zeros((0, 3), np.float32),
    }
    return _file(tensors, 1024)


def _float_file() -> bytes:
    """BF16 (float split, 2 lanes), F32 powers of two (coded exponent, constant mantissas), BOOL, F8, raw F32."""
    rng = np.random.default_rng(1)
    tensors = {
        "b": rng.normal(0, 0.02, 2100).astype(ml_dtypes.bfloat16),
        "s": (2.0 ** rng.integers(-8, 8, 300)).astype(np.float32),
        "f": rng.random(200) < 0.3,
        "q": rng.normal(0, 1, 700).astype(ml_dtypes.float8_e4m3fn),
        "r": np.array([0.5, -1.25, 3.0], np.float32),
    }
    return _file(tensors, 256)


def _speed_file() -> bytes:
    """Written for speed: F8_E4M3 and I8 split "nibbles" (an odd count, a coded low plane), F16 with one coded plane."""
    rng = np.random.default_rng(2)
    tensors = {
        "q": rng.normal(0, 1, 900).astype(ml_dtypes.float8_e4m3fn),
        "i": np.clip(np.round(rng.normal(0, 12, 701)), -127, 127).astype(np.int8),
        "u": (rng.integers(0, 16, 600) << 4 | rng.integers(0, 3, 600)).astype(np.uint8),
        "h": np.round(rng.normal(0, 40, 500)).astype(np.float16),
    }
    return _file(tensors, 256, "speed")


SEED = _seed_file()
SEEDS = (SEED, _float_file(), _speed_file())
"""Valid files the mutation targets start from (small, so that each execution is fast)."""
_PARTS = [take_apart(s) for s in SEEDS]


def _load(data: bytes | memoryview, verify: bool = True) -> dict[str, np.ndarray]:
    return api.load_buffer(memoryview(data), verify=verify, max_bytes=FUZZ_MAX_BYTES)


def decompress(data: bytes) -> None:
    """Arbitrary bytes as a whole file, through :func:`rans.decompress`."""
    try:
        rans.decompress(data, max_bytes=FUZZ_MAX_BYTES)
    except rans.InvalidArgumentError:
        pass


def random_file(data: bytes) -> None:
    """Arbitrary bytes after a valid magic: the preamble fields and everything behind them."""
    _load(container.MAGIC + data, verify=bool(data[:1]) and data[0] % 2 == 0)


def _xor_edits(draw: Draw, seed: bytes) -> bytes:
    """``seed`` with the rest of ``draw`` applied as XOR edits: each 5 bytes an offset (4) and a mask (1)."""
    mutated = bytearray(seed)
    while draw.pos + 5 <= len(draw.data):
        offset = int.from_bytes(draw.take(4), "little") % len(mutated)
        mutated[offset] ^= draw.take(1)[0] or 1
    return bytes(mutated)


def mutate(data: bytes) -> None:
    """A seed file with XOR edits: a byte picks the seed and ``verify``, then each 5 bytes are an offset (4) and a mask (1).

    Oracle: with ``verify=True`` a file that differs from its seed must not decode.
    """
    draw = Draw(data)
    seed = SEEDS[draw.below(len(SEEDS))]
    verify = draw.below(4) != 0
    mutated = _xor_edits(draw, seed)
    try:
        _load(mutated, verify)
    except rans.RansError:
        return
    assert not verify or mutated == seed, "a changed file decoded with verify=True"


def truncate(data: bytes) -> None:
    """A seed file cut short, or with bytes appended; either must be rejected."""
    draw = Draw(data)
    seed = SEEDS[draw.below(len(SEEDS))]
    cut = draw.below(len(seed) + 1)
    mutated = seed[:cut] + draw.rest() if cut == len(seed) else seed[:cut]
    try:
        _load(mutated)
    except rans.RansError:
        return
    assert mutated == seed, "a truncated or extended file decoded"


def splice(data: bytes) -> None:
    """The front of one seed file joined to the back of another (or of itself) at offsets from ``data``."""
    draw = Draw(data)
    a, b = SEEDS[draw.below(len(SEEDS))], SEEDS[draw.below(len(SEEDS))]
    _load(a[: draw.below(len(a) + 1)] + b[draw.below(len(b) + 1) :], verify=draw.below(2) == 0)


def insert_delete(data: bytes) -> None:
    """Bytes inserted into or deleted from a seed file, several times."""
    draw = Draw(data)
    mutated = bytearray(SEEDS[draw.below(len(SEEDS))])
    verify = draw.below(2) == 0
    while draw.pos < len(data):
        at, count = draw.below(len(mutated) + 1), 1 + draw.below(64)
        if draw.below(2):
            mutated[at:at] = draw.take(count)
        else:
            del mutated[at : at + count]
    _load(bytes(mutated), verify)


HOSTILE: list[Any] = [
    -1, 0, 1, 2, 16, 255, 256, 1 << 31, 1 << 32, (1 << 48) - 1, 1 << 48, (1 << 48) + 1, 1 << 63, 1 << 64, -(1 << 63),
    1.0, 1.5, -0.0, 1e308, float("inf"), float("nan"), True, False, None,
    "", "c", "r", "x", "BF16", "F32", "U8", "BOOL", "\ud800", "\x00",
    [], [0], [1], [3000], [1 << 48], [1 << 24, 1 << 24], [1 << 48, 1 << 48], [1] * 65, [0, 1 << 60], [-1], [1.5], ["c"],
    ["c", "r"], ["r", "r"], [0, 0], ["c", "c", "c", "c"], [16], [1 << 40],
    {}, {"a": "b"}, {"a": 1},
]
"""Values the header edits put into fields: wrong types, out-of-range numbers, near-miss strings and lists."""
KEYS = ["name", "dtype", "shape", "planes", "coded", "crc32", "extra"]


NEST = "@nest"
"""Placeholder a header edit puts in a field, replaced in the JSON text by a deep nest of lists."""


def _edit_document(parts: Parts, draw: Draw) -> None:
    """One edit of the header document, picked and filled in by ``draw`` (earlier edits may have broken it)."""
    document = parts.document
    value = HOSTILE[draw.below(len(HOSTILE))]
    tensors = document.get("tensors")
    op = draw.below(10)
    if op == 8 or not (isinstance(tensors, list) and tensors and all(isinstance(t, dict) for t in tensors)):
        document[("tensors", "metadata", "extra")[draw.below(3)]] = value
        return
    tensor = tensors[draw.below(len(tensors))]
    key = KEYS[draw.below(len(KEYS))]
    shape, planes, coded = (tensor.get(k) for k in ("shape", "planes", "coded"))
    if op == 0:
        tensor[key] = value
    elif op == 1:
        tensor.pop(key, None)
    elif op == 2 and isinstance(shape, list) and shape:
        j = draw.below(len(shape))
        shape[j] = value if draw.below(2) or not isinstance(shape[j], int) else shape[j] * (1 + draw.below(1 << 20))
    elif op == 3 and isinstance(planes, list) and planes:
        planes[draw.below(len(planes))] = value
    elif op == 4 and isinstance(coded, list) and coded and isinstance(coded[0], int):
        coded[0] += draw.below(65) - 32
    elif op == 5:
        tensor["name"] = tensors[draw.below(len(tensors))].get("name")
    elif op == 6:
        tensors.insert(draw.below(len(tensors) + 1), dict(tensors[draw.below(len(tensors))]))
    elif op == 7:
        i, j = draw.below(len(tensors)), draw.below(len(tensors))
        tensors[i], tensors[j] = tensors[j], tensors[i]
    elif op == 9:
        tensor[key] = NEST


def header(data: bytes) -> None:
    """A seed file with edits to its header JSON, preamble or sections, every CRC-32 made right again.

    Header edits: hostile field values, huge shapes, lying lengths, deleted,
    unknown or repeated keys, duplicate names, reordered tensors, deep
    nesting, other valid JSON spellings. Section edits: bytes XORed with the
    tensor CRC-32s fixed, so the coder's own checks are exercised.
    """
    draw = Draw(data)
    source = _PARTS[draw.below(len(_PARTS))]
    parts = Parts(source.encoding, json.loads(json.dumps(source.document)), source.body, source.spans)
    body = bytearray(parts.body)
    for _ in range(draw.below(4)):
        if body:
            body[draw.below(len(body))] ^= draw.below(255) + 1
    parts.body = bytes(body)
    fix_tensor_crcs(parts)
    for _ in range(draw.below(4)):
        _edit_document(parts, draw)
    text = header_text(parts.document, draw)
    if draw.below(4) == 0:  # a key repeated, which json.dumps cannot write
        text = text.replace(b'"name":', b'"name":"x","name":', 1)
    depth = draw.below(5000)
    text = text.replace(f'"{NEST}"'.encode(), b"[" * depth + b"0" + b"]" * depth)
    encoding = draw.below(2)
    stored = zlib.compress(text, 9) if encoding == container.ZLIB else text
    mutated = assemble(text, parts.body, encoding)
    if draw.below(4) == 0:  # a preamble field lies, the preamble CRC right
        version, length = container.VERSION, len(stored)
        which = draw.below(3)
        lie = int.from_bytes(draw.take(8).ljust(8, b"\0"), "little")
        if which == 0:
            version = lie & 0xFFFFFFFF
        elif which == 1:
            encoding = lie & 0xFFFFFFFF
        else:
            length = lie if draw.below(2) else max(0, length + draw.below(17) - 8)
        mutated = preamble(encoding, stored, version, length) + mutated[container.PREAMBLE.size :]
    _load(mutated, verify=draw.below(2) == 0)


def container_json(data: bytes) -> None:
    """Arbitrary bytes as the header JSON (plain or zlib) of a file with valid CRCs, through the container parser.

    The first byte picks the encoding, the second the sections that follow
    (none, or those of a seed file); the rest is the JSON text.
    """
    draw = Draw(data)
    encoding = draw.below(2)
    which = draw.below(len(_PARTS) + 1)
    body = _PARTS[which - 1].body if which else b""
    try:
        container.read_header(memoryview(assemble(draw.rest(), body, encoding)))
    except rans.RansError:
        pass


def section(data: bytes) -> None:
    """Arbitrary bytes as a coded section of 1 to 4096 symbols (the first two bytes pick the count).

    The reference and the CPU decoder must agree: the same symbols, or the
    same error (type, message, chunk).
    """
    n = 1 + int.from_bytes(data[:2].ljust(2, b"\0"), "little") % 4096
    try:
        expected = coder.decode(data[2:], n)
    except rans.RansError as e:
        try:
            cpu.decode(data[2:], n)
        except rans.RansError as got:
            assert (type(got), str(got), got.chunk) == (type(e), str(e), e.chunk), f"cpu: {got!r}, reference: {e!r}"
            raise
        raise AssertionError(f"the CPU decoder accepted a section the reference rejects: {e}") from None
    assert cpu.decode(data[2:], n).tobytes() == expected.tobytes(), "the CPU decoder gave other symbols"


_CLI_DIR = tempfile.mkdtemp(prefix="rans-fuzz-cli-")


def cli(data: bytes) -> None:
    """The command line on a damaged file: a seed file with XOR edits (as :func:`mutate`) given to
    ``verify``, ``info`` and ``decompress``.

    Oracle: each command returns an exit status (no exception escapes); ``verify`` and
    ``decompress`` succeed exactly when the file is its seed unchanged; a failed
    ``decompress`` leaves no output and no temporary file behind.
    """
    from rans import cli as command_line

    draw = Draw(data)
    seed = SEEDS[draw.below(len(SEEDS))]
    mutated = _xor_edits(draw, seed)
    path = os.path.join(_CLI_DIR, "in.rans")
    out = os.path.join(_CLI_DIR, "out.safetensors")
    with open(path, "wb") as f:
        f.write(mutated)
    changed = mutated != seed
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        verified = command_line.main(["verify", "--quiet", path])
        command_line.main(["info", path])
        decompressed = command_line.main(["decompress", "--quiet", "--force", path, "-o", out])
    assert (verified != 0) == changed, f"verify returned {verified} for a file that {'differs from' if changed else 'is'} its seed"
    assert (decompressed != 0) == changed, f"decompress returned {decompressed} for a file that {'differs from' if changed else 'is'} its seed"
    assert decompressed == 0 or not os.path.exists(out), "a failed decompress left its output"
    assert os.listdir(_CLI_DIR) in (["in.rans"], sorted(["in.rans", "out.safetensors"])), os.listdir(_CLI_DIR)
    if os.path.exists(out):
        os.unlink(out)


ENCODERS: dict[str, Callable[[np.ndarray, int, str], bytes]] = {
    "reference": lambda array, chunk, prefer: rans.compress(array, chunk_size=chunk, backend="reference", prefer=prefer),
    "cpu": lambda array, chunk, prefer: rans.compress(array, chunk_size=chunk, backend="cpu", prefer=prefer),
}
"""Every encoder the round trip runs: name -> function of (array, chunk size, writer preference) to file bytes.

Each must give exactly the bytes of ``"reference"``. Register a new backend here."""

DECODERS: dict[str, Callable[[bytes], np.ndarray]] = {
    "reference": lambda data: rans.decompress(data, backend="reference"),
    "cpu": lambda data: rans.decompress(data, backend="cpu"),
}
"""Every decoder the round trip runs: name -> function of file bytes to a NumPy array.

Each must give back the input, bit for bit. Register a new backend here."""

_DTYPE_NAMES = sorted(dtypes.DTYPES)


def _array(draw: Draw) -> np.ndarray:
    """An array of any dtype and shape whose bytes come from ``draw``: random, few distinct, or constant."""
    name = _DTYPE_NAMES[draw.below(len(_DTYPE_NAMES))]
    dtype = dtypes.DTYPES[name]
    shape = tuple(draw.below(17) for _ in range(draw.below(4)))  # at most 4096 elements
    n = math.prod(shape)
    kind = draw.below(3)
    raw = np.frombuffer(draw.take(n * dtype.itemsize).ljust(n * dtype.itemsize, b"\0"), np.uint8)
    if kind == 1:
        raw = raw % (1 + draw.below(8)) + draw.below(256)
    elif kind == 2:
        raw = np.full(raw.size, draw.below(256))
    raw = raw.astype(np.uint8)
    if name == "BOOL":
        raw = raw & 1
    return raw.view(dtype).reshape(shape)


def roundtrip(data: bytes) -> None:
    """An array drawn from ``data``, written for ratio or speed, through every encoder and decoder: same
    bytes, same array."""
    draw = Draw(data)
    chunk = 128 * (1 + draw.below(8))
    array = _array(draw)
    prefer = dtypes.PREFERENCES[draw.below(len(dtypes.PREFERENCES))]
    files = {name: encode(array, chunk, prefer) for name, encode in ENCODERS.items()}
    reference = files["reference"]
    for name, encoded in files.items():
        assert encoded == reference, f"encoder {name!r} differs from the reference"
    for name, decode in DECODERS.items():
        out = decode(reference)
        assert out.dtype == array.dtype and out.shape == array.shape, f"decoder {name!r}: dtype or shape differs"
        assert out.tobytes() == array.tobytes(), f"decoder {name!r}: bytes differ"


SEED_INPUTS: dict[str, list[bytes]] = {
    "container": [bytes([0, i + 1]) + header_text(p.document) for i, p in enumerate(_PARTS)],
}
"""Inputs a coverage-guided engine starts from, where random bytes rarely get far (valid JSON headers)."""

TARGETS: dict[str, Callable[[bytes], None]] = {
    "decompress": decompress,
    "random_file": random_file,
    "mutate": mutate,
    "truncate": truncate,
    "splice": splice,
    "insert_delete": insert_delete,
    "header": header,
    "container": container_json,
    "section": section,
    "roundtrip": roundtrip,
    "cli": cli,
}
"""Every target by name."""


def checked(name: str, counter: list[int] | None = None) -> Callable[[bytes], None]:
    """Target ``name``, with a :class:`rans.RansError` counted as success (anything else escapes)."""
    target = TARGETS[name]

    def run(data: bytes) -> None:
        if counter is not None:
            counter[0] += 1
        try:
            target(data)
        except rans.RansError:
            pass

    return run
