"""The WavGPT code: which wavelet coefficients of one block were kept, and their values.

This module is the byte format and its size in bits, nothing else: it imports no model and no
Lightning code, so training (``val/bits_per_token``) and the codec (``wavelab.codec``) can both
count bits from the one definition here.

Binary format, version 2, little-endian:

    offset  size  field
    0       4     magic b"WAVC"
    4       1     version (2)
    5       1     flags: bits 0-1 value dtype (0 fp16, 1 bf16, 2 fp32), bit 2 position coding
                  (0 bitmask, 1 gaps)
    6       1     gap width w in bits (0 with the bitmask)
    7       1     encoder fingerprint length F in bytes
    8       2     block_size T
    10      2     d
    12      2     n_tokens (real tokens of the block)
    14      4     k (kept coefficients)
    18      8     compressor fingerprint: the trained lifting, filter and refiner that made the code
    26      F     encoder fingerprint: the frozen encoder whose hidden states were coded
    26+F    P     positions
    ...     V     values: k little-endian floats of the value dtype, in position order
    ...     4     CRC32 of every byte before it

Version 1 lacked the compressor fingerprint, so a v1 code could not tell which trained compressor
made it; v1 codes are refused rather than decoded with whatever checkpoint is at hand.

T·d is at most ``MAX_COEFFICIENTS`` (2^24, i.e. 64 MiB as dense float32; a 4096-token block of
4096-wide states): a short header can not make a reader allocate more than that.

Positions are flat indices t * d + c into the (T, d) coefficient array, in increasing order. The
encoder writes whichever of two codings is smaller:

* bitmask: T * d bits, one per coefficient, numpy ``packbits`` order (first index = high bit);
* gaps: k fixed-width fields of w bits, the first position itself and then pos[i] - pos[i-1] - 1,
  with w the bit length of the largest gap; bit-packed the same way.

Gaps win whenever k * w < T * d, i.e. for the sparse codes WavGPT is about. Both cost more than
the information-theoretic log2 C(T * d, k) bits of ``code_bits`` (which an entropy coder would
approach); ``bits()`` is what this format actually sends, ``code_bits`` the ideal used for
"bits per token" metrics. Both count the same per-code overhead, ``overhead_bytes``.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

MAGIC = b"WAVC"
VERSION = 2
COMPRESSOR_FINGERPRINT_BYTES = 8
_HEADER = struct.Struct(f"<4sBBBBHHHI{COMPRESSOR_FINGERPRINT_BYTES}s")
_CRC = struct.Struct("<I")
# Dense (T, d) arrays of a code are at most this big; see the module docstring.
MAX_COEFFICIENTS = 2**24
VALUE_DTYPES = ("fp16", "bf16", "fp32")
VALUE_BITS = {"fp16": 16, "bf16": 16, "fp32": 32}
_GAPS_FLAG = 0b100
_MAX_U16 = 2**16 - 1


def overhead_bytes(encoder_fingerprint_bytes: int) -> int:
    """Bytes every code carries besides positions and values: header (compressor fingerprint
    included), encoder fingerprint and checksum."""
    return _HEADER.size + encoder_fingerprint_bytes + _CRC.size


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


def _round_to(values: np.ndarray, value_dtype: str) -> np.ndarray:
    """float32 values exactly representable in value_dtype (round to nearest even)."""
    values = np.asarray(values, dtype=np.float32)
    if value_dtype == "fp16":
        return values.astype(np.float16).astype(np.float32)
    if value_dtype == "bf16":
        return torch.from_numpy(values.copy()).to(torch.bfloat16).float().numpy()
    return values


def _values_to_bytes(values: np.ndarray, value_dtype: str) -> bytes:
    if value_dtype == "fp16":
        return values.astype("<f2").tobytes()
    if value_dtype == "bf16":  # the high half of the float32, exact since values are rounded
        return (values.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
    return values.astype("<f4").tobytes()


def _values_from_bytes(data: bytes, value_dtype: str) -> np.ndarray:
    if value_dtype == "fp16":
        return np.frombuffer(data, "<f2").astype(np.float32)
    if value_dtype == "bf16":
        return (np.frombuffer(data, "<u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(data, "<f4").astype(np.float32)


def _pack_uints(x: np.ndarray, width: int) -> bytes:
    """k unsigned ints -> k * width bits, most significant bit first, zero-padded to bytes."""
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    return np.packbits(((x[:, None] >> shifts) & 1).astype(np.uint8)).tobytes()


def _unpack_uints(data: bytes, k: int, width: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, np.uint8))[: k * width].reshape(k, width)
    return bits.astype(np.int64) @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))


def code_bits(
    k: int | Tensor, T: int, d: int, value_bits: int = 16, header_bits: int = 0
) -> float | Tensor:
    """Ideal size of a code in bits: header + log2 C(T * d, k) for the positions + k values.

    Accepts a tensor of per-sample k (for training metrics) and then returns a float64 tensor.
    """
    n = T * d
    if isinstance(k, Tensor):
        kf = k.double()
        log_choose = (
            torch.lgamma(torch.tensor(n + 1.0, dtype=torch.float64))
            - torch.lgamma(kf + 1)
            - torch.lgamma(n - kf + 1)
        )
    else:
        kf = float(k)
        log_choose = math.lgamma(n + 1) - math.lgamma(kf + 1) - math.lgamma(n - kf + 1)
    return header_bits + log_choose / math.log(2) + kf * value_bits


@dataclass(eq=False)
class SparseCode:
    """One block's kept coefficients: flat positions (k,) int64 and values (k,) float32.

    Values are rounded to ``value_dtype`` on construction, so ``from_bytes(to_bytes())`` returns
    an equal code. Build codes from dense arrays with ``from_dense``/``from_batch`` and go back
    with ``to_dense``/``batch_to_dense``; all of them are vectorised over coefficients.
    """

    block_size: int
    d: int
    n_tokens: int
    positions: np.ndarray
    values: np.ndarray
    fingerprint: bytes = b""  # of the frozen encoder
    value_dtype: str = "fp16"
    compressor: bytes = bytes(COMPRESSOR_FINGERPRINT_BYTES)  # of the trained core

    def __post_init__(self) -> None:
        if self.value_dtype not in VALUE_DTYPES:
            raise ValueError(
                f"value_dtype={self.value_dtype!r} is invalid: must be one of {VALUE_DTYPES}"
            )
        check_shape(self.block_size, self.d)
        if not 0 <= self.n_tokens <= self.block_size:
            raise ValueError(
                f"n_tokens={self.n_tokens} is invalid: must be in [0, {self.block_size}]"
            )
        if isinstance(self.fingerprint, str):
            self.fingerprint = bytes.fromhex(self.fingerprint)
        if len(self.fingerprint) > 255:
            raise ValueError(f"fingerprint has {len(self.fingerprint)} bytes: at most 255 allowed")
        if isinstance(self.compressor, str):
            self.compressor = bytes.fromhex(self.compressor)
        if len(self.compressor) != COMPRESSOR_FINGERPRINT_BYTES:
            raise ValueError(
                f"compressor fingerprint has {len(self.compressor)} bytes: exactly "
                f"{COMPRESSOR_FINGERPRINT_BYTES} needed"
            )
        self.positions = np.asarray(self.positions)
        if self.positions.ndim != 1 or not np.issubdtype(self.positions.dtype, np.integer):
            raise ValueError(f"positions must be a 1-D integer array, got {self.positions.dtype}")
        self.positions = self.positions.astype(np.int64)
        self.values = _round_to(self.values, self.value_dtype)
        if self.values.shape != self.positions.shape:
            raise ValueError(
                f"{len(self.positions)} positions but values of shape {self.values.shape}"
            )
        n = self.block_size * self.d
        if self.k and (
            self.positions[0] < 0 or self.positions[-1] >= n or np.any(np.diff(self.positions) <= 0)
        ):
            raise ValueError(f"positions must be strictly increasing and in [0, {n})")

    @property
    def k(self) -> int:
        return len(self.positions)

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    def _header_fields(self) -> tuple:
        return (
            self.block_size,
            self.d,
            self.n_tokens,
            self.fingerprint,
            self.value_dtype,
            self.compressor,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseCode):
            return NotImplemented
        return (
            self._header_fields() == other._header_fields()
            and np.array_equal(self.positions, other.positions)
            and np.array_equal(self.values, other.values)
        )

    # --- dense <-> sparse -------------------------------------------------------------------

    @classmethod
    def from_dense(
        cls,
        coeffs: Tensor | np.ndarray,
        keep: Tensor | np.ndarray,
        n_tokens: int,
        fingerprint: bytes | str = b"",
        value_dtype: str = "fp16",
        compressor: bytes | str = bytes(COMPRESSOR_FINGERPRINT_BYTES),
    ) -> SparseCode:
        """coeffs (T, d) and a (T, d) keep mask -> the code of the kept coefficients."""
        coeffs, keep = _as_numpy(coeffs), _as_numpy(keep).astype(bool)
        if coeffs.ndim != 2 or keep.shape != coeffs.shape:
            raise ValueError(
                f"expected (T, d) coeffs and keep mask, got {coeffs.shape} and {keep.shape}"
            )
        positions = np.flatnonzero(keep)
        T, d = coeffs.shape
        values = coeffs.reshape(-1)[positions]
        return cls(T, d, n_tokens, positions, values, fingerprint, value_dtype, compressor)

    @classmethod
    def from_batch(
        cls,
        coeffs: Tensor | np.ndarray,
        keep: Tensor | np.ndarray,
        n_tokens: Sequence[int] | Tensor | np.ndarray,
        fingerprint: bytes | str = b"",
        value_dtype: str = "fp16",
        compressor: bytes | str = bytes(COMPRESSOR_FINGERPRINT_BYTES),
    ) -> list[SparseCode]:
        """coeffs (B, T, d), keep (B, T, d), n_tokens (B,) -> B codes (one loop over B only)."""
        coeffs, keep = _as_numpy(coeffs), _as_numpy(keep)
        n_tokens = _as_numpy(n_tokens).astype(np.int64)
        return [
            cls.from_dense(c, m, int(n), fingerprint, value_dtype, compressor)
            for c, m, n in zip(coeffs, keep, n_tokens, strict=True)
        ]

    def to_dense(self) -> np.ndarray:
        """(T, d) float32 with zeros where nothing was kept."""
        out = np.zeros(self.block_size * self.d, dtype=np.float32)
        out[self.positions] = self.values
        return out.reshape(self.block_size, self.d)

    @staticmethod
    def batch_to_dense(codes: Sequence[SparseCode]) -> np.ndarray:
        """B codes of one shape -> (B, T, d) float32, with a single scatter."""
        shapes = {(c.block_size, c.d) for c in codes}
        if len(shapes) != 1:
            raise ValueError(
                f"codes of different shapes (block_size, d) can not be stacked: {shapes}"
            )
        (T, d) = shapes.pop()
        out = np.zeros((len(codes), T * d), dtype=np.float32)
        rows = np.repeat(np.arange(len(codes)), [c.k for c in codes])
        out[rows, np.concatenate([c.positions for c in codes])] = np.concatenate(
            [c.values for c in codes]
        )
        return out.reshape(len(codes), T, d)

    # --- binary format ----------------------------------------------------------------------

    def _position_coding(self) -> tuple[bool, int, int]:
        """(use gaps, gap width in bits, position bytes): whichever coding is smaller."""
        bitmask_bytes = -(-self.block_size * self.d // 8)
        if self.k == 0:
            return True, 0, 0
        gaps = np.diff(self.positions, prepend=-1) - 1
        width = max(1, int(gaps.max()).bit_length())
        gap_bytes = -(-self.k * width // 8)
        if gap_bytes < bitmask_bytes:
            return True, width, gap_bytes
        return False, 0, bitmask_bytes

    def bits(self) -> int:
        """Exact size of ``to_bytes()`` in bits: overhead, positions and values."""
        _, _, position_bytes = self._position_coding()
        value_bytes = self.k * VALUE_BITS[self.value_dtype] // 8
        return 8 * (overhead_bytes(len(self.fingerprint)) + position_bytes + value_bytes)

    def to_bytes(self) -> bytes:
        use_gaps, width, _ = self._position_coding()
        if use_gaps:
            positions = _pack_uints(np.diff(self.positions, prepend=-1) - 1, width)
        else:
            mask = np.zeros(self.block_size * self.d, dtype=np.uint8)
            mask[self.positions] = 1
            positions = np.packbits(mask).tobytes()
        flags = VALUE_DTYPES.index(self.value_dtype) | (_GAPS_FLAG if use_gaps else 0)
        header = _HEADER.pack(
            MAGIC,
            VERSION,
            flags,
            width,
            len(self.fingerprint),
            self.block_size,
            self.d,
            self.n_tokens,
            self.k,
            self.compressor,
        )
        body = (
            header + self.fingerprint + positions + _values_to_bytes(self.values, self.value_dtype)
        )
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> SparseCode:
        """Parse ``to_bytes()`` output; raises ValueError for anything corrupt or unknown.

        The header is checked (version, shape limit, length, checksum) before anything of the
        size of T·d is allocated."""
        data = bytes(data)
        if data[:4] != MAGIC:
            raise ValueError(f"not a WavGPT code: magic {data[:4]!r}, expected {MAGIC!r}")
        if len(data) > 4 and data[4] != VERSION:
            raise ValueError(
                f"unsupported WavGPT code version {data[4]}: this reader knows version {VERSION} "
                "only (version 1 codes carry no compressor fingerprint; encode the text again)"
            )
        if len(data) < overhead_bytes(0):
            raise ValueError(
                f"truncated WavGPT code: {len(data)} bytes, at least {overhead_bytes(0)} needed"
            )
        _, _, flags, width, fp_len, T, d, n_tokens, k, compressor = _HEADER.unpack_from(data)
        check_shape(T, d)
        dtype_code, use_gaps = flags & 0b11, bool(flags & _GAPS_FLAG)
        if dtype_code >= len(VALUE_DTYPES) or flags & ~0b111:
            raise ValueError(f"corrupt WavGPT code header: unknown flags {flags:#04x}")
        value_dtype = VALUE_DTYPES[dtype_code]
        position_bytes = -(-k * width // 8) if use_gaps else -(-T * d // 8)
        value_bytes = k * VALUE_BITS[value_dtype] // 8
        expected = overhead_bytes(fp_len) + position_bytes + value_bytes
        if len(data) != expected:
            raise ValueError(
                f"WavGPT code length mismatch: the header describes {expected} bytes, got "
                f"{len(data)} (truncated, trailing bytes or corrupt header)"
            )
        (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
        if crc != zlib.crc32(data[: -_CRC.size]):
            raise ValueError("WavGPT code checksum mismatch: the bytes are corrupt")
        offset = _HEADER.size
        fingerprint = data[offset : offset + fp_len]
        offset += fp_len
        raw = data[offset : offset + position_bytes]
        if use_gaps:
            positions = np.cumsum(_unpack_uints(raw, k, width) + 1) - 1
        else:
            positions = np.flatnonzero(np.unpackbits(np.frombuffer(raw, np.uint8))[: T * d])
        offset += position_bytes
        values = _values_from_bytes(data[offset : offset + value_bytes], value_dtype)
        return cls(T, d, n_tokens, positions, values, fingerprint, value_dtype, compressor)


def _as_numpy(x: Tensor | np.ndarray | Sequence[int]) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()
    return np.asarray(x)
