"""The two-part code, the reference every learned code of a block competes with: the block's
sentence embedding, quantized, plus its text compressed losslessly.

Its text is exact by construction (token accuracy and exact blocks are 1), so only the embedding
half is lossy. The embedding is the normalized mean-pooled state of the block (what
sentence-transformers computes for all-MiniLM-L6-v2), quantized the way sentence-transformers'
``quantize_embeddings`` does:

* 1 bit: the sign of each dimension (``precision="ubinary"``); it decodes to ±1, whose cosine
  order is the Hamming order of the bits;
* b = 4, 8 or 16 bits: each dimension's calibrated range [min, max] cut into 2^b - 1 steps,
  ``floor((x - min) / step)`` clipped to [0, 2^b - 1] (at 8 bits exactly ``precision="uint8"``);
  it decodes to the middle of its step.

The ranges (2·d floats) are calibrated once on a set of embeddings and shared by sender and
receiver, so no block pays for them. Bits per token count, over the blocks, the d·b embedding
bits plus each block's text compressed on its own (``text_rates``), over their real tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EMBEDDING_BITS = (1, 4, 8, 16)


def calibrate(embeddings: Tensor) -> Tensor:
    """(2, d): each dimension's min and max over the (N, d) calibration embeddings."""
    return torch.stack([embeddings.amin(0), embeddings.amax(0)])


def quantize(embeddings: Tensor, bits: int, ranges: Tensor) -> Tensor:
    """(N, d) float embeddings -> (N, d) integer codes in [0, 2^bits - 1] (int64)."""
    if bits not in EMBEDDING_BITS:
        raise ValueError(f"bits={bits} is invalid: the options are {EMBEDDING_BITS}")
    if bits == 1:
        return (embeddings > 0).long()
    start, step = _grid(bits, ranges)
    top = 2**bits - 1
    return torch.floor((embeddings - start) / step).clamp(0, top).long()


def dequantize(codes: Tensor, bits: int, ranges: Tensor) -> Tensor:
    """(N, d) codes of ``quantize`` -> (N, d) float embeddings: ±1 at 1 bit, else each step's
    middle."""
    if bits == 1:
        return codes.float() * 2 - 1
    start, step = _grid(bits, ranges)
    return start + (codes.float() + 0.5) * step


def _grid(bits: int, ranges: Tensor) -> tuple[Tensor, Tensor]:
    start = ranges[0].float()
    step = (ranges[1].float() - start) / (2**bits - 1)
    return start, torch.where(step == 0, torch.ones_like(step), step)


def two_part_bits_per_token(
    text_bits: int, n_blocks: int, n_tokens: int, d: int, bits: int
) -> float:
    """Bits per real token of sending ``n_blocks`` blocks' embeddings (d values each) at
    ``bits``, and their texts in ``text_bits`` (``text_rates.block_bits``)."""
    if n_tokens < 1:
        raise ValueError(f"n_tokens={n_tokens} is invalid: need at least one token")
    return (text_bits + n_blocks * d * bits) / n_tokens


def decoded_embeddings(embeddings: Tensor, bits: int, calibration: Tensor | None = None) -> Tensor:
    """(N, d) unit embeddings as the receiver of a two-part code at ``bits`` reads them. The
    ranges come from the ``calibration`` embeddings, normalized (None: from the embeddings
    themselves, as sentence-transformers does without a calibration set)."""
    unit = F.normalize(embeddings.float(), dim=-1)
    ranges = calibrate(unit if calibration is None else F.normalize(calibration.float(), dim=-1))
    return F.normalize(dequantize(quantize(unit, bits, ranges), bits, ranges), dim=-1)
