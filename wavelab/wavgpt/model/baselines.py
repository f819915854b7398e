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

Both are ``Coder``s (coding.py); a ``Code``'s ``coeffs``/``keep``/``values`` are in the coder's
own coordinates ((B, T, r) for pca, (B, T, d) for scalar), ``k`` counts the values sent and
``keep_ratio`` is k / (n_real * d).

Bits per code (``bits``; the same ideal accounting as the wavelet code's, so the rates are
comparable): the wavelet code's container overhead (header, fingerprints, CRC)
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
from torch import Tensor

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.code.quantize import SCALE_BITS, fake_quantize, group_scales
from wavelab.wavgpt.code.sparse_code import overhead_bytes
from wavelab.wavgpt.config import WavGPTConfig
from wavelab.wavgpt.model.coding import Code, Coder, real_token_keep
from wavelab.wavgpt.model.core import WavGPTCore
from wavelab.wavgpt.model.refiner import build_refiner


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


class _DenseCoder(Coder):
    """What the baselines share: every real token's coordinates are sent, at value_bits."""

    def __init__(self, cfg: WavGPTConfig, d: int) -> None:
        super().__init__(d, cfg.block_size, build_refiner(cfg, d))
        self.cfg = cfg
        self.value_bits = cfg.value_bits

    def dense_code(self, coeffs: Tensor, values: Tensor, mask: Tensor, side=None) -> Code:
        keep = real_token_keep(mask, coeffs.shape[-1], coeffs.dtype)
        k = keep.sum(dim=(1, 2)).long() + (0 if side is None else side.shape[-1])
        ratio = k.to(coeffs.dtype) / (mask.sum(dim=1) * self.d)
        return Code(values, mask, side, keep=keep, k=k, keep_ratio=ratio, coeffs=coeffs)

    def header_bits(self, fingerprint_bytes: int) -> float:
        return 8.0 * overhead_bytes(fingerprint_bytes)


class ScalarCore(_DenseCoder):
    """Every coefficient of h at ``value_bits``, one fp16 scale per token."""

    def code_checked(self, h: Tensor, mask: Tensor) -> Code:
        h = h * mask[..., None]
        values = quantize_groups(h, mask[..., None].expand_as(h), self.value_bits)  # per token
        return self.dense_code(h, values, mask)

    def decode(self, code: Code) -> Tensor:
        return code.values

    def bits(self, code: Code, fingerprint_bytes: int) -> Tensor:
        n_real = code.mask.sum(1)
        return dense_code_bits(code.k, self.value_bits, n_real, self.header_bits(fingerprint_bytes))


class PCACore(_DenseCoder):
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
        self.mean_bits = cfg.pca_block_mean_bits or cfg.value_bits
        # Buffers, not parameters: fitted once, never trained, saved with the checkpoint.
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("basis", torch.zeros(d, self.rank))
        self.register_buffer("fitted", torch.tensor(False))

    def is_fitted(self) -> bool:
        return bool(self.fitted)

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

    def code_checked(self, h: Tensor, mask: Tensor) -> Code:
        if not self.fitted:
            raise RuntimeError(
                "the pca coder's basis is not fitted: call PCACore.fit(h, mask) on training "
                "hidden states first (WavGPTModule does so when training starts)"
            )
        h = h * mask[..., None]
        coords = (h - self.mean) @ self.basis  # (B, T, r)
        keep = mask[:, None, :].expand(-1, self.rank, -1)  # (B, r, T)
        # Groups along dim 1: transpose so that each component gets its own scale.
        values = quantize_groups(coords.transpose(1, 2), keep, self.value_bits).transpose(1, 2)
        side = None
        if self.block_mean:
            side = self.mean_correction(h, self.project_back(values, mask), mask)
        return self.dense_code(coords, values, mask, side)

    def project_back(self, values: Tensor, mask: Tensor) -> Tensor:
        """(B, T, d) the states of the coordinates ``values``; padding decodes to 0."""
        return (values @ self.basis.T + self.mean) * mask[..., None]

    def decode(self, code: Code) -> Tensor:
        states = self.project_back(code.values, code.mask)
        if code.side is not None:
            states = states + code.side[:, None, :] * code.mask[..., None]
        return states

    def mean_correction(self, h: Tensor, decoded: Tensor, mask: Tensor) -> Tensor:
        """(B, d) what the decoded states' mean over each block's real tokens misses of h's,
        at ``pca_block_mean_bits`` (default ``value_bits``) with one scale per block: the d
        values that ``pca_block_mean`` sends."""
        real = mask[..., None].to(h.dtype)
        missed = ((h - decoded) * real).sum(1) / real.sum(1).clamp_min(1)  # (B, d)
        everything = torch.ones_like(missed[:, None, :])
        return quantize_groups(missed[:, None, :], everything, self.mean_bits)[:, 0]

    def bits(self, code: Code, fingerprint_bytes: int) -> Tensor:
        side = 0 if code.side is None else code.side.shape[-1]
        header = self.header_bits(fingerprint_bytes)
        bits = dense_code_bits(code.k - side, self.value_bits, self.rank, header)
        if side:  # d values and (below 16 bits) one scale
            bits = bits + dense_code_bits(torch.full_like(code.k, side), self.mean_bits, 1, 0.0)
        return bits


CODER_CLASSES = {"wavelet": WavGPTCore, "pca": PCACore, "scalar": ScalarCore}


def build_coder(cfg: WavGPTConfig, d: int) -> Coder:
    """The coder ``model.coder`` names: WavGPT's wavelet code or one of the baselines above."""
    return CODER_CLASSES[cfg.coder](cfg, d)
