"""Which LightningModule and which wavelab wrote a checkpoint: recorded at save, checked (and the
class looked up, never imported) at load."""

from __future__ import annotations

from wavelab import __version__

MODULE_KEY = "wavelab_module"
VERSION_KEY = "wavelab_version"


class RecordsItsClass:
    """LightningModule mixin: the checkpoint records the module's class as ``module:qualname``
    and the wavelab version that wrote it.

    Loading accepts only the registered models (``wavelab.core.registry``), the recorded name
    looked up among them, never imported, and only checkpoints of this wavelab version.
    """

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[MODULE_KEY] = f"{type(self).__module__}:{type(self).__qualname__}"
        checkpoint[VERSION_KEY] = __version__
