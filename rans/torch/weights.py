"""Compressed weights for torch modules: decoded just in time into one shared scratch buffer.

Every large parameter is coded (or, from a checkpoint, its coded sections
copied as they are) and kept compressed, on the GPU or in host memory. The
module's parameter becomes a view of a scratch buffer shared by all groups
and sized to the largest. Each module that owns such a parameter has its
``forward`` wrapped so that the parameter's group is the one in the scratch
buffer, decoded there when it is not: the first module of a block decodes the
whole block, the block's other modules find it resident. Decoding the next
group overwrites the last, which is how weights are released. (A wrapper, not
a forward pre-hook: a module with hooks leaves torch's fast call path, which
cost about 1 ms of host time a token on a 1 B-parameter Llama, 156 module
calls; ``bench/NOTES.md`` entry T1.)

On the GPU the decode is enqueued on torch's current stream and does not
wait for the GPU: integrity failures (the decoder checks every chunk) are
collected there and raised by :meth:`CompressedWeights.check`, which by
default runs after every forward of the top-level model (``check="forward"``).
The trade-off: a corrupt weight is caught before the forward returns, at the
cost of one wait for the GPU per forward (generation loops wait once per
token anyway; every group's failure counts are read in that one wait, and
only a failure goes through the groups one by one to name it); ``"decode"``
waits after every group, ``"manual"`` never.
Each group's decode is recorded once as a CUDA graph and replayed, which
takes the CPU a few microseconds where a launch from Python takes a fraction
of a millisecond (``graphs=False`` launches instead).

Memory: the compressed weights plus one scratch buffer as large as the
largest group (for a transformer by blocks, usually the embedding or the
output head), plus the parameters below the size threshold.
"""

from __future__ import annotations

import mmap
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .. import codec, container, dtypes
from ..constants import DEFAULT_CHUNK
from ..errors import InvalidArgumentError, RansError
from ..reference.coder import check_chunk
from . import store as stores
from .report import Report, model_report

MIN_BYTES = 1 << 20
"""Parameters of at least this many bytes are compressed, unless told otherwise."""
CHECKS = ("forward", "decode", "manual")
GroupsArg = str | Callable[[str, nn.Module], bool]


@dataclass
class Slot:
    """One compressed parameter: where it is used (``owners``, as module and attribute) and its name."""

    name: str
    owners: list[tuple[nn.Module, str]]
    entry: container.Entry | None = None
    sections: list[Any] = field(default_factory=list)


@dataclass
class Group:
    """Tensors decoded together: their name (the module or block), slots and store."""

    name: str
    slots: list[Slot]
    store: Any = None
    nbytes: int = 0

    @property
    def original_nbytes(self) -> int:
        """Bytes of the decoded tensors."""
        return sum(s.entry.nbytes for s in self.slots)

    @property
    def held(self) -> int:
        """Bytes the compressed tensors hold (on the GPU: with the decoder's tables and descriptors)."""
        return self.store.held


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a format dtype name."""
    return getattr(torch, dtypes.TORCH[name])


def _format_dtype(dtype: torch.dtype) -> str:
    for name, attr in dtypes.TORCH.items():
        if getattr(torch, attr, None) == dtype:
            return name
    raise InvalidArgumentError(f"torch dtype {dtype} has no rans dtype")


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy array with the bits of ``tensor`` (copied to the host), in its rans dtype."""
    name = _format_dtype(tensor.dtype)
    tensor = tensor.detach().to("cpu").contiguous()
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    raw = tensor.view(bits[tensor.element_size()]) if tensor.dtype not in (torch.bool, torch.complex64, torch.complex128) else tensor
    return raw.numpy().view(dtypes.DTYPES[name])


