"""What both generation paths share: the window a model reads and the next-token draw."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def window_and_prev(
    idx: torch.Tensor, block_size: int, prev_block: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The last ``block_size`` tokens of idx (B, L), and for mode ``prev_block`` the
    ``block_size`` tokens before them, left-padded with -1 ("before the start")."""
    window = idx[:, -block_size:]
    if not prev_block:
        return window, None
    before = idx[:, : max(idx.size(1) - block_size, 0)][:, -block_size:]
    return window, F.pad(before, (block_size - before.size(1), 0), value=-1)


def next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token (B, 1) drawn from next-token logits (B, vocab) at ``temperature``, among the
    ``top_k`` most likely if given."""
    logits = logits / max(temperature, 1e-8)
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], -float("inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)
