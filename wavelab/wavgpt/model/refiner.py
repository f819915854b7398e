"""The refiner every WavGPT coder decodes through, before the frozen LM head."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.config import WavGPTConfig


class Refiner(nn.Module):
    """Residual token MLP, then a pre-norm transformer encoder; exactly the identity at init.

    The MLP's residual scale starts at 0 and the output projections of every attention and
    feed-forward block start at zero, so a fresh refiner passes the decoded states through unchanged: training
    starts from the plain wavelet reconstruction, whose logits are already close to the teacher's,
    and the refiner only learns a correction (ReZero-style). There is no final LayerNorm because
    the frozen LM head expects hidden states on the encoder's own scale.
    """

    def __init__(
        self, d: int, layers: int, heads: int, ff: int, dropout: float = 0.0, enabled: bool = True
    ) -> None:
        super().__init__()
        self.enabled = enabled
        if not enabled:
            return
        if d % heads:
            raise ConfigError(
                f"model.refine_heads={heads} is invalid: must divide the encoder width d={d}"
            )
        self.mlp = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d), nn.Dropout(dropout)
        )
        self.mlp_scale = nn.Parameter(torch.zeros(()))
        self.encoder = None
        if layers > 0:
            layer = nn.TransformerEncoderLayer(
                d, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            for block in self.encoder.layers:
                for proj in (block.self_attn.out_proj, block.linear2):
                    nn.init.zeros_(proj.weight)
                    nn.init.zeros_(proj.bias)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        """h (B, T, d), mask (B, T) real tokens -> (B, T, d)."""
        if not self.enabled:
            return h
        h = h + self.mlp_scale * self.mlp(h)
        if self.encoder is not None:
            h = self.encoder(h, src_key_padding_mask=~mask.bool())
        return h


def build_refiner(cfg: WavGPTConfig, d: int) -> Refiner:
    """The refiner every coder decodes through: same size for the wavelet code and the baselines."""
    return Refiner(
        d,
        cfg.refine_layers,
        cfg.refine_heads,
        cfg.refine_ff or 4 * d,
        cfg.dropout,
        enabled=cfg.refine,
    )
