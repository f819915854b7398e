"""Non-wavelet baselines of the rate–distortion study, decoded like WavGPT's code.

Both code the same frozen-encoder hidden states h (B, T, d) and decode through the same refiner
(``build_refiner``) into the same frozen LM head, so only the code differs:

* ``pca``: h's real tokens projected on the top ``pca_rank`` = r principal directions of the
  training hidden states, the r coordinates quantized at ``value_bits``, back-projected.
  With ``pca_block_mean``, each code also carries one d-vector: what the decoded states' mean
  over the block's real tokens misses of h's, quantized at ``pca_block_mean_bits`` (default
  ``value_bits``). The decoder adds it to every real state, so the decoded block mean, the
  sentence embedding of a mean-pooling encoder, is the original's up to that quantization. (It
  is, up to scale, the coarsest band of a full-depth Haar transform over the real tokens: the
  part of the wavelet code that carries the embedding.)
* ``scalar``: every coefficient of h quantized at ``value_bits``; no sparsification at all.

Both return a ``WavGPTOutput``; its ``coeffs``/``keep``/``kept`` are in the coder's own
coordinates ((B, T, r) for pca, (B, T, d) for scalar), ``k`` counts the values sent and
``keep_ratio`` is k / (n_real * d).

Bits per code (``code_bits``; the same ideal accounting as the wavelet code's, so the rates are
comparable): the wavelet code's container overhead (header, fingerprints, CRC: ``header_bits``)
+ k values at ``value_bits`` + one fp16 scale per quantization group at 4 or 8 bits (fp16 values
need none). Positions cost nothing: both codes are dense in their coordinates.

* pca: k = r * n_real; groups = the r principal components (their coordinates have very
  different spreads, so each gets its scale): + 16 r bits. ``pca_block_mean`` adds d values
  and one group: + d * pca_block_mean_bits + 16 bits (no scale at 16 bits).
* scalar: k = d * n_real; groups = the real tokens (per-token scaling, as activation
  quantization usually does): + 16 n_real bits.

The pca basis (mean and d x r directions) is part of the decoder, like the refiner's weights: it
is fitted once (``fit``) and saved in the checkpoint, not sent with each code.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.code.quantize import SCALE_BITS, fake_quantize, group_scales
from wavelab.wavgpt.model import (
    WavGPTConfig,
    WavGPTCore,
    WavGPTOutput,
    build_refiner,
    check_hidden_states,
)


def quantize_groups(values: Tensor, keep: Tensor, bits: int) -> Tensor:
    """values (B, G, n) quantized at ``bits`` with one scale per sample and group (dim 1), the
    largest |value| of the group's kept entries (``keep`` (B, G, n)); straight-through."""
    if bits == 16:
        return fake_quantize(values, bits)
    n_groups = values.shape[1]
    groups = torch.arange(n_groups, device=values.device)
    scale = group_scales(values, keep, groups, n_groups)  # (B, G)
    return fake_quantize(values, bits, scale[..., None])


def dense_code_bits(
    k: Tensor, value_bits: int, scale_groups: Tensor | int, header_bits: float
) -> Tensor:
    """Bits of a dense code of k values: header + k * value_bits + its fp16 scales (none at 16)."""
    scales = 0 if value_bits == 16 else scale_groups * SCALE_BITS
    return header_bits + k.double() * value_bits + scales


