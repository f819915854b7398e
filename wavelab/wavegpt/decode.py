"""Incremental decoding of GPT and WaveGPT: one new token costs one position's work.

A :class:`Decoder` keeps what a forward pass over the window computes and a new token reuses:
each attention layer's keys and values, and for the ``causal`` WaveNet branch each layer's inputs
(a new position's dilated tap reads the input ``dilation`` positions back). The ``prev_block``
branch reads only the block before the window, fixed while the window grows, so it is computed
once; ``block`` re-reads the whole window, a receptive field's work per token.

Exact: ``next_logits(idx)`` equals the last position of ``GPT.forward`` on the window that
``GPT.generate`` reads for idx. While idx fits in ``block_size`` tokens that is all of idx, and
a token is appended to the cache. Past ``block_size`` the window is cropped to the last
``block_size`` tokens: every token then sits at a new position (and, with ``prev_block``, the
block before the window changes), so nothing cached stays valid and the decoder re-primes on the
cropped window, one full forward per token, the full-window path's cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wavelab.wavegpt.model import GPT, CausalSelfAttention
from wavelab.wavegpt.sampling import next_token, window_and_prev


class Decoder:
    """The cached state of one batch of sequences being decoded by ``model`` (in eval mode)."""

    def __init__(self, model: GPT, batch: int):
        c = model.config
        self.model = model
        self.block_size = c.block_size
        weight = model.lm_head.weight
        like = dict(device=weight.device, dtype=weight.dtype)
        shape = (c.n_layer, batch, c.n_head, c.block_size, c.n_embd // c.n_head)
        self.keys = torch.zeros(shape, **like)
        self.values = torch.zeros(shape, **like)
        self.tokens = torch.zeros(batch, c.block_size, dtype=torch.long, device=weight.device)
        self.conv_inputs: list[torch.Tensor] = []
        if model.mode == "causal":
            channels = c.wavenet.channels
            self.conv_inputs = [
                torch.zeros(batch, c.block_size, channels, **like) for _ in model.wavenet.layers
            ]
        self.fixed_branch: torch.Tensor | None = None  # prev_block's (B, 1, C)
        self.length = 0  # positions cached
        self.seen = 0  # tokens of the sequence the last call was given
        self.primes = 0  # full forwards over a window (the rest were appends)

    @torch.no_grad()
    def next_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, vocab) logits of the token after idx (B, L). A call whose idx extends the previous
        call's by one token appends it while the window has room; any other call re-primes."""
        L = idx.size(1)
        if 0 < self.seen == L - 1 and self.length < self.block_size:
            logits = self._run(idx[:, -1:])
        else:
            logits = self.prime(
                *window_and_prev(idx, self.block_size, self.model.mode == "prev_block")
            )
        self.seen = L
        return logits

    @torch.no_grad()
    def prime(self, window: torch.Tensor, prev_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Forgets the cache and runs ``window`` (B, <= block_size) from position 0; returns the
        logits after its last token. ``prev_idx``: the block before it (mode ``prev_block``)."""
        self.length = 0
        self.primes += 1
        if self.model.mode == "prev_block":
            if prev_idx is None:
                raise ValueError("WaveGPT mode='prev_block' needs prev_idx, the block before")
            self.fixed_branch = self.model.branch(self.model.transformer.wte(window), prev_idx)
        return self._run(window)

    def _run(self, new: torch.Tensor) -> torch.Tensor:
        """Runs the tokens ``new`` (B, n) at the next n positions; logits after the last."""
        m, start, end = self.model, self.length, self.length + new.size(1)
        if end > self.block_size:
            raise ValueError(f"the window would hold {end} tokens; block_size is {self.block_size}")
        self.tokens[:, start:end] = new
        tok_emb = m.transformer.wte(new)
        x = m.transformer.drop(
            tok_emb + m.transformer.wpe(torch.arange(start, end, device=new.device))
        )
        for i, block in enumerate(m.transformer.h):
            x = x + self._attend(i, block.attn, block.ln_1(x), start)
            x = x + block.mlp(block.ln_2(x))
        if m.mode is not None:
            x = x + m.wavenet_gate * self._branch(tok_emb, start)
        self.length = end
        return m.lm_head(m.transformer.ln_f(x[:, -1]))

    def _attend(
        self, i: int, attn: CausalSelfAttention, x: torch.Tensor, start: int
    ) -> torch.Tensor:
        """``attn`` at positions start.. of x (B, n, C), attending to the cached positions too."""
        B, n, C = x.shape
        end = start + n
        q, k, v = (
            t.view(B, n, attn.n_head, C // attn.n_head).transpose(1, 2)
            for t in attn.c_attn(x).split(C, dim=2)
        )
        self.keys[i, :, :, start:end] = k
        self.values[i, :, :, start:end] = v
        keys, values = self.keys[i, :, :, :end], self.values[i, :, :, :end]
        if start == 0:
            y = F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        else:  # new position start + j sees positions <= start + j
            mask = torch.ones(n, end, dtype=torch.bool, device=x.device).tril(start)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        return attn.resid_dropout(attn.c_proj(y.transpose(1, 2).reshape(B, n, C)))

    def _branch(self, tok_emb: torch.Tensor, start: int) -> torch.Tensor:
        """The WaveNet branch's features at the new positions: (B, n, C), or (B, 1, C)
        broadcast to all of them."""
        m = self.model
        if m.mode == "prev_block":
            return self.fixed_branch
        end = start + tok_emb.size(1)
        if m.mode == "block":  # the whole window, as GPT.branch reads it
            return m.branch(m.transformer.wte(self.tokens[:, :end]), None)
        x = m.wavenet.inp(tok_emb)
        activations = []
        for layer, inputs in zip(m.wavenet.layers, self.conv_inputs):
            inputs[:, start:end] = x
            lo = start - layer.dilation
            past = inputs[:, max(lo, 0) : max(end - layer.dilation, 0)]
            if lo < 0:  # positions before the start read zeros, as forward()'s padding
                past = F.pad(past, (0, 0, x.size(1) - past.size(1), 0))
            x, z = layer.from_taps(past, x)
            activations.append(z)
        return m.wavenet.out(m.wavenet.skip(torch.cat(activations, dim=-1)))


@torch.no_grad()
def generate(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``GPT.generate``'s continuations of idx (B, T0), the same draws, with a :class:`Decoder`."""
    decoder = Decoder(model, idx.size(0))
    for _ in range(max_new_tokens):
        logits = decoder.next_logits(idx)
        idx = torch.cat((idx, next_token(logits, temperature, top_k, generator)), dim=1)
    return idx
