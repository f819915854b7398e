"""Checkpoint writes that can't leave a truncated file behind.

Lightning's own save goes through an fsspec transaction whose temp file lives in the system temp
dir; when that is another filesystem than the run dir (a local /tmp, checkpoints on shared
storage: the usual cluster setup) the final move is a copy, and a job killed mid-copy leaves a
half-written ``last.ckpt`` where the good one was. :mod:`wavelab.core.atomic` writes the temp file
beside the target and renames it over, which is atomic on POSIX filesystems.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from wavelab.core.atomic import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if "://" in str(path):  # remote storage: fsspec's transaction is the right tool there
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_open(path) as f:
            torch.save(checkpoint, f)
