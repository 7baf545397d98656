"""Reference benchmark: rans (reference NumPy codec) against ZipNN 0.5.4 and zstd, same run, same bytes.

Usage::

    python bench/reference.py [--quick] [--out bench/results/reference.json]

Sections
--------
1. Synthetic bf16 N(0, 0.02), 64 Mi weights: ratio, order-0 bound, ZipNN and
   zstd -3 ratios, encode/decode MB/s of all three, container overhead.
2. Every ``/work/shared/data/real/*.safetensors``, as stored and with its F32
   tensors cast to bf16: rans file ratio vs the order-0 bound, vs ZipNN, vs
   zstd, and where rans falls short of the bound, why (bytes by cause and by
   tensor size). ZipNN is measured two ways: (a) the way its users compress a
   safetensors file, its recommended ``zipnn_compress_safetensors.py`` recipe
   writing a real ``.znn.safetensors`` file (``common.zipnn_safetensors_file``;
   the "rans >= ZipNN" target compares the two file ratios), and (b) per
   tensor in byte mode with no container at all (extra column).
3. Tiny tensors (64 elements): growth of ``rans.compress`` and marginal cost
   in a multi-tensor file, against safetensors.
4. Container overhead by size (bf16 1/4/16 Mi, fp32 1 Mi) and ratio for fp16
   and fp8 e4m3 against bound and ZipNN.

A final summary lists every target with its measured value and PASS/FAIL.
Definitions (MB, ratio, bound, overhead) are in ``bench/common.py``.
``--quick`` shrinks the synthetic sizes (4 Mi instead of 64 Mi, ...) for a smoke test.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as C  # noqa: E402
import ml_dtypes  # noqa: E402

import rans  # noqa: E402
from rans import dtypes  # noqa: E402

REAL_DIR = "/work/shared/data/real"
SMALL_FILE = 1_000_000  # "files under 1 MB": total tensor bytes below 10**6
BOUND_PCT = 0.99
BOUND_PCT_SMALL = 0.97
TINY_MARGINAL_MAX = 48  # "a few dozen bytes"

SUMMARY: list[dict] = []
SECTION2_FAILING: dict[str, dict] = {}


def target(section: str, name: str, measured, op: str, threshold, unit: str = "", note: str = "", extra: str = "") -> bool | None:
    """Record one target. ``measured`` None means it could not be measured (counted as n/a); ``extra``
    is information printed next to it in the summary (not part of the target)."""
    if measured is None:
        ok = None
    elif op == ">=":
        ok = measured >= threshold
    else:
        ok = measured <= threshold
    SUMMARY.append(dict(section=section, target=name, measured=measured, op=op, threshold=threshold, unit=unit, passed=ok, note=note, extra=extra))
    return ok


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.ascontiguousarray(a).view(np.uint8).tobytes() == np.ascontiguousarray(b).view(np.uint8).tobytes()


def normal_f32(n: int, sigma: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, sigma, n).astype(np.float32)


def st_size(d: dict) -> int:
    """Size of the safetensors file of ``d`` (safetensors.numpy; through torch when there is bf16/fp8, which it lacks)."""
    import safetensors.numpy as stn

    if any(dtypes.name_of(t.dtype) in ("BF16", "F8_E4M3", "F8_E5M2") for t in d.values()):
        import safetensors.torch as stt

        return len(stt.save(C.to_torch(d)))
    return len(stn.save(d))


# =========================================================================== section 1


def peers_on(raw: bytes, zdt: str | None, reps: int, timed: bool = True) -> dict:
    """ZipNN (if ``zdt``) and zstd -3 on ``raw``: sizes, exact round trips and, if ``timed``, MB/s."""
    out: dict = {}
    n = len(raw)
    if zdt:
        # warm-up (imports, thread pools)
        C.zipnn_decompress(C.zipnn_compress(raw[: min(n, 1 << 20)], zdt), zdt)
        if timed:
            t_c, zblob = C.median_time(lambda buf: C.zipnn_compress_owned(buf, zdt), reps, prepare=lambda: bytearray(raw))
            t_d, back = C.median_time(lambda: C.zipnn_decompress(zblob, zdt), reps)
        else:
            zblob = C.zipnn_compress(raw, zdt)
            back = C.zipnn_decompress(zblob, zdt)
            t_c = t_d = None
        out["zipnn"] = dict(
            bytes=len(zblob), ratio=n / len(zblob), exact=bytes(back) == raw,
            compress_MBps=n / t_c / C.MB if t_c else None, decompress_MBps=n / t_d / C.MB if t_d else None,
        )
    C.zstd_decompress(C.zstd_compress(raw[: min(n, 1 << 20)]), min(n, 1 << 20))
    if timed:
        t_c, sblob = C.median_time(lambda: C.zstd_compress(raw), reps)
        t_d, back = C.median_time(lambda: C.zstd_decompress(sblob, n), reps)
    else:
        sblob = C.zstd_compress(raw)
        back = C.zstd_decompress(sblob, n)
        t_c = t_d = None
    out["zstd3"] = dict(
        bytes=len(sblob), ratio=n / len(sblob), exact=back == raw,
        compress_MBps=n / t_c / C.MB if t_c else None, decompress_MBps=n / t_d / C.MB if t_d else None,
    )
    return out


def rans_on(array: np.ndarray, reps: int, timed: bool = True) -> dict:
    """rans.compress / decompress of one tensor, reference backend: ratio, bound, overhead and (if ``timed``) MB/s."""
    n_bytes = array.nbytes
    if timed:
        warm = array.reshape(-1)[: min(array.size, 1 << 20)]
        rans.decompress(rans.compress(warm, backend="reference"), backend="reference")
        t_c, blob = C.median_time(lambda: rans.compress(array, backend="reference"), reps)
        t_d, back = C.median_time(lambda: rans.decompress(blob, backend="reference"), reps)
    else:
        blob = rans.compress(array)
        back = rans.decompress(blob)
        t_c = t_d = None
    an = C.anatomy(blob)
    e = an.entries[0]
    bound_payload = C.bound_bytes(array)
    parts = an.parts()
    n = array.size
    return dict(
        n=n, dtype=e.dtype, bytes_in=n_bytes, bytes_out=len(blob), ratio=n_bytes / len(blob), exact=same(array, back),
        split=e.split, plane_modes=[p.mode for p in e.planes],
        coded_lanes=[p.lanes for p in e.planes if p.mode == "coded"], coded_chunks=[p.n_chunks for p in e.planes if p.mode == "coded"],
        coded_chunk_size=[p.chunk for p in e.planes if p.mode == "coded"],
        plane_h0=[C.h0(p) for p in dtypes.split(np.ascontiguousarray(array), e.split)],
        bound_ratio=n_bytes / bound_payload, pct_of_bound=bound_payload / len(blob),
        overhead_bytes=an.overhead, overhead_bits_per_weight=8 * an.overhead / n,
        overhead_parts_bytes={k: v for k, v in parts.items() if k not in ("coded_words", "raw_planes")},
        overhead_parts_bits_per_weight={k: 8 * v / n for k, v in parts.items() if k not in ("coded_words", "raw_planes")},
        compress_MBps=n_bytes / t_c / C.MB if t_c else None, decompress_MBps=n_bytes / t_d / C.MB if t_d else None,
        compress_s=t_c, decompress_s=t_d,
    )


def section1(n: int, reps: int) -> dict:
    print(f"\n#### Section 1: synthetic bf16 N(0, 0.02), {n:,} weights ({n / C.MI:g} Mi), median of {reps}", flush=True)
    w = normal_f32(n, 0.02).astype(ml_dtypes.bfloat16)
    r = rans_on(w, reps)
    h_exp = C.h0(dtypes.split(w, "float")[0])
    r["H_exponent_bits"] = h_exp
    r["bound_16_over_8_plus_H"] = 16 / (8 + h_exp)
    p = peers_on(w.tobytes(), "bfloat16", reps)
    res = dict(rans=r, **p)
    C.table(
        "Section 1: ratio and speed (MB/s of uncompressed bytes, MB = 10^6)",
        ["codec", "ratio", "compress MB/s", "decompress MB/s", "exact"],
        [
            ["rans (reference)", r["ratio"], r["compress_MBps"], r["decompress_MBps"], r["exact"]],
            ["ZipNN 0.5.4 bf16, threads=2", p["zipnn"]["ratio"], p["zipnn"]["compress_MBps"], p["zipnn"]["decompress_MBps"], p["zipnn"]["exact"]],
            ["zstd -3, threads=2", p["zstd3"]["ratio"], p["zstd3"]["compress_MBps"], p["zstd3"]["decompress_MBps"], p["zstd3"]["exact"]],
        ],
    )
    C.table(
        "Section 1: bound and overhead",
        ["quantity", "value"],
        [
            ["H0(exponent) bits", h_exp],
            ["bound 16/(8+H)", r["bound_16_over_8_plus_H"]],
            [f"bound (least split; rans chose '{r['split']}', planes {r['plane_modes']})", r["bound_ratio"]],
            ["H0 of the planes (bits)", ", ".join(f"{h:.4f}" for h in r["plane_h0"])],
            ["rans % of bound (chosen split)", 100 * r["pct_of_bound"]],
            ["rans / ZipNN", r["ratio"] / p["zipnn"]["ratio"]],
            ["overhead bytes", r["overhead_bytes"]],
            ["overhead bit/weight", r["overhead_bits_per_weight"]],
            *[[f"  of which {k}" + (" (part of json)" if k == "json_names" else ""), v] for k, v in r["overhead_parts_bits_per_weight"].items()],
        ],
        digits=5,
    )
    s = "1 synthetic bf16"
    target(s, f"rans ratio ({n / C.MI:g} Mi bf16 N(0,0.02))", r["ratio"], ">=", 1.510)
    target(s, "rans reference encode MB/s", r["compress_MBps"], ">=", 20.0, "MB/s")
    target(s, "rans reference decode MB/s", r["decompress_MBps"], ">=", 20.0, "MB/s")
    target(s, "container overhead bit/weight", r["overhead_bits_per_weight"], "<=", 0.05, "bit/weight")
    target(s, "lossless round trip (rans, ZipNN, zstd: codecs exact of 3)", int(r["exact"]) + int(p["zipnn"]["exact"]) + int(p["zstd3"]["exact"]), ">=", 3)
    return res


# =========================================================================== section 2


def evaluate_file(label: str, tensors: dict[str, np.ndarray], workdir: str) -> dict:
    nbytes = sum(t.nbytes for t in tensors.values())
    path = os.path.join(workdir, "f.rans")
    rans.save_file(tensors, path)
    size = os.path.getsize(path)
    back = rans.load_file(path)
    exact = list(back) == list(tensors) and all(same(tensors[k], back[k]) for k in tensors)
    with open(path, "rb") as f:
        an = C.anatomy(f.read())
    bound = 0.0
    causes = {k: 0.0 for k in C.LOSS_CAUSES}
    per_tensor = []
    splits: dict[str, int] = {}
    lanes: dict[str, int] = {}
    for ea in an.entries:
        lb = C.loss_breakdown(ea, tensors[ea.name])
        bound += lb["bound"]
        for k in causes:
            causes[k] += lb[k]
        key = f"{ea.dtype}:{ea.split}:" + "/".join(p.mode for p in ea.planes)
        splits[key] = splits.get(key, 0) + 1
        for p in ea.planes:
            if p.mode == "coded":
                lanes[str(p.lanes)] = lanes.get(str(p.lanes), 0) + 1
        per_tensor.append(dict(name=ea.name, dtype=ea.dtype, n=ea.size, nbytes=ea.nbytes, split=ea.split,
                               modes=[p.mode for p in ea.planes], lanes=[p.lanes for p in ea.planes if p.mode == "coded"],
                               **{k: round(v, 2) for k, v in lb.items()}))
    causes["file_header"] = float(an.preamble + an.header_pad + an.trailing_pad + an.json_total - sum(e.json_bytes for e in an.entries))
    causes["json_names"] = float(sum(e.name_json_bytes for e in an.entries))  # part of "json"

    # ZipNN (a) per tensor, no container: the tensors of a dtype it supports, each compressed
    # alone in byte mode (ratio = their bytes / the sum of its blobs)
    zsub = {k: t for k, t in tensors.items() if C.zipnn_dtype(t)}
    zip_bytes = zip_in = 0
    zip_exact = True
    zip_of: dict[str, int] = {}
    for k, t in zsub.items():
        raw = np.ascontiguousarray(t).tobytes()
        blob = C.zipnn_compress(raw, C.zipnn_dtype(t))
        zip_exact &= bytes(C.zipnn_decompress(blob, C.zipnn_dtype(t))) == raw
        zip_bytes += len(blob)
        zip_in += len(raw)
        zip_of[k] = len(blob)
    for d in per_tensor:
        d["zipnn"] = zip_of.get(d["name"])
    if zsub:
        if len(zsub) == len(tensors):
            rans_sub = size
        else:
            rans.save_file(zsub, path)
            rans_sub = os.path.getsize(path)
        zipnn_ratio = zip_in / zip_bytes
        rans_sub_ratio = zip_in / rans_sub
        zipnn_whole = nbytes / (zip_bytes + (nbytes - zip_in))  # unsupported tensors stored raw, free of any header
        # ESTIMATE, kept for comparison: ZipNN's byte-mode blobs plus a safetensors header for those tensors
        zipnn_st = zip_in / (zip_bytes + st_size(zsub) - zip_in)
    else:
        zipnn_ratio = rans_sub_ratio = zipnn_whole = zipnn_st = None
    os.unlink(path)

    # ZipNN (b) the real file: its safetensors recipe on all the tensors, a .znn.safetensors file
    zst = C.zipnn_safetensors_file(tensors, os.path.join(workdir, "f.znn.safetensors"))
    os.unlink(os.path.join(workdir, "f.znn.safetensors"))
    zst["ratio"] = nbytes / zst["bytes"]
    zst["asis_ratio"] = nbytes / zst["asis_bytes"]

    cat = b"".join(np.ascontiguousarray(t).tobytes() for t in tensors.values())
    zstd_ratio = nbytes / len(C.zstd_compress(cat))

    small = nbytes < SMALL_FILE
    need = BOUND_PCT_SMALL if small else BOUND_PCT
    dtypes_bytes: dict[str, int] = {}
    for t in tensors.values():
        d = dtypes.name_of(t.dtype)
        dtypes_bytes[d] = dtypes_bytes.get(d, 0) + t.nbytes
    per_tensor.sort(key=lambda d: -d["excess"])
    return dict(
        label=label, n_tensors=len(tensors), nbytes=nbytes, rans_bytes=size, ratio=nbytes / size, exact=exact,
        bound_bytes=bound, bound_ratio=nbytes / bound, pct_of_bound=bound / size, need_pct=need, small=small,
        dtype_bytes=dtypes_bytes, splits=splits, coded_planes_by_lanes=lanes,
        zipnn_st_file=zst, zipnn_st_file_ratio=zst["ratio"],
        zipnn_tensors=len(zsub), zipnn_ratio=zipnn_ratio, zipnn_exact=zip_exact if zsub else None,
        rans_ratio_on_zipnn_subset=rans_sub_ratio, zipnn_whole_file_ratio_raw_fallback=zipnn_whole,
        zipnn_plus_safetensors_header_ratio_estimate=zipnn_st, safetensors_bytes=st_size(tensors),
        zstd3_ratio=zstd_ratio, excess_bytes=size - bound, excess_by_cause=causes,
        worst_tensors=per_tensor[:8], tensors=per_tensor,
        json_bytes=an.json_total, overhead_parts=an.parts(),
        median_tensor_elements=int(np.median([t.size for t in tensors.values()])),
    )


def section2(files: list[str], cast_bf16: bool) -> list[dict]:
    kind = "F32 tensors cast to bf16" if cast_bf16 else "as stored"
    print(f"\n#### Section 2{'b' if cast_bf16 else 'a'}: real files ({kind}); bound target {100 * BOUND_PCT:.0f}%, "
          f"{100 * BOUND_PCT_SMALL:.0f}% where the tensors total under {SMALL_FILE:,} bytes", flush=True)
    from safetensors.numpy import load_file

    out = []
    with tempfile.TemporaryDirectory() as workdir:
        for f in files:
            tensors = load_file(f)
            label = os.path.basename(f).removesuffix(".safetensors")
            if cast_bf16:
                if not any(t.dtype == np.float32 for t in tensors.values()):
                    continue
                tensors = {k: (t.astype(ml_dtypes.bfloat16) if t.dtype == np.float32 else t) for k, t in tensors.items()}
                label += " [bf16]"
            t0 = time.perf_counter()
            r = evaluate_file(label, tensors, workdir)
            r["seconds"] = time.perf_counter() - t0
            out.append(r)
    rows = []
    s = "2b real files, F32->bf16" if cast_bf16 else "2a real files"
    sec = "2b" if cast_bf16 else "2a"
    for r in out:
        zf = r["zipnn_st_file"]
        ok_bound = r["pct_of_bound"] >= r["need_pct"]
        # the ZipNN target compares whole files: rans's .rans against ZipNN's real .znn.safetensors, both
        # holding every tensor; it applies where ZipNN compresses at least one tensor (elsewhere its
        # file is a plain safetensors file and the row is information only)
        has_zip = r["zipnn_tensors"] > 0
        ok_zip = r["ratio"] >= r["zipnn_st_file_ratio"] if has_zip else None
        r["pass_bound"], r["pass_zipnn_file"] = ok_bound, ok_zip
        r["pass_zipnn_per_tensor"] = None if r["zipnn_ratio"] is None else r["rans_ratio_on_zipnn_subset"] >= r["zipnn_ratio"]
        main = max(r["dtype_bytes"], key=r["dtype_bytes"].get)
        rows.append([r["label"], main, r["n_tensors"], r["nbytes"] / C.MB, r["ratio"], r["bound_ratio"], 100 * r["pct_of_bound"],
                     100 * r["need_pct"], ok_bound, r["zipnn_st_file_ratio"], f"{zf['n_compressed']}/{zf['n_float']}",
                     ok_zip if has_zip else "info", r["zipnn_ratio"], r["rans_ratio_on_zipnn_subset"],
                     r["zipnn_plus_safetensors_header_ratio_estimate"], r["zstd3_ratio"], bool(r["exact"] and zf["exact"])])
        target(s, f"{r['label']}: rans >= {100 * r['need_pct']:.0f}% of bound", 100 * r["pct_of_bound"], ">=", 100 * r["need_pct"], "%")
        if has_zip:
            target(s, f"{r['label']}: rans >= ZipNN [ZipNN: real .znn.safetensors file]", r["ratio"], ">=", r["zipnn_st_file_ratio"], "ratio",
                   note="ZipNN figure: real .znn.safetensors file of its safetensors recipe (zipnn 0.5.4); "
                        f"per-tensor ZipNN (no container) {C.fmt(r['zipnn_ratio'])} vs rans {C.fmt(r['rans_ratio_on_zipnn_subset'])} "
                        "on the same tensors, info only",
                   extra=f"per tensor, no container: ZipNN {C.fmt(r['zipnn_ratio'], 3)} vs rans(Z) {C.fmt(r['rans_ratio_on_zipnn_subset'], 3)}")
    n_exact = sum(bool(r["exact"] and r["zipnn_exact"] in (True, None) and r["zipnn_st_file"]["exact"]) for r in out)
    target(s, f"lossless round trip, rans and ZipNN (files exact of {len(out)})", n_exact, ">=", len(out), "files")
    tot_in = sum(r["nbytes"] for r in out)
    tot_out = sum(r["rans_bytes"] for r in out)
    tot_bound = sum(r["bound_bytes"] for r in out)
    tot_zf = sum(r["zipnn_st_file"]["bytes"] for r in out)
    rows.append(["TOTAL", "", sum(r["n_tensors"] for r in out), tot_in / C.MB, tot_in / tot_out, tot_in / tot_bound, 100 * tot_bound / tot_out,
                 None, None, tot_in / tot_zf, "", None, None, None, None, None, all(r["exact"] and r["zipnn_st_file"]["exact"] for r in out)])
    C.table(
        f"Section {sec}: real files, {kind} (MB = 10^6). 'rans' = tensor bytes / .rans file. "
        "'ZipNN file' = tensor bytes / the .znn.safetensors file ZipNN 0.5.4's safetensors recipe writes "
        "(all tensors; 'Z cmp' = tensors it stored compressed / float tensors); '>=ZipNN' compares these two file ratios "
        "(the target; 'info' where ZipNN compresses nothing). Extra: 'ZipNN/t' = ZipNN byte mode per tensor, no container, "
        "on F32/F16/BF16 tensors, against 'rans(Z)' = rans file of those tensors; 'Z+st est' = ESTIMATE (ZipNN/t blobs + a "
        "safetensors header for them), superseded by 'ZipNN file'",
        ["file", "dtype", "tensors", "MB", "rans", "bound", "%bound", "need%", "bound ok", "ZipNN file", "Z cmp", ">=ZipNN",
         "ZipNN/t", "rans(Z)", "Z+st est", "zstd-3", "exact"],
        rows, digits=3,
    )
    # where the bytes above the bound go, for every file (files that fail the bound target marked *)
    causes = ["file_header", "json", "json_names", *C.LOSS_CAUSES[1:]]
    rows = []
    for r in out:
        c = r["excess_by_cause"]
        rows.append([("* " if not r["pass_bound"] else "  ") + r["label"], r["excess_bytes"], 100 * r["excess_bytes"] / r["rans_bytes"],
                     100 * r["bound_bytes"] / (r["rans_bytes"] - r["json_bytes"]), *[c[k] for k in causes]])
    C.table(
        f"Section {sec}: bytes above the order-0 bound, by cause "
        "(json_names is part of json; sec_header/table/table_pad/states/word_counts: coded sections' side data, 4 B + T + pad + "
        "4*W*K + 4*(K-1); %bound-JSON = bound / (file - header JSON); * = below target)",
        ["file", "excess B", "% of file", "%bound-JSON", *causes], rows, digits=1,
    )
    buckets = [(0, 1024, "< 1 Ki elements"), (1024, 32768, "1 Ki - 32 Ki"), (32768, 1 << 62, ">= 32 Ki")]
    rows = []
    for lo, hi, name in buckets:
        ts = [t for r in out for t in r["tensors"] if lo <= t["n"] < hi]
        if not ts:
            continue
        zs = [t for t in ts if t["zipnn"] is not None]
        nb, bd, st = sum(t["nbytes"] for t in ts), sum(t["bound"] for t in ts), sum(t["stored"] for t in ts)
        js = sum(t["json"] for t in ts)
        znb, zst, zz = sum(t["nbytes"] for t in zs), sum(t["stored"] for t in zs), sum(t["zipnn"] for t in zs)
        rows.append([name, len(ts), nb, bd, st, js, nb / bd, nb / st, nb / (st - js), 100 * bd / st,
                     znb / zz if zs else None, znb / zst if zs else None, sum(t["stored"] < t["zipnn"] for t in zs), len(zs)])
    C.table(
        f"Section {sec}: all files' tensors by size (stored = tensor's JSON entry + its sections + padding; "
        "ratio-JSON excludes the JSON entry; ZipNN/t columns: byte mode per tensor, no container, F32/F16/BF16 tensors only)",
        ["tensors", "count", "bytes", "bound B", "rans stored B", "JSON B", "bound", "rans", "rans-JSON", "%bound",
         "ZipNN/t", "rans(Z)", "rans<ZipNN/t #", "of"],
        rows, digits=3,
    )
    causes_t = list(C.LOSS_CAUSES)

    def by_size(files: list[dict], title: str) -> list[dict]:
        rows, res = [], []
        for lo, hi, name in buckets:
            ts = [t for r in files for t in r["tensors"] if lo <= t["n"] < hi]
            if ts:
                ex = sum(t["excess"] for t in ts)
                vals = {k: sum(t[k] for t in ts) for k in causes_t}
                res.append(dict(size=name, count=len(ts), excess=ex, split_none=sum(t["split"] == "none" for t in ts), **vals))
                rows.append([name, len(ts), ex, *vals.values(), sum(t["split"] == "none" for t in ts)])
        C.table(title, ["tensors", "count", "excess B", *causes_t, "split none #"], rows, digits=0)
        return res

    by_size(out, f"Section {sec}: bytes above the bound by tensor size and cause, all files (last column: tensors stored with split 'none')")
    failing = [r for r in out if not r["pass_bound"] or r["pass_zipnn_file"] is False]
    if failing:
        res = by_size(failing, f"Section {sec}: the same, files failing a target only ({len(failing)} of {len(out)}: "
                               f"bound or ZipNN-file target); file-level bytes (preamble, JSON wrapper) excluded")
        for r in out:
            r["failing"] = any(r is f for f in failing)
        out_summary = dict(files=[r["label"] for r in failing], by_size=res,
                           by_cause={k: sum(r["excess_by_cause"][k] for r in failing) for k in ["file_header", *causes_t]},
                           excess=sum(r["excess_bytes"] for r in failing))
        SECTION2_FAILING[sec] = out_summary
    return out


# =========================================================================== section 3


def section3() -> dict:
    print("\n#### Section 3: tiny tensors (64 elements)", flush=True)
    rng = np.random.default_rng(0)
    tiny = {
        "bf16 bias": rng.normal(0, 0.02, 64).astype(np.float32).astype(ml_dtypes.bfloat16),
        "fp32 bias": rng.normal(0, 0.02, 64).astype(np.float32),
        "int8 vector": rng.integers(-128, 128, 64).astype(np.int8),
    }
    base_np = {
        "model.layers.0.mlp.down_proj.weight": normal_f32(256 * 256, 0.02, 1).reshape(256, 256).astype(ml_dtypes.bfloat16),
        "model.layers.0.input_layernorm.weight": (1 + normal_f32(256, 0.05, 2)).astype(ml_dtypes.bfloat16),
        "model.layers.0.mlp.up_proj.weight": normal_f32(256 * 256, 0.02, 3).reshape(256, 256),
    }
    added_name = "model.layers.0.mlp.down_proj.bias"

    def rans_size(d: dict) -> int:
        with tempfile.TemporaryDirectory() as td:
            p = os.path.join(td, "x.rans")
            rans.save_file(d, p)
            back = rans.load_file(p)
            assert all(same(d[k], back[k]) for k in d)
            return os.path.getsize(p)

    rows, res = [], {}
    base_r, base_s = rans_size(base_np), st_size(base_np)
    for label, x in tiny.items():
        blob = rans.compress(x)
        assert same(x, rans.decompress(blob))
        e = C.anatomy(blob).entries[0]
        alone_st = st_size({"": x}) - x.nbytes
        d = dict(base_np)
        d[added_name] = x
        m_r = rans_size(d) - base_r
        m_s = st_size(d) - base_s
        res[label] = dict(nbytes=x.nbytes, compress_growth=len(blob) - x.nbytes, safetensors_single_growth=alone_st,
                          split=e.split, modes=[p.mode for p in e.planes], marginal_rans=m_r, marginal_safetensors=m_s,
                          marginal_excess=m_r - m_s)
        rows.append([label, x.nbytes, len(blob) - x.nbytes, alone_st, f"{e.split}/{'/'.join(p.mode for p in e.planes)}", m_r, m_s, m_r - m_s])
        target("3 tiny tensors", f"{label}: marginal bytes vs safetensors", m_r - m_s, "<=", TINY_MARGINAL_MAX, "B",
               note="'a few dozen bytes'")
    C.table(
        "Section 3: tiny tensors, bytes (a = len(rans.compress(x)) - nbytes; b = marginal rans - marginal safetensors)",
        ["tensor", "nbytes", "(a) rans growth", "safetensors growth", "split/modes", "rans marginal", "st marginal", "(b) excess"],
        rows,
    )
    print(f"(base file: 3 tensors; rans {base_r:,} B, safetensors {base_s:,} B; added tensor name {added_name!r})")
    res["base_rans_bytes"], res["base_safetensors_bytes"] = base_r, base_s
    return res


# =========================================================================== section 4


def section4(overhead_sizes: list[int], fp32_n: int, dtype_n: int) -> dict:
    print("\n#### Section 4: overhead by size; fp16 and fp8 ratios", flush=True)
    res: dict = {"overhead": [], "dtypes": []}
    rows = []
    cases = [("bf16", n, normal_f32(n, 0.02).astype(ml_dtypes.bfloat16)) for n in overhead_sizes]
    cases.append(("fp32", fp32_n, normal_f32(fp32_n, 0.02)))
    for label, n, a in cases:
        r = rans_on(a, 1, timed=False)
        r["label"] = label
        res["overhead"].append(r)
        parts = r["overhead_parts_bits_per_weight"]
        rows.append([f"{label} {n / C.MI:g} Mi", r["ratio"], r["bound_ratio"], f"{r['split']}:{'/'.join(r['plane_modes'])}",
                     "/".join(f"{w}x{k}" for w, k in zip(r["coded_lanes"], r["coded_chunks"])),
                     r["overhead_bytes"], r["overhead_bits_per_weight"], parts["states"], parts["word_counts"],
                     parts["section_headers"] + parts["tables"] + parts["table_padding"],
                     parts["json"] + parts["preamble"] + parts["padding"]])
        target("4 overhead", f"overhead {label} {n / C.MI:g} Mi N(0,0.02)", r["overhead_bits_per_weight"], "<=", 0.05, "bit/weight")
    C.table("Section 4a: container overhead (bit/weight; coded WxK = lanes x chunks per coded plane; hdr+table+pad = "
            "4-byte section headers + tables + their padding to 4)",
            ["tensor", "ratio", "bound", "split:modes", "coded WxK", "overhead B", "bit/weight", "states", "counts", "hdr+table+pad",
             "json+pre+pad"], rows, digits=5)

    rows = []
    dcases = [
        ("fp16 N(0,0.02)", normal_f32(dtype_n, 0.02).astype(np.float16), "float16"),
        ("fp8 e4m3 of N(0,1)", normal_f32(dtype_n, 1.0).astype(ml_dtypes.float8_e4m3fn), "float8_e4m3fn"),
        ("bf16 N(0,0.02)", normal_f32(dtype_n, 0.02).astype(ml_dtypes.bfloat16), "bfloat16"),
        ("fp32 N(0,0.02)", normal_f32(dtype_n, 0.02), "float32"),
    ]
    for label, a, zdt in dcases:
        r = rans_on(a, 1, timed=False)
        p = peers_on(a.tobytes(), zdt, 1, timed=False)
        res["dtypes"].append(dict(label=label, n=a.size, rans=r, **p))
        rows.append([f"{label} {a.size / C.MI:g} Mi", r["ratio"], r["bound_ratio"], 100 * r["pct_of_bound"], f"{r['split']}:{'/'.join(r['plane_modes'])}",
                     ", ".join(f"{h:.3f}" for h in r["plane_h0"]), p["zipnn"]["ratio"], p["zstd3"]["ratio"], r["exact"] and p["zipnn"]["exact"]])
        target("4 dtypes", f"{label}: rans >= 99% of bound", 100 * r["pct_of_bound"], ">=", 99.0, "%", note="section-2 criterion applied")
        target("4 dtypes", f"{label}: rans >= ZipNN [ZipNN: one tensor, no container]", r["ratio"], ">=", p["zipnn"]["ratio"], "ratio",
               note="ZipNN figure: byte mode on the one tensor, no container; rans: its whole rans.compress output")
    C.table("Section 4b: ratio by dtype", ["tensor", "rans", "bound", "%bound", "split:modes", "H0 planes", "ZipNN", "zstd-3", "exact"], rows)
    return res


# =========================================================================== main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "reference.json"))
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    info = C.machine_info()
    print("machine:", ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    if args.quick:
        n1, reps, sizes, fp32_n, dtype_n = 4 * C.MI, 3, [C.MI, 4 * C.MI], C.MI, C.MI
    else:
        n1, reps, sizes, fp32_n, dtype_n = 64 * C.MI, 3, [C.MI, 4 * C.MI, 16 * C.MI], C.MI, 16 * C.MI
    files = sorted(glob.glob(os.path.join(REAL_DIR, "*.safetensors")))

    results = dict(machine=info, quick=args.quick, definitions=C.__doc__)
    results["section1_synthetic_bf16"] = section1(n1, reps)
    results["section2a_real_files"] = section2(files, cast_bf16=False)
    results["section2b_real_files_bf16"] = section2(files, cast_bf16=True)
    results["section2_failing_files_excess"] = SECTION2_FAILING
    results["section3_tiny"] = section3()
    results["section4"] = section4(sizes, fp32_n, dtype_n)

    rows = []
    for t in SUMMARY:
        extra = t.get("extra")
        thr, m = t["threshold"], t["measured"]
        margin = None if m is None else (m - thr if t["op"] == ">=" else thr - m)
        rel = None if m is None or not thr else 100 * margin / abs(thr)
        t["margin"], t["margin_pct_of_target"] = margin, rel
        rows.append([t["section"], t["target"], m, f"{t['op']} {C.fmt(thr)}", t["unit"], margin, rel,
                     "n/a" if t["passed"] is None else ("PASS" if t["passed"] else "FAIL"), extra or ""])
    C.table("SUMMARY: every target (margin = how far past the target, negative = short of it; "
            "[ZipNN: ...] says which ZipNN figure a row uses; 'extra' is information, not a target)",
            ["section", "target", "measured", "target", "unit", "margin", "margin %", "result", "extra"], rows)
    n_fail = sum(t["passed"] is False for t in SUMMARY)
    n_pass = sum(t["passed"] is True for t in SUMMARY)
    print(f"\n{n_pass} PASS, {n_fail} FAIL of {len(SUMMARY)} targets; total {time.perf_counter() - t_start:.0f} s", flush=True)
    results["summary"] = SUMMARY
    results["seconds"] = time.perf_counter() - t_start

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    import json

    with open(args.out, "w") as f:
        json.dump(C.to_jsonable(results), f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
