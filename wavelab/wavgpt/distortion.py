"""Distortion of a decoded block, measured two ways: as text and as a sentence embedding.

* text: ``exact_blocks``, the fraction of blocks whose every real token is recovered (token
  accuracy is ``wavgpt.token_accuracy``);
* embedding: the block's sentence embedding is the attention-mask weighted mean of its token
  states over real tokens, the pooling sentence-transformers uses for all-MiniLM-L6-v2.
  ``pooled_cosine`` compares the decoded block's embedding with the original's;
  ``recall_at_1`` asks whether each decoded embedding's nearest original (by cosine) among all
  blocks is its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def mean_pool(h: Tensor, mask: Tensor) -> Tensor:
    """(B, T, d) token states, (B, T) mask -> (B, d) mean over the real tokens."""
    weights = mask.to(h.dtype)[..., None]
    return (h * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def pooled_cosine(decoded: Tensor, original: Tensor, mask: Tensor) -> Tensor:
    """(B,) cosine between the mean-pooled decoded and original states of each block."""
    return F.cosine_similarity(mean_pool(decoded, mask), mean_pool(original, mask), dim=-1)


def exact_blocks(predicted: Tensor, input_ids: Tensor, mask: Tensor) -> Tensor:
    """(B,) 1.0 where every real token's predicted id (B, T) is its input token, else 0.0."""
    wrong = (predicted != input_ids) & mask.bool()
    return (~wrong.any(dim=1)).float()


def recall_at_1(decoded: Tensor, original: Tensor) -> Tensor:
    """Fraction of the N decoded embeddings (N, d) whose most cosine-similar original (N, d) is
    their own; a tie with another block counts as a miss, so identical originals never score."""
    sim = F.normalize(decoded.float(), dim=-1) @ F.normalize(original.float(), dim=-1).T
    own = sim.diagonal()
    others = sim.masked_fill(torch.eye(len(sim), dtype=torch.bool, device=sim.device), -2.0)
    return (own > others.amax(dim=1)).float().mean() if len(sim) > 1 else own.new_ones(())
