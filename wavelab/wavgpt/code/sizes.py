"""A code's size in bits: the fixed container, the exact bytes of a batch of keep masks, and the
ideal (log2 C(T·d, k) positions) that training logs beside them."""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from wavelab.wavgpt.code.positions import band_bounds, position_bits
from wavelab.wavgpt.code.quantize import SCALE_BITS

COMPRESSOR_FINGERPRINT_BYTES = 8
HEADER = struct.Struct(f"<4sBBBBBHHHII{COMPRESSOR_FINGERPRINT_BYTES}s")
CRC = struct.Struct("<I")
# Dense (T, d) arrays of a code are at most this big (sparse_code's docstring says why).
MAX_COEFFICIENTS = 2**24
_MAX_U16 = 2**16 - 1


def overhead_bytes(encoder_fingerprint_bytes: int) -> int:
    """Bytes every code carries besides scales, positions and values: header (compressor
    fingerprint included), encoder fingerprint and checksum."""
    return HEADER.size + encoder_fingerprint_bytes + CRC.size


def scale_count(value_bits: int, value_scale: str, levels: int) -> int:
    """How many fp16 scales a code sends: none for float values, else one per code or band."""
    if value_bits >= 16:
        return 0
    return levels + 1 if value_scale == "band" else 1


def value_bytes(k: int | np.ndarray, value_bits: int) -> int | np.ndarray:
    return -(-k * value_bits // 8)


def code_bits(
    k: int | Tensor,
    T: int,
    d: int,
    value_bits: int = 16,
    header_bits: int = 0,
    n_scales: int = 0,
) -> float | Tensor:
    """Ideal size of a code in bits: header + log2 C(T * d, k) for the positions + k values +
    ``n_scales`` fp16 scales (``scale_count``). A tensor of per-sample k (training's metrics)
    gives a float64 tensor, a number a float."""
    kf = torch.as_tensor(k, dtype=torch.float64)
    n = torch.tensor(T * d + 1.0, dtype=torch.float64)
    log_choose = torch.lgamma(n) - torch.lgamma(kf + 1) - torch.lgamma(n - kf)
    bits = header_bits + log_choose / math.log(2) + kf * value_bits + n_scales * SCALE_BITS
    return bits if isinstance(k, Tensor) else float(bits)


def sent_bits(
    keep: Tensor | np.ndarray,
    levels: int,
    value_bits: int,
    value_scale: str,
    encoder_fingerprint_bytes: int,
) -> Tensor:
    """(B,) float64: exactly ``8 * len(SparseCode.to_bytes())`` of each code of a (B, T, d) keep
    mask, without building the codes (vectorised over coefficients, one pass per band). The
    values, n_tokens and fingerprints do not change a code's size, only their widths do."""
    keep = as_numpy(keep).astype(bool)
    B, T, d = keep.shape
    k = keep.reshape(B, -1).sum(1)
    fixed = overhead_bytes(encoder_fingerprint_bytes)
    fixed += scale_count(value_bits, value_scale, levels) * SCALE_BITS // 8
    position = position_bits(keep.reshape(B, -1), band_bounds(T, d, levels))
    total = 8 * (fixed + value_bytes(k, value_bits)) + position
    return torch.from_numpy(total.astype(np.float64))


def as_numpy(x: Tensor | np.ndarray | Sequence[int]) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


def check_shape(block_size: int, d: int) -> None:
    """Raises ValueError unless a (block_size, d) code fits the format."""
    for name, value in (("block_size", block_size), ("d", d)):
        if not 1 <= value <= _MAX_U16:
            raise ValueError(f"{name}={value} is invalid: must be in [1, {_MAX_U16}]")
    if block_size * d > MAX_COEFFICIENTS:
        raise ValueError(
            f"code shape block_size={block_size} x d={d} = {block_size * d} coefficients is "
            f"invalid: a WavGPT code holds at most {MAX_COEFFICIENTS} (2^24)"
        )


def check_length_and_crc(data: bytes, expected: int) -> None:
    """The length the header describes, then the CRC32 (the last 4 bytes) of every byte before
    it. Raises ValueError."""
    if len(data) != expected:
        raise ValueError(
            f"WavGPT code length mismatch: the header describes {expected} bytes, got "
            f"{len(data)} (truncated, trailing bytes or corrupt header)"
        )
    (crc,) = CRC.unpack_from(data, len(data) - CRC.size)
    if crc != zlib.crc32(data[: -CRC.size]):
        raise ValueError("WavGPT code checksum mismatch: the bytes are corrupt")
