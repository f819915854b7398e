"""The WavGPT code: which wavelet coefficients of one block were kept, and their values.

Binary format, version 1, little-endian:

    offset  size  field
    0       4     magic b"WAVC"
    4       1     version (1)
    5       1     flags: bits 0-1 value dtype (0 fp16, 1 bf16, 2 fp32), bit 2 position coding
                  (0 bitmask, 1 gaps)
    6       1     gap width w in bits (0 with the bitmask)
    7       1     fingerprint length F in bytes
    8       2     block_size T
    10      2     d
    12      2     n_tokens (real tokens of the block)
    14      4     k (kept coefficients)
    18      F     fingerprint of the checkpoint that produced the code
    18+F    P     positions
    ...     V     values: k little-endian floats of the value dtype, in position order
    ...     4     CRC32 of every byte before it

Positions are flat indices t * d + c into the (T, d) coefficient array, in increasing order. The
encoder writes whichever of two codings is smaller:

* bitmask: T * d bits, one per coefficient, numpy ``packbits`` order (first index = high bit);
* gaps: k fixed-width fields of w bits, the first position itself and then pos[i] - pos[i-1] - 1,
  with w the bit length of the largest gap; bit-packed the same way.

Gaps win whenever k * w < T * d, i.e. for the sparse codes WavGPT is about. Both cost more than
the information-theoretic log2 C(T * d, k) bits of ``code_bits`` (which an entropy coder would
approach); ``bits()`` is what this format actually sends, ``code_bits`` the ideal used for
"bits per token" metrics.

``WavGPTCodec`` turns text into such codes and back with a trained WavGPT checkpoint, and
``python -m wavelab.codec`` does the same from the command line (``--help``).
"""

from __future__ import annotations

import base64
import binascii
import math
import pickle
import struct
import sys
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from wavelab.lit.wavgpt import WavGPTModule