def from_numpy(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor with the bits of ``array`` (of a rans dtype), in the matching torch dtype."""
    name = dtypes.name_of(array.dtype)
    array = np.ascontiguousarray(array)
    flat = torch.from_numpy(array.reshape(-1).view(np.uint8).copy())
    return flat.view(torch_dtype(name)).view(array.shape)


def _owners(model: nn.Module) -> dict[int, tuple[str, nn.Parameter, list[tuple[str, nn.Module, str]]]]:
    """Each distinct parameter: its first name, itself, and every (module name, module, attribute) holding it."""
    found: dict[int, tuple[str, nn.Parameter, list[tuple[str, nn.Module, str]]]] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for attr, param in module._parameters.items():
            if param is None:
                continue
            name = f"{module_name}.{attr}" if module_name else attr
            found.setdefault(id(param), (name, param, []))[2].append((module_name, module, attr))
    return found


def _roots(model: nn.Module, groups: GroupsArg) -> set[str]:
    """Names of the modules that group everything under them (empty for per-module groups)."""
    if callable(groups):
        return {name for name, m in model.named_modules() if groups(name, m)}
    if groups == "module":
        return set()
    if groups == "block":
        roots = set()
        for name, module in model.named_modules():
            if isinstance(module, nn.ModuleList):
                roots.update(f"{name}.{child}" if name else child for child, _ in module.named_children())
        return roots
    raise InvalidArgumentError(f"groups must be 'module', 'block' or a callable, not {groups!r}")


def _group_of(module_name: str, roots: set[str]) -> str:
    """The outermost root at or above ``module_name``, else the module itself."""
    parts = module_name.split(".") if module_name else []
    for i in range(len(parts) + 1):
        prefix = ".".join(parts[:i])
        if prefix in roots:
            return prefix
    return module_name


def plan_groups(model: nn.Module, select: Callable[[str, nn.Parameter], bool], groups: GroupsArg) -> list[Group]:
    """The groups of the parameters ``select`` picks.

    A parameter held by modules of several groups (tied weights, a module
    used in two blocks) merges those groups, so that no module ever runs
    while another group's decode has overwritten its weights.
    """
    roots = _roots(model, groups)
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    slots: list[tuple[str, Slot]] = []
    for name, param, owners in _owners(model).values():
        if not select(name, param):
            continue
        keys = [_group_of(module_name, roots) for module_name, _, _ in owners]
        for key in keys[1:]:
            a, b = find(keys[0]), find(key)
            if a != b:
                parent[b] = a
        slots.append((keys[0], Slot(name, [(m, a) for _, m, a in owners])))
    merged: dict[str, Group] = {}
    for key, slot in slots:
        root = find(key)
        merged.setdefault(root, Group(root or "(model)", [])).slots.append(slot)
    return list(merged.values())


class CompressedWeights:
    """The compressed weights of a model, and the hooks that decode them before each module runs.

    Made by :func:`compress_model` or :func:`load_model`; kept on the model
    as ``model.rans_weights``.

    Attributes
    ----------
    groups : list of Group
        The groups, each decoded as one unit.
    scratch : torch.Tensor
        The ``uint8`` buffer every group decodes into.
    device : torch.device
        Where the compressed weights and the scratch buffer live.
    """

    def __init__(self, model: nn.Module, groups: list[Group], device: torch.device, check: str, graphs: bool = True) -> None:
        if check not in CHECKS:
            raise InvalidArgumentError(f"check must be one of {CHECKS}, not {check!r}")
        self.model = model
        self.groups = groups
        self.device = device
        self.check_mode = check
        self.resident: Group | None = None
        self.decodes = 0
        self.handles: list[Any] = []
        self.streams: dict[int, Any] = {}
        self.scratch = torch.empty(max([g.nbytes for g in groups] + [8]), dtype=torch.uint8, device=device)
        self.target = self._target()
        self.graphs = graphs and device.type == "cuda"
        if self.graphs:
            self._capture()
        self._bind()

    def _capture(self) -> None:
        """Record each group's decode as a CUDA graph; fall back to launches if capture fails."""
        try:
            for group in self.groups:
                group.store.capture(self.target, self._stream)
        except RansError:
            raise
        except Exception as e:  # noqa: BLE001 - any capture failure leaves plain launches, which work
            warnings.warn(f"rans.torch: CUDA graph capture failed ({e}); decoding with plain launches", stacklevel=3)
            for group in self.groups:
                group.store.graph = None
            self.graphs = False

    def _target(self) -> Any:
        if self.device.type != "cuda":
            return self.scratch.numpy()
        from numba import cuda

        return cuda.as_cuda_array(self.scratch)

    def _bind(self) -> None:
        """Point every compressed parameter at its place in the scratch buffer; hook its modules."""
        hooked: set[int] = set()
        for group in self.groups:
            for slot, at in zip(group.slots, group.store.offsets):
                entry = slot.entry
                view = self.scratch[at : at + entry.nbytes].view(torch_dtype(entry.dtype)).view(entry.shape)
                param = nn.Parameter(view, requires_grad=False)
                for module, attr in slot.owners:
                    module._parameters[attr] = param
                    if id(module) not in hooked:
                        hooked.add(id(module))
                        self.handles.append(_Guard(module, self, group))
        if self.check_mode == "forward":
            self.handles.append(self.model.register_forward_hook(lambda *_: self.check()))

    def _stream(self) -> Any:
        """torch's current stream on the device, as a numba stream (cached by handle)."""
        handle = torch.cuda.current_stream(self.device).cuda_stream
        stream = self.streams.get(handle)
        if stream is None:
            from numba import cuda

            stream = self.streams[handle] = cuda.external_stream(handle)
        return stream

    def decode(self, group: Group) -> None:
        """Decode ``group`` into the scratch buffer (enqueued on torch's current stream on the GPU)."""
        self.resident = None
        if self.device.type == "cuda":
            group.store.decode_into(self.target, self._stream(), self.check_mode == "decode")
        else:
            group.store.decode_into(self.target)
        self.resident = group
        self.decodes += 1

    def check(self) -> None:
        """Wait for the decodes enqueued so far; raise :class:`~rans.CorruptDataError` if any failed.

        Examples
        --------
        >>> import torch, rans.torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(512, 512))
        >>> weights = rans.torch.compress_model(model, min_bytes=1024)
        >>> _ = model(torch.zeros(1, 512))
        >>> weights.check()
        """
        if self.device.type != "cuda":
            return
        pending = [group.store for group in self.groups if group.store.pending]
        counts = [status for store in pending for status in store.statuses]
        if counts and bool(torch.stack(counts)[:, 0].any()):
            stream = self._stream()
            for store in pending:
                store.check(stream)
        else:
            if pending and not counts:
                torch.cuda.current_stream(self.device).synchronize()
            for store in pending:
                store.passed()

    def remove_hooks(self) -> None:
        """Unwrap the modules and detach the check: the parameters stay views of the scratch buffer, decoded no more."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def report(self) -> Report:
        """The memory the model's weights hold, per group and in total (see :class:`rans.torch.Report`)."""
        return model_report(self)


class _Guard:
    """Makes ``module`` decode ``group`` before it runs, by wrapping its ``forward`` on the instance.

    ``remove()`` puts back what was there (another library's instance-level
    ``forward``, or nothing: the class's).
    """

    def __init__(self, module: nn.Module, weights: CompressedWeights, group: Group) -> None:
        self.module = module
        self.previous = module.__dict__.get("forward")
        inner = module.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            if weights.resident is not group:
                weights.decode(group)
            return inner(*args, **kwargs)

        self.wrapper = forward
        module.forward = forward

    def remove(self) -> None:
        if self.module.__dict__.get("forward") is not self.wrapper:
            return
        if self.previous is None:
            del self.module.forward
        else:
            self.module.forward = self.previous


def _device(device: Any, fallback: torch.device) -> torch.device:
    if device is None:
        return fallback
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InvalidArgumentError(f"device {device!r} is not a torch device: {e}") from None
    if device.type not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"device must be a CPU or CUDA device, not {device}")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _select(min_bytes: int) -> Callable[[str, nn.Parameter], bool]:
    if not (isinstance(min_bytes, int) and not isinstance(min_bytes, bool) and min_bytes >= 1):
        raise InvalidArgumentError(f"min_bytes must be a positive integer, not {min_bytes!r}")
    return lambda name, param: param.numel() * param.element_size() >= min_bytes


