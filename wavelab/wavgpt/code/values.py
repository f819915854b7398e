"""The values of a code as bytes: fp16, or integers of 8 or 4 bits against fp16 scales."""

from __future__ import annotations

import numpy as np
import torch

from wavelab.wavgpt.code.quantize import dequantize, int_levels, quantize


def values_to_bytes(values: np.ndarray, value_bits: int, scale: np.ndarray | None) -> bytes:
    """k values (already exact at value_bits) -> their bytes; scale (k,) for the integer widths."""
    if value_bits == 16:
        return values.astype("<f2").tobytes()
    q = quantized(values, value_bits, scale)
    if value_bits == 8:
        return q.astype(np.int8).tobytes()
    nibbles = np.zeros(len(q) + len(q) % 2, dtype=np.uint8)  # an even count: whole bytes
    nibbles[: len(q)] = q & 0xF
    return ((nibbles[0::2] << 4) | nibbles[1::2]).tobytes()


def values_from_bytes(data: bytes, k: int, value_bits: int, scale: np.ndarray | None) -> np.ndarray:
    """Inverse of ``values_to_bytes``; ValueError for non-finite floats or out-of-range ints."""
    if value_bits >= 16:
        values = np.frombuffer(data, "<f2").astype(np.float32)
        if not np.isfinite(values).all():
            raise ValueError("corrupt WavGPT code: non-finite values")
        return values
    if value_bits == 8:
        q = np.frombuffer(data, np.int8).astype(np.int64)
    else:
        raw = np.frombuffer(data, np.uint8)
        nibbles = np.stack([raw >> 4, raw & 0xF], axis=1).reshape(-1)[:k].astype(np.int64)
        q = np.where(nibbles >= 8, nibbles - 16, nibbles)
    if np.any(np.abs(q) > int_levels(value_bits)):
        raise ValueError(
            f"corrupt WavGPT code: {value_bits}-bit values outside "
            f"[-{int_levels(value_bits)}, {int_levels(value_bits)}]"
        )
    return dequantized(q, value_bits, scale)


def quantized(values: np.ndarray, value_bits: int, scale: np.ndarray) -> np.ndarray:
    return quantize(torch.from_numpy(values), value_bits, torch.from_numpy(scale)).numpy()


def dequantized(q: np.ndarray, value_bits: int, scale: np.ndarray) -> np.ndarray:
    # the same torch float32 ops as quantize.round_values: a code decodes to exactly what
    # training's fake_quantize gave
    return dequantize(torch.from_numpy(q), value_bits, torch.from_numpy(scale)).numpy()
