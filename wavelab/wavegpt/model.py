"""GPT and WaveGPT: a GPT decoder with an optional WaveNet branch.

One file, nanoGPT-style. ``GPT(GPTConfig(wavenet=None))`` is the plain baseline; with a
``WaveNetConfig`` the same model gains a stack of gated, dilated causal convolutions whose
output is added to the transformer output through a zero-initialised gate, so a fresh WaveGPT
computes exactly what the GPT with the same weights computes.

What the branch reads is the ``mode``:

* ``prev_block``: the ``block_size`` tokens that precede the window; it emits one vector
  (B, 1, C) broadcast to every position. Past only, so no leak.
* ``causal``: the window itself, one feature per position (B, T, C); position t sees <= t.
* ``block``: the window itself, summarised into one (B, 1, C) vector. That vector depends on the
  last token of the window, so it leaks the future into every earlier position. It exists only
  to reproduce the original WaveGPT repository and refuses to run without ``allow_future_leak``.

Token id ``-1`` in ``prev_idx`` means "before the start of the stream": its embedding is zero,
the same silence WaveNet's own zero padding assumes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from wavelab.core.errors import ConfigError
from wavelab.wavegpt.sampling import next_token, window_and_prev

WAVENET_MODES = ("prev_block", "causal", "block")
# The MLP's GELU: exact (erf), or GPT-2's tanh approximation.
ACTIVATIONS = {"gelu": "none", "gelu_tanh": "tanh"}


@dataclass
class WaveNetConfig:
    mode: str = "prev_block"
    n_layers: int | None = None  # None: log2(block_size), so the receptive field is one block
    # Residual/skip channels; None: n_embd // 2. Half width keeps the branch's cost (its
    # small matmuls and optimizer state) near a tenth of the GPT's step at nanoGPT's CPU size.
    channels: int | None = None
    allow_future_leak: bool = False

    def receptive_field(self) -> int:
        assert self.n_layers is not None
        return 2**self.n_layers  # kernel 2, dilations 1, 2, 4, ...: 1 + (2^L - 1)


@dataclass
class GPTConfig:
    block_size: int = 64
    vocab_size: int = 65
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False
    activation: str = "gelu"  # a key of ACTIVATIONS
    wavenet: WaveNetConfig | None = field(default=None)

    def __post_init__(self) -> None:
        if isinstance(self.wavenet, dict):
            self.wavenet = WaveNetConfig(**self.wavenet)
        self.validate()

    def validate(self) -> None:
        for key in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"model.net.{key}={value!r} is invalid: must be a positive integer"
                )
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"model.net.n_embd={self.n_embd} is invalid: must be divisible by "
                f"model.net.n_head={self.n_head}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.net.dropout={self.dropout} is invalid: must be in [0, 1)")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"model.net.activation={self.activation!r} is invalid: allowed are "
                f"{', '.join(ACTIVATIONS)}"
            )
        wn = self.wavenet
        if wn is None:
            return
        if wn.mode not in WAVENET_MODES:
            raise ConfigError(
                f"model.net.wavenet.mode={wn.mode!r} is invalid: allowed are {', '.join(WAVENET_MODES)}"
            )
        if wn.mode == "block" and not wn.allow_future_leak:
            raise ConfigError(
                "model.net.wavenet.mode='block' leaks future tokens into earlier positions (the "
                "original WaveGPT design). Set model.net.wavenet.allow_future_leak=true to run it "
                "anyway, or use mode=prev_block or mode=causal."
            )
        if wn.n_layers is None:
            wn.n_layers = max(1, math.ceil(math.log2(self.block_size)))
        if wn.n_layers < 1:
            raise ConfigError(f"model.net.wavenet.n_layers={wn.n_layers} is invalid: must be >= 1")
        if wn.channels is None:
            wn.channels = max(1, self.n_embd // 2)
        if not isinstance(wn.channels, int) or wn.channels < 1:
            raise ConfigError(
                f"model.net.wavenet.channels={wn.channels!r} is invalid: must be a positive "
                "integer (or null for n_embd // 2)"
            )


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.approximate = ACTIVATIONS[config.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def gated(h: torch.Tensor) -> torch.Tensor:
    filt, gate = h.chunk(2, dim=-1)
    return torch.tanh(filt) * torch.sigmoid(gate)


class WaveNetLayer(nn.Module):
    """Gated dilated causal convolution with a residual output (van den Oord et al. 2016).

    Channels last, so every convolution is one matmul, much faster on CPU than ``nn.Conv1d``
    at these sizes: the kernel-2 convolution with dilation d is a Linear over its two taps
    ``[x(t - d), x(t)]`` concatenated. The layer returns its gated activation z too; the
    branch projects all layers' z to the skip sum at once.
    """

    def __init__(self, channels: int, dilation: int, last: bool = False):
        super().__init__()
        self.dilation = dilation
        self.dilated = nn.Linear(2 * channels, 2 * channels)  # taps -> filter and gate
        # The last layer feeds only the skip sum; a residual projection there would never get a
        # gradient (and DDP rejects parameters that get none).
        self.residual = None if last else nn.Linear(channels, channels)

    def _residual(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return x if self.residual is None else x + self.residual(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, T, C). Zeros before the start keep output t a function of inputs <= t.
        return self.from_taps(F.pad(x, (0, 0, self.dilation, 0))[:, : x.size(1)], x)

    def from_taps(self, past: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer at positions whose inputs are x (B, n, C), given the inputs ``dilation``
        positions before each of them (``past``, same shape; zeros before the start)."""
        z = gated(self.dilated(torch.cat((past, x), dim=-1)))
        return self._residual(x, z), z

    def forward_strided(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """forward() at every other position of a sequence sampled ``dilation`` apart.

        x: (B, n, C), n even, holds positions t - (n-1)d, ..., t - d, t. The taps of position
        s are s - d and s, neighbours here, so pairing neighbours gives the inputs of positions
        t - (n-2)d, ..., t: 2d apart, what the next layer (dilation 2d) reads.
        """
        B, n, C = x.shape
        z = gated(self.dilated(x.reshape(B, n // 2, 2 * C)))
        return self._residual(x[:, 1::2], z), z


class WaveNetBranch(nn.Module):
    """Token embeddings (B, T, n_embd) -> causal features (B, T, n_embd)."""

    def __init__(self, n_embd: int, config: WaveNetConfig):
        super().__init__()
        ch, n = config.channels, config.n_layers
        self.inp = nn.Linear(n_embd, ch)
        self.layers = nn.ModuleList(WaveNetLayer(ch, 2**i, last=i == n - 1) for i in range(n))
        # WaveNet sums one 1x1 skip projection per layer: the same as one projection of all
        # layers' gated activations concatenated (with the biases summed into one).
        self.skip = nn.Linear(n * ch, ch)
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(ch, ch), nn.ReLU(), nn.Linear(ch, n_embd))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        x = self.inp(emb)
        activations = []
        for layer in self.layers:
            x, z = layer(x)
            activations.append(z)
        return self.out(self.skip(torch.cat(activations, dim=-1)))

    def forward_last(self, emb: torch.Tensor) -> torch.Tensor:
        """``forward(emb)[:, -1:]`` (B, 1, n_embd), computing only what the last position reads.

        Layer i (dilation 2^i) is needed at every 2^(i+1)-th position counted back from the
        last, so over a receptive field of F = 2^n_layers tokens the stack evaluates
        F/2 + F/4 + ... + 1 = F - 1 positions instead of n_layers * F.
        """
        T = emb.size(1)
        field = 2 ** len(self.layers)  # the receptive field: older tokens cannot matter
        x = self.inp(emb[:, -field:])  # (B, <= field, C)
        # Positions before the sequence are zeros in every layer's input, as forward()'s
        # padding makes them; the layers' outputs there are not, so they are re-zeroed.
        if x.size(1) < field:
            x = F.pad(x, (0, 0, field - x.size(1), 0))
        activations = []
        for i, layer in enumerate(self.layers):
            x, z = layer.forward_strided(x)
            n_before = x.size(1) - ((T - 1) >> (i + 1)) - 1  # entries at positions < 0
            if n_before > 0:
                x = F.pad(x[:, n_before:], (0, 0, n_before, 0))
            activations.append(z[:, -1:])
        return self.out(self.skip(torch.cat(activations, dim=-1)))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        # GPT-2: scale residual projections by 1/sqrt(2 * n_layer).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if config.wavenet is not None:
            # Built after the GPT's init, so the trunk gets the same weights as the GPT from the
            # same seed, and the branch keeps torch's fan-in scaled init: GPT-2's std 0.02 in
            # all of its stacked projections would shrink its output about a millionfold, and
            # behind a zero gate it could then hardly start to learn.
            self.wavenet = WaveNetBranch(config.n_embd, config.wavenet)
            # Per-channel gate at zero: WaveGPT starts as exactly the GPT.
            self.wavenet_gate = nn.Parameter(torch.zeros(config.n_embd))
        if config.wavenet is not None and config.wavenet.mode == "block":
            warnings.warn(
                "WaveGPT mode='block' leaks future tokens into earlier positions: its losses are "
                "NOT comparable with a causal language model. Use it only to reproduce the "
                "original repository.",
                stacklevel=2,
            )

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @property
    def mode(self) -> str | None:
        return None if self.config.wavenet is None else self.config.wavenet.mode

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters (the tied token embedding / LM head once). ``non_embedding`` leaves out the
        position embedding: a table lookup, it costs no FLOPs, whereas the token embedding is
        also the LM head's matrix, which does (nanoGPT's count, used for 6N FLOPs per token)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6N for the weights (forward 2N, backward 4N) plus
        attention's 12·L·C·T (QK^T and AV, forward and backward, at full context T; C = heads x
        head size), as in the PaLM paper's appendix B. N is ``num_params()``: the position
        embedding is a lookup (no FLOPs), but the token embedding stays, since the LM head's
        tied matmul costs 2·V·C FLOPs per token in the forward pass (nanoGPT's MFU estimate);
        WaveGPT's branch is counted in its 6N."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * c.block_size

    def _embed_tokens(self, idx: torch.Tensor) -> torch.Tensor:
        # -1 marks "before the start of the stream" and embeds as zeros.
        emb = self.transformer.wte(idx.clamp(min=0))
        return emb * (idx >= 0).unsqueeze(-1).to(emb.dtype)

    def branch(self, tok_emb: torch.Tensor, prev_idx: torch.Tensor | None) -> torch.Tensor:
        mode = self.mode
        if mode == "causal":
            return self.wavenet(tok_emb)  # (B, T, C)
        if mode == "block":
            return self.wavenet.forward_last(tok_emb)  # (B, 1, C): sees the whole window
        if prev_idx is None:
            raise ValueError(
                "WaveGPT mode='prev_block' needs prev_idx, the tokens before the window"
            )
        return self.wavenet.forward_last(self._embed_tokens(prev_idx))  # (B, 1, C)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        prev_idx: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx, targets: (B, T) token ids; prev_idx: (B, T) ids before the window (-1 = none).

        Returns logits (B, T, vocab) and the mean cross-entropy when targets are given.
        """
        logits = self.lm_head(self.features(idx, prev_idx))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def features(self, idx: torch.Tensor, prev_idx: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, C) the final normed states that the head reads."""
        T = idx.size(1)
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)
        tok_emb = self.transformer.wte(idx)  # (B, T, C)
        x = self.transformer.drop(tok_emb + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        if self.mode is not None:
            x = x + self.wavenet_gate * self.branch(tok_emb, prev_idx)
        return self.transformer.ln_f(x)

    def next_token_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, vocab) logits of the token after each sequence: the head at the
        last position only."""
        return self.lm_head(self.features(idx)[:, -1])

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """nanoGPT's split: matrices (linear, conv, embedding) decay; biases, norms, gates do not."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Samples continuations of idx (B, T0); any T0, also longer than block_size.

        The full-window path: every new token runs the whole window again. The same draws
        with a cache are ``wavelab.wavegpt.decode.generate``.
        """
        for _ in range(max_new_tokens):
            window, prev = window_and_prev(idx, self.config.block_size, self.mode == "prev_block")
            logits = self(window, prev_idx=prev)[0][:, -1]
            idx = torch.cat((idx, next_token(logits, temperature, top_k, generator)), dim=1)
        return idx
