"""The interface every WavGPT coder shares: the wavelet code (``model.WavGPTCore``) and the
study's baselines (``baselines.PCACore``, ``baselines.ScalarCore``).

A coder turns a frozen encoder's hidden states h (B, T, d) into a :class:`Code`, and a code back
into states for the refiner and the frozen head:

    code(h, mask) -> Code          what a sender transmits, in the coder's own coordinates
    decode(code) -> (B, T, d)      the states the code gives back, before the refiner
    refine(states, mask)           the refiner, which every coder decodes through alike
    bits(code, fingerprint_bytes)  (B,) ideal bits per code, the rate training logs
    sent_bits(code, ...)           (B,) bits of the bytes a code is sent as (default: the ideal)
    forward(h, mask)               all of it: a WavGPTOutput for the losses and the metrics

Callers (the LightningModule, the codec, the plots) use only these, never the coder's kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from wavelab.wavgpt.model.refiner import Refiner


def check_hidden_states(h: Tensor, mask: Tensor | None, d: int, block_size: int) -> Tensor:
    """Raises ValueError unless h is (B, T <= block_size, d) with a (B, T) mask holding a real
    token in every sample; returns the mask as bool (None: all real)."""
    if h.dim() != 3 or h.shape[-1] != d:
        raise ValueError(f"expected hidden states of shape (B, T, {d}), got {tuple(h.shape)}")
    B, T, _ = h.shape
    if T > block_size:
        raise ValueError(f"sequence length T={T} exceeds model.block_size={block_size}")
    mask = torch.ones(B, T, dtype=torch.bool, device=h.device) if mask is None else mask.bool()
    if mask.shape != (B, T):
        raise ValueError(f"expected a ({B}, {T}) attention mask, got {tuple(mask.shape)}")
    if not mask.any(dim=1).all():
        raise ValueError("every sample needs at least one real token (attention_mask is all 0)")
    return mask


@dataclass
class Code:
    """A batch of codes in the coder's coordinates (m = d for the wavelet and scalar codes, the
    pca rank r for pca). A code decodes from ``values``, ``mask`` and ``side`` alone: what a
    receiver reads back from the bytes; the rest is the sender's bookkeeping, for the rate and
    the metrics."""

    values: Tensor  # (B, T, m) what is sent: the kept coefficients at value_bits, 0 elsewhere
    mask: Tensor  # (B, T) bool, the real tokens
    side: Tensor | None = None  # (B, d) values sent once per code (pca's block mean), or None
    keep: Tensor | None = None  # (B, T, m) 0/1: which coefficients are sent
    k: Tensor | None = None  # (B,) values sent per code, side values included
    keep_ratio: Tensor | None = None  # (B,) k / (n_real · d)
    coeffs: Tensor | None = None  # (B, T, m) the coefficients before selection and quantization
    scales: Tensor | None = None  # (B, G) fp16 scales of the values; None where there are none


@dataclass
class WavGPTOutput:
    code: Code
    unrefined: Tensor  # (B, T, d) decode(code): the states the code gives back
    refined: Tensor  # (B, T, d) after the refiner: what the frozen LM head reads


class Coder(nn.Module):
    """Base of the coders: input checks, the refiner, and ``forward`` from the parts.

    ``has_bands``: the code's coefficients are wavelet bands (what SparseCode's byte format
    and the band plots need); the dense baselines have none.
    """

    has_bands = False

    def __init__(self, d: int, block_size: int, refiner: Refiner) -> None:
        super().__init__()
        self.d = d
        self.block_size = block_size
        self.refiner = refiner

    def check(self, h: Tensor, mask: Tensor | None) -> Tensor:
        """The (B, T) bool mask of real tokens, after checking h and mask (ValueError)."""
        return check_hidden_states(h, mask, self.d, self.block_size)

    def code(self, h: Tensor, mask: Tensor | None = None) -> Code:
        return self.code_checked(h, self.check(h, mask))

    def code_checked(self, h: Tensor, mask: Tensor) -> Code:
        raise NotImplementedError

    def decode(self, code: Code) -> Tensor:
        raise NotImplementedError

    def bits(self, code: Code, fingerprint_bytes: int) -> Tensor:
        raise NotImplementedError

    def sent_bits(self, code: Code, fingerprint_bytes: int) -> Tensor:
        return self.bits(code, fingerprint_bytes)

    def is_fitted(self) -> bool:
        """Whether the coder is ready to code; one fitted on data (pca) says False until
        ``fit(h, mask)`` has run on training states."""
        return True

    def fit(self, h: Tensor, mask: Tensor) -> None:
        """Fits what the coder learns from data rather than by gradient (nothing by default)."""

    def refine(self, states: Tensor, mask: Tensor) -> Tensor:
        return self.refiner(states, mask)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> WavGPTOutput:
        """h (B, T, d) hidden states, mask (B, T) of real tokens (None: all real)."""
        code = self.code_checked(h, self.check(h, mask))
        unrefined = self.decode(code)
        return WavGPTOutput(code, unrefined, self.refine(unrefined, code.mask))


def real_token_keep(mask: Tensor, width: int, dtype: torch.dtype) -> Tensor:
    """(B, T, width) 0/1: every coefficient of every real token, the keep mask of a dense code."""
    return mask[..., None].expand(*mask.shape, width).to(dtype)
