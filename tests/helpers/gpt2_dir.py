"""A small random GPT2LMHeadModel with a byte-level BPE tokenizer, saved like a Hugging Face
model dir (save_pretrained), for the model.init_from tests. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from wavelab.data.corpora import shakespeare_complete_works
from wavelab.data.tokenizers import BPETokenizer

N_POSITIONS = 64


def tiny_gpt2(vocab_size: int, activation: str = "gelu_new") -> GPT2LMHeadModel:
    """Random weights everywhere, biases and LayerNorms too, so a mapping that dropped or
    misplaced one would change the logits."""
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=N_POSITIONS,
        n_embd=32,
        n_layer=2,
        n_head=2,
        activation_function=activation,
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def save_gpt2_dir(path: Path, activation: str = "gelu_new") -> GPT2LMHeadModel:
    """``tiny_gpt2`` and a 320-id BPE of Shakespeare saved in ``path``; returns the model."""
    tokenizer = BPETokenizer.train(shakespeare_complete_works()[:200_000], 320)
    model = tiny_gpt2(tokenizer.vocab_size, activation)
    model.save_pretrained(str(path))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer._tok)
    fast.save_pretrained(str(path))
    return model
