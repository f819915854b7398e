"""Small shared helpers for the WavGPT tests: the tiny encoder in memory, random word-piece
blocks, small configs."""

from __future__ import annotations

import functools

import torch

from helpers.tiny_encoder import TINY_VOCAB, tiny_test_encoder
from wavelab.wavgpt.config import WavGPTConfig
from wavelab.wavgpt.model.encoder import FrozenEncoder
from wavelab.wavgpt.model.lifting import LiftingDWT

N_SPECIAL = 5  # [PAD] [UNK] [CLS] [SEP] [MASK] open TINY_VOCAB
CLS, SEP = 2, 3


@functools.cache
def tiny_encoder() -> FrozenEncoder:
    """The tiny random BERT (d=32) with the tied head, which reconstructs its input tokens."""
    return FrozenEncoder("tiny-test-encoder", head="tied", model=tiny_test_encoder())


def tiny_batch(lengths: list[int], T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random [CLS] w ... w [SEP] [PAD]... rows: input_ids (B, T) and attention_mask (B, T)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(N_SPECIAL, len(TINY_VOCAB), (len(lengths), T), generator=g)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    ids[:, 0] = CLS
    ids[torch.arange(len(lengths)), torch.tensor(lengths) - 1] = SEP
    return ids.masked_fill(~mask, 0), mask.long()


def small_config(**overrides) -> WavGPTConfig:
    """A WavGPT config sized for the tiny encoder (d=32) and T=16."""
    defaults = dict(block_size=16, refine_layers=1, refine_heads=2, refine_ff=64)
    return WavGPTConfig(**{**defaults, **overrides})


def randomize_lifting_(dwt: LiftingDWT, seed: int = 0) -> LiftingDWT:
    """Far-from-Haar parameters, including scales well away from 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in ("predict", "update", "log_approx_scale", "log_detail_scale"):
            value = getattr(dwt, name)
            value.copy_(torch.randn(value.shape, generator=g, dtype=value.dtype))
    return dwt
