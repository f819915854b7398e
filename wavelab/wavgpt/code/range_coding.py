"""Range coding of token ids under per-position distributions, with ``constriction``.

A distribution reaches the coder as a probability table: a (V,) float64 row computed by
``tables`` from float32 log-probabilities, the same numpy operations on both sides. constriction
quantizes each row to integers at ``PRECISION_BITS`` with its deterministic fast rule
(``Categorical(perfect=False)``): a pure function of the float64 row, which gives every symbol
at least one count, so any id can be coded. At 24 bits a 30,522-token vocabulary reserves at
most 30,522 / 2^24 = 0.18 % of the mass for its floor counts, about 0.003 bits per token.

Exactness needs bit-identical tables at the encoder and the decoder; this module guarantees it
for identical log-probabilities. Computing those identically (the same model, the same
operations in the same shapes) is the caller's part (``wavelab.wavgpt.codec.exact``).

A payload is the coder's 32-bit words, each big-endian so that a payload's last bytes are its
least significant bits, less the trailing bytes that the decoder can do without: it pads a payload with zero bytes to whole words, and ``encode`` drops as many of
the last bytes (up to 7) as it can while the payload, rounded up or down at the last byte kept,
still decodes to the same ids, which it checks by decoding under the same tables. So the payload's final flush costs a few bits over the ideal
-Σ log2 p per block rather than up to a word, which ``ideal_bits`` lets a caller measure.
"""

from __future__ import annotations

import constriction
import numpy as np
import torch
from torch import Tensor

PRECISION_BITS = 24  # constriction's default range coder (32-bit words)
DAMAGED = (
    "the payload can not be decoded under these tables: it is damaged or was coded under others"
)
_MODEL = constriction.stream.model.Categorical(perfect=False)


def tables(logp: Tensor) -> np.ndarray:
    """(m, V) log-probabilities (any float dtype) -> (m, V) float64 probability tables.

    Row by row: numpy's vectorised exp may round an element differently by where it falls in
    the array, so a row's table must not depend on how many rows are computed with it."""
    logp = logp.detach().to("cpu", torch.float32).numpy()
    out = np.empty(logp.shape, dtype=np.float64)
    for row, source in zip(out, logp):
        row[:] = source
        row -= row.max()
        np.exp(row, out=row)
    return out


def encode(symbols: np.ndarray, probabilities: np.ndarray) -> bytes:
    """(m,) ids, (m, V) tables -> the payload. m = 0 is an empty payload."""
    symbols = np.asarray(symbols, dtype=np.int32)
    if len(symbols) == 0:
        return b""
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(symbols, _MODEL, probabilities)
    payload = encoder.get_compressed().astype(">u4").tobytes()
    value = int.from_bytes(payload, "big")
    for drop in range(min(7, len(payload) - 1), 0, -1):
        prefix = value >> (8 * drop)
        for candidate in (prefix + 1, prefix):  # the point just above, or just below
            if candidate >> (8 * (len(payload) - drop)):
                continue  # it would carry out of the payload
            shorter = candidate.to_bytes(len(payload) - drop, "big")
            try:
                if np.array_equal(decode_all(shorter, probabilities), symbols):
                    return shorter
            except ValueError:  # not even decodable: keep the byte
                pass
    return payload


def decode_all(payload: bytes, probabilities: np.ndarray) -> np.ndarray:
    """The (m,) ids of a payload whose m tables are all known before decoding."""
    if len(probabilities) == 0:
        return np.zeros(0, dtype=np.int64)
    decoder = Decoder(payload)
    try:
        return decoder.decoder.decode(_MODEL, probabilities).astype(np.int64)
    except AssertionError:  # constriction's word for bits no table can have produced
        raise ValueError(DAMAGED) from None


class Decoder:
    """Decodes a payload one id at a time, for tables that depend on the ids before."""

    def __init__(self, payload: bytes) -> None:
        padded = payload + bytes(-len(payload) % 4)  # the bytes encode dropped, as zeros
        words = np.frombuffer(padded, dtype=">u4").astype(np.uint32)
        self.decoder = constriction.stream.queue.RangeDecoder(words)

    def next(self, probabilities: np.ndarray) -> int:
        """The next id, under a (V,) table."""
        model = constriction.stream.model.Categorical(probabilities, perfect=False)
        try:
            return int(self.decoder.decode(model))
        except AssertionError:  # constriction's word for bits no table can have produced
            raise ValueError(DAMAGED) from None


def ideal_bits(symbols: np.ndarray, probabilities: np.ndarray) -> float:
    """-Σ log2 p(symbol) under the tables, normalized: the code length no coder beats."""
    rows = np.arange(len(symbols))
    p = probabilities[rows, np.asarray(symbols)] / probabilities.sum(axis=-1)
    return float(-np.log2(p).sum())
