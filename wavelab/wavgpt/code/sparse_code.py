"""The WavGPT code: which wavelet coefficients of one block were kept, and their values.

This module is the byte format and its size in bits, nothing else: it imports no model and no
Lightning code, so training (``val/bits_per_token``) and the codec (``wavelab.wavgpt.codec``) can both
count bits from the one definition here.

Binary format, version 3, little-endian:

    offset  size  field
    0       4     magic b"WAVC"
    4       1     version (3)
    5       1     value_bits: 16 (fp16), 8 or 4 (integers with scales)
    6       1     flags: bit 0 scales per band (else one per code)
    7       1     lifting levels L: the code has G = L + 1 wavelet bands
    8       1     encoder fingerprint length F in bytes
    9       2     block_size T
    11      2     d
    13      2     n_tokens (real tokens of the block)
    15      4     k (kept coefficients)
    19      4     P: bytes of the position stream
    23      8     compressor fingerprint: the trained lifting, filter and refiner that made the code
    31      F     encoder fingerprint: the frozen encoder whose hidden states were coded
    31+F    S     scales: fp16, none at 16 bits, else 1 (per code) or G (per band)
    ...     P     positions, entropy-coded (``wavelab.wavgpt.code.positions``: per-band Rice codes)
    ...     V     values in position order: fp16, or ceil(k * bits / 8) bytes of
                  integers q in [-L, L] (L = 127 or 7; int8, or 4-bit two's complement, high
                  nibble first), value = q / L * scale of its group (``wavelab.wavgpt.code.quantize``)
    ...     4     CRC32 of every byte before it

Positions are flat indices t * d + c into the (T, d) coefficient array, in increasing order; the
bands are row ranges of it (``position_coding.band_bounds``).

Values beyond the value type's range are clamped, never sent as inf: to +-65504 at 16 bits, and
at 8 and 4 bits the scale is the group's largest |value| rounded up to fp16, itself at most
65504. ``from_bytes`` refuses non-finite values and non-finite or negative scales.

Only this version is read: a code of another version is refused in one line naming it (encode
the text again with this wavelab).

T·d is at most ``MAX_COEFFICIENTS`` (2^24, i.e. 64 MiB as dense float32; a 4096-token block of
4096-wide states): a short header can not make a reader allocate more than that.

``bits()`` is exactly what ``to_bytes()`` sends and ``sent_bits`` the same for a batch of
masks; ``code_bits`` is the ideal (log2 C(T·d, k) positions) logged beside it. All count the
same per-code overhead, ``overhead_bytes``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass

import numpy as np
import torch
from torch import Tensor

from wavelab.wavgpt.code.positions import (
    band_bounds,
    check_levels,
    decode_positions,
    encode_positions,
)
from wavelab.wavgpt.code.quantize import FP16_MAX, SCALE_BITS, VALUE_BITS, fp16_ceil
from wavelab.wavgpt.code.sizes import (
    COMPRESSOR_FINGERPRINT_BYTES,
    CRC,
    HEADER,
    as_numpy,
    check_length_and_crc,
    check_shape,
    code_bits,
    overhead_bytes,
    scale_count,
    sent_bits,
    value_bytes,
)
from wavelab.wavgpt.code.values import (
    dequantized,
    quantized,
    values_from_bytes,
    values_to_bytes,
)

__all__ = ["SparseCode", "code_bits", "overhead_bytes", "scale_count", "sent_bits"]

MAGIC = b"WAVC"
VERSION = 3
VALUE_SCALES = ("code", "band")
_BAND_SCALES_FLAG = 0b1


@dataclass(eq=False)
class SparseCode:
    """One block's kept coefficients: flat positions (k,) int64 and values (k,) float32.

    Values are rounded to ``value_bits`` on construction (fp16 clamped to its range at 16; at 8
    and 4 bits quantized against ``scales``, which are computed from the values when not given),
    so ``values`` is what a receiver decodes and ``from_bytes(to_bytes())`` returns an equal
    code. ``levels`` gives the wavelet bands (per-band scales and position coding); 0 treats the
    block as one band. Build codes from dense arrays with ``from_dense``/``from_batch`` and go
    back with ``to_dense``/``batch_to_dense``; all of them are vectorised over coefficients.
    """

    block_size: int
    d: int
    n_tokens: int
    positions: np.ndarray
    values: np.ndarray
    _: KW_ONLY  # the format's settings, by name
    encoder_fingerprint: bytes = b""  # of the frozen encoder whose states were coded
    value_bits: int = 16
    compressor: bytes = bytes(COMPRESSOR_FINGERPRINT_BYTES)  # of the trained core
    value_scale: str = "code"
    levels: int = 0
    scales: np.ndarray | None = None  # (scale_count,) fp16 numbers; None: from the values

    def __post_init__(self) -> None:
        if self.value_bits not in VALUE_BITS:
            raise ValueError(
                f"value_bits={self.value_bits!r} is invalid: must be one of {VALUE_BITS}"
            )
        if self.value_scale not in VALUE_SCALES:
            raise ValueError(
                f"value_scale={self.value_scale!r} is invalid: must be one of {VALUE_SCALES}"
            )
        check_shape(self.block_size, self.d)
        check_levels(self.block_size, self.levels)
        if not 0 <= self.n_tokens <= self.block_size:
            raise ValueError(
                f"n_tokens={self.n_tokens} is invalid: must be in [0, {self.block_size}]"
            )
        if isinstance(self.encoder_fingerprint, str):
            self.encoder_fingerprint = bytes.fromhex(self.encoder_fingerprint)
        if len(self.encoder_fingerprint) > 255:
            raise ValueError(
                f"encoder_fingerprint has {len(self.encoder_fingerprint)} bytes: at most 255 allowed"
            )
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
        values = np.asarray(self.values, dtype=np.float32)
        if values.shape != self.positions.shape:
            raise ValueError(f"{len(self.positions)} positions but values of shape {values.shape}")
        if np.isnan(values).any():
            raise ValueError("values must not be NaN")
        n = self.block_size * self.d
        if self.k and (
            self.positions[0] < 0 or self.positions[-1] >= n or np.any(np.diff(self.positions) <= 0)
        ):
            raise ValueError(f"positions must be strictly increasing and in [0, {n})")
        self.scales = self._checked_scales(values)
        self.values = self._rounded(values)

    @property
    def k(self) -> int:
        return len(self.positions)

    @property
    def encoder_fingerprint_hex(self) -> str:
        return self.encoder_fingerprint.hex()

    def _groups(self) -> np.ndarray:
        """(k,) the scale group of each value: 0, or its band with per-band scales."""
        if self.value_scale == "code":
            return np.zeros(self.k, dtype=np.int64)
        bounds = band_bounds(self.block_size, self.d, self.levels)
        return np.searchsorted(bounds, self.positions, side="right") - 1

    def _value_scales(self) -> np.ndarray | None:
        """(k,) the scale of each value at 8 and 4 bits; None for float values."""
        return self.scales[self._groups()] if self.value_bits < 16 else None

    def _checked_scales(self, values: np.ndarray) -> np.ndarray:
        """(scale_count,) float32 fp16 numbers: the given scales, or each group's peak |value|
        rounded up to fp16 (as ``quantize.group_scales`` does in training)."""
        count = scale_count(self.value_bits, self.value_scale, self.levels)
        if self.scales is None:
            peak = np.zeros(count, dtype=np.float32)
            if count:
                np.maximum.at(peak, self._groups(), np.abs(values))
            return fp16_ceil(torch.from_numpy(peak)).numpy()
        scales = np.asarray(self.scales, dtype=np.float32).reshape(-1)
        if scales.shape != (count,):
            raise ValueError(
                f"{len(scales)} scales given; value_bits={self.value_bits} with "
                f"value_scale={self.value_scale!r} and levels={self.levels} needs {count}"
            )
        if not np.isfinite(scales).all() or np.any(scales < 0):
            raise ValueError("scales must be finite and >= 0")
        return np.minimum(scales, FP16_MAX).astype(np.float16).astype(np.float32)

    def _rounded(self, values: np.ndarray) -> np.ndarray:
        if self.value_bits == 16:
            return np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16).astype(np.float32)
        scale = self._value_scales()
        return dequantized(quantized(values, self.value_bits, scale), self.value_bits, scale)

    def _header_fields(self) -> tuple:
        return (
            self.block_size,
            self.d,
            self.n_tokens,
            self.encoder_fingerprint,
            self.value_bits,
            self.compressor,
            self.value_scale,
            self.levels,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseCode):
            return NotImplemented
        return (
            self._header_fields() == other._header_fields()
            and np.array_equal(self.scales, other.scales)
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
        encoder_fingerprint: bytes | str = b"",
        value_bits: int = 16,
        compressor: bytes | str = bytes(COMPRESSOR_FINGERPRINT_BYTES),
        value_scale: str = "code",
        levels: int = 0,
        scales: Tensor | np.ndarray | None = None,
    ) -> SparseCode:
        """coeffs (T, d) and a (T, d) keep mask -> the code of the kept coefficients."""
        coeffs, keep = as_numpy(coeffs), as_numpy(keep).astype(bool)
        if coeffs.ndim != 2 or keep.shape != coeffs.shape:
            raise ValueError(
                f"expected (T, d) coeffs and keep mask, got {coeffs.shape} and {keep.shape}"
            )
        positions = np.flatnonzero(keep)
        T, d = coeffs.shape
        values = coeffs.reshape(-1)[positions]
        scales = None if scales is None else as_numpy(scales)
        return cls(
            T,
            d,
            n_tokens,
            positions,
            values,
            encoder_fingerprint=encoder_fingerprint,
            value_bits=value_bits,
            compressor=compressor,
            value_scale=value_scale,
            levels=levels,
            scales=scales,
        )

    @classmethod
    def from_batch(
        cls,
        coeffs: Tensor | np.ndarray,
        keep: Tensor | np.ndarray,
        n_tokens: Sequence[int] | Tensor | np.ndarray,
        scales: Tensor | np.ndarray | None = None,
        **header,
    ) -> list[SparseCode]:
        """coeffs (B, T, d), keep (B, T, d), n_tokens (B,), scales (B, G) or None -> B codes
        (one loop over B only); ``header``: ``from_dense``'s keywords, the same for every code."""
        coeffs, keep = as_numpy(coeffs), as_numpy(keep)
        n_tokens = as_numpy(n_tokens).astype(np.int64)
        per_code = [None] * len(coeffs) if scales is None else as_numpy(scales)
        return [
            cls.from_dense(c, m, int(n), scales=s, **header)
            for c, m, n, s in zip(coeffs, keep, n_tokens, per_code, strict=True)
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

    def _bounds(self) -> np.ndarray:
        return band_bounds(self.block_size, self.d, self.levels)

    def bits(self) -> int:
        """Exact size of ``to_bytes()`` in bits (it codes the positions to count them)."""
        return 8 * len(self.to_bytes())

    def to_bytes(self) -> bytes:
        positions = encode_positions(self.positions, self._bounds())
        flags = _BAND_SCALES_FLAG if self.value_scale == "band" else 0
        header = HEADER.pack(
            MAGIC,
            VERSION,
            self.value_bits,
            flags,
            self.levels,
            len(self.encoder_fingerprint),
            self.block_size,
            self.d,
            self.n_tokens,
            self.k,
            len(positions),
            self.compressor,
        )
        body = b"".join(
            [
                header,
                self.encoder_fingerprint,
                self.scales.astype("<f2").tobytes(),
                positions,
                values_to_bytes(self.values, self.value_bits, self._value_scales()),
            ]
        )
        return body + CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> SparseCode:
        """Parse ``to_bytes()`` output; raises ValueError for anything corrupt or unknown.

        The header is checked (version, shape limit, length, checksum) before anything of the
        size of T·d is allocated."""
        data = bytes(data)
        if data[:4] != MAGIC:
            raise ValueError(f"not a WavGPT code: magic {data[:4]!r}, expected {MAGIC!r}")
        version = data[4] if len(data) > 4 else None
        if version is not None and version != VERSION:
            raise ValueError(
                f"unsupported WavGPT code version {version}: this reader knows version "
                f"{VERSION} only; encode the text again"
            )
        if len(data) < overhead_bytes(0):
            raise ValueError(
                f"truncated WavGPT code: {len(data)} bytes, at least {overhead_bytes(0)} needed"
            )
        fields = HEADER.unpack_from(data)
        _, _, value_bits, flags, levels, fp_len, T, d, n_tokens, k, position_bytes = fields[:11]
        compressor = fields[11]
        check_shape(T, d)
        check_levels(T, levels)
        if value_bits not in VALUE_BITS or flags & ~_BAND_SCALES_FLAG:
            raise ValueError(
                f"corrupt WavGPT code header: value_bits {value_bits}, flags {flags:#04x}"
            )
        if k > T * d:
            raise ValueError(f"corrupt WavGPT code header: k={k} of {T * d} coefficients")
        value_scale = "band" if flags & _BAND_SCALES_FLAG else "code"
        n_scales = scale_count(value_bits, value_scale, levels)
        expected = (
            overhead_bytes(fp_len)
            + n_scales * SCALE_BITS // 8
            + position_bytes
            + value_bytes(k, value_bits)
        )
        check_length_and_crc(data, expected)
        offset = HEADER.size
        encoder_fingerprint = data[offset : offset + fp_len]
        offset += fp_len
        scales = np.frombuffer(data, "<f2", n_scales, offset).astype(np.float32)
        if not np.isfinite(scales).all() or np.any(scales < 0):
            raise ValueError("corrupt WavGPT code: scales must be finite and >= 0")
        offset += 2 * n_scales
        bounds = band_bounds(T, d, levels)
        positions = decode_positions(data[offset : offset + position_bytes], k, bounds)
        offset += position_bytes
        code = cls(
            T,
            d,
            n_tokens,
            positions,
            np.zeros(k, np.float32),
            encoder_fingerprint=encoder_fingerprint,
            value_bits=value_bits,
            compressor=compressor,
            value_scale=value_scale,
            levels=levels,
            scales=scales,
        )
        raw = data[offset : offset + value_bytes(k, value_bits)]
        code.values = values_from_bytes(raw, k, value_bits, code._value_scales())
        return code
