"""Memory held by weights, compressed against uncompressed: per module or block, and in total."""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import container, dtypes
from ..constants import GROUP
from ..errors import InvalidArgumentError
from ..reference import coder
from .store import OUT_ALIGN

TABLE_BYTES = 4 * 4096
"""Bytes of the GPU decoder's table for each coded plane."""
CHUNK_BYTES = 5 * 8
"""Bytes of the GPU decoder's descriptor for each chunk."""
BY = ("tensor", "module", "block")


@dataclass
class Row:
    """One line of a report: a module, block or tensor, its tensor count and bytes before and after."""

    name: str
    tensors: int
    original: int
    held: int

    @property
    def ratio(self) -> float:
        """``original / held`` (1.0 for an empty row)."""
        return self.original / self.held if self.held else 1.0


@dataclass
class Report:
    """Bytes the weights hold, per row, with the scratch buffer the decode needs.

    ``original`` counts the tensors uncompressed; ``held`` what is kept
    instead (compressed tensors, and tensors left as they are). ``scratch``
    is the shared decode buffer, counted in :attr:`total_held`.
    """

    rows: list[Row] = field(default_factory=list)
    scratch: int = 0
    device: str = "cpu"

    @property
    def total_original(self) -> int:
        """Bytes of every tensor uncompressed."""
        return sum(r.original for r in self.rows)

    @property
    def total_held(self) -> int:
        """Bytes held in all: the rows and the scratch buffer."""
        return sum(r.held for r in self.rows) + self.scratch

    def table(self) -> str:
        """The report as an aligned text table, totals last.

        Examples
        --------
        >>> print(Report([Row("layer", 1, 3000, 2000)], scratch=500).table())
        name       tensors  uncompressed   held  ratio
        layer            1         3,000  2,000  1.500
        (scratch)        -             -    500      -
        total            1         3,000  2,500  1.200
        """
        lines = [(r.name, str(r.tensors), f"{r.original:,}", f"{r.held:,}", f"{r.ratio:.3f}") for r in self.rows]
        lines.append(("(scratch)", "-", "-", f"{self.scratch:,}", "-"))
        total = self.total_held
        ratio = self.total_original / total if total else 1.0
        tensors = sum(r.tensors for r in self.rows)
        lines.append(("total", str(tensors), f"{self.total_original:,}", f"{total:,}", f"{ratio:.3f}"))
        head = ("name", "tensors", "uncompressed", "held", "ratio")
        widths = [max(len(line[i]) for line in [head, *lines]) for i in range(5)]
        out = []
        for line in [head, *lines]:
            cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
            out.append("  ".join(cells).rstrip())
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (for JSON)."""
        return {
            "device": self.device,
            "rows": [asdict(r) | {"ratio": r.ratio} for r in self.rows],
            "scratch": self.scratch,
            "total_original": self.total_original,
            "total_held": self.total_held,
        }


def model_report(weights: Any) -> Report:
    """The report of a model's :class:`~rans.torch.CompressedWeights`: one row per group, one for the rest."""
    report = Report(scratch=weights.scratch.numel(), device=str(weights.device))
    compressed = set()
    for group in weights.groups:
        report.rows.append(Row(group.name, len(group.slots), group.original_nbytes, group.held))
        compressed.update(id(s.owners[0][0]._parameters[s.owners[0][1]]) for s in group.slots)
    rest = {id(p): p for p in weights.model.parameters() if id(p) not in compressed}
    nbytes = sum(p.numel() * p.element_size() for p in rest.values())
    report.rows.append(Row("(uncompressed parameters)", len(rest), nbytes, nbytes))
    return report


def _row_name(name: str, by: str) -> str:
    if by == "tensor":
        return name
    if by == "module":
        return name.rpartition(".")[0] or name
    match = re.match(r"^(.*?\.\d+)(\.|$)", name)
    return match.group(1) if match else name.rpartition(".")[0] or name


def file_report(path: str | os.PathLike, *, by: str = "module", min_bytes: int = 1 << 20) -> Report:
    """What a checkpoint's tensors would hold on the GPU if loaded with :func:`~rans.torch.load_model`.

    Reads the header only. Tensors of ``min_bytes`` or more count their
    coded sections plus the GPU decoder's tables and chunk descriptors;
    smaller ones their decoded size. ``scratch`` is the largest row's decoded
    size, as the groups would be the rows (``by="module"`` or ``"block"``:
    names up to the first numeric component, ``model.layers.3``).

    Examples
    --------
    >>> import os, tempfile, numpy as np, rans
    >>> from rans.torch.report import file_report
    >>> path = os.path.join(tempfile.mkdtemp(), "m.rans")
    >>> w = np.random.default_rng(0).normal(0, 1, (512, 512)).astype(np.float16)
    >>> rans.save_file({"layers.0.fc.weight": w, "layers.0.fc.bias": np.zeros(512, np.float16)}, path)
    >>> report = file_report(path, by="block", min_bytes=4096)
    >>> [(r.name, r.tensors, r.original) for r in report.rows]
    [('layers.0', 2, 525312)]
    >>> report.rows[0].held < report.rows[0].original
    True
    """
    if by not in BY:
        raise InvalidArgumentError(f"by must be one of {BY}, not {by!r}")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            rows, largest = _rows(view, by, min_bytes)
        finally:
            view.release()
    return Report(list(rows.values()), scratch=max(largest.values(), default=0), device="cuda")


def _rows(buf: memoryview, by: str, min_bytes: int) -> tuple[dict[str, Row], dict[str, int]]:
    """The report's rows, and each row's decoded bytes as laid out in the scratch buffer."""
    rows: dict[str, Row] = {}
    largest: dict[str, int] = {}
    for entry in container.read_header(buf).entries:
        name = _row_name(entry.name, by)
        row = rows.setdefault(name, Row(name, 0, 0, 0))
        row.tensors += 1
        row.original += entry.nbytes
        if entry.nbytes >= min_bytes:
            row.held += held_on_gpu(entry, buf)
            largest[name] = largest.get(name, 0) + -(-entry.nbytes // OUT_ALIGN) * OUT_ALIGN
        else:
            row.held += entry.nbytes
    return rows, largest


def held_on_gpu(entry: container.Entry, buf: memoryview) -> int:
    """Bytes a compressed tensor holds on the GPU: its sections, its coded planes' tables and chunk descriptors."""
    held = sum(p.length for p in entry.sections)
    symbols = dtypes.plane_length(entry.dtype, entry.split, entry.size)
    for plane in entry.planes:
        if plane.mode == "coded":
            _, _, groups = coder.HEADER.unpack_from(buf, plane.offset)
            held += TABLE_BYTES + CHUNK_BYTES * -(-symbols // max(groups * GROUP, 1))
    return held
