"""What the exact-bits study measures: every code made exact by a payload, in bits per token.

Per held-out block, for every code (nothing, the two-part embedding at 1/4/8/16 bits, each WavGPT
checkpoint's code) and every way to send the ids after it (``wavelab.wavgpt.codec.exact``: the
prior alone, the head given the code, their product; and, as the generic reference, the ids by
raw LZMA2), the code's bits and the payload's bits. Rates are total bits over total tokens,
the mean of the blocks' own rates beside them. The files are decoded in another process
(``decode_files``), which gives the exact blocks.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from wavelab.wavgpt.code.exact_format import ExactBlock, ExactFile
from wavelab.wavgpt.codec.exact import ExactCoder
from wavelab.wavgpt.metrics.distortion import mean_pool, neighbour_preservation, pairwise_spearman
from wavelab.wavgpt.metrics.text_rates import coded_ids
from wavelab.wavgpt.metrics.two_part import EMBEDDING_BITS, decoded_embeddings

NEIGHBOURS = 10


@dataclass
class Row:
    """One code × payload over the blocks: bits per block, summed at the end."""

    code: str
    payload: str
    code_bits: list[float] = field(default_factory=list)
    payload_bits: list[float] = field(default_factory=list)
    ideal_bits: list[float] = field(default_factory=list)
    file: str | None = None  # the file its exactness is decoded from
    exact: float | None = None  # measured by decompressing (lzma), else from ``file``
    embedding: dict[str, float] = field(default_factory=dict)

    def summary(self, tokens: np.ndarray, exact: float | None) -> dict:
        code, payload = np.array(self.code_bits), np.array(self.payload_bits)
        total = code + payload
        out = {
            "code": self.code,
            "payload": self.payload,
            "blocks": len(total),
            "code_bits_per_token": code.sum() / tokens.sum(),
            "payload_bits_per_token": payload.sum() / tokens.sum(),
            "total_bits_per_token": total.sum() / tokens.sum(),
            "total_bits_per_token_block_mean": float((total / tokens).mean()),
            "exact_blocks": exact,
            **self.embedding,
        }
        if self.ideal_bits:
            extra = payload - np.array(self.ideal_bits)
            out["payload_over_ideal_bits_per_block_max"] = float(extra.max())
            out["payload_over_ideal_bits_per_block_mean"] = float(extra.mean())
        if exact is not None:
            out["exact_blocks_ci95"] = wilson(exact, len(total))
        return {k: float(v) if isinstance(v, np.floating) else v for k, v in out.items()}


def wilson(p: float, n: int, z: float = 1.96) -> list[float]:
    """The 95 % Wilson score interval of a proportion p of n."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def embedding_scores(decoded: Tensor, original: Tensor) -> dict[str, float]:
    """The code alone's embedding against the originals (with the payload it is exact)."""
    cosine = F.cosine_similarity(decoded.float(), original.float(), dim=-1).mean()
    return {
        "cosine": float(cosine),
        f"neighbours_at_{NEIGHBOURS}": float(neighbour_preservation(decoded, original, NEIGHBOURS)),
        "spearman": float(pairwise_spearman(decoded, original)),
    }


def block_rows(batches: Iterable[dict[str, Tensor]]) -> list[list[int]]:
    """Every block's real ids, [CLS] and [SEP] included."""
    return [
        row[: int(n)].tolist()
        for batch in batches
        for row, n in zip(batch["input_ids"].cpu(), batch["attention_mask"].sum(1).cpu())
    ]


@torch.inference_mode()
def fit_exponents(
    coder: ExactCoder, blocks: Sequence[tuple[list[int], bytes]], alphas, betas
) -> tuple[float, float, float]:
    """(α, β, bits per token) minimizing the ideal bits of the product on ``blocks`` (training
    blocks, never the reported ones)."""
    terms = []
    for ids, code in blocks:
        body = ids[1:-1]
        head = coder.head_logp(code, len(ids))
        prior = torch.full_like(head, -math.log(coder.vocab_size))  # the first token: uniform
        for t, logits in enumerate(coder.prior_logits(body)):
            if logits is not None:
                prior[t] = torch.log_softmax(logits[0].float(), dim=-1)
        terms.append((head, prior, torch.tensor(body)))
    tokens = sum(len(t[2]) for t in terms)
    best = None
    for alpha, beta in itertools.product(alphas, betas):
        bits = 0.0
        for head, prior, body in terms:
            logp = torch.log_softmax(alpha * head + beta * prior, dim=-1)
            bits -= float(logp[torch.arange(len(body)), body].sum()) / math.log(2)
        if best is None or bits < best[2]:
            best = (float(alpha), float(beta), bits)
    return best[0], best[1], best[2] / max(tokens, 1)


def two_part_rows(original: Tensor, d: int) -> list[tuple[str, int, dict]]:
    """(name, code bytes per block, embedding scores) of the two-part embedding at each width."""
    return [
        (
            f"two-part {bits}-bit",
            d * bits // 8,
            embedding_scores(decoded_embeddings(original, bits), original),
        )
        for bits in EMBEDDING_BITS
    ]


def lzma_row(name: str, code_bytes: int, ids: list[list[int]], embedding: dict) -> Row:
    """A code followed by the ids by raw LZMA2 (self-delimiting: its end marker), per block;
    exactness by decompressing."""
    row = Row(name, "lzma ids", embedding=embedding)
    exact = 0.0
    for block in ids:
        bits, _, block_exact = coded_ids([block])
        row.code_bits.append(8 * code_bytes)
        row.payload_bits.append(bits)
        exact += block_exact
    row.exact = exact / max(len(ids), 1)
    return row


def payload_bits(record: ExactBlock, code_bytes: int) -> int:
    """The record's bits beyond its code, had the code been ``code_bytes`` long."""
    return ExactBlock(record.n_tokens, bytes(code_bytes), record.payload, record.crc).payload_bits()


def exact_fraction(file: ExactFile, coder: ExactCoder, truth: Sequence[Sequence[int]]) -> float:
    """The fraction of the file's blocks that decode to their true ids; a block failing its
    CRC32 counts as not exact."""
    coder = coder.for_file(file)
    hits = 0
    for block, ids in zip(file.blocks, truth, strict=True):
        with contextlib.suppress(ValueError):
            hits += coder.decode_block(block) == list(ids)
    return hits / max(len(truth), 1)


@torch.inference_mode()
def pooled_originals(module, batches: Iterable[dict[str, Tensor]]) -> Tensor:
    """(N, d) the blocks' unit sentence embeddings, from the frozen encoder."""
    pooled = []
    for batch in batches:
        mask = batch["attention_mask"]
        h = module.encoder.hidden(batch["input_ids"], mask)
        pooled.append(F.normalize(mean_pool(h, mask).float(), dim=-1))
    return torch.cat(pooled)
