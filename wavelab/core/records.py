"""Which LightningModule wrote a checkpoint: recorded at save, looked up (never imported) at load."""

from __future__ import annotations

MODULE_KEY = "wavelab_module"


class RecordsItsClass:
    """LightningModule mixin: the checkpoint records the module's class as ``module:qualname``.

    Loading accepts only the classes in ``wavelab.core.checkpoints.KNOWN_MODULES``; the recorded name
    is looked up there, never imported.
    """

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[MODULE_KEY] = f"{type(self).__module__}:{type(self).__qualname__}"
