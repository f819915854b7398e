"""Reader of version-2 WavGPT codes, so that codes written before version 3 still decode.

Version 2, little-endian (``sparse_code`` writes version 3 only):

    offset  size  field
    0       4     magic b"WAVC"
    4       1     version (2)
    5       1     flags: bits 0-1 value dtype (0 fp16, 1 bf16, 2 fp32), bit 2 position coding
                  (0 bitmask, 1 gaps)
    6       1     gap width w in bits (0 with the bitmask)
    7       1     encoder fingerprint length F in bytes
    8       2     block_size T
    10      2     d
    12      2     n_tokens
    14      4     k
    18      8     compressor fingerprint
    26      F     encoder fingerprint
    26+F    P     positions: a T * d bitmask, or k fixed-width w-bit gaps (the first position,
                  then pos[i] - pos[i-1] - 1), both bit-packed most significant bit first
    ...     V     values: k little-endian floats of the value dtype, in position order
    ...     4     CRC32 of every byte before it

A v2 code reads as a 16-bit code (fp16) or, for bf16 and fp32 values (both exact in fp32), a
32-bit one; ``SparseCode.to_bytes`` then writes it as version 3.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

import numpy as np

HEADER = struct.Struct("<4sBBBBHHHI8s")
CRC = struct.Struct("<I")
VALUE_DTYPES = ("fp16", "bf16", "fp32")
_DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
_GAPS_FLAG = 0b100


class V2Fields(NamedTuple):
    block_size: int
    d: int
    n_tokens: int
    positions: np.ndarray  # (k,) int64
    values: np.ndarray  # (k,) float32
    fingerprint: bytes
    value_bits: int  # 16 (fp16) or 32 (bf16 and fp32 values, exact in fp32)
    compressor: bytes


def _values_from_bytes(data: bytes, value_dtype: str) -> np.ndarray:
    if value_dtype == "fp16":
        return np.frombuffer(data, "<f2").astype(np.float32)
    if value_dtype == "bf16":  # the high half of a float32
        return (np.frombuffer(data, "<u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(data, "<f4").astype(np.float32)


def _unpack_uints(data: bytes, k: int, width: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, np.uint8))[: k * width].reshape(k, width)
    return bits.astype(np.int64) @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))


def check_length_and_crc(data: bytes, expected: int) -> None:
    """The container checks of every version: the length the header describes, then the CRC32
    (the last 4 bytes) of every byte before it. Raises ValueError."""
    if len(data) != expected:
        raise ValueError(
            f"WavGPT code length mismatch: the header describes {expected} bytes, got "
            f"{len(data)} (truncated, trailing bytes or corrupt header)"
        )
    (crc,) = CRC.unpack_from(data, len(data) - CRC.size)
    if crc != zlib.crc32(data[: -CRC.size]):
        raise ValueError("WavGPT code checksum mismatch: the bytes are corrupt")


def read_v2(data: bytes, check_shape) -> V2Fields:
    """Parse a v2 code; ``check_shape(T, d)`` runs before anything of size T·d is allocated.
    Raises ValueError for anything corrupt, non-finite values included."""
    overhead = HEADER.size + CRC.size
    if len(data) < overhead:
        raise ValueError(f"truncated WavGPT code: {len(data)} bytes, at least {overhead} needed")
    _, _, flags, width, fp_len, T, d, n_tokens, k, compressor = HEADER.unpack_from(data)
    check_shape(T, d)
    dtype_code, use_gaps = flags & 0b11, bool(flags & _GAPS_FLAG)
    if dtype_code >= len(VALUE_DTYPES) or flags & ~0b111:
        raise ValueError(f"corrupt WavGPT code header: unknown flags {flags:#04x}")
    value_dtype = VALUE_DTYPES[dtype_code]
    position_bytes = -(-k * width // 8) if use_gaps else -(-T * d // 8)
    value_bytes = k * _DTYPE_BYTES[value_dtype]
    expected = overhead + fp_len + position_bytes + value_bytes
    check_length_and_crc(data, expected)
    offset = HEADER.size
    fingerprint = data[offset : offset + fp_len]
    offset += fp_len
    raw = data[offset : offset + position_bytes]
    if use_gaps:
        positions = np.cumsum(_unpack_uints(raw, k, width) + 1) - 1
    else:
        positions = np.flatnonzero(np.unpackbits(np.frombuffer(raw, np.uint8))[: T * d])
    offset += position_bytes
    values = _values_from_bytes(data[offset : offset + value_bytes], value_dtype)
    if not np.isfinite(values).all():
        raise ValueError("corrupt WavGPT code: non-finite values")
    value_bits = 16 if value_dtype == "fp16" else 32
    return V2Fields(T, d, n_tokens, positions, values, fingerprint, value_bits, compressor)
