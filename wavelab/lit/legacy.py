"""Reading checkpoints written by older wavelab versions."""

from __future__ import annotations


def drop_duplicate_keys(checkpoint: dict, alias: str) -> None:
    """Removes the ``alias*`` keys from ``checkpoint["state_dict"]``.

    wavelab <= 0.1 registered the network under a second attribute as well (``_forward`` in the
    language models, ``_core`` in WavGPT; ``torch.compile``'s wrapper, keys with ``_orig_mod.``,
    when ``compile=true``), so its checkpoints hold every weight twice: once under the owner's
    key, which is loaded, and once under the alias, dropped here.
    """
    state = checkpoint.get("state_dict", {})
    for key in [key for key in state if key.startswith(alias)]:
        del state[key]
