"""Global gradient and parameter norms, every few optimizer steps (cheap health signals)."""

from __future__ import annotations

import lightning as L
import torch


def total_norm(tensors: list[torch.Tensor]) -> float:
    """The L2 norm of all ``tensors`` taken as one vector."""
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(t) for t in tensors])
    ).item()


class NormMonitor(L.Callback):
    """Logs ``train/grad_norm`` (before clipping) and ``train/param_norm`` every ``every_n_steps``.

    Each value goes to the loggers once, at the step it was measured. (Through
    ``LightningModule.log`` it would stay among the step's metrics and be logged again, with its
    old value, at every later logging step.)
    """

    def __init__(self, every_n_steps: int = 50):
        self.every_n_steps = every_n_steps

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # Lightning calls this after unscaling AMP gradients and before clipping them.
        if trainer.global_step % self.every_n_steps or trainer.sanity_checking:
            return
        params = [p.detach() for p in pl_module.parameters() if p.requires_grad]
        grads = [p.grad.detach() for p in pl_module.parameters() if p.grad is not None]
        norms = {"train/param_norm": total_norm(params)}
        if grads:
            norms["train/grad_norm"] = total_norm(grads)
        for logger in trainer.loggers:
            logger.log_metrics(norms, step=trainer.global_step)