class _BaselineCore(nn.Module):
    """What the baselines share: the refiner, the input checks and the code's bookkeeping."""

    side_values = 0  # values sent once per code, besides the coordinates of the real tokens

    def __init__(self, cfg: WavGPTConfig, d: int) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.d = d
        self.value_bits = cfg.value_bits
        self.refiner = build_refiner(cfg, d)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> WavGPTOutput:
        """h (B, T, d) hidden states, mask (B, T) of real tokens (None: all real)."""
        mask = check_hidden_states(h, mask, self.d, self.cfg.block_size)
        coeffs, kept, h_hat = self.code(h * mask[..., None], mask)
        keep = mask[..., None].expand_as(coeffs).to(coeffs.dtype)
        k = keep.sum(dim=(1, 2)).long() + self.side_values
        ratio = k.to(h.dtype) / (mask.sum(dim=1) * self.d)
        h_hat = h_hat * mask[..., None]  # padding decodes to 0, as in the wavelet code
        return WavGPTOutput(coeffs, keep, kept, h_hat, self.refiner(h_hat, mask), k, ratio)

    def code(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(coefficients, the decoded coefficients, h_hat) of padding-zeroed h."""
        raise NotImplementedError


class ScalarCore(_BaselineCore):
    """Every coefficient of h at ``value_bits``, one fp16 scale per token."""

    def code(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        keep = mask[..., None].expand_as(h)
        kept = quantize_groups(h, keep, self.value_bits)  # groups: the T tokens
        return h, kept, kept

    def code_bits(self, k: Tensor, header_bits: float) -> Tensor:
        n_real = k // self.d
        return dense_code_bits(k, self.value_bits, n_real, header_bits)


class PCACore(_BaselineCore):
    """Top-r principal coordinates of h at ``value_bits``, one fp16 scale per component."""

    def __init__(self, cfg: WavGPTConfig, d: int) -> None:
        super().__init__(cfg, d)
        if cfg.pca_rank > d:
            raise ConfigError(
                f"model.pca_rank={cfg.pca_rank} is invalid: must be in [1, d] with the "
                f"encoder's width d={d}"
            )
        self.rank = cfg.pca_rank
        self.block_mean = cfg.pca_block_mean
        self.side_values = d if self.block_mean else 0
        self.mean_bits = cfg.pca_block_mean_bits or cfg.value_bits
        # Buffers, not parameters: fitted once, never trained, saved with the checkpoint.
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("basis", torch.zeros(d, self.rank))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, h: Tensor, mask: Tensor) -> None:
        """The mean and top-r principal directions of the real tokens of h (N, T, d)."""
        x = h[mask.bool()].double()  # (n, d) real tokens only: padding is not data
        if len(x) < 2:
            raise ValueError(f"fitting a PCA needs at least 2 real tokens, got {len(x)}")
        mean = x.mean(0)
        cov = (x - mean).T @ (x - mean) / (len(x) - 1)
        _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
        top = vectors[:, -self.rank :].flip(1)  # (d, r), largest variance first
        # An eigenvector's sign is arbitrary: fix it (largest entry positive) so refits agree.
        peak = top.gather(0, top.abs().argmax(0, keepdim=True))
        top = top * peak.sign()
        self.mean.copy_(mean.to(self.mean.dtype))
        self.basis.copy_(top.to(self.basis.dtype))
        self.fitted.fill_(True)

    def code(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if not self.fitted:
            raise RuntimeError(
                "the pca coder's basis is not fitted: call PCACore.fit(h, mask) on training "
                "hidden states first (WavGPTModule does so when training starts)"
            )
        coords = (h - self.mean) @ self.basis  # (B, T, r)
        keep = mask[:, None, :].expand(-1, self.rank, -1)  # (B, r, T)
        # Groups along dim 1: transpose so that each component gets its own scale.
        kept = quantize_groups(coords.transpose(1, 2), keep, self.value_bits).transpose(1, 2)
        h_hat = kept @ self.basis.T + self.mean
        if self.block_mean:
            h_hat = h_hat + self.mean_correction(h, h_hat, mask)[:, None, :]
        return coords, kept, h_hat

    def mean_correction(self, h: Tensor, h_hat: Tensor, mask: Tensor) -> Tensor:
        """(B, d) what h_hat's mean over each block's real tokens misses of h's, at
        ``pca_block_mean_bits`` (default ``value_bits``) with one scale per block: the d values
        that ``pca_block_mean`` sends."""
        real = mask[..., None].to(h.dtype)
        missed = ((h - h_hat) * real).sum(1) / real.sum(1).clamp_min(1)  # (B, d)
        everything = torch.ones_like(missed[:, None, :])
        return quantize_groups(missed[:, None, :], everything, self.mean_bits)[:, 0]

    def code_bits(self, k: Tensor, header_bits: float) -> Tensor:
        coords = k - self.side_values
        bits = dense_code_bits(coords, self.value_bits, self.rank, header_bits)
        if self.block_mean:  # d values and (below 16 bits) one scale
            bits = bits + dense_code_bits(torch.full_like(k, self.d), self.mean_bits, 1, 0.0)
        return bits


CORES = {"wavelet": WavGPTCore, "pca": PCACore, "scalar": ScalarCore}


def build_core(cfg: WavGPTConfig, d: int) -> nn.Module:
    """The core of ``cfg.coder``: WavGPT's wavelet code or one of the baselines above."""
    if cfg.coder == "wavelet":
        return WavGPTCore(cfg, d)
    return CORES[cfg.coder](cfg, d)
