"""Which LightningModule, which wavelab and which checkpoint format wrote a checkpoint: recorded
at save, checked (the class looked up, never imported; the format among those this wavelab
reads, wavelab.core.checkpoint_format) at load."""

from __future__ import annotations

from wavelab import __version__
from wavelab.core.checkpoint_format import CHECKPOINT_FORMAT, FORMAT_KEY, VERSION_KEY

MODULE_KEY = "wavelab_module"


class RecordsItsClass:
    """LightningModule mixin: the checkpoint records the module's class as ``module:qualname``
    the wavelab version that wrote it, and its checkpoint format.

    Loading accepts only the registered models (``wavelab.core.registry``), the recorded name
    looked up among them, never imported, and only the checkpoint formats this wavelab reads.
    """

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[MODULE_KEY] = f"{type(self).__module__}:{type(self).__qualname__}"
        checkpoint[VERSION_KEY] = __version__
        checkpoint[FORMAT_KEY] = CHECKPOINT_FORMAT
