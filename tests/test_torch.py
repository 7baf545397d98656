"""rans.torch: compressed weights decoded just in time, against the uncompressed model.

On the CPU (the NumPy codec) everything runs here; tests marked ``gpu``
repeat the main ones with the weights compressed on a CUDA GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import rans  # noqa: E402
import rans.torch as rt  # noqa: E402
from rans.torch.__main__ import main as cli  # noqa: E402
from rans.torch.weights import to_numpy  # noqa: E402

FEW = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))


def seeded(seed: int = 0) -> None:
    torch.manual_seed(seed)


class Net(nn.Module):
    """An embedding, a list of blocks (each two Linears and a LayerNorm), a head."""

    def __init__(self, vocab: int = 300, width: int = 64, blocks: int = 3, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width, dtype=dtype)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, 2 * width, dtype=dtype), nn.GELU(), nn.Linear(2 * width, width, dtype=dtype), nn.LayerNorm(width, dtype=dtype))
            for _ in range(blocks)
        )
        self.head = nn.Linear(width, vocab, bias=False, dtype=dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)


def gaussian_(model: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((torch.randn(p.shape, generator=generator) * 0.02).to(p.dtype))
    return model


def bits(t: torch.Tensor) -> np.ndarray:
    return to_numpy(t).reshape(-1).view(np.uint8)


def state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: to_numpy(v) for k, v in model.state_dict().items()}


IDS = torch.arange(40).reshape(4, 10) % 300


# --------------------------------------------------------------------------- compress_model


@pytest.mark.parametrize("groups", ["module", "block"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_outputs_are_bit_identical(groups: str, dtype: torch.dtype) -> None:
    model = gaussian_(Net(dtype=dtype)).eval()
    with torch.no_grad():
        expected = model(IDS)
    weights = rt.compress_model(model, min_bytes=4096, groups=groups)
    with torch.no_grad():
        got = model(IDS)
    assert (bits(got) == bits(expected)).all()
    assert model.rans_weights is weights


def test_module_groups_decode_each_module_once_per_forward() -> None:
    model = gaussian_(Net()).eval()
    weights = rt.compress_model(model, min_bytes=4096, groups="module")
    names = [g.name for g in weights.groups]
    assert names == ["embed", "blocks.0.0", "blocks.0.2", "blocks.1.0", "blocks.1.2", "blocks.2.0", "blocks.2.2", "head"]
    model(IDS)
    assert weights.decodes == len(names)


def test_block_groups_decode_each_block_once_per_forward() -> None:
    model = gaussian_(Net()).eval()
    weights = rt.compress_model(model, min_bytes=4096, groups="block")
    assert [g.name for g in weights.groups] == ["embed", "blocks.0", "blocks.1", "blocks.2", "head"]
    assert [len(g.slots) for g in weights.groups] == [1, 2, 2, 2, 1]
    model(IDS)
    assert weights.decodes == 5
    largest = max(g.nbytes for g in weights.groups)
    assert weights.scratch.numel() == largest
    assert largest >= max(g.original_nbytes for g in weights.groups)


def test_callable_groups_and_resident_group_is_not_decoded_again() -> None:
    model = gaussian_(Net()).eval()
    weights = rt.compress_model(model, min_bytes=4096, groups=lambda name, m: name == "blocks")
    assert [g.name for g in weights.groups] == ["embed", "blocks", "head"]
    block = model.blocks[1]
    h = torch.randn(2, 64).to(torch.bfloat16)
    block(h)
    decodes = weights.decodes
    block(h)
    model.blocks[2](h)
    assert weights.decodes == decodes


def test_threshold_leaves_small_parameters_alone() -> None:
    model = gaussian_(Net()).eval()
    small = model.blocks[0][3].weight
    weights = rt.compress_model(model, min_bytes=64 * 128 * 2)
    assert model.blocks[0][3].weight is small
    assert model.blocks[0][0].bias.untyped_storage().data_ptr() != weights.scratch.untyped_storage().data_ptr()
    assert model.blocks[0][0].weight.untyped_storage().data_ptr() == weights.scratch.untyped_storage().data_ptr()
    compressed = {s.name for g in weights.groups for s in g.slots}
    assert compressed == {"embed.weight", "head.weight"} | {f"blocks.{i}.{j}.weight" for i in range(3) for j in (0, 2)}


def test_removed_hooks_decode_no_more() -> None:
    model = gaussian_(Net()).eval()
    weights = rt.compress_model(model, min_bytes=4096, groups="block")
    model(IDS)
    decodes = weights.decodes
    weights.remove_hooks()
    model(IDS)
    assert weights.decodes == decodes and weights.handles == []


def test_modules_keep_torchs_fast_path_and_get_their_forward_back() -> None:
    model = gaussian_(Net()).eval()
    head = model.head
    patched = head.forward  # an instance-level forward another library put there
    head.forward = lambda x: patched(x)
    before = head.forward
    with torch.no_grad():
        expected = model(IDS)
    weights = rt.compress_model(model, min_bytes=4096, groups="block")
    owners = {id(m): m for g in weights.groups for s in g.slots for m, _ in s.owners}
    assert owners and all(not m._forward_pre_hooks and "forward" in m.__dict__ for m in owners.values())
    with torch.no_grad():
        assert torch.equal(model(IDS), expected)
    weights.remove_hooks()
    assert head.forward is before
    assert all("forward" not in m.__dict__ for m in owners.values() if m is not head)


def test_nothing_above_the_threshold() -> None:
    model = gaussian_(Net()).eval()
    with torch.no_grad():
        expected = model(IDS)
    weights = rt.compress_model(model, min_bytes=1 << 30)
    assert weights.groups == []
    assert torch.equal(model(IDS), expected)


def test_tied_weights_are_stored_once() -> None:
    model = gaussian_(Net()).eval()
    model.head.weight = model.embed.weight
    with torch.no_grad():
        expected = model(IDS)
    weights = rt.compress_model(model, min_bytes=4096, groups="block")
    tied = [g for g in weights.groups if g.name == "embed"]
    assert len(tied) == 1 and len(tied[0].slots) == 1 and len(tied[0].slots[0].owners) == 2
    assert all(g.name != "head" for g in weights.groups)
    assert model.head.weight is model.embed.weight
    with torch.no_grad():
        assert torch.equal(model(IDS), expected)


def test_a_module_shared_by_two_blocks_merges_them() -> None:
    model = gaussian_(Net()).eval()
    shared = nn.Linear(64, 64, dtype=torch.bfloat16)
    model.blocks[0].append(shared)
    model.blocks[2].append(shared)
    with torch.no_grad():
        expected = model(IDS)
    weights = rt.compress_model(model, min_bytes=4096, groups="block")
    assert [g.name for g in weights.groups] == ["embed", "blocks.0", "blocks.1", "head"]
    assert len(weights.groups[1].slots) == 5
    with torch.no_grad():
        assert torch.equal(model(IDS), expected)


@FEW
@given(
    dtype=st.sampled_from([torch.bfloat16, torch.float16, torch.float32, torch.int8]),
    shapes=st.lists(st.tuples(st.integers(1, 70), st.integers(1, 90)), min_size=1, max_size=4),
    threshold=st.sampled_from([1, 100, 4000]),
    seed=st.integers(0, 2**16),
)
def test_decoded_parameters_are_the_originals(dtype: torch.dtype, shapes: list, threshold: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    model = nn.ModuleList(nn.Module() for _ in shapes)
    originals = []
    for module, shape in zip(model, shapes):
        if dtype == torch.int8:
            value = torch.randint(-128, 128, shape, generator=generator, dtype=torch.int8)
        else:
            value = (torch.randn(shape, generator=generator) * 0.02).to(dtype)
        module.w = nn.Parameter(value, requires_grad=False)
        originals.append(bits(value).copy())
    weights = rt.compress_model(model, min_bytes=threshold, groups="module")
    for group in weights.groups:
        weights.decode(group)
        for slot in group.slots:
            module, attr = slot.owners[0]
            i = int(slot.name.split(".")[0])
            assert (bits(getattr(module, attr)) == originals[i]).all()
    assert sum(len(g.slots) for g in weights.groups) == sum(1 for o in originals if o.size >= threshold)


def test_corrupt_weights_raise_naming_the_tensor() -> None:
    model = gaussian_(Net()).eval()
    weights = rt.compress_model(model, min_bytes=4096)
    store = weights.groups[1].store
    damaged = bytearray(store.buf)
    coded = next(p for p in store.entries[0].planes if p.mode == "coded")
    damaged[coded.offset + coded.length - 3] ^= 0x5A
    store.buf = memoryview(bytes(damaged))
    with pytest.raises(rans.CorruptDataError) as caught:
        model(IDS)
    assert caught.value.tensor == "blocks.0.0.weight"


def test_bad_arguments() -> None:
    for kwargs in ({"groups": "layer"}, {"check": "never"}, {"min_bytes": 0}, {"device": "mps"}, {"device": "nowhere"},
                   {"chunk_size": 100}):
        with pytest.raises(rans.InvalidArgumentError):
            rt.compress_model(gaussian_(Net()), min_bytes=kwargs.pop("min_bytes", 4096), **kwargs)


def test_import_rans_does_not_import_torch() -> None:
    code = "import sys, rans; rans.compress(b'x' * 10 if False else __import__('numpy').zeros(3)); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- load_model


def test_load_from_a_checkpoint(tmp_path) -> None:
    source = gaussian_(Net()).eval()
    path = tmp_path / "net.rans"
    rans.save_file(state(source), path)
    with rt.empty_weights():
        model = Net().eval()
    assert model.head.weight.device.type == "meta"
    weights = rt.load_model(model, path, device="cpu", min_bytes=4096, groups="block")
    with torch.no_grad():
        assert (bits(model(IDS)) == bits(source(IDS))).all()
    assert model.blocks[0][3].weight.device.type == "cpu"
    assert torch.equal(model.blocks[0][3].weight, source.blocks[0][3].weight)
    held = {g.name: g.held for g in weights.groups}
    with open(path, "rb") as f:
        header = rans.container.read_header(memoryview(f.read()))
    for group in weights.groups:
        coded = sum(p.length for s in group.slots for p in next(e for e in header.entries if e.name == s.name).sections)
        assert coded <= held[group.name] < coded + 4096


def test_load_keeps_tied_names_and_cpu_built_models(tmp_path) -> None:
    source = gaussian_(Net()).eval()
    source.head.weight = source.embed.weight
    path = tmp_path / "tied.rans"
    rans.save_file({k: v for k, v in state(source).items() if k != "head.weight"}, path)
    model = Net().eval()
    model.head.weight = model.embed.weight
    rt.load_model(model, path, device="cpu", min_bytes=4096)
    with torch.no_grad():
        assert torch.equal(model(IDS), source(IDS))


def test_load_errors(tmp_path) -> None:
    source = gaussian_(Net())
    tensors = state(source)
    path = tmp_path / "m.rans"
    rans.save_file({k: v for k, v in tensors.items() if k != "blocks.1.0.weight"}, path)
    with pytest.raises(rans.InvalidArgumentError) as caught:
        rt.load_model(Net(), path, device="cpu")
    assert caught.value.tensor == "blocks.1.0.weight"
    rt.load_model(Net(), path, device="cpu", strict=False)
    rans.save_file({**tensors, "extra": np.zeros(3, np.float32)}, path)
    with pytest.raises(rans.InvalidArgumentError, match="lacks"):
        rt.load_model(Net(), path, device="cpu")
    rans.save_file(tensors, path)
    with pytest.raises(rans.InvalidArgumentError) as caught:
        rt.load_model(Net(dtype=torch.float32), path, device="cpu")
    assert caught.value.tensor == "embed.weight"
    rans.save_file({**tensors, "head.weight": tensors["head.weight"][:10]}, path)
    with pytest.raises(rans.InvalidArgumentError) as caught:
        rt.load_model(Net(), path, device="cpu")
    assert caught.value.tensor == "head.weight"


def test_load_checks_crcs(tmp_path) -> None:
    path = tmp_path / "m.rans"
    rans.save_file(state(gaussian_(Net())), path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(rans.ChecksumError):
        rt.load_model(Net(), path, device="cpu", min_bytes=4096)


def test_meta_buffers_are_refused(tmp_path) -> None:
    path = tmp_path / "m.rans"
    rans.save_file(state(gaussian_(Net())), path)
    with torch.device("meta"):
        model = Net()
        model.register_buffer("table", torch.zeros(4), persistent=False)
    with pytest.raises(rans.InvalidArgumentError, match="buffer 'table'"):
        rt.load_model(model, path, device="cpu", min_bytes=4096)


# --------------------------------------------------------------------------- reports


def test_model_report_numbers() -> None:
    model = gaussian_(Net()).eval()
    original = sum(p.numel() * p.element_size() for p in model.parameters())
    weights = rt.compress_model(model, min_bytes=4096, groups="block")
    report = weights.report()
    assert report.total_original == original
    assert report.scratch == weights.scratch.numel()
    assert report.total_held == sum(g.held for g in weights.groups) + report.scratch + report.rows[-1].held
    for row, group in zip(report.rows, weights.groups):
        assert (row.name, row.original, row.held) == (group.name, group.original_nbytes, len(group.store.buf))
        assert 1.4 < row.ratio < 1.55
    assert report.rows[-1].name == "(uncompressed parameters)" and report.rows[-1].ratio == 1.0
    assert report.table().splitlines()[-1].startswith("total")
    assert report.to_dict()["total_held"] == report.total_held


def test_file_report_and_cli(tmp_path, capsys) -> None:
    path = tmp_path / "net.rans"
    rans.save_file(state(gaussian_(Net())), path)
    report = rt.file_report(path, by="block", min_bytes=4096)
    assert [r.name for r in report.rows] == ["embed", "blocks.0", "blocks.1", "blocks.2", "head"]
    assert [r.tensors for r in report.rows] == [1, 6, 6, 6, 1]
    assert report.total_original == sum(v.nbytes for v in state(Net()).values())
    assert report.scratch == max(-(-(64 * 128 * 2) // 256) * 256 * 2, 300 * 64 * 2)
    by_tensor = rt.file_report(path, by="tensor", min_bytes=4096)
    small = [r for r in by_tensor.rows if r.original < 4096]
    assert small and all(r.held == r.original for r in small)
    entries = {e.name: e for e in rans.container.read_header(memoryview(path.read_bytes())).entries}
    for row in by_tensor.rows:
        entry = entries[row.name]
        if row.original >= 4096:
            coded = [p for p in entry.planes if p.mode == "coded"]
            tables = 4 * 4096 * len(coded) + 40 * len(coded) * -(-entry.size // 32768)
            assert row.held == sum(p.length for p in entry.sections) + tables
    assert sum(r.held for r in by_tensor.rows) == sum(r.held for r in report.rows)
    assert cli(["report", str(path), "--by", "module", "--min-bytes", "4096"]) == 0
    out = capsys.readouterr().out
    assert "blocks.1.0" in out and out.splitlines()[-1].startswith("total")
    assert cli(["report", str(path), "--json"]) == 0
    assert '"total_held"' in capsys.readouterr().out
    assert cli(["report", str(tmp_path / "missing.rans")]) == 1
    with pytest.raises(rans.InvalidArgumentError):
        rt.file_report(path, by="layer")


def test_cli_as_a_module(tmp_path) -> None:
    path = tmp_path / "net.rans"
    rans.save_file(state(gaussian_(Net())), path)
    out = subprocess.run([sys.executable, "-m", "rans.torch", "report", str(path)], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr
    assert "total" in out.stdout


# --------------------------------------------------------------------------- transformers


def tiny_llama(seed: int = 0):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    seeded(seed)
    return config, transformers.LlamaForCausalLM(config).to(torch.bfloat16).eval()


@torch.no_grad()
def greedy(model: nn.Module, prompt: torch.Tensor, n: int) -> torch.Tensor:
    return model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                          do_sample=False, pad_token_id=0)


def llama_from_checkpoint(tmp_path, device: str, prompt_shape: tuple[int, int]):
    """A tiny Llama on ``device``, a prompt, and the same model built empty and filled from its
    compressed checkpoint (blocks kept compressed): ``source, prompt, model, weights``."""
    transformers = pytest.importorskip("transformers")
    config, source = tiny_llama()
    source = source.to(device)
    prompt = torch.randint(0, 256, prompt_shape, generator=torch.Generator().manual_seed(1)).to(device)
    path = tmp_path / "llama.rans"
    rans.save_file(state(source), path)
    with rt.empty_weights():
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16).eval()
    weights = rt.load_model(model, path, device=device, min_bytes=8192, groups="block")
    return source, prompt, model, weights


def test_llama_generates_the_same_tokens(tmp_path) -> None:
    source, prompt, model, weights = llama_from_checkpoint(tmp_path, "cpu", (2, 6))
    with torch.no_grad():
        logits = source(prompt).logits
    expected = greedy(source, prompt, 6)
    assert [g.name for g in weights.groups] == ["model.embed_tokens", "model.layers.0", "model.layers.1", "lm_head"]
    with torch.no_grad():
        assert (bits(model(prompt).logits) == bits(logits)).all()
    assert torch.equal(greedy(model, prompt, 6), expected)


def test_llama_compressed_in_place_by_module() -> None:
    _, model = tiny_llama(seed=3)
    prompt = torch.randint(0, 256, (1, 5), generator=torch.Generator().manual_seed(2))
    expected = greedy(model, prompt, 5)
    weights = rt.compress_model(model, min_bytes=4096, groups="module")
    assert len(weights.groups) == 2 + 7 * 2
    assert torch.equal(greedy(model, prompt, 5), expected)


# --------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("check", ["forward", "decode", "manual"])
def test_gpu_outputs_are_bit_identical(check: str, graphs: bool) -> None:
    model = gaussian_(Net(width=256, vocab=3000)).eval().cuda()
    ids = IDS.cuda()
    with torch.no_grad():
        expected = model(ids)
    before = torch.cuda.memory_allocated()
    weights = rt.compress_model(model, groups="block", min_bytes=4096, check=check, graphs=graphs)
    assert weights.device.type == "cuda" and weights.scratch.is_cuda and weights.graphs == graphs
    assert torch.cuda.memory_allocated() < before
    with torch.no_grad():
        got = model(ids)
    weights.check()
    assert torch.equal(got, expected)


@pytest.mark.gpu
def test_gpu_corrupt_weights_raise_at_the_end_of_the_forward() -> None:
    model = gaussian_(Net(width=256, vocab=3000)).eval().cuda()
    weights = rt.compress_model(model, groups="block", min_bytes=4096)
    batch = weights.groups[1].store.batch
    coded = next(p for p in batch.entries[0].planes if p.mode == "coded")
    word = batch.buffer[coded.offset + coded.length - 2 : coded.offset + coded.length]
    word.copy_to_device(np.array([0x5A, 0xA5], np.uint8))
    with pytest.raises(rans.CorruptDataError) as caught, torch.no_grad():
        model(IDS.cuda())
    assert caught.value.tensor == "blocks.0.0.weight"
    assert weights.graphs


@pytest.mark.gpu
def test_gpu_llama_from_a_checkpoint(tmp_path) -> None:
    source, prompt, model, weights = llama_from_checkpoint(tmp_path, "cuda", (3, 7))
    expected = greedy(source, prompt, 8)
    assert torch.equal(greedy(model, prompt, 8), expected)
    report = weights.report()
    held = sum(g.store.batch.device_nbytes for g in weights.groups)
    assert report.total_held == held + report.scratch + report.rows[-1].held
    assert all(g.held > sum(p.length for s in g.slots for p in s.entry.sections) for g in weights.groups)
