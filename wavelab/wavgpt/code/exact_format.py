"""The exact code's file: blocks' codes, each followed by its token ids range-coded.

A file holds one header and any number of blocks; a block's code (a ``SparseCode``'s bytes, a
two-part embedding, or nothing) is followed by the payload that turns it into the block's exact
ids (``wavelab.wavgpt.code.range_coding``). Little-endian:

    header
    0    4   magic b"WAVX"
    4    1   version (1)
    5    1   mode: 0 prior alone, 1 head given the code, 2 their product
    6    4   α, float32: the head's exponent (product mode)
    10   4   β, float32: the prior's exponent (product mode)
    14   8   prior fingerprint: the language model the payload was coded under (zeros: none)
    22   4   blocks B
    each block
         v   n_tokens, varint: the block's real tokens, [CLS] and [SEP] included
         v   C, varint: bytes of the code
         C   the code
         v   P, varint: bytes of the payload (its 32-bit words less trailing bytes)
         P   payload: the ids at positions 1 .. n_tokens - 2 ([CLS] and [SEP] are the frame)
         4   CRC32 of the block's n_tokens ids, as little-endian uint32 each
    end
         4   CRC32 of every byte before it

The per-block CRC32 is checked after decoding: a payload decoded under another model, another
torch build or from damaged bytes yields other ids, and it says so instead of a wrong text. The
file's CRC32 refuses a truncated or altered file before any decoding.

``block_bits`` is what one block adds to the file; the header is paid once per file.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAGIC = b"WAVX"
VERSION = 1
MODES = ("prior", "head", "product")
HEADER = struct.Struct("<4sBBff8sI")
FINGERPRINT_BYTES = 8
CRC = struct.Struct("<I")


def ids_crc(ids: Sequence[int] | np.ndarray) -> int:
    return zlib.crc32(np.asarray(ids, dtype="<u4").tobytes())


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if offset >= len(data) or shift > 28:
            raise ValueError("truncated or corrupt exact code: a length field runs off the end")
        byte = data[offset]
        value |= (byte & 0x7F) << shift
        offset, shift = offset + 1, shift + 7
        if not byte & 0x80:
            return value, offset


@dataclass(frozen=True)
class ExactBlock:
    n_tokens: int
    code: bytes
    payload: bytes
    crc: int  # ``ids_crc`` of the block's ids

    def to_bytes(self) -> bytes:
        return b"".join(
            [
                varint(self.n_tokens),
                varint(len(self.code)),
                self.code,
                varint(len(self.payload)),
                self.payload,
                CRC.pack(self.crc),
            ]
        )

    def payload_bits(self) -> int:
        """What the block adds beyond its code: lengths, payload and CRC32."""
        return 8 * (len(self.to_bytes()) - len(self.code))


@dataclass(frozen=True)
class ExactFile:
    mode: str
    alpha: float
    beta: float
    prior_fingerprint: bytes
    blocks: tuple[ExactBlock, ...]

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is invalid: one of {', '.join(MODES)}")
        if len(self.prior_fingerprint) != FINGERPRINT_BYTES:
            raise ValueError(f"prior fingerprint must be {FINGERPRINT_BYTES} bytes")

    def to_bytes(self) -> bytes:
        header = HEADER.pack(
            MAGIC,
            VERSION,
            MODES.index(self.mode),
            self.alpha,
            self.beta,
            self.prior_fingerprint,
            len(self.blocks),
        )
        body = header + b"".join(block.to_bytes() for block in self.blocks)
        return body + CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> ExactFile:
        """Parses ``to_bytes()``; ValueError for anything truncated, altered or unknown."""
        data = bytes(data)
        if data[:4] != MAGIC:
            raise ValueError(f"not an exact WavGPT code: magic {data[:4]!r}, expected {MAGIC!r}")
        if len(data) < HEADER.size + CRC.size:
            raise ValueError(f"truncated exact code: {len(data)} bytes")
        if CRC.unpack_from(data, len(data) - CRC.size)[0] != zlib.crc32(data[: -CRC.size]):
            raise ValueError("exact code fails its CRC32: the file is truncated or altered")
        _, version, mode, alpha, beta, fingerprint, count = HEADER.unpack_from(data)
        if version != VERSION:
            raise ValueError(
                f"unsupported exact code version {version}: this reader knows {VERSION} only"
            )
        if mode >= len(MODES):
            raise ValueError(f"corrupt exact code header: mode {mode}")
        offset, end, blocks = HEADER.size, len(data) - CRC.size, []
        for _ in range(count):
            n_tokens, offset = read_varint(data, offset)
            size, offset = read_varint(data, offset)
            code, offset = data[offset : offset + size], offset + size
            size, offset = read_varint(data, offset)
            payload, offset = data[offset : offset + size], offset + size
            if offset + CRC.size > end:
                raise ValueError("truncated exact code: a block runs off the end")
            blocks.append(ExactBlock(n_tokens, code, payload, CRC.unpack_from(data, offset)[0]))
            offset += CRC.size
        if offset != end:
            raise ValueError(f"corrupt exact code: {end - offset} bytes after the last block")
        return cls(MODES[mode], alpha, beta, fingerprint, tuple(blocks))
