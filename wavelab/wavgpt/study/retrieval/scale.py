"""The embeddings that WavGPT checkpoints decode from their codes of every held-out block, set
against the originals and the two-part reference, in one pass over the data.

The frozen encoder runs once per batch for all checkpoints (they must share it and the block
size); only the (N, d) pooled embeddings are kept, so memory grows with the blocks' count times
d, not with their states (``held_out_batches`` trims the heap between batches). Per
checkpoint: the bits its codes send per token, and for the embedding read after the refiner and
before it (``*_unrefined``) the mean cosine to the original, recall@1 and recall@10 among all
blocks and the pairwise Spearman correlation (``validation_distortion.embedding_metrics``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.metrics.distortion import mean_pool
from wavelab.wavgpt.model.validation_distortion import ValidationDistortion, embedding_metrics
from wavelab.wavgpt.module import WavGPTModule


@dataclass
class Pooled:
    """One checkpoint's pooled embeddings of the blocks so far, the bits its codes sent, and the
    sum of each block's own bits per token (the block mean, printed beside the total rate)."""

    refined: list[Tensor] = field(default_factory=list)
    unrefined: list[Tensor] = field(default_factory=list)
    bits: float = 0.0
    block_rates: float = 0.0


def check_comparable(modules: dict[str, WavGPTModule]) -> None:
    """ConfigError unless every checkpoint has the first one's encoder and block size."""
    (first_name, first), *rest = modules.items()
    for name, module in rest:
        mine = (module.encoder.fingerprint, module.cfg.block_size)
        theirs = (first.encoder.fingerprint, first.cfg.block_size)
        if mine != theirs:
            raise ConfigError(
                f"ckpt_paths: {name} has encoder {mine[0]} and block_size={mine[1]}, but "
                f"{first_name} has {theirs[0]} and {theirs[1]}: compare checkpoints of one "
                "encoder and block size"
            )


@torch.inference_mode()
def retrieval_at_scale(
    modules: dict[str, WavGPTModule], batches: Iterable[dict[str, Tensor]]
) -> dict[str, dict[str, float]]:
    """{checkpoint name: metrics} for every checkpoint of ``modules`` (in eval mode), and the
    references under "references", over all blocks of ``batches`` ((B, T) input_ids and
    attention_mask)."""
    check_comparable(modules)
    first = next(iter(modules.values()))
    encoder = first.encoder
    pooled = {name: Pooled() for name in modules}
    originals, texts, rows, n_tokens = [], [], [], 0
    for batch in batches:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        h = encoder.hidden(ids, mask)  # (B, T, d)
        originals.append(mean_pool(h, mask).float())
        texts += first.block_texts(ids, mask)
        rows += [row[: int(n)].tolist() for row, n in zip(ids.cpu(), mask.sum(1).cpu())]
        n_tokens += int(mask.sum())
        for name, module in modules.items():
            out = module.core(h, mask)
            pooled[name].refined.append(mean_pool(out.refined, mask).float())
            pooled[name].unrefined.append(mean_pool(out.unrefined, mask).float())
            bits = module.core.sent_bits(out.code, module.fingerprint_bytes())  # (B,)
            pooled[name].bits += float(bits.sum())
            pooled[name].block_rates += float((bits / mask.sum(1)).sum())
    if len(originals) == 0 or n_tokens == 0:
        raise ConfigError("the data has no validation blocks to score")
    original = torch.cat(originals)
    results = {name: scores(p, original, n_tokens) for name, p in pooled.items()}
    results["references"] = ValidationDistortion.references(
        texts, rows, encoder.vocab_size, original
    )
    results["references"]["blocks"] = float(len(original))
    return results


def scores(pooled: Pooled, original: Tensor, n_tokens: int) -> dict[str, float]:
    refined, unrefined = torch.cat(pooled.refined), torch.cat(pooled.unrefined)
    cosine = torch.nn.functional.cosine_similarity
    metrics = {
        "blocks": float(len(original)),
        "bits_per_token": pooled.bits / n_tokens,
        "bits_per_token_block_mean": pooled.block_rates / len(original),
        "cosine": cosine(refined, original, dim=-1).mean(),
        "cosine_unrefined": cosine(unrefined, original, dim=-1).mean(),
        **embedding_metrics(refined, original),
        **embedding_metrics(unrefined, original, "_unrefined"),
    }
    return {k: float(v) for k, v in metrics.items()}
