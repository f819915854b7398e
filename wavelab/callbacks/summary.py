"""``<run dir>/metrics.json``: a run's final and best validation metrics and its overrides.

Sweep reports (``python -m wavelab.report``) read these files, so they need neither W&B nor the
CSV logs. Rewritten after every validation, so a killed job still leaves its last numbers, and
when a run stops early: ``"interrupted"`` records a SIGTERM or SIGINT, ``"diverged"`` a NaN or inf
loss.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import yaml
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities.exceptions import SIGTERMException

from wavelab.callbacks.health import stopping_signal
from wavelab.core import atomic
from wavelab.core.errors import TrainingDiverged


def job_overrides(run_dir: Path) -> list[str]:
    """The job's command-line overrides: as Hydra saved them, else from the live Hydra config."""
    saved = run_dir / ".hydra" / "overrides.yaml"
    if saved.is_file():
        return list(yaml.safe_load(saved.read_text()) or [])
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


class RunSummary(L.Callback):
    def __init__(self, run_dir: str, monitor: str = "val/loss", mode: str = "min"):
        if mode not in ("min", "max"):
            raise ValueError(f"callbacks.summary.mode={mode!r} is invalid: min or max")
        self.path = Path(run_dir) / "metrics.json"
        self.monitor = monitor
        self.mode = mode
        self.final: dict[str, float] = {}  # the latest metrics; kept across resumes
        self.best: dict[str, float] = {}  # every metric at the best `monitor` value so far
        self.best_step: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        value = metrics.get(self.monitor)
        better = min if self.mode == "min" else max
        if (
            value is not None
            and math.isfinite(value)
            and (self.monitor not in self.best or better(value, self.best[self.monitor]) == value)
        ):
            self.best, self.best_step = metrics, trainer.global_step
        self.write(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            name = stopping_signal(trainer)
            self.write(trainer, interrupted={"signal": name, "step": trainer.global_step})
        elif isinstance(exception, TrainingDiverged):
            self.write(trainer, diverged={"step": trainer.global_step, "reason": str(exception)})

    def write(self, trainer: L.Trainer, **ending: dict) -> None:
        if not trainer.is_global_zero:
            return
        # A resumed run that trains no further step has no metrics of its own: keep the last.
        if trainer.callback_metrics:
            self.final = {k: float(v) for k, v in trainer.callback_metrics.items()}
        summary = {
            "global_step": trainer.global_step,
            "final": self.final,
            "best": self.best,
            "best_step": self.best_step,
            "monitor": self.monitor,
            "overrides": job_overrides(self.path.parent),
            **ending,
        }
        atomic.write_text(self.path, json.dumps(summary, indent=1))

    def state_dict(self) -> dict:
        return {"final": self.final, "best": self.best, "best_step": self.best_step}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best, self.best_step = state_dict["best"], state_dict["best_step"]
        self.final = state_dict["final"]