def _build_stores(groups: list[Group], device: torch.device) -> None:
    """Pack each group's sections into its own small file and keep it in its store."""
    allocate = stream = None
    if device.type == "cuda":
        from numba import cuda

        def allocate(nbytes: int) -> Any:
            return cuda.as_cuda_array(torch.empty(nbytes, dtype=torch.uint8, device=device))

        stream = cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)
    for group in groups:
        buf, entries = stores.pack([s.entry for s in group.slots], [s.sections for s in group.slots])
        for slot, entry in zip(group.slots, entries):
            slot.entry, slot.sections = entry, []
        if device.type == "cuda":
            group.store = stores.DeviceStore(buf, entries, allocate, stream)
        else:
            group.store = stores.HostStore(buf, entries)
        group.nbytes = group.store.nbytes
    if stream is not None:
        stream.synchronize()


def _move_rest(model: nn.Module, device: torch.device) -> None:
    """Move the parameters left uncompressed (the compressed ones are unset by now), and the buffers, to ``device``."""
    moved: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for attr, param in module._parameters.items():
            if param is None or param.device == device:
                continue
            if param.device.type == "meta":
                raise InvalidArgumentError(f"parameter {attr!r} of {type(module).__name__} has no data (meta device)")
            if id(param) not in moved:
                moved[id(param)] = nn.Parameter(param.data.to(device), requires_grad=param.requires_grad)
            module._parameters[attr] = moved[id(param)]
        for attr, buffer in module._buffers.items():
            if buffer is None or buffer.device == device:
                continue
            if buffer.device.type == "meta":
                raise InvalidArgumentError(
                    f"buffer {attr!r} of {type(module).__name__} has no data (meta device): build the model with "
                    "rans.torch.empty_weights(), which leaves buffers on the CPU"
                )
            module._buffers[attr] = buffer.to(device)


