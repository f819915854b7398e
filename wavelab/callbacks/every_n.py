"""The base of callbacks that act every few validations (samples, plots, reconstructions)."""

from __future__ import annotations

import lightning as L

from wavelab.core.errors import ConfigError


class EveryNValidations(L.Callback):
    """Calls ``on_nth_validation`` after every ``every_n_validations``-th validation of a fit;
    the sanity check does not count."""

    def __init__(self, every_n_validations: int):
        if every_n_validations < 1:
            raise ConfigError(f"every_n_validations={every_n_validations} is invalid: must be >= 1")
        self.every = every_n_validations
        self._validations = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._validations += 1
        if self._validations % self.every == 0:
            self.on_nth_validation(trainer, pl_module)

    def on_nth_validation(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise NotImplementedError
