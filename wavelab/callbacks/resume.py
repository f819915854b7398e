"""Continuing a run in its own dir leaves it as if the run had never stopped.

A run killed at any moment and resumed (``resume_dir=``) restarts from its last checkpoint. What
the killed process wrote after that checkpoint must go, or the run dir holds it twice:

- rows of ``csv/metrics.csv`` logged at or after the checkpoint's step (they are logged again);
- checkpoints the restored ModelCheckpoint does not track: a kill between saving a new best and
  deleting the old one leaves two "best" files where ``save_top_k=1`` promises one. Only files
  named as a checkpointer of this run names its files, at a step after the restored checkpoint's,
  are removed: anything else in the folder (``keep_me.ckpt``, older copies) is the user's;
- temp files of saves that a kill interrupted (``.<name>.tmp<pid>``, see :mod:`wavelab.core.atomic`).

A run dir copied or moved elsewhere resumes too: the checkpointers' saved paths point into the
old dir, and are moved to the same names in this one before the checkpointers load them (so
neither the cleanup nor the best checkpoint named at the end points at another run's dir).
"""

from __future__ import annotations

import logging
import re
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
        self.resumed_step = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        dirs = {self.run_dir} | {Path(cb.dirpath) for cb in self.checkpointers(trainer)}
        for directory in dirs:
            for path in remove_stale_temp_files(directory):
                log.info("removed %s, left by an interrupted save", path)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self.resumed = True
        self.resumed_step = checkpoint.get("global_step", 0)
        # Runs before the callbacks load their states (Lightning's order), so they load these.
        for cb in self.checkpointers(trainer):
            state = (checkpoint.get("callbacks") or {}).get(cb.state_key)
            if state is not None:
                moved_checkpointer_state(state, cb.dirpath)
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
        patterns: dict[Path, list[re.Pattern]] = {}
        for cb in self.checkpointers(trainer):
            last = Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
            tracked |= {
                Path(p).resolve() for p in (*cb.best_k_models, cb.last_model_path, last) if p
            }
            pattern = checkpoint_name_pattern(cb)
            if pattern is not None:
                patterns.setdefault(Path(cb.dirpath).resolve(), []).append(pattern)
        for folder, folder_patterns in patterns.items():
            if not folder.is_dir():  # resumed from a checkpoint elsewhere: nothing saved here yet
                continue
            for path in folder.iterdir():
                if path.resolve() in tracked or not path.is_file():
                    continue
                steps = [int(m["step"]) for p in folder_patterns if (m := p.fullmatch(path.name))]
                if steps and steps[0] > self.resumed_step:
                    log.info("removed %s, saved after the checkpoint this run resumed", path)
                    path.unlink()

    @staticmethod
    def checkpointers(trainer: L.Trainer) -> list[ModelCheckpoint]:
        return [
            cb
            for cb in trainer.checkpoint_callbacks
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is not None
        ]


def checkpoint_name_pattern(cb: ModelCheckpoint) -> re.Pattern | None:
    """A regex of the file names ``cb`` writes, with their step as group ``step``; None when its
    names hold no step (then no file of it can be told to be newer than the resumed one)."""
    template = cb.filename or "{epoch}-{step}"
    parts = re.split(r"\{([^{}]*)\}", template)
    regex, has_step = "", False
    for i, part in enumerate(parts):
        if i % 2 == 0:
            regex += re.escape(part)
            continue
        name = part.split(":")[0]
        prefix = re.escape(name.replace("/", "_")) + re.escape(cb.CHECKPOINT_EQUALS_CHAR)
        prefix = f"(?:{prefix})?" if cb.auto_insert_metric_name else ""
        if name == "step" and not has_step:
            regex += prefix + r"(?P<step>\d+)"
            has_step = True
        else:
            regex += prefix + r".*?"
    if not has_step:
        return None
    version = re.escape(cb.CHECKPOINT_JOIN_CHAR) + r"v\d+"
    return re.compile(f"{regex}(?:{version})?{re.escape(cb.FILE_EXTENSION)}")


def moved_checkpointer_state(state: dict, dirpath: str) -> None:
    """A ModelCheckpoint's saved state, its paths moved from the dir it was saved in (if it is
    not ``dirpath``: the run dir was copied or moved) to the same names in ``dirpath``."""
    saved_dir = state.get("dirpath")
    if saved_dir is None or Path(saved_dir) == Path(dirpath):
        return

    def moved(path):
        if not path or Path(path).parent != Path(saved_dir):
            return path
        return str(Path(dirpath) / Path(path).name)

    state["dirpath"] = dirpath
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        if key in state:
            state[key] = moved(state[key])
    if isinstance(state.get("best_k_models"), dict):
        state["best_k_models"] = {moved(p): v for p, v in state["best_k_models"].items()}