def compress_model(
    model: nn.Module,
    *,
    device: Any = None,
    min_bytes: int = MIN_BYTES,
    groups: GroupsArg = "module",
    check: str = "forward",
    graphs: bool = True,
    chunk_size: int = DEFAULT_CHUNK,
    workers: int = 1,
) -> CompressedWeights:
    """Compress a model's large parameters in place; they are decoded just in time from then on.

    Examples
    --------
    >>> import torch, rans.torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Embedding(1000, 64), torch.nn.Linear(64, 1000))
    >>> model = model.to(torch.bfloat16)
    >>> x = torch.arange(8)
    >>> expected = model(x)
    >>> weights = rans.torch.compress_model(model, min_bytes=64 * 1024)
    >>> torch.equal(model(x), expected)
    True
    >>> [(g.name, g.original_nbytes) for g in weights.groups]
    [('0', 128000), ('1', 128000)]

    Parameters
    ----------
    model : torch.nn.Module
        The model; its parameters of ``min_bytes`` or more are replaced by
        views of a scratch buffer and their modules get forward pre-hooks.
    device : str or torch.device, optional
        Where the compressed weights live and are decoded: ``"cuda"`` (the
        GPU decoder, ``rans[gpu]``) or ``"cpu"`` (the NumPy codec). By
        default the device of the first parameter compressed. Parameters
        left uncompressed and buffers are moved there too.
    min_bytes : int
        Parameters at least this large are compressed (default 1 MiB).
    groups : {"module", "block"} or callable
        What is decoded together: each module's own parameters
        (``"module"``), each element of every ``nn.ModuleList`` with all its
        submodules (``"block"``: a transformer's layers), or everything under
        the modules for which ``groups(name, module)`` is true. Modules that
        share a parameter across groups get their groups merged. The scratch
        buffer is as large as the largest group.
    check : {"forward", "decode", "manual"}
        When GPU decodes are checked for integrity, which waits for the GPU:
        after each forward of ``model`` (default: a corrupt weight raises
        before the output is returned), after every decode (one wait per
        group: slower), or only when :meth:`CompressedWeights.check` is
        called (outputs may be garbage until then).
    graphs : bool
        On the GPU, record each group's decode once as a CUDA graph and
        replay it (default): a replay costs microseconds of CPU time, a
        launch from Python a fraction of a millisecond. Each group is decoded
        and checked once while recording.
    chunk_size, workers : int
        As in :func:`rans.compress`.

    Returns
    -------
    CompressedWeights
        Also stored as ``model.rans_weights``.
    """
    check_chunk(chunk_size)
    planned = plan_groups(model, _select(min_bytes), groups)
    first = next((s.owners[0] for g in planned for s in g.slots), None)
    fallback = first[0]._parameters[first[1]].device if first else torch.device("cpu")
    device = _device(device, fallback)
    for group in planned:
        for slot in group.slots:
            module, attr = slot.owners[0]
            array = to_numpy(module._parameters[attr])
            slot.entry, slot.sections = codec.encode_tensor(array, slot.name, chunk_size, workers)
            for owner, name in slot.owners:
                owner._parameters[name] = None
    return _finish(model, planned, device, check, graphs)


def _finish(model: nn.Module, planned: list[Group], device: torch.device, check: str, graphs: bool) -> CompressedWeights:
    _build_stores(planned, device)
    _move_rest(model, device)
    weights = CompressedWeights(model, planned, device, check, graphs)
    model.rans_weights = weights
    return weights


