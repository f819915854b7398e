"""Checkpoint writes that can't leave a truncated file behind.

Lightning's own save goes through an fsspec transaction whose temp file lives in the system temp
dir; when that is another filesystem than the run dir (a local /tmp, checkpoints on shared
storage: the usual cluster setup) the final move is a copy, and a job killed mid-copy leaves a
half-written ``last.ckpt`` where the good one was. :mod:`wavelab.core.atomic` writes the temp file
beside the target and renames it over, which is atomic on POSIX filesystems. A save that fails
for want of space (or on a read-only filesystem) leaves the target as it was and ends the run
with one line saying so.
"""

from __future__ import annotations

import errno
import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from wavelab.core.atomic import atomic_open
from wavelab.core.errors import ConfigError


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if "://" in str(path):  # remote storage: fsspec's transaction is the right tool there
            return super().save_checkpoint(checkpoint, path, storage_options)
        try:
            with atomic_open(path) as f:
                torch.save(checkpoint, f)
        except (OSError, RuntimeError) as e:
            why = storage_failure(e)
            if why is None:
                raise
            raise ConfigError(
                f"{why} while saving {path}: it was not written, and the checkpoint that was there "
                "(if any) is kept; free some space, then continue with resume_dir=<the run dir>"
            ) from None


def storage_failure(e: BaseException) -> str | None:
    """ "the disk is full" or "the filesystem is read-only" when that is why ``e`` was raised
    (torch's writer raises a RuntimeError whose context is the OSError); None otherwise."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return "the disk is full"
        if isinstance(e, OSError) and e.errno == errno.EROFS:
            return "the filesystem is read-only"
        e = e.__cause__ or e.__context__
    return None
