"""A tiny trained WavGPT checkpoint for the codec, plots and bench tests (tiny encoder, no data
files): a real Lightning fit of a few steps on random word-piece blocks, saved by the Trainer."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from helpers.wavgpt_batches import tiny_batch
from wavelab.wavgpt.module import WavGPTModule

T = 32


def tiny_module(encoder_dir: Path, head: str = "auto", **core) -> WavGPTModule:
    defaults = dict(block_size=T, refine_layers=1, refine_heads=2, refine_ff=64)
    return WavGPTModule(
        # head "auto" = the saved MLM head. "tied" would load a BertModel whose pooler (absent
        # from the tiny checkpoint) is freshly random, so every load has another fingerprint.
        encoder={"name_or_path": str(encoder_dir), "head": head},
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3},
        scheduler={"warmup_steps": 0, "decay_steps": 10, "min_lr": 1e-4},
        **{**defaults, **core},
    )


def blocks(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    ids, mask = tiny_batch([T - 3 * (i % 5) for i in range(n)], T, seed=seed)
    return [{"input_ids": i, "attention_mask": m} for i, m in zip(ids, mask)]


def fit_checkpoint(
    encoder_dir: Path, path: Path, steps: int = 2, callbacks=(), **core
) -> WavGPTModule:
    """Trains ``tiny_module`` for ``steps`` steps (validating at the end) and saves ``path``."""
    torch.manual_seed(0)
    module = tiny_module(encoder_dir, **core)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        default_root_dir=path.parent,
    )
    trainer.fit(
        module,
        DataLoader(blocks(4 * steps), batch_size=4),
        DataLoader(blocks(8, seed=1), batch_size=4),
    )
    trainer.save_checkpoint(path)
    return module