def load_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    device: Any = None,
    min_bytes: int = MIN_BYTES,
    groups: GroupsArg = "module",
    check: str = "forward",
    graphs: bool = True,
    strict: bool = True,
    verify: bool = True,
) -> CompressedWeights:
    """Fill a model from a compressed checkpoint, keeping its large tensors compressed.

    The coded sections of the large parameters are copied as they are from
    the file (memory-mapped) to their stores, never decoded in full; small
    parameters and buffers in the file are decoded and copied in.

    Examples
    --------
    >>> import os, tempfile, torch, rans, rans.torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> source = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
    >>> path = os.path.join(tempfile.mkdtemp(), "model.rans")
    >>> rans.save_file({k: v.numpy() for k, v in source.state_dict().items()}, path)
    >>> with rans.torch.empty_weights():
    ...     model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
    >>> weights = rans.torch.load_model(model, path, device="cpu", min_bytes=4096)
    >>> x = torch.randn(2, 256)
    >>> torch.equal(model(x), source(x))
    True

    Parameters
    ----------
    model : torch.nn.Module
        The model to fill, built on the CPU or inside :func:`empty_weights`
        (parameters on the meta device). Parameters are matched to the
        file's tensors by name (``model.named_parameters()``, tied names
        included); dtypes and shapes must match.
    path : str or os.PathLike
        A file written by :func:`rans.save_file`.
    device, min_bytes, groups, check, graphs
        As in :func:`compress_model`; ``device`` defaults to ``"cuda"`` when
        a GPU is available, else ``"cpu"``.
    strict : bool
        Raise :class:`~rans.InvalidArgumentError` when a parameter is not in
        the file or the file has a tensor the model lacks (default).
    verify : bool
        Check the CRC-32 of every tensor's sections (default).

    Returns
    -------
    CompressedWeights
        Also stored as ``model.rans_weights``.
    """
    device = _device(device, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    select = _select(min_bytes)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            planned = _load(model, view, device, select, groups, strict, verify)
        finally:
            view.release()
    return _finish(model, planned, device, check, graphs)


def _load(
    model: nn.Module, buf: memoryview, device: torch.device, select: Any, groups: GroupsArg, strict: bool, verify: bool
) -> list[Group]:
    header = container.read_header(buf)
    entries = {e.name: e for e in header.entries}
    used: set[str] = set()
    owners = _owners(model)
    names: dict[int, str] = {}
    for key, (name, param, holders) in owners.items():
        aliases = [f"{m}.{a}" if m else a for m, _, a in holders]
        found = next((a for a in aliases if a in entries), None)
        used.update(a for a in aliases if a in entries)
        if found is None:
            if strict:
                raise InvalidArgumentError(f"parameter {name!r} is not in the file", tensor=name)
            continue
        _check_match(entries[found], param)
        names[key] = found
    for module_name, module in model.named_modules():
        for attr, buffer in module._buffers.items():
            name = f"{module_name}.{attr}" if module_name else attr
            if name in entries and buffer is not None:
                _check_match(entries[name], buffer)
                if verify:
                    codec.verify_sections(entries[name], buf)
                module._buffers[attr] = from_numpy(codec.decode_tensor(entries[name], buf, False)).to(device)
                used.add(name)
    if strict and set(entries) - used:
        extra = sorted(set(entries) - used)
        raise InvalidArgumentError(f"the file has tensors the model lacks: {extra[:5]}", tensor=extra[0])
    planned = plan_groups(model, lambda name, param: id(param) in names and select(name, param), groups)
    big = {id(s.owners[0][0]._parameters[s.owners[0][1]]) for g in planned for s in g.slots}
    for key, (name, param, holders) in owners.items():
        if key not in names:
            continue
        entry = entries[names[key]]
        if verify:
            codec.verify_sections(entry, buf)
        if key in big:
            continue
        value = nn.Parameter(from_numpy(codec.decode_tensor(entry, buf, False)).to(device), requires_grad=False)
        for _, module, attr in holders:
            module._parameters[attr] = value
    for group in planned:
        for slot in group.slots:
            module, attr = slot.owners[0]
            entry = entries[names[id(module._parameters[attr])]]
            slot.entry = stores.copy_entry(entry, slot.name)
            slot.sections = [bytes(s) for s in stores.sections_of(entry, buf)]
            for owner, name in slot.owners:
                owner._parameters[name] = None
    return planned


def _check_match(entry: container.Entry, tensor: torch.Tensor) -> None:
    if torch_dtype(entry.dtype) != tensor.dtype or tuple(entry.shape) != tuple(tensor.shape):
        raise InvalidArgumentError(
            f"the file holds {entry.dtype} {list(entry.shape)}, the model {tensor.dtype} {list(tensor.shape)}",
            tensor=entry.name,
        )


class empty_weights:
    """Build modules whose parameters have no data (meta device), ready for :func:`load_model`.

    Buffers (such as rotary embedding tables computed at construction)
    stay on the CPU with their values.

    Examples
    --------
    >>> import torch, rans.torch
    >>> with rans.torch.empty_weights():
    ...     layer = torch.nn.Linear(4096, 4096)
    >>> layer.weight.device.type
    'meta'
    """

    def __enter__(self) -> "empty_weights":
        self.original = nn.Module.register_parameter
        original = self.original

        def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
            original(module, name, param)
            if param is not None and param.device.type != "meta":
                module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

        nn.Module.register_parameter = register
        return self

    def __exit__(self, *exc: Any) -> None:
        nn.Module.register_parameter = self.original
