"""Just-in-time decoded weights against plain bf16 weights, on a Llama-architecture model.

Builds a ``LlamaForCausalLM`` from a ``LlamaConfig`` (no hub access) in bf16
with every matrix drawn N(0, 0.02), saves it with ``rans.save_file``, and
loads a second copy with ``rans.torch.load_model`` (weights compressed on
the device, decoded per group into one scratch buffer). Both models run the
same greedy generations, measured in the same process:

- weight memory: ``torch.cuda.memory_allocated`` after building each model
  (the compressed side: compressed groups, scratch and the small parameters;
  the GPU decoder's tables and chunk descriptors are numba allocations, so
  they are added from ``Batch.device_nbytes``);
- the generated tokens, which must be identical, and the logits of one
  forward pass, which must be bit-identical;
- tokens per second at each batch size (``model.generate``, greedy,
  ``--new-tokens`` new tokens after a prompt of ``--prompt`` tokens, median
  of ``--repeat`` runs after a warm-up; both models stay loaded and take
  turns, run by run, so that other work on the host slows both alike);
- decode time of each group (CUDA events, median of 20).

``--chunk 32768 8192`` repeats the compressed side for each chunk size (smaller
chunks: more parallel decode, slightly lower ratio); the top-level figures
of the JSON are the first run's, ``runs`` holds them all.

``--small`` runs a tiny config on the CPU (the NumPy codec), to check the
script end to end without a GPU. Prints tables and writes
``bench/results/torch_model.json`` (``--out``) with the GPU name, driver and
versions.

Usage::

    python3 bench/torch_model.py                   # 1.1 B parameters on the GPU
    python3 bench/torch_model.py --small           # tiny, on the CPU
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import rans  # noqa: E402
import rans.torch as rt  # noqa: E402
from rans import api, codec, container  # noqa: E402
from rans.constants import DEFAULT_CHUNK  # noqa: E402
from rans.torch.weights import to_numpy  # noqa: E402

TARGETS = {"memory": 0.67, "batch1": 0.5, "batch32": 0.9}


def config(small: bool, layers: int | None) -> Any:
    from transformers import LlamaConfig

    if small:
        shape = dict(vocab_size=512, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2)
    else:  # TinyLlama-1.1B's shape
        shape = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                     num_attention_heads=32, num_key_value_heads=4)
    if layers:
        shape["num_hidden_layers"] = layers
    return LlamaConfig(**shape, max_position_embeddings=2048, tie_word_embeddings=False, initializer_range=0.02)


def build(cfg: Any, device: torch.device, seed: int) -> torch.nn.Module:
    """The model in bf16 on ``device``, every matrix N(0, 0.02) from a seeded generator, norms ones."""
    from transformers import LlamaForCausalLM

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.02, generator=generator)
            else:
                param.fill_(1.0)
    return model.eval()


def empty(cfg: Any) -> torch.nn.Module:
    from transformers import LlamaForCausalLM

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with rt.empty_weights():
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def _encode(name: str, array: Any, chunk: int) -> tuple[Any, list[bytes]]:
    entry, sections = codec.encode_tensor(array, name, chunk)
    return entry, [bytes(s) for s in sections]  # memoryviews do not pickle back from the worker


def save(tensors: dict[str, Any], path: str, workers: int, chunk: int) -> None:
    """What ``rans.save_file(tensors, path, chunk_size=chunk)`` writes, the tensors coded in ``workers`` processes at once."""
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        coded = list(pool.map(_encode, tensors, tensors.values(), [chunk] * len(tensors)))
    api.write_atomic(path, lambda f: container.write(f, [e for e, _ in coded], [s for _, s in coded], None))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def allocated(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


@torch.no_grad()
def generate(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """``model.generate``, greedy, exactly ``new_tokens`` new tokens (EOS ignored), with the KV cache."""
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    return out[:, prompt.shape[1]:]


def timed_generations(models: list[torch.nn.Module], prompt: torch.Tensor, new_tokens: int, repeat: int,
                      device: torch.device) -> list[tuple[torch.Tensor, float]]:
    """Each model's generated tokens and median tokens per second (after one warm-up each).

    The models take turns, run by run, so that a change in the machine's
    speed during the measurement (other work on the host) falls on all alike.
    """
    tokens = [generate(model, prompt, new_tokens) for model in models]
    times: list[list[float]] = [[] for _ in models]
    for _ in range(repeat):
        for model, expected, spent in zip(models, tokens, times):
            sync(device)
            start = time.perf_counter()
            again = generate(model, prompt, new_tokens)
            sync(device)
            spent.append(time.perf_counter() - start)
            if not torch.equal(again, expected):
                raise SystemExit("generation is not deterministic on this model: cannot compare tokens")
    return [(t, prompt.shape[0] * new_tokens / statistics.median(spent)) for t, spent in zip(tokens, times)]


def decode_times(weights: rt.CompressedWeights, device: torch.device, reps: int = 20) -> list[dict[str, Any]]:
    """Median decode time of each group, from CUDA events (wall clock on the CPU)."""
    rows = []
    for group in weights.groups:
        times = []
        for _ in range(reps):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                weights.decode(group)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                weights.decode(group)
                times.append(time.perf_counter() - t0)
        weights.check()
        seconds = statistics.median(times)
        rows.append({"group": group.name, "tensors": len(group.slots), "bytes": group.original_nbytes,
                     "seconds": seconds, "gb_per_s": group.original_nbytes / seconds / 1e9})
    weights.resident = None
    return rows


def environment(device: torch.device) -> dict[str, Any]:
    import transformers

    env: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "rans": rans.__version__, "platform": platform.platform(), "device": str(device),
    }
    try:
        import numba

        env["numba"] = numba.__version__
        import numba_cuda

        env["numba_cuda"] = numba_cuda.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            env["driver"] = None
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a tiny config on the CPU")
    parser.add_argument("--layers", type=int, help="override the layer count")
    parser.add_argument("--groups", choices=("block", "module"), default="block")
    parser.add_argument("--check", choices=rt.weights.CHECKS, default="forward")
    parser.add_argument("--no-graphs", action="store_true", help="launch each decode from Python, no CUDA graphs")
    parser.add_argument("--min-bytes", type=int, help="compress tensors this large (default 1 MiB; 16 KiB with --small)")
    parser.add_argument("--chunk", type=int, nargs="+", default=[DEFAULT_CHUNK],
                        help="chunk sizes to save the checkpoint with, one run each (default 32768)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "torch_model.json"))
    args = parser.parse_args()
    if args.small:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        raise SystemExit("no CUDA GPU: run with --small for the CPU check")
    cfg = config(args.small, args.layers)
    results: dict[str, Any] = {"environment": environment(device), "config": cfg.to_dict(), "args": vars(args)}
    print(f"{results['environment'].get('gpu', 'CPU')}, driver {results['environment'].get('driver')}, torch {torch.__version__}")

    base_memory = allocated(device)
    model = build(cfg, device, args.seed)
    sync(device)
    plain_memory = allocated(device) - base_memory
    params = sum(p.numel() for p in model.parameters())
    plain_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"model: {params / 1e9:.3f} B parameters, {plain_bytes / 2**30:.3f} GiB of bf16")
    generator = torch.Generator().manual_seed(args.seed + 1)
    prompts = {b: torch.randint(0, cfg.vocab_size, (b, args.prompt), generator=generator).to(device) for b in args.batch}
    with torch.no_grad():
        plain_logits = model(prompts[args.batch[0]]).logits

    tensors = {k: to_numpy(v) for k, v in model.state_dict().items()}
    baseline = {"memory": plain_memory if device.type == "cuda" else plain_bytes, "logits": plain_logits, "model": model}
    runs = [measure(cfg, tensors, chunk, args, device, prompts, baseline) for chunk in args.chunk]
    results.update({"parameters": params, "runs": [r for r, _ in runs]})
    results.update({k: v for k, v in runs[0][0].items() if k != "chunk_size"})
    for run, report in runs:
        show(run, report)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1, default=str)
    print(f"wrote {args.out}")
    if not all(r["targets"]["tokens_identical"] and r["targets"]["logits_bit_identical"] for r, _ in runs):
        raise SystemExit("outputs differ from the uncompressed model's")


def measure(cfg: Any, tensors: dict[str, Any], chunk: int, args: Any, device: torch.device, prompts: dict[int, torch.Tensor],
            baseline: dict[str, Any]) -> tuple[dict[str, Any], rt.Report]:
    """Save ``tensors`` with chunks of ``chunk`` symbols, load them compressed, and measure against ``baseline``."""
    path = os.path.join(tempfile.mkdtemp(), "model.rans")
    start = time.perf_counter()
    save(tensors, path, args.workers, chunk)
    save_seconds = time.perf_counter() - start
    file_bytes = os.path.getsize(path)
    base_memory = allocated(device)
    start = time.perf_counter()
    model = empty(cfg)
    min_bytes = args.min_bytes or (1 << 14 if args.small else rt.weights.MIN_BYTES)
    weights = rt.load_model(model, path, device=device, groups=args.groups, check=args.check,
                            min_bytes=min_bytes, graphs=not args.no_graphs)
    sync(device)
    load_seconds = time.perf_counter() - start
    os.unlink(path)
    rans_memory = allocated(device) - base_memory
    report = weights.report()
    descriptors = sum(g.held - len(g.store.batch.buffer) for g in weights.groups) if device.type == "cuda" else 0
    with torch.no_grad():
        rans_logits = model(prompts[args.batch[0]]).logits
    timed = {b: timed_generations([baseline["model"], model], prompts[b], args.new_tokens, args.repeat, device) for b in args.batch}
    groups = decode_times(weights, device)
    logits_equal = bool(torch.equal(baseline["logits"], rans_logits))
    memory = {
        "plain_bytes": baseline["memory"],
        "rans_bytes": (rans_memory + descriptors) if device.type == "cuda" else report.total_held,
        "rans_torch_allocated": rans_memory,
        "rans_decoder_descriptors": descriptors,
        "compressed_groups": sum(g.held for g in weights.groups),
        "scratch": weights.scratch.numel(),
        "file_bytes": file_bytes,
    }
    memory["ratio"] = memory["rans_bytes"] / memory["plain_bytes"]
    memory["ratio_without_scratch"] = (memory["rans_bytes"] - memory["scratch"]) / memory["plain_bytes"]
    throughput = []
    for b in args.batch:
        plain, compressed = timed[b]
        same = bool(torch.equal(plain[0], compressed[0]))
        throughput.append({"batch": b, "plain_tokens_per_s": plain[1], "rans_tokens_per_s": compressed[1],
                           "speed": compressed[1] / plain[1], "tokens_identical": same})
    block_seconds = [g["seconds"] for g in groups if g["tensors"] > 1] or [g["seconds"] for g in groups]
    speeds = {f"batch{t['batch']}": t["speed"] for t in throughput}
    run = {
        "chunk_size": chunk, "save_seconds": save_seconds, "load_seconds": load_seconds, "memory": memory,
        "logits_bit_identical": logits_equal, "throughput": throughput, "decode": groups,
        "decode_seconds_per_block_median": statistics.median(block_seconds), "report": report.to_dict(),
        "targets": {
            "memory<=0.67": memory["ratio"] <= TARGETS["memory"],
            "memory_without_scratch<=0.67": memory["ratio_without_scratch"] <= TARGETS["memory"],
            **{f"{k}>={v}": speeds[k] >= v for k, v in TARGETS.items() if k in speeds},
            "tokens_identical": all(t["tokens_identical"] for t in throughput),
            "logits_bit_identical": logits_equal,
        },
    }
    weights.remove_hooks()
    del model, weights, rans_logits
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return run, report


def show(run: dict[str, Any], report: rt.Report) -> None:
    """Print one run's tables."""
    memory, throughput, groups = run["memory"], run["throughput"], run["decode"]
    print(f"\n== chunk size {run['chunk_size']}: saved in {run['save_seconds']:.1f} s "
          f"({memory['file_bytes'] / 2**20:.1f} MiB), loaded in {run['load_seconds']:.1f} s")
    print("weight memory (bytes)")
    for key, value in memory.items():
        print(f"  {key:28s} {value:,.4f}" if isinstance(value, float) else f"  {key:28s} {value:,}")
    print("\n| batch | plain tok/s | rans tok/s | rans / plain | tokens identical |")
    print("| --- | --- | --- | --- | --- |")
    for t in throughput:
        print(f"| {t['batch']} | {t['plain_tokens_per_s']:.1f} | {t['rans_tokens_per_s']:.1f} | {t['speed']:.3f} | {t['tokens_identical']} |")
    print(f"\nlogits bit-identical: {run['logits_bit_identical']}")
    print(f"decode per block (median of groups): {run['decode_seconds_per_block_median'] * 1e3:.3f} ms")
    print("| group | tensors | MB | ms | GB/s |")
    print("| --- | --- | --- | --- | --- |")
    for g in groups:
        print(f"| {g['group']} | {g['tensors']} | {g['bytes'] / 1e6:.1f} | {g['seconds'] * 1e3:.3f} | {g['gb_per_s']:.1f} |")
    print("\n" + report.table())
    print("\ntargets:", json.dumps(run["targets"]))


if __name__ == "__main__":
    main()
