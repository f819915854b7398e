"""Reference rates of the rate–distortion study: what lossless text coding costs per token.

On the validation blocks of a run (their real tokens, [CLS] and [SEP] included, as
``val/bits_per_token`` counts them), every rate total bits over total tokens:

* ``ids``: the raw token ids, log2(vocabulary size) bits per token;
* ``utf8``: the blocks' texts uncompressed;
* ``<compressor>_block``: each block's text compressed on its own at the compressor's highest
  level, which is what a per-block code competes with (every block starts with an empty
  dictionary). The formats carry no container where one can be left out: ``lzma`` is raw LZMA2
  (no .xz header, index or CRC64), ``zlib`` raw deflate (no zlib header or Adler-32), ``zstd`` a
  frame without checksum, content size or dictionary id (its 4-byte magic and frame header
  remain, counted). ``xz`` is lzma in the .xz container, and ``bz2`` keeps its stream header and
  CRC (it has no raw form): both counted, and named for what they are;
* ``<compressor>_split``: all the blocks' texts compressed at once, a kinder figure (context
  shared across blocks).

A block's text is its tokenizer's decoding of its real ids without special tokens: what the ids
carry, except where the decoding does not round-trip (a block that starts mid-word). The
two-part reference therefore codes the **ids** (``ids_bytes``), whose decoding is checked.
"""

from __future__ import annotations

import bz2
import lzma
import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import zstandard

# lzma's preset 9's dictionary: the most it ever looks back.
LZMA_MAX_DICT = 64 << 20


def _lzma_filters(size: int) -> list[dict]:
    """LZMA2 at preset 9 | PRESET_EXTREME with a dictionary just big enough for ``size`` bytes
    (at most preset 9's): a dictionary longer than the input finds no more matches, so the size
    is preset 9's, without allocating its 64 MiB per call."""
    dict_size = min(LZMA_MAX_DICT, max(4096, 1 << size.bit_length()))
    return [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": dict_size}]


def lzma_extreme(data: bytes) -> bytes:
    """lzma at its strongest in the .xz container (header, index, CRC64 included)."""
    return lzma.compress(data, filters=_lzma_filters(len(data)))


def lzma_raw(data: bytes) -> bytes:
    """The same LZMA2 stream with no container."""
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_lzma_filters(len(data)))


def lzma_raw_decompress(data: bytes) -> bytes:
    # the decoder's dictionary may be larger than the encoder's: the format's largest
    filters = [{"id": lzma.FILTER_LZMA2, "dict_size": LZMA_MAX_DICT}]
    return lzma.decompress(data, format=lzma.FORMAT_RAW, filters=filters)


def deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


_ZSTD = zstandard.ZstdCompressor(
    level=22, write_checksum=False, write_content_size=False, write_dict_id=False
)


def zstd_decompress(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "lzma": lzma_raw,
    "xz": lzma_extreme,
    "zlib": deflate_raw,
    "bz2": lambda data: bz2.compress(data, 9),
    "zstd": _ZSTD.compress,
}
DECOMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "lzma": lzma_raw_decompress,
    "xz": lzma.decompress,
    "zlib": lambda data: zlib.decompress(data, -15),
    "bz2": bz2.decompress,
    "zstd": zstd_decompress,
}


def ids_bytes(ids: Sequence[int]) -> bytes:
    """A block's ids as little-endian uint16 (a vocabulary up to 65,536) or uint32."""
    ids = np.asarray(ids, dtype=np.int64)
    dtype = "<u2" if len(ids) == 0 or ids.max() < 1 << 16 else "<u4"
    return ids.astype(dtype).tobytes()


def ids_from_bytes(data: bytes, n: int) -> list[int]:
    dtype = "<u2" if len(data) == 2 * n else "<u4"
    return np.frombuffer(data, dtype=dtype).astype(np.int64).tolist()


def block_bits(texts: Sequence[str], compressor: str) -> int:
    """The bits of every text compressed on its own by ``compressor``, summed."""
    compress = COMPRESSORS[compressor]
    return sum(8 * len(compress(text.encode("utf-8"))) for text in texts)


def reference_bits_per_token(texts: Sequence[str], n_tokens: int, vocab_size: int) -> dict:
    """{name: bits per token} for the raw ids and every compressor, per block and per split.

    ``texts``: the blocks' texts; ``n_tokens``: their real tokens in all."""
    if n_tokens < 1:
        raise ValueError(f"n_tokens={n_tokens} is invalid: need at least one token")
    rates = {
        "ids": math.log2(vocab_size),
        "utf8": 8 * sum(len(t.encode()) for t in texts) / n_tokens,
    }
    joined = "\n".join(texts).encode("utf-8")
    for name, compress in COMPRESSORS.items():
        rates[f"{name}_block"] = block_bits(texts, name) / n_tokens
        rates[f"{name}_split"] = 8 * len(compress(joined)) / n_tokens
    return rates


def coded_ids(
    blocks: Sequence[Sequence[int]], compressor: str = "lzma"
) -> tuple[int, float, float]:
    """Every block's ids compressed on its own and decompressed again: the bits in all, and the
    fractions of tokens and of blocks given back exactly (measured, not assumed)."""
    compress, decompress = COMPRESSORS[compressor], DECOMPRESSORS[compressor]
    bits = exact = right = total = 0
    for ids in blocks:
        ids = [int(i) for i in ids]
        packed = compress(ids_bytes(ids))
        back = ids_from_bytes(decompress(packed), len(ids))
        bits += 8 * len(packed)
        exact += back == ids
        right += sum(a == b for a, b in zip(back, ids)) if len(back) == len(ids) else 0
        total += len(ids)
    return bits, right / max(total, 1), exact / max(len(blocks), 1)
