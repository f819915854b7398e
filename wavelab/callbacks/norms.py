"""Global gradient and parameter norms, every few optimizer steps (cheap health signals)."""

from __future__ import annotations

import lightning as L
from torch.nn.utils import get_total_norm


class NormMonitor(L.Callback):
    """Logs ``train/grad_norm`` (before clipping) and ``train/param_norm`` every ``every_n_steps``."""

    def __init__(self, every_n_steps: int = 50):
        self.every_n_steps = every_n_steps

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # Lightning calls this after unscaling AMP gradients and before clipping them.
        if trainer.global_step % self.every_n_steps:
            return
        params = [p.detach() for p in pl_module.parameters() if p.requires_grad]
        grads = [p.grad.detach() for p in pl_module.parameters() if p.grad is not None]
        norms = {"train/param_norm": get_total_norm(params)}
        if grads:
            norms["train/grad_norm"] = get_total_norm(grads)
        pl_module.log_dict(norms, on_step=True, on_epoch=False)
