"""Reference rates of the rate–distortion study: what lossless text coding costs per token.

On the validation blocks of a run (their real tokens, [CLS] and [SEP] included, as
``val/bits_per_token`` counts them):

* ``ids``: the raw token ids, log2(vocabulary size) bits per token;
* ``<compressor>_block``: each block's text compressed on its own by lzma, zlib, bz2 or zstd at
  their highest level, which is what a per-block code competes with (every block pays the
  compressor's header and starts with an empty dictionary);
* ``<compressor>_split``: all the blocks' texts compressed at once, a kinder figure (one header,
  context shared across blocks).

A block's text is its tokenizer's decoding of its real ids without special tokens: exactly the
information the token ids carry (lowercase, normalized spacing for an uncased WordPiece model).
"""

from __future__ import annotations

import bz2
import lzma
import math
import zlib
from collections.abc import Callable, Sequence

import zstandard

# lzma's preset 9's dictionary: the most it ever looks back.
LZMA_MAX_DICT = 64 << 20


def lzma_extreme(data: bytes) -> bytes:
    """lzma at preset 9 | PRESET_EXTREME with a dictionary just big enough for ``data`` (at
    most preset 9's): a dictionary longer than the input finds no more matches, so the size is
    preset 9's, without allocating its 64 MiB per call (most of the time a short block takes)."""
    dict_size = min(LZMA_MAX_DICT, max(4096, 1 << len(data).bit_length()))
    preset = 9 | lzma.PRESET_EXTREME
    return lzma.compress(
        data, filters=[{"id": lzma.FILTER_LZMA2, "preset": preset, "dict_size": dict_size}]
    )


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "lzma": lzma_extreme,
    "zlib": lambda data: zlib.compress(data, 9),
    "bz2": lambda data: bz2.compress(data, 9),
    "zstd": zstandard.ZstdCompressor(level=22).compress,
}


def block_bits(texts: Sequence[str], compressor: str) -> int:
    """The bits of every text compressed on its own by ``compressor``, summed."""
    compress = COMPRESSORS[compressor]
    return sum(8 * len(compress(text.encode("utf-8"))) for text in texts)


def reference_bits_per_token(texts: Sequence[str], n_tokens: int, vocab_size: int) -> dict:
    """{name: bits per token} for the raw ids and every compressor, per block and per split.

    ``texts``: the blocks' texts; ``n_tokens``: their real tokens in all."""
    if n_tokens < 1:
        raise ValueError(f"n_tokens={n_tokens} is invalid: need at least one token")
    rates = {"ids": math.log2(vocab_size)}
    joined = "\n".join(texts).encode("utf-8")
    for name, compress in COMPRESSORS.items():
        rates[f"{name}_block"] = block_bits(texts, name) / n_tokens
        rates[f"{name}_split"] = 8 * len(compress(joined)) / n_tokens
    return rates
