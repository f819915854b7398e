"""Optimizer and schedule plumbing shared by the LightningModules."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import lightning as L
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from omegaconf import DictConfig, OmegaConf

from wavelab.core.config import instantiate
from wavelab.core.errors import ConfigError

log = logging.getLogger(__name__)


def plain(cfg):
    """DictConfig -> plain containers, so checkpoints hold only builtin types."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def warmup_cosine(step: int, warmup_steps: int, decay_steps: int, min_lr_ratio: float) -> float:
    """nanoGPT's schedule as a multiplier of the peak lr: linear warmup, cosine down to min."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr_ratio
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - min_lr_ratio)


def fused_conflicts_with_clipping(trainer: L.Trainer | None) -> bool:
    """Whether Lightning refuses a fused optimizer in this trainer.

    Under mixed precision (``bf16-mixed``, ``16-mixed``) Lightning's precision plugin rejects
    gradient clipping with any optimizer that unscales gradients inside its own step, as fused
    AdamW does: with a float16 GradScaler it would clip gradients that are still scaled.
    """
    return (
        trainer is not None
        and bool(trainer.gradient_clip_val)
        and isinstance(trainer.precision_plugin, MixedPrecision)
    )


def build_optimizer(
    optimizer_cfg: Mapping, param_groups: list[dict], trainer: L.Trainer | None = None
) -> torch.optim.Optimizer:
    """Instantiates a ``_partial_`` optimizer config over explicit parameter groups (allowed
    targets only: the config may come from a checkpoint's hyperparameters).

    ``fused: true`` means "fused wherever ``trainer`` allows it": where it does not (see
    :func:`fused_conflicts_with_clipping`) the optimizer falls back to torch's default
    (multi-tensor) implementation, which gives the same updates.
    """
    if optimizer_cfg.get("fused") and fused_conflicts_with_clipping(trainer):
        log.info(
            "model.optimizer.fused=true is off: Lightning allows no fused optimizer with "
            "gradient clipping under trainer.precision=%s",
            trainer.precision,
        )
        optimizer_cfg = {**optimizer_cfg, "fused": None}
    factory = instantiate(optimizer_cfg, "model.optimizer")
    return factory(param_groups)


def build_scheduler(optimizer: torch.optim.Optimizer, scheduler_cfg: Mapping) -> dict:
    """A per-step LambdaLR for Lightning's ``lr_scheduler`` dict."""
    warmup = int(scheduler_cfg["warmup_steps"])
    decay = int(scheduler_cfg["decay_steps"])
    peak = optimizer.defaults["lr"]
    min_lr = float(scheduler_cfg["min_lr"])
    if warmup < 0 or decay < warmup:
        raise ConfigError(
            f"model.scheduler.warmup_steps={warmup}, decay_steps={decay} are invalid: "
            "need 0 <= warmup_steps <= decay_steps"
        )
    if not 0.0 <= min_lr <= peak:
        raise ConfigError(f"model.scheduler.min_lr={min_lr} is invalid: must be in [0, lr={peak}]")
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup, decay, min_lr / peak)
    )
    return {"scheduler": sched, "interval": "step", "frequency": 1}
