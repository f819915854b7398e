"""Sending a callback's media (images, texts, tables) to the loggers that can show them (W&B)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L


def logger_methods(trainer: L.Trainer, name: str) -> list[Callable]:
    """The ``name`` method (``log_image``, ``log_text``, ``log_table``) of every logger of the
    trainer that has one, on rank 0; loggers without it (CSV) are skipped."""
    if not trainer.is_global_zero:
        return []
    methods = (getattr(logger, name, None) for logger in trainer.loggers)
    return [method for method in methods if method is not None]


def log_images(
    trainer: L.Trainer, key: str, paths: Sequence[str | Path], captions: Sequence[str] | None = None
) -> None:
    """Logs PNGs already written to disk."""
    kwargs = {"caption": list(captions)} if captions else {}
    for log_image in logger_methods(trainer, "log_image"):
        log_image(key=key, images=[str(p) for p in paths], step=trainer.global_step, **kwargs)
