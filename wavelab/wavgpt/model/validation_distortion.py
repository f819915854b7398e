"""What a WavGPT validation measures over whole blocks, and the references it is compared with.

Per block, averaged: exact blocks (decoded and of the frozen head on the untouched states, the
teacher's ceiling) and the pooled embedding's cosine. Over all validation blocks at once
(gathered from every rank): recall@1 and recall@10 of each decoded embedding among all the
originals, and the Spearman correlation of pairwise cosines. The embedding is read two ways from
one code: from the refined states, and from the inverse transform alone (``*_unrefined``), the
states before the refiner that KD and CE train for the head only.

The references, on the same blocks (logged once per run, as ``ref/*``): the lossless text coders'
rates (``code.text_rates``) and the two-part code at every embedding width (``two_part``), with
its distortion under the same metric names as the codes' (``ref/two_part_<b>bit/<metric>``), so
that a report draws it on each panel. The two-part code has no refiner: its ``*_unrefined``
figures are its only ones, repeated.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from wavelab.wavgpt.metrics.distortion import (
    exact_blocks,
    mean_pool,
    pairwise_spearman,
    pooled_cosine,
    recall_at_k,
)
from wavelab.wavgpt.metrics.text_rates import coded_ids, reference_bits_per_token
from wavelab.wavgpt.metrics.two_part import (
    EMBEDDING_BITS,
    decoded_embeddings,
    two_part_bits_per_token,
)
from wavelab.wavgpt.model.coding import WavGPTOutput

BLOCK_METRICS = ("exact_blocks", "exact_blocks_orig", "cosine", "cosine_unrefined")
RECALL_AT = (1, 10)


def embedding_metrics(decoded: Tensor, original: Tensor, suffix: str = "") -> dict[str, Tensor]:
    """recall@k and pairwise Spearman of (N, d) decoded embeddings against the originals."""
    metrics = {f"recall_at_{k}{suffix}": recall_at_k(decoded, original, k) for k in RECALL_AT}
    if len(decoded) >= 3:
        metrics[f"spearman{suffix}"] = pairwise_spearman(decoded, original)
    return metrics


class ValidationDistortion(torch.nn.Module):
    """Accumulates the validation blocks (``update``) and gives their metrics (``compute``)."""

    def __init__(self) -> None:
        super().__init__()
        self.means = torch.nn.ModuleDict({name: MeanMetric() for name in BLOCK_METRICS})
        self._pooled: list[tuple[Tensor, ...]] = []  # (refined, unrefined, original) embeddings
        self._blocks: list[tuple[Tensor, Tensor]] = []  # (input_ids, attention_mask)
        self._references: dict[str, float] | None = None  # the same blocks every epoch

    @torch.no_grad()
    def update(
        self, ids: Tensor, mask: Tensor, h: Tensor, out: WavGPTOutput, predicted, predicted_orig
    ) -> None:
        """One batch: (B, T) ids and mask, (B, T, d) original states, the core's output and the
        (B, T) ids decoded from the code and by the frozen head on the original states."""
        blocks = {
            "exact_blocks": exact_blocks(predicted, ids, mask),
            "exact_blocks_orig": exact_blocks(predicted_orig, ids, mask),
            "cosine": pooled_cosine(out.refined, h, mask),
            "cosine_unrefined": pooled_cosine(out.unrefined, h, mask),
        }
        for name, value in blocks.items():
            self.means[name].update(value.float())
        self._pooled.append(
            tuple(mean_pool(states, mask).float() for states in (out.refined, out.unrefined, h))
        )
        if self._references is None:
            self._blocks.append((ids, mask))

    @torch.no_grad()
    def compute(
        self,
        gather: Callable[[Tensor], Tensor],
        texts: Callable[[Tensor, Tensor], list[str]],
        vocab_size: int,
        keep_references: bool,
    ) -> dict[str, Tensor | float]:
        """The metrics of every block seen since the last call, which it forgets.

        ``gather``: a rank's (n, ...) rows -> every rank's; ``texts``: (N, T) ids and mask -> the
        blocks' texts; ``keep_references``: reuse these blocks' references in later calls (false
        for the sanity check, which sees only a few blocks)."""
        metrics: dict[str, Tensor | float] = {}
        for name, metric in self.means.items():
            if metric.update_called:
                metrics[f"val/{name}"] = metric.compute()
            metric.reset()
        if not self._pooled:
            return metrics
        refined, unrefined, original = (gather(torch.cat(part)) for part in zip(*self._pooled))
        self._pooled.clear()
        metrics.update({f"val/{k}": v for k, v in embedding_metrics(refined, original).items()})
        unrefined_metrics = embedding_metrics(unrefined, original, "_unrefined")
        metrics.update({f"val/{k}": v for k, v in unrefined_metrics.items()})
        references = self._references
        if references is None:
            ids, mask = (gather(torch.cat(part)) for part in zip(*self._blocks))
            rows = [row[: int(n)].tolist() for row, n in zip(ids.cpu(), mask.sum(1).cpu())]
            references = self.references(texts(ids, mask), rows, vocab_size, original)
            if keep_references:
                self._references = references
        self._blocks.clear()
        return {**metrics, **references}

    @staticmethod
    def references(
        texts: list[str], rows: list[list[int]], vocab_size: int, original: Tensor
    ) -> dict[str, float]:
        """ref/<coder>_bits_per_token of the lossless text coders, and the two-part code's rate
        and distortion at every embedding width, on the blocks with these texts, real ids
        ``rows`` and (N, d) pooled original states. The two-part code sends each block's ids by
        raw LZMA2; its token accuracy and exact blocks are those of decompressing them."""
        n_tokens = sum(len(row) for row in rows)
        rates = reference_bits_per_token(texts, n_tokens, vocab_size)
        references = {f"ref/{name}_bits_per_token": rate for name, rate in rates.items()}
        d = original.shape[-1]
        text_bits, acc, exact = coded_ids(rows, "lzma")
        references["ref/lzma_ids_block_bits_per_token"] = text_bits / n_tokens
        for bits in EMBEDDING_BITS:
            prefix = f"ref/two_part_{bits}bit"
            decoded = decoded_embeddings(original, bits)
            cosine = torch.nn.functional.cosine_similarity(decoded, original.float(), dim=-1)
            embedding = {
                "cosine": cosine.mean().item(),
                **{k: float(v) for k, v in embedding_metrics(decoded, original).items()},
            }
            metrics = {
                "bits_per_token": two_part_bits_per_token(text_bits, len(texts), n_tokens, d, bits),
                "acc": acc,
                "exact_blocks": exact,
                **embedding,
                **{f"{name}_unrefined": value for name, value in embedding.items()},
            }
            references.update({f"{prefix}/{name}": value for name, value in metrics.items()})
        return references
