"""WavGPT core: decodable wavelet embeddings of a frozen encoder's hidden states.

    h (B, T, d) --LiftingDWT--> coeffs --FrequencyFilter--> kept (top keep_ratio, hard mask)
      --fake_quantize--> values at value_bits (what a code sends)
      --LiftingDWT.inverse--> unrefined --Refiner--> refined --frozen LM head--> logits

``WavGPTCore`` is a ``Coder`` (coding.py): ``code`` stops after the quantization, all an
encoder needs, and ``decode`` is the inverse transform. The frozen encoder and LM head live in
``encoder.py``; everything here works on given hidden states, so it can be tested with random
tensors.

Padding: the core zeroes the hidden states of padded steps before the transform. A coefficient
whose support (a run of 2^l steps) holds only padding is then exactly zero, and the filter never
keeps it. The budget of sample b is k_b = max(1, round(keep_ratio * n_real_b * d)) with n_real_b
its real tokens, so padding takes no budget. Coefficients straddling the real/padded boundary
are real data and compete normally; because of them a right-padded sample can have more than
n_real * d eligible coefficients, so keep_ratio = 1 is defined as "keep every eligible
coefficient" (lossless) rather than exactly n_real * d of them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wavelab.wavgpt.code.quantize import fake_quantize, group_scales
from wavelab.wavgpt.code.sparse_code import code_bits, overhead_bytes, scale_count, sent_bits
from wavelab.wavgpt.config import WavGPTConfig
from wavelab.wavgpt.model.coding import Code, Coder
from wavelab.wavgpt.model.filter import FrequencyFilter
from wavelab.wavgpt.model.lifting import LiftingDWT, band_index
from wavelab.wavgpt.model.refiner import build_refiner


class WavGPTCore(Coder):
    """The wavelet code: lifting DWT, the learned filter and the values at value_bits; decoded by
    the inverse transform."""

    has_bands = True

    def __init__(self, cfg: WavGPTConfig, d: int) -> None:
        super().__init__(d, cfg.block_size, build_refiner(cfg, d))
        self.cfg = cfg
        self.dwt = LiftingDWT(
            d, cfg.block_size, cfg.resolved_levels, learnable=cfg.learnable_lifting
        )
        self.filter = FrequencyFilter(
            d,
            self.dwt.levels,
            cfg.keep_ratio,
            learned=cfg.filter_learned,
            init=cfg.filter_init,
            temperature=cfg.filter_temperature,
        )

    def code_checked(self, h: Tensor, mask: Tensor) -> Code:
        coeffs = self.dwt(h * mask[..., None])
        kept, keep, k, ratio = self.filter(coeffs, mask, self.dwt.support_mask(mask))
        bits = self.cfg.value_bits
        if bits == 16:
            values = fake_quantize(kept, bits)
            return Code(values, mask, keep=keep, k=k, keep_ratio=ratio, coeffs=coeffs)
        T = h.shape[1]
        if self.cfg.value_scale == "band":
            groups = band_index(T, self.dwt.levels).to(h.device)  # (T,)
        else:
            groups = torch.zeros(T, dtype=torch.long, device=h.device)
        scales = group_scales(kept, keep, groups, int(groups.max()) + 1)  # (B, G)
        per_step = scales[:, groups, None].to(kept.dtype)  # (B, T, 1)
        values = fake_quantize(kept, bits, per_step)
        return Code(values, mask, keep=keep, k=k, keep_ratio=ratio, coeffs=coeffs, scales=scales)

    @property
    def levels(self) -> int:
        return self.dwt.levels

    def decode(self, code: Code) -> Tensor:
        return self.dwt.inverse(code.values)

    def bits(self, code: Code, fingerprint_bytes: int) -> Tensor:
        """Ideal: the format's overhead (header, both fingerprints, checksum) and scales, as
        ``SparseCode.to_bytes`` sends them, + positions at log2 C(T·d, k) + the values."""
        bits, scale = self.cfg.value_bits, self.cfg.value_scale
        header = 8 * overhead_bytes(fingerprint_bytes)
        n_scales = scale_count(bits, scale, self.dwt.levels)
        return code_bits(code.k, self.block_size, self.d, bits, header, n_scales)

    def sent_bits(self, code: Code, fingerprint_bytes: int) -> Tensor:
        """Exactly the bytes ``SparseCode.to_bytes`` writes: entropy-coded positions (a numpy
        pass over the keep mask per band)."""
        bits, scale = self.cfg.value_bits, self.cfg.value_scale
        sent = sent_bits(code.keep, self.dwt.levels, bits, scale, fingerprint_bytes)
        return sent.to(code.k.device)
