"""Tensors of every dtype family, drawn like real weights: the inputs of the GPU tests."""

from __future__ import annotations

import ml_dtypes
import numpy as np


def weights(kind: str, n: int, seed: int) -> np.ndarray:
    """``n`` elements of ``kind`` (a dtype family and a distribution) from ``seed``."""
    rng = np.random.default_rng(seed)
    if kind == "bf16":
        return rng.normal(0, 0.02, n).astype(np.float32).astype(ml_dtypes.bfloat16)
    if kind == "f32":
        return rng.normal(0, 0.02, n).astype(np.float32)
    if kind == "f32-bf16":
        return rng.normal(0, 0.02, n).astype(ml_dtypes.bfloat16).astype(np.float32)
    if kind == "f16":
        return rng.normal(0, 0.02, n).astype(np.float16)
    if kind == "e4m3":
        return rng.normal(0, 1, n).astype(ml_dtypes.float8_e4m3fn)
    if kind == "e5m2":
        return rng.normal(0, 1, n).astype(ml_dtypes.float8_e5m2)
    if kind == "i8":
        return np.clip(np.round(rng.normal(0, 12, n)), -128, 127).astype(np.int8)
    if kind == "u8-few":
        return rng.choice(np.array([0, 1, 7, 200], np.uint8), n, p=[0.7, 0.2, 0.05, 0.05])
    if kind == "i16":
        return np.round(rng.normal(0, 12, n)).astype(np.int16)
    if kind == "i32":
        return np.round(rng.normal(0, 300, n)).astype(np.int32) << 8
    if kind == "i64":
        return np.round(rng.normal(0, 300, n)).astype(np.int64)
    if kind == "c64":
        return (rng.normal(0, 1, n) + 1j * rng.normal(0, 1, n)).astype(np.complex64)
    if kind == "random-bf16":
        return rng.integers(0, 1 << 16, n, dtype=np.uint16).view(ml_dtypes.bfloat16)
    if kind == "zeros-f32":
        return np.zeros(n, np.float32)
    return rng.integers(0, 2, n).astype(np.bool_)
