"""Loading wavelab checkpoints without knowing in advance which model wrote them."""

from __future__ import annotations

import importlib
from pathlib import Path

import lightning as L
import torch

from wavelab.errors import ConfigError

MODULE_KEY = "wavelab_module"


class RecordsItsClass:
    """LightningModule mixin: the checkpoint records the module's import path."""

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[MODULE_KEY] = f"{type(self).__module__}:{type(self).__qualname__}"


def resolve_ckpt_path(ckpt_path: str, key: str = "ckpt_path") -> Path:
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}={ckpt_path!r} is invalid: no such checkpoint file")
    return path


def load_module(ckpt_path: str, map_location: str | torch.device = "cpu") -> L.LightningModule:
    path = resolve_ckpt_path(ckpt_path)
    header = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if MODULE_KEY not in header:
        raise ConfigError(f"ckpt_path={ckpt_path!r} is not a wavelab checkpoint")
    module_name, _, cls_name = header[MODULE_KEY].partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    module = cls.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    module.eval()
    return module
