"""WaveGPT for ``transformers``: GPT-2's trunk plus wavelab's gated WaveNet branch.

This file travels in an exported model dir and is loaded from there with
``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)``, so it imports only torch
and transformers. It computes what ``wavelab.wavegpt.model.GPT`` computes: the branch's features,
times a per-channel gate, are added to the trunk's output before the final LayerNorm. The trunk
is transformers' own ``GPT2Model`` (with its KV cache); its final LayerNorm is this model's
``ln_f``, applied after the branch.

Branch modes: ``causal`` reads the sequence itself (position t sees tokens <= t); ``prev_block``
reads ``prev_input_ids``, the block before the window (-1: before the start), all "before the
start" when not given, one vector broadcast to every position.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import GenerationMixin, GPT2Config, GPT2Model, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions


class WaveGPTConfig(GPT2Config):
    model_type = "wavegpt"

    def __init__(
        self,
        wavenet_mode: str = "causal",
        wavenet_n_layers: int = 1,
        wavenet_channels: int = 1,
        **kwargs,
    ):
        self.wavenet_mode = wavenet_mode
        self.wavenet_n_layers = wavenet_n_layers
        self.wavenet_channels = wavenet_channels
        super().__init__(**kwargs)


class WaveNetLayer(nn.Module):
    """Gated kernel-2 convolution with dilation d over channels-last inputs, as one Linear over
    the taps [x(t - d), x(t)]; a residual projection except in the last layer."""

    def __init__(self, channels: int, dilation: int, last: bool):
        super().__init__()
        self.dilation = dilation
        self.dilated = nn.Linear(2 * channels, 2 * channels)
        self.residual = None if last else nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        past = F.pad(x, (0, 0, self.dilation, 0))[:, : x.size(1)]
        filt, gate = self.dilated(torch.cat((past, x), dim=-1)).chunk(2, dim=-1)
        z = torch.tanh(filt) * torch.sigmoid(gate)
        return (x if self.residual is None else x + self.residual(z)), z


class WaveNetBranch(nn.Module):
    def __init__(self, n_embd: int, channels: int, n_layers: int):
        super().__init__()
        self.inp = nn.Linear(n_embd, channels)
        self.layers = nn.ModuleList(
            WaveNetLayer(channels, 2**i, last=i == n_layers - 1) for i in range(n_layers)
        )
        self.skip = nn.Linear(n_layers * channels, channels)
        self.out = nn.Sequential(
            nn.ReLU(), nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, n_embd)
        )

    @property
    def receptive_field(self) -> int:
        return 2 ** len(self.layers)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        x = self.inp(emb)
        activations = []
        for layer in self.layers:
            x, z = layer(x)
            activations.append(z)
        return self.out(self.skip(torch.cat(activations, dim=-1)))


class WaveGPTForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = WaveGPTConfig
    base_model_prefix = "transformer"
    _tied_weights_keys: ClassVar[dict] = {"lm_head.weight": "transformer.wte.weight"}
    _keys_to_ignore_on_load_unexpected: ClassVar[list] = ["attn.bias"]

    def __init__(self, config: WaveGPTConfig):
        super().__init__(config)
        if config.wavenet_mode not in ("causal", "prev_block"):
            raise ValueError(f"wavenet_mode={config.wavenet_mode!r}: causal or prev_block")
        self.transformer = GPT2Model(config)
        # The trunk's final norm comes after the branch is added, so it is applied here.
        self.ln_f = self.transformer.ln_f
        self.transformer.ln_f = nn.Identity()
        self.wavenet = WaveNetBranch(
            config.n_embd, config.wavenet_channels, config.wavenet_n_layers
        )
        self.wavenet_gate = nn.Parameter(torch.zeros(config.n_embd))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self._fixed_branch: torch.Tensor | None = None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.transformer.wte = value

    def prepare_inputs_for_generation(self, input_ids, *args, **kwargs):
        inputs = super().prepare_inputs_for_generation(input_ids, *args, **kwargs)
        # With a KV cache the trunk reads only the new tokens; the branch reads its receptive
        # field of the whole sequence.
        inputs["branch_ids"] = input_ids
        return inputs

    def _branch(self, input_ids, branch_ids, prev_input_ids, continuing) -> torch.Tensor:
        wte = self.transformer.wte
        if self.config.wavenet_mode == "prev_block":
            # The block before the window does not change while a generation continues.
            if continuing and self._fixed_branch is not None:
                return self._fixed_branch
            if prev_input_ids is None:  # a whole block of "before the start"
                prev_input_ids = torch.full_like(input_ids[:, :1], -1).expand(
                    -1, self.config.n_positions
                )
            prev = prev_input_ids[:, -self.wavenet.receptive_field :]
            emb = wte(prev.clamp(min=0)) * (prev >= 0).unsqueeze(-1).to(wte.weight.dtype)
            self._fixed_branch = self.wavenet(emb)[:, -1:]
            return self._fixed_branch
        n = input_ids.size(1)
        ids = input_ids if branch_ids is None else branch_ids
        # Position t reads tokens t - F + 1 .. t: the last n positions need F - 1 + n tokens.
        ids = ids[:, -(self.wavenet.receptive_field - 1 + n) :]
        return self.wavenet(wte(ids))[:, -n:]

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int = 0,
        prev_input_ids: torch.LongTensor | None = None,
        branch_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithCrossAttentions:
        """input_ids (B, n): the new tokens (all of them without a cache); ``branch_ids``: the
        whole sequence, when a cache holds the start; ``prev_input_ids`` (B, T): prev_block's
        block before the window."""
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        continuing = cache is not None and cache.get_seq_length() > 0
        trunk = self.transformer(
            input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs
        )
        branch = self._branch(input_ids, branch_ids, prev_input_ids, continuing)
        hidden = self.ln_f(trunk.last_hidden_state + self.wavenet_gate * branch)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size)
        rest = {k: v for k, v in trunk.items() if k != "last_hidden_state"}
        return CausalLMOutputWithCrossAttentions(loss=loss, logits=logits, **rest)
