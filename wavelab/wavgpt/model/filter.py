"""The learned top-k filter: which coefficients a code keeps."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from wavelab.wavgpt.model.lifting import band_index


def _band_logits(init: str, num_bands: int) -> Tensor:
    """Initial band importances (pre-sigmoid); band 0 = approx, higher = finer detail."""
    freq = torch.linspace(0.0, 1.0, num_bands)  # 0 = coarsest, 1 = finest
    if init == "uniform":
        return torch.zeros(num_bands)
    if init == "dct_like":
        # Like a JPEG quantisation table: a smooth fall-off with frequency, from sigmoid(2) ~ 0.88
        # for the approximation to sigmoid(-2) ~ 0.12 for the finest details.
        return 2.0 - 4.0 * freq
    # lowpass: the approximation and the coarsest detail dominate; each finer band is e^-4 times
    # less important, floored so that the sigmoid keeps a usable gradient.
    return (4.0 - 4.0 * torch.arange(num_bands, dtype=torch.float)).clamp(min=-6.0)


class FrequencyFilter(nn.Module):
    """Keep the top-k coefficients per sample: hard mask forward, straight-through backward.

    score = sigmoid(band_importance[band]) * sigmoid(dim_importance[c]) * |coef| (learned), or
    |coef| (``learned=False``, no parameters). The backward pass goes through
    soft = sigmoid((score - thr) / (temperature * mean_score)), thr the k-th largest score of the
    sample. Dividing by the sample's mean score makes the soft mask, like the hard top-k, invariant
    to a common rescaling of all scores, so the temperature is unitless; thr and the mean are not
    detached, so the gradient only rewards changing the *ranking*.
    """

    def __init__(
        self,
        d: int,
        levels: int,
        keep_ratio: float,
        learned: bool = True,
        init: str = "dct_like",
        temperature: float = 0.25,
    ) -> None:
        super().__init__()
        self.d = d
        self.levels = levels
        self.keep_ratio = keep_ratio
        self.learned = learned
        if learned:
            self.band_importance = nn.Parameter(_band_logits(init, levels + 1))
            self.dim_importance = nn.Parameter(torch.zeros(d))
            self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    def budget(self, mask: Tensor, support: Tensor) -> Tensor:
        """(B,) long: coefficients to keep per sample, from its real tokens only."""
        n_real = mask.sum(dim=1)
        n_eligible = support.sum(dim=1) * self.d
        if self.keep_ratio == 1.0:
            return n_eligible
        k = torch.round(self.keep_ratio * n_real * self.d).long().clamp(min=1)
        return torch.minimum(k, n_eligible)

    def scores(self, coeffs: Tensor) -> Tensor:
        score = coeffs.abs()
        if self.learned:
            band = band_index(coeffs.shape[1], self.levels).to(coeffs.device)
            score = score * torch.sigmoid(self.band_importance)[band][:, None]
            score = score * torch.sigmoid(self.dim_importance)
        return score

    def forward(
        self, coeffs: Tensor, mask: Tensor, support: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """coeffs (B, T, d), mask (B, T) real tokens, support (B, T) eligible coefficient steps.

        Returns kept coefficients (B, T, d), hard 0/1 mask (B, T, d), k (B,) and the achieved keep
        ratio k / (n_real * d) (B,).
        """
        B, T, d = coeffs.shape
        k = self.budget(mask, support)
        eligible = support[:, :, None].expand(B, T, d).reshape(B, T * d)
        score = self.scores(coeffs).reshape(B, T * d)
        # Scores are >= 0, so -1 ranks every ineligible coefficient last; k <= n_eligible.
        ranked = score.masked_fill(~eligible, -1.0)
        # One topk over the largest budget, then a per-sample rank cut: no loop over samples.
        top_scores, top_idx = ranked.topk(int(k.max()), dim=1)  # (B, kmax), sorted descending
        keep_rank = torch.arange(top_idx.shape[1], device=coeffs.device) < k[:, None]
        hard = torch.zeros_like(score).scatter(1, top_idx, keep_rank.to(score.dtype))
        if self.learned:
            thr = top_scores.gather(1, k[:, None] - 1)  # (B, 1) k-th largest score
            scale = (score * eligible).sum(1, keepdim=True) / eligible.sum(1, keepdim=True)
            temp = self.log_temperature.exp() * scale.clamp(min=torch.finfo(score.dtype).tiny)
            soft = torch.sigmoid((score - thr) / temp) * eligible
            st = hard + soft - soft.detach()  # value: hard; gradient: soft
        else:
            st = hard
        kept = coeffs * st.reshape(B, T, d)
        ratio = k.to(coeffs.dtype) / (mask.sum(dim=1) * d)
        return kept, hard.reshape(B, T, d), k, ratio
