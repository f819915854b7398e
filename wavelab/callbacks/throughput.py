"""Training speed: tokens/s, samples/s and model FLOPs utilisation (MFU), over all ranks.

Rates are measured between logging steps and exclude validation. FLOPs per token come from the
model's spec (``ModelSpec.flops_per_token``, wavelab.core.registry); a module without one logs
the rates only. MFU needs the device's peak in wavelab.core.flops, so on CPUs only the rates
are logged.
"""

from __future__ import annotations

import time

import lightning as L
import torch

from wavelab.core.flops import peak_flops
from wavelab.core.registry import spec_of


def flops_per_token(pl_module: L.LightningModule) -> float | None:
    spec = spec_of(pl_module)
    return None if spec is None else spec.flops_per_token(pl_module)


def first_tensor(batch) -> torch.Tensor:
    """The batch's first tensor: token ids (B, T) for the LMs (x_prev has the window's shape)."""
    if isinstance(batch, torch.Tensor):
        return batch
    items = batch.values() if isinstance(batch, dict) else batch
    return next(first_tensor(b) for b in items if isinstance(b, torch.Tensor | dict | list | tuple))


class Throughput(L.Callback):
    """Logs ``perf/tokens_per_sec``, ``perf/samples_per_sec``, ``perf/samples`` (seen so far,
    all ranks) and, on known GPUs with 16-bit precision, ``perf/mfu``."""

    def __init__(self, every_n_steps: int = 10):
        self.every_n_steps = every_n_steps
        self.samples = 0  # global samples seen this run
        self._start: float | None = None  # start of the current measurement window
        self._window = (0, 0)  # (samples, tokens) in the window, global

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flops_per_token = flops_per_token(pl_module)
        peak = peak_flops(trainer.strategy.root_device, trainer.precision)
        self._peak = peak * trainer.world_size if peak else None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._start is None:
            self._sync(pl_module)
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        x = first_tensor(batch)  # (batch, tokens, ...); every rank holds a batch of this size
        samples = x.size(0) * trainer.world_size
        tokens = (x.shape[:2].numel() if x.dim() >= 2 else x.size(0)) * trainer.world_size
        self.samples += samples
        self._window = (self._window[0] + samples, self._window[1] + tokens)
        if trainer.global_step % self.every_n_steps:
            return
        self._sync(pl_module)
        elapsed = time.perf_counter() - self._start
        metrics = {
            "perf/samples": float(self.samples),
            "perf/samples_per_sec": self._window[0] / elapsed,
            "perf/tokens_per_sec": self._window[1] / elapsed,
        }
        if self._peak and self._flops_per_token:
            metrics["perf/mfu"] = (
                metrics["perf/tokens_per_sec"] * self._flops_per_token / self._peak
            )
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, rank_zero_only=True)
        self._start, self._window = time.perf_counter(), (0, 0)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._start, self._window = None, (0, 0)  # validation time is not training throughput

    @staticmethod
    def _sync(pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def state_dict(self) -> dict:
        return {"samples": self.samples}

    def load_state_dict(self, state_dict: dict) -> None:
        self.samples = state_dict["samples"]
