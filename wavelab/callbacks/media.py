"""Sending a callback's images (analysis plots) to the loggers that can show them (W&B)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L


def log_images(
    trainer: L.Trainer, key: str, paths: Sequence[str | Path], captions: Sequence[str] | None = None
) -> None:
    """Logs PNGs already written to disk; loggers without ``log_image`` (CSV) are skipped."""
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        log_image = getattr(logger, "log_image", None)
        if log_image is not None:
            kwargs = {"caption": list(captions)} if captions else {}
            log_image(key=key, images=[str(p) for p in paths], step=trainer.global_step, **kwargs)
