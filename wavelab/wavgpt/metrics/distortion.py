"""Distortion of a decoded block, measured two ways: as text and as a sentence embedding.

* text: ``exact_blocks``, the fraction of blocks whose every real token is recovered (token
  accuracy is ``wavgpt.token_accuracy``);
* embedding: the block's sentence embedding is the attention-mask weighted mean of its token
  states over real tokens, the pooling sentence-transformers uses for all-MiniLM-L6-v2.
  ``pooled_cosine`` compares the decoded block's embedding with the original's;
  ``recall_at_k`` asks whether each decoded embedding's own original is among its k nearest
  originals (by cosine) among all blocks; ``pairwise_spearman`` whether the decoded embeddings
  order pairs of blocks by similarity as the originals do (what an STS-style use needs).
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


def recall_at_k(decoded: Tensor, original: Tensor, k: int, rows: int = 1024) -> Tensor:
    """Fraction of the N decoded embeddings (N, d) whose own original (N, d) is among their k
    most cosine-similar originals. An original that ties with the own one ranks before it, so
    identical originals never score; with N <= k every block scores. ``rows``: decoded
    embeddings scored at once, bounding the (rows, N) similarity matrix."""
    if k < 1:
        raise ValueError(f"k={k} is invalid: need k >= 1")
    decoded = F.normalize(decoded.float(), dim=-1)
    original = F.normalize(original.float(), dim=-1)
    hits = []
    for start in range(0, len(decoded), rows):
        sim = decoded[start : start + rows] @ original.T  # (rows, N)
        index = torch.arange(start, start + len(sim), device=sim.device)
        own = sim[torch.arange(len(sim), device=sim.device), index]
        ahead = (sim >= own[:, None]).sum(1) - 1  # originals at least as close, the own one not
        hits.append(ahead < k)
    return torch.cat(hits).float().mean()


def pairwise_spearman(
    decoded: Tensor,
    original: Tensor,
    max_pairs: int = 200_000,
    seed: int = 0,
    pairs_at_once: int = 8192,
) -> Tensor:
    """Spearman's rank correlation between the cosine similarities of pairs of blocks under the
    decoded embeddings (N, d) and under the originals (N, d): every pair i < j when there are at
    most ``max_pairs``, else ``max_pairs`` pairs drawn uniformly (i != j) with ``seed``. Ties
    get distinct ranks (cosines of real embeddings rarely tie). ``pairs_at_once``: cosines
    computed together, bounding the (pairs, d) gathered embeddings."""
    n = len(decoded)
    if n < 3:
        raise ValueError(f"{n} blocks are too few for a rank correlation: need at least 3")
    if n * (n - 1) // 2 <= max_pairs:
        i, j = torch.triu_indices(n, n, offset=1)
    else:
        generator = torch.Generator().manual_seed(seed)
        i = torch.randint(n, (max_pairs,), generator=generator)
        j = (i + torch.randint(1, n, (max_pairs,), generator=generator)) % n
    ranks = []
    for embeddings in (decoded, original):
        unit = F.normalize(embeddings.float().cpu(), dim=-1)
        chunks = zip(i.split(pairs_at_once), j.split(pairs_at_once))
        cosines = torch.cat([(unit[a] * unit[b]).sum(-1) for a, b in chunks])  # (pairs,)
        order = torch.arange(len(cosines), dtype=cosines.dtype)
        ranks.append(torch.empty_like(cosines).scatter_(0, cosines.argsort(), order))
    return torch.corrcoef(torch.stack(ranks))[0, 1]


def neighbour_preservation(
    decoded: Tensor, original: Tensor, k: int = 10, rows: int = 1024
) -> Tensor:
    """Mean over the N blocks of the recall of their true k nearest *other* blocks: the truth is
    each original's k most cosine-similar other originals, the answer each decoded embedding's
    k most similar other decoded ones. Unlike ``recall_at_k`` (does a code find its own text),
    this scores whether the code keeps the order among close blocks, where a coarse code fails
    first: the adjacent blocks of a scene are the hard negatives. Needs N > k."""
    if not 0 < k < len(original):
        raise ValueError(f"k={k} is invalid: need 0 < k < N={len(original)}")
    decoded = F.normalize(decoded.float(), dim=-1)
    original = F.normalize(original.float(), dim=-1)
    recalls = []
    for start in range(0, len(decoded), rows):
        index = torch.arange(start, min(start + rows, len(decoded)), device=decoded.device)
        found = []
        for emb in (original, decoded):
            sim = emb[index] @ emb.T  # (rows, N)
            sim[torch.arange(len(index)), index] = -float("inf")  # a block is not its neighbour
            found.append(sim.topk(k, dim=1).indices)
        truth, answer = found
        hits = (truth[:, :, None] == answer[:, None, :]).any(-1).float().sum(1)  # (rows,)
        recalls.append(hits / k)
    return torch.cat(recalls).mean()
