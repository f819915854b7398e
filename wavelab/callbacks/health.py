"""How a run ends when it cannot go on: a diverged loss, or a SIGTERM from a scheduler.

- :class:`FiniteGuard` stops a run whose loss or weights became NaN or infinite, before the bad
  weights are stepped on or saved: no NaN checkpoint becomes ``best`` or replaces ``last.ckpt``.
  The entry point then exits with :data:`DIVERGED_EXIT`.
- :class:`SaveOnSigterm` turns Lightning's SIGTERM handling (which stops the loop and exits 0)
  into an honest stop: ``last.ckpt`` at the current step, so ``resume_dir=`` loses nothing, and
  exit status :data:`SIGTERM_EXIT` (128 + 15, the shell's convention), so sweeps and schedulers
  count the job as interrupted, not done. It does not requeue: under SLURM, Lightning's own
  auto-requeue answers the requeue signal (``sbatch --signal=USR1@90``); a job terminated by
  SIGTERM is continued by running it again with ``resume_dir=<its run dir>``.

  SIGINT (Ctrl-C) during ``fit`` ends the same way, with exit status :data:`SIGINT_EXIT`
  (128 + 2): its handler sends this process a SIGTERM, so Lightning's own SIGTERM handling
  stops the loop at the end of the batch instead of Lightning's KeyboardInterrupt shutdown
  (exit 1, nothing saved, nothing recorded).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from wavelab.core.errors import ConfigError, TrainingDiverged

log = logging.getLogger(__name__)

SIGTERM_EXIT = 128 + signal.SIGTERM
SIGINT_EXIT = 128 + signal.SIGINT

LIKELY_CAUSES = (
    "likely causes: a learning rate too high (model.optimizer.lr), float16 overflow "
    "(trainer.precision=16-mixed; try bf16-mixed or 32-true), or bad data"
)


class FiniteGuard(L.Callback):
    """Checks the training losses before their backward passes, the monitored validation metric
    after each validation, and the weights before every checkpoint save.

    Reading a loss's finiteness on the host waits for the device. ``check_every_n_steps`` = 1
    (the default) reads it every step, so a bad loss is never stepped on. At N > 1 each step
    only folds its loss into a flag on the device, read every N steps and before every
    validation: no sync in between, and a run that diverges stops up to N - 1 steps late, its
    weights already bad; the checkpoint check still keeps them out of best and last.ckpt.
    """

    def __init__(self, monitor: str = "val/loss", check_every_n_steps: int = 1):
        if isinstance(check_every_n_steps, bool) or not (
            isinstance(check_every_n_steps, int) and check_every_n_steps >= 1
        ):
            raise ConfigError(
                f"callbacks.finite_guard.check_every_n_steps={check_every_n_steps!r} is invalid: "
                "need a whole number >= 1"
            )
        self.monitor = monitor
        self.check_every_n_steps = check_every_n_steps
        self._finite: torch.Tensor | None = None  # every loss since the last read was finite
        self._first_bad: torch.Tensor | None = None  # the first non-finite loss since then

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        loss = loss.detach()
        finite = torch.isfinite(loss).all()
        if self._finite is None:  # the first loss since the last read
            self._finite, self._first_bad = finite, loss
        else:  # device ops only: the first bad loss is kept, the flag folds in this one
            self._first_bad = torch.where(self._finite & ~finite, loss, self._first_bad)
            self._finite = self._finite & finite
        if (trainer.global_step + 1) % self.check_every_n_steps == 0:
            self._read(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._read(trainer)

    def _read(self, trainer) -> None:
        """The one host sync: raises if a loss since the last read was not finite."""
        if self._finite is None or bool(self._finite):
            self._finite = None
            return
        bad, n = float(self._first_bad), self.check_every_n_steps
        self._finite = None
        read = f" (read every {n} steps)" if n > 1 else ""
        stopped = "before stepping on it" if n == 1 else "without saving its weights"
        raise TrainingDiverged(
            f"training diverged: the training loss is {bad} at step {trainer.global_step}{read}, "
            f"so the run stopped {stopped}; {LIKELY_CAUSES}"
        )

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or math.isfinite(float(value)):
            return
        raise TrainingDiverged(
            f"training diverged: {self.monitor} is {float(value)} at step {trainer.global_step}, "
            f"so the run stopped without saving a checkpoint of it; {LIKELY_CAUSES}"
        )

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        bad = next(
            (
                name
                for name, t in checkpoint["state_dict"].items()
                if torch.is_tensor(t) and t.is_floating_point() and not torch.isfinite(t).all()
            ),
            None,
        )
        if bad is not None:
            raise TrainingDiverged(
                f"training diverged: the weights hold NaN or inf values ({bad}) at step "
                f"{trainer.global_step}, so the run stopped without saving them; {LIKELY_CAUSES}"
            )


class SaveOnSigterm(L.Callback):
    def __init__(self):
        self.saving = False
        self.got_sigint = False
        self._previous_sigint = None
        # (batches completed, logging step) when the last validation ended
        self.validated_at: tuple[int, int] | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validated_at = logging_position(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # Lightning stops on SIGTERM at the end of a batch, after it advanced the logging step.
        # A resume restarts at that batch's end: if the batch ended with a validation, Lightning
        # skips the validation but advances the logging step again (its own validation-time
        # checkpoints store the step before the advance), so store it as they do; otherwise the
        # resume goes on with the next batch, and the step stands. Either way the resumed run
        # logs each row at the step the uninterrupted run would.
        if not self.saving or self.validated_at is None:
            return
        batches, logging_step = logging_position(trainer)
        if self.validated_at == (batches, logging_step - 1):
            checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1

    # Installed once Lightning has registered its SIGTERM handler (after on_fit_start), which
    # restores the handlers it found when the fit ends.
    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._install_sigint()

    def on_train_start(self, trainer, pl_module) -> None:
        self._install_sigint()

    def _install_sigint(self) -> None:
        if self._previous_sigint is None and threading.current_thread() is threading.main_thread():
            self.got_sigint = False
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore_sigint()

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def _on_sigint(self, signum, frame) -> None:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            raise KeyboardInterrupt  # Lightning's SIGTERM handler is not (or no longer) there
        self.got_sigint = True
        os.kill(os.getpid(), signal.SIGTERM)  # handled by Lightning's SIGTERM handler

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore_sigint()  # Lightning runs no teardown hook after an exception
        if not isinstance(exception, SIGTERMException):
            return
        signame = "SIGINT" if self.got_sigint else "SIGTERM"
        exception.code = SIGINT_EXIT if self.got_sigint else SIGTERM_EXIT
        checkpointer = trainer.checkpoint_callback
        if checkpointer is None or checkpointer.dirpath is None:
            log.warning(
                "%s at step %d: no checkpoint callback, nothing saved", signame, trainer.global_step
            )
            return
        resume = f"resume_dir={Path(checkpointer.dirpath).parent}"
        if trainer.validating:
            # Lightning cannot resume half a validation exactly; the last checkpoint stands.
            log.warning(
                "%s during validation at step %d: continue with %s, which restarts from the last "
                "checkpoint",
                signame,
                trainer.global_step,
                resume,
            )
            return
        name = f"{checkpointer.CHECKPOINT_NAME_LAST}{checkpointer.FILE_EXTENSION}"
        path = Path(checkpointer.dirpath) / name
        self.saving = True
        try:
            trainer.save_checkpoint(path)
        finally:
            self.saving = False
        log.warning(
            "%s at step %d: saved %s; continue with %s", signame, trainer.global_step, path, resume
        )


def logging_position(trainer: L.Trainer) -> tuple[int, int]:
    """The training batches completed so far, and the step that loggers are at."""
    loop = trainer.fit_loop.epoch_loop
    return loop.batch_progress.total.completed, loop._batches_that_stepped


def stopping_signal(trainer: L.Trainer) -> str:
    """The signal that stopped ``trainer`` with a SIGTERMException: SIGINT or SIGTERM."""
    for cb in trainer.callbacks:
        if isinstance(cb, SaveOnSigterm) and cb.got_sigint:
            return "SIGINT"
    return "SIGTERM"
