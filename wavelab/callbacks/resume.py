"""Continuing a run in its own dir leaves it as if the run had never stopped.

A run killed at any moment and resumed (``resume_dir=``) restarts from its last checkpoint. What
the killed process wrote after that checkpoint must go, or the run dir holds it twice:

- rows of ``csv/metrics.csv`` logged at or after the checkpoint's step (they are logged again);
- checkpoints the restored ModelCheckpoint does not track: a kill between saving a new best and
  deleting the old one leaves two "best" files where ``save_top_k=1`` promises one;
- temp files of saves that a kill interrupted (``.<name>.tmp<pid>``, see :mod:`wavelab.core.atomic`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from wavelab.core.atomic import remove_stale_temp_files
from wavelab.core.loggers import ResumableCSVLogger

log = logging.getLogger(__name__)


class ResumeInPlace(L.Callback):
    def __init__(self, run_dir: str):
        self.run_dir = Path(run_dir)
        self.resumed = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        dirs = {self.run_dir} | {Path(cb.dirpath) for cb in self.checkpointers(trainer)}
        for directory in dirs:
            for path in remove_stale_temp_files(directory):
                log.info("removed %s, left by an interrupted save", path)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self.resumed = True
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, ResumableCSVLogger):
                logger.experiment.keep_steps_before(checkpoint["global_step"])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Here the checkpoint callbacks have their state back, so they know which files they own.
        if not (self.resumed and trainer.is_global_zero):
            return
        # Checkpointers may share a folder (callbacks.last_checkpoint writes last.ckpt beside the
        # best one): a file is stale only if none of them tracks it.
        tracked: set[Path] = set()
        folders: dict[Path, str] = {}
        for cb in self.checkpointers(trainer):
            last = Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
            tracked |= {
                Path(p).resolve() for p in (*cb.best_k_models, cb.last_model_path, last) if p
            }
            folders[Path(cb.dirpath).resolve()] = cb.FILE_EXTENSION
        for folder, extension in folders.items():
            for path in folder.glob(f"*{extension}"):
                if path.resolve() not in tracked:
                    log.info("removed %s, saved after the checkpoint this run resumed", path)
                    path.unlink()

    @staticmethod
    def checkpointers(trainer: L.Trainer) -> list[ModelCheckpoint]:
        return [
            cb
            for cb in trainer.checkpoint_callbacks
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is not None
        ]