MAGIC = b"WAVC"
VERSION = 1
_HEADER = struct.Struct("<4sBBBBHHHI")
_CRC = struct.Struct("<I")
# Bytes every code carries besides fingerprint, positions and values: header and checksum.
OVERHEAD_BYTES = _HEADER.size + _CRC.size
VALUE_DTYPES = ("fp16", "bf16", "fp32")
VALUE_BITS = {"fp16": 16, "bf16": 16, "fp32": 32}
_GAPS_FLAG = 0b100
_MAX_U16 = 2**16 - 1


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
    fingerprint: bytes = b""
    value_dtype: str = "fp16"

    def __post_init__(self) -> None:
        if self.value_dtype not in VALUE_DTYPES:
            raise ValueError(
                f"value_dtype={self.value_dtype!r} is invalid: must be one of {VALUE_DTYPES}"
            )
        for name, value, low, high in (
            ("block_size", self.block_size, 1, _MAX_U16),
            ("d", self.d, 1, _MAX_U16),
            ("n_tokens", self.n_tokens, 0, self.block_size),
        ):
            if not low <= value <= high:
                raise ValueError(f"{name}={value} is invalid: must be in [{low}, {high}]")
        if isinstance(self.fingerprint, str):
            self.fingerprint = bytes.fromhex(self.fingerprint)
        if len(self.fingerprint) > 255:
            raise ValueError(f"fingerprint has {len(self.fingerprint)} bytes: at most 255 allowed")
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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseCode):
            return NotImplemented
        return (
            (self.block_size, self.d, self.n_tokens, self.fingerprint, self.value_dtype)
            == (other.block_size, other.d, other.n_tokens, other.fingerprint, other.value_dtype)
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
        return cls(T, d, n_tokens, positions, values, fingerprint, value_dtype)

    @classmethod
    def from_batch(
        cls,
        coeffs: Tensor | np.ndarray,
        keep: Tensor | np.ndarray,
        n_tokens: Sequence[int] | Tensor | np.ndarray,
        fingerprint: bytes | str = b"",
        value_dtype: str = "fp16",
    ) -> list[SparseCode]:
        """coeffs (B, T, d), keep (B, T, d), n_tokens (B,) -> B codes (one loop over B only)."""
        coeffs, keep = _as_numpy(coeffs), _as_numpy(keep)
        n_tokens = _as_numpy(n_tokens).astype(np.int64)
        return [
            cls.from_dense(c, m, int(n), fingerprint, value_dtype)
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
        """Exact size of ``to_bytes()`` in bits: header, fingerprint, positions, values, CRC."""
        _, _, position_bytes = self._position_coding()
        value_bytes = self.k * VALUE_BITS[self.value_dtype] // 8
        return 8 * (_HEADER.size + len(self.fingerprint) + position_bytes + value_bytes + _CRC.size)

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
        )
        body = (
            header + self.fingerprint + positions + _values_to_bytes(self.values, self.value_dtype)
        )
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> SparseCode:
        """Parse ``to_bytes()`` output; raises ValueError for anything corrupt or unknown."""
        data = bytes(data)
        if len(data) < _HEADER.size + _CRC.size:
            raise ValueError(
                f"truncated WavGPT code: {len(data)} bytes, at least {_HEADER.size + _CRC.size} "
                "needed"
            )
        magic, version, flags, width, fp_len, T, d, n_tokens, k = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise ValueError(f"not a WavGPT code: magic {magic!r}, expected {MAGIC!r}")
        if version != VERSION:
            raise ValueError(
                f"unsupported WavGPT code version {version}: this reader knows {VERSION}"
            )
        dtype_code, use_gaps = flags & 0b11, bool(flags & _GAPS_FLAG)
        if dtype_code >= len(VALUE_DTYPES) or flags & ~0b111:
            raise ValueError(f"corrupt WavGPT code header: unknown flags {flags:#04x}")
        value_dtype = VALUE_DTYPES[dtype_code]
        position_bytes = -(-k * width // 8) if use_gaps else -(-T * d // 8)
        value_bytes = k * VALUE_BITS[value_dtype] // 8
        expected = _HEADER.size + fp_len + position_bytes + value_bytes + _CRC.size
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
        return cls(T, d, n_tokens, positions, values, fingerprint, value_dtype)


def _as_numpy(x: Tensor | np.ndarray | Sequence[int]) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


# --- text <-> codes with a trained WavGPT checkpoint ------------------------------------------

VALUE_DTYPE_OF_BITS = {16: "fp16", 32: "fp32"}


@dataclass(frozen=True)
class CodeSize:
    """What one code costs. ``bits_per_token`` is what ``to_bytes()`` sends; the ideal is
    ``code_bits`` (log2 C(T·d, k) positions), the figure training logs as bits per token."""

    num_bytes: int
    n_tokens: int
    bits_per_token: float
    ideal_bits_per_token: float
    compression_vs_ids: float  # bits of the raw token ids (log2 vocab each) / bits sent

    def __str__(self) -> str:
        return (
            f"{self.num_bytes} bytes for {self.n_tokens} tokens = {self.bits_per_token:.1f} bits/token "
            f"(ideal {self.ideal_bits_per_token:.1f}); {self.compression_vs_ids:.3g}x the raw ids"
        )


class WavGPTCodec:
    """Text <-> ``SparseCode`` with a trained ``WavGPTModule``; inference only, batched.

    One code is one block: ``[CLS] text [SEP]`` padded to ``block_size``, as in training. A text
    with more word pieces is truncated to the first ``block_size - 2`` of them, with a warning:
    splitting it would turn one text into several codes and make ``encode``/``decode`` no longer
    one-to-one, so split long documents before encoding instead.

    Codes are only decodable by the checkpoint that made them: ``decode`` checks the encoder
    fingerprint and the (block_size, d) shape and raises ValueError otherwise.
    """

    def __init__(
        self,
        module: WavGPTModule,
        tokenizer=None,
        value_dtype: str | None = None,
        batch_size: int = 32,
    ) -> None:
        """``value_dtype``: precision of the stored values; None: the module's ``value_bits``."""
        from wavelab.models.encoder import load_tokenizer  # transformers: only for the model half

        self.module = module.eval()
        self.tokenizer = tokenizer or load_tokenizer(module.hparams.encoder["name_or_path"])
        if value_dtype is None:
            value_dtype = VALUE_DTYPE_OF_BITS.get(module.hparams.value_bits, "fp32")
        if value_dtype not in VALUE_DTYPES:
            raise ValueError(
                f"value_dtype={value_dtype!r} is invalid: must be one of {VALUE_DTYPES}"
            )
        self.value_dtype = value_dtype
        self.batch_size = batch_size
        self.block_size = module.cfg.block_size
        self.d = module.encoder.d
        self.fingerprint = bytes.fromhex(module.encoder.fingerprint)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, map_location: str | torch.device = "cpu", **kwargs
    ) -> WavGPTCodec:
        """Loads a WavGPT checkpoint; its encoder is re-loaded from the recorded
        ``name_or_path`` and must match the recorded fingerprint."""
        from wavelab.checkpoints import load_module
        from wavelab.lit.wavgpt import WavGPTModule

        try:
            module = load_module(str(path), map_location=map_location)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as e:  # what torch.load raises
            raise ValueError(f"{path} is not a readable checkpoint: {e}") from e
        if not isinstance(module, WavGPTModule):
            raise ValueError(f"{path} is a {type(module).__name__} checkpoint, not a WavGPT one")
        return cls(module, **kwargs)

    # --- encoding -----------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Texts -> ``[CLS] ... [SEP] [PAD]...`` input_ids and attention_mask, (B, block_size)."""
        tok, T = self.tokenizer, self.block_size
        texts = list(texts)
        pieces = tok(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []
        ids = np.full((len(pieces), T), tok.pad_token_id, dtype=np.int64)
        lengths = np.empty(len(pieces), dtype=np.int64)
        for i, body in enumerate(pieces):
            if len(body) > T - 2:
                warnings.warn(
                    f"text {i} has {len(body)} word pieces; a code holds {T - 2}: the rest "
                    "is dropped (split long texts before encoding)",
                    stacklevel=3,
                )
            row = [tok.cls_token_id, *body[: T - 2], tok.sep_token_id]
            ids[i, : len(row)] = row
            lengths[i] = len(row)
        mask = np.arange(T)[None, :] < lengths[:, None]
        return torch.from_numpy(ids), torch.from_numpy(mask).long()

    def encode(self, texts: Sequence[str]) -> list[SparseCode]:
        return self.encode_ids(*self.tokenize(texts))

    @torch.inference_mode()
    def encode_ids(self, input_ids: Tensor, attention_mask: Tensor) -> list[SparseCode]:
        """(B, T) ids and mask -> B codes of the coefficients the filter keeps."""
        codes = []
        for ids, mask in self._batches(input_ids, attention_mask):
            _, out = self.module.encode(ids, mask)
            codes += SparseCode.from_batch(
                out.coeffs, out.keep, mask.sum(1), self.fingerprint, self.value_dtype
            )
        return codes

    # --- decoding -----------------------------------------------------------------------------

    def check(self, code: SparseCode) -> None:
        """Raises ValueError unless this checkpoint can decode ``code``."""
        if code.fingerprint != self.fingerprint:
            raise ValueError(
                f"this code was made with encoder fingerprint {code.fingerprint_hex or '(none)'}, "
                f"but this checkpoint's encoder has {self.fingerprint.hex()}: decode it with the "
                "checkpoint that encoded it"
            )
        if (code.block_size, code.d) != (self.block_size, self.d):
            raise ValueError(
                f"code shape (block_size={code.block_size}, d={code.d}) does not match the "
                f"checkpoint's (block_size={self.block_size}, d={self.d})"
            )
        if code.n_tokens < 1:
            raise ValueError("code has n_tokens=0: every code holds at least one token")

    @torch.inference_mode()
    def hidden(self, codes: Sequence[SparseCode | bytes]) -> tuple[Tensor, Tensor]:
        """Codes (or their bytes) -> refined hidden states (B, T, d) and attention_mask (B, T):
        what the frozen head reads."""
        codes = [c if isinstance(c, SparseCode) else SparseCode.from_bytes(c) for c in codes]
        for code in codes:
            self.check(code)
        device = self.module.device
        n_tokens = torch.tensor([c.n_tokens for c in codes], device=device)
        mask = (torch.arange(self.block_size, device=device)[None, :] < n_tokens[:, None]).long()
        core, out = self.module.core, []
        for start in range(0, len(codes), self.batch_size):
            chunk = codes[start : start + self.batch_size]
            kept = torch.from_numpy(SparseCode.batch_to_dense(chunk)).to(device)
            h_hat = core.dwt.inverse(kept.to(self._dtype()))
            out.append(core.refiner(h_hat, mask[start : start + len(chunk)]))
        return torch.cat(out), mask

    def decode(self, codes: Sequence[SparseCode | bytes]) -> list[str]:
        h, mask = self.hidden(codes)
        return self._head_texts(h, mask)

    @torch.inference_mode()
    def head_decode(self, input_ids: Tensor, attention_mask: Tensor) -> list[str]:
        """What the frozen head reads back from the untouched hidden states: the upper bound
        for ``decode`` (not 100% for a tied head such as MiniLM's)."""
        hs = [self.module.encoder.hidden(i, m) for i, m in self._batches(input_ids, attention_mask)]
        return self._head_texts(torch.cat(hs), attention_mask.to(self.module.device))

    def ids_to_texts(self, input_ids: Tensor, attention_mask: Tensor) -> list[str]:
        rows = [ids[: int(n)].tolist() for ids, n in zip(input_ids, attention_mask.sum(1))]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)

    def _head_texts(self, h: Tensor, mask: Tensor) -> list[str]:
        # Chunked: the logits are (B, T, vocab), the largest tensor of the pipeline.
        ids = torch.cat(
            [
                self.module.encoder.logits(h[i : i + self.batch_size]).argmax(-1)
                for i in range(0, len(h), self.batch_size)
            ]
        )
        return self.ids_to_texts(ids.cpu(), mask.cpu())

    # --- similarity and size ------------------------------------------------------------------

    def embed(self, items: Sequence[str | SparseCode | bytes]) -> Tensor:
        """(n, d) unit vectors: the decoded, refined hidden states mean-pooled over real tokens,
        i.e. the sentence embedding all-MiniLM-L6-v2 is trained for, read from the code. Texts
        are encoded first, so they are compared by what their codes carry."""
        texts = [i for i, item in enumerate(items) if isinstance(item, str)]
        codes = list(items)
        for i, code in zip(texts, self.encode([items[i] for i in texts])):
            codes[i] = code
        h, mask = self.hidden(codes)
        m = mask[..., None].to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)

    def similarity(
        self, a: Sequence[str | SparseCode | bytes], b: Sequence[str | SparseCode | bytes]
    ) -> Tensor:
        """(len(a), len(b)) cosine similarities of ``embed``; the diagonal of
        ``similarity(x, y)`` holds the pairwise ones."""
        return self.embed(a) @ self.embed(b).T

    def size(self, code: SparseCode) -> CodeSize:
        bits = code.bits()
        n = max(code.n_tokens, 1)
        ideal = code_bits(code.k, code.block_size, code.d, VALUE_BITS[code.value_dtype])
        ideal += 8 * (OVERHEAD_BYTES + len(code.fingerprint))
        ids_bits = n * math.log2(self.module.encoder.vocab_size)
        return CodeSize(bits // 8, code.n_tokens, bits / n, ideal / n, ids_bits / bits)

    def _batches(self, input_ids: Tensor, attention_mask: Tensor):
        device = self.module.device
        for start in range(0, len(input_ids), self.batch_size):
            end = start + self.batch_size
            yield input_ids[start:end].to(device), attention_mask[start:end].to(device)

    def _dtype(self) -> torch.dtype:
        return self.module.encoder.model.get_input_embeddings().weight.dtype


# --- command line ---------------------------------------------------------------------------

CLI_DOC = """\
Encode text into a WavGPT code and decode it back, with a trained checkpoint.

  python -m wavelab.codec encode    ckpt_path=CKPT text="To be, or not to be" [out=code.bin]
  python -m wavelab.codec decode    ckpt_path=CKPT code=BASE64   (or code_file=code.bin)
  python -m wavelab.codec roundtrip ckpt_path=CKPT text="To be, or not to be"

encode prints the code as base64 and its size; a text longer than one block is truncated."""
CLI_KEYS = {
    "ckpt_path": "the WavGPT checkpoint (its encoder must be loadable, e.g. the packaged one)",
    "text": "encode, roundtrip: the text to encode",
    "out": "encode: also write the binary code to this file",
    "code": "decode: the code as base64",
    "code_file": "decode: a file with the binary code",
    "device": "cpu (default) or cuda",
}
VERBS = {
    "encode": ("ckpt_path", "text"),
    "decode": ("ckpt_path",),
    "roundtrip": ("ckpt_path", "text"),
}


def _read_code(args: dict[str, str]) -> SparseCode:
    if ("code" in args) == ("code_file" in args):
        raise ValueError("decode needs exactly one of code=BASE64 and code_file=PATH")
    if "code_file" in args:
        return SparseCode.from_bytes(Path(args["code_file"]).read_bytes())
    try:
        data = base64.b64decode(args["code"], validate=True)
    except binascii.Error as e:
        raise ValueError(f"code= is not valid base64: {e}") from e
    return SparseCode.from_bytes(data)


def _cli(argv: Sequence[str]) -> None:
    from wavelab.cli import parse_keys, usage

    if not argv or argv[0] in ("-h", "--help") or argv[0] not in VERBS:
        print(usage(CLI_DOC, CLI_KEYS))
        if argv and argv[0] not in ("-h", "--help"):
            raise ValueError(f"unknown verb {argv[0]!r}: use one of {', '.join(VERBS)}")
        return
    verb, args = argv[0], parse_keys(argv[1:], CLI_KEYS, required=VERBS[argv[0]])
    # A corrupt code fails here, before the (slow) checkpoint load.
    code = _read_code(args) if verb == "decode" else None
    codec = WavGPTCodec.from_checkpoint(args["ckpt_path"], map_location=args.get("device", "cpu"))
    if verb == "decode":
        print(codec.decode([code])[0])
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (code,) = codec.encode([args["text"]])
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    data = code.to_bytes()
    if verb == "encode":
        print(base64.b64encode(data).decode())
        print(f"# k={code.k} of {code.block_size}x{code.d} coefficients; {codec.size(code)}")
        if "out" in args:
            Path(args["out"]).write_bytes(data)
            print(f"# wrote {args['out']}")
        return
    print(f"text:    {args['text']}")
    print(f"decoded: {codec.decode([data])[0]}")
    print(f"code:    k={code.k}; {codec.size(code)}")


def main(argv: Sequence[str] | None = None) -> None:
    from wavelab.cli import run_main

    run_main(lambda: _cli(sys.argv[1:] if argv is None else list(argv)))


if __name__ == "__main__":
    main()
