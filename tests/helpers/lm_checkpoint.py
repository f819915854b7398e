"""A GPT or WaveGPT checkpoint written by a real Lightning Trainer in a second, for the export
tests: a tiny model, one step on random windows of a real tokenizer's ids."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from wavelab.data.tokenizers import TextTokenizer
from wavelab.wavegpt.module import LanguageModelModule

BLOCK = 16
MODES = {"gpt": None, "wavegpt": "prev_block", "wavegpt_causal": "causal"}


def lm_module(model: str, tokenizer: TextTokenizer, **net) -> LanguageModelModule:
    """A tiny ``model`` (a key of MODES) with ``tokenizer``; its gate is non-zero so a branch
    that were dropped or wired wrong would change the logits."""
    torch.manual_seed(0)
    mode = MODES[model]
    wavenet = None if mode is None else {"mode": mode, "n_layers": 3}
    module = LanguageModelModule(
        net={"block_size": BLOCK, "n_layer": 2, "n_head": 2, "n_embd": 16, "wavenet": wavenet}
        | net,
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3},
        scheduler={"warmup_steps": 1, "decay_steps": 2, "min_lr": 1e-4},
        tokenizer=tokenizer.to_dict(),
    )
    if mode is not None:
        with torch.no_grad():
            module.net.wavenet_gate.normal_()
    return module


def windows(vocab: int, n: int, seed: int) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, 2 * BLOCK + 1), generator=g)
    return [(r[:BLOCK], r[BLOCK:-1], r[BLOCK + 1 :]) for r in ids]


def fit_checkpoint(module: LanguageModelModule, path: Path) -> Path:
    """One real training step of ``module``, saved at ``path``."""
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=path.parent,
    )
    vocab = module.net.config.vocab_size
    trainer.fit(module, DataLoader(windows(vocab, 4, 0), batch_size=4))
    trainer.save_checkpoint(path)
    return path
