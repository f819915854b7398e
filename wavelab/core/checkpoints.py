"""Reading wavelab checkpoints safely, and loading them without knowing which model wrote them.

A checkpoint is a pickle. Every read here is ``weights_only=True`` (plain tensors and builtins;
a pickled payload is refused, never run), remote paths are refused before anything is fetched,
and the LightningModule a checkpoint names is looked up among the registered models
(``wavelab.core.registry``), never imported by the name the file gives.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from wavelab.core.checkpoint_format import checkpoint_format
from wavelab.core.checkpoint_shapes import check_fits_its_weights
from wavelab.core.config import check_targets
from wavelab.core.errors import ConfigError
from wavelab.core.records import MODULE_KEY
from wavelab.core.registry import known_modules, model_class

if TYPE_CHECKING:
    import lightning as L


def _torch_reason(e: Exception) -> str:
    """The one informative line of torch's (multi-line) load errors."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for line in lines:  # weights_only refusals explain themselves on the "Unsupported ..." line
        if "Unsupported" in line or "WeightsUnpickler error" in line:
            return "it holds objects a safe (weights-only) load refuses: " + line[:200]
    return (lines[0] if lines else type(e).__name__)[:200]


def resolve_ckpt_path(ckpt_path: str | Path, key: str = "ckpt_path") -> Path:
    """``ckpt_path`` as an existing local file; ConfigError naming ``key`` otherwise."""
    if "://" in str(ckpt_path):
        raise ConfigError(
            f"{key}={str(ckpt_path)!r} is refused: remote checkpoints are not loaded (a "
            "checkpoint is a pickle); download it and pass the local file"
        )
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}={str(ckpt_path)!r} is invalid: no such checkpoint file")
    return path


def read_checkpoint(ckpt_path: str | Path, key: str = "ckpt_path") -> dict:
    """The checkpoint dict at ``ckpt_path``, read weights-only; ConfigError naming ``key`` and
    the file for a remote path, a missing file, or a file that is not a Lightning checkpoint."""
    path = resolve_ckpt_path(ckpt_path, key)
    shown = f"{key}={str(ckpt_path)!r}"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
        raise ConfigError(f"{shown} is not a readable checkpoint: {_torch_reason(e)}") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ConfigError(f"{shown} is not a Lightning checkpoint (it has no state_dict)")
    return ckpt


def checkpoint_class(
    ckpt: dict, ckpt_path: str | Path, key: str = "ckpt_path"
) -> type[L.LightningModule]:
    """The registered LightningModule class that wrote the checkpoint; ConfigError if it names
    none, or a class no conf/model/*.yaml names (refused, not imported)."""
    name = ckpt.get(MODULE_KEY)
    if name is None:
        raise ConfigError(f"{key}={str(ckpt_path)!r} is not a wavelab checkpoint (no {MODULE_KEY})")
    known = known_modules()
    if name not in known:
        raise ConfigError(
            f"{key}={str(ckpt_path)!r} names the module {name!r}, which is not one of wavelab's "
            f"({', '.join(sorted(known))}); it is refused, not imported"
        )
    checkpoint_format(ckpt, ckpt_path, key)
    return model_class(known[name])  # a class conf/ names, not the checkpoint's text


def check_state_matches(
    expected: dict[str, torch.Tensor], ckpt: dict, ckpt_path: str | Path, key: str = "ckpt_path"
) -> None:
    """ConfigError naming the first key that is missing, extra or shaped differently between a
    model's ``state_dict()`` and the checkpoint's."""
    found = ckpt["state_dict"]
    shown = f"{key}={str(ckpt_path)!r} does not fit the configured model"
    for name, tensor in expected.items():
        if name not in found:
            raise ConfigError(f"{shown}: the checkpoint has no {name!r}")
        if isinstance(tensor, torch.Tensor) and tuple(found[name].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"{shown}: {name!r} is {tuple(found[name].shape)} in the checkpoint but "
                f"{tuple(tensor.shape)} in the model"
            )
    extra = [name for name in found if name not in expected]
    if extra:
        raise ConfigError(f"{shown}: the checkpoint has {extra[0]!r}, which the model lacks")


def load_module(
    ckpt_path: str | Path, map_location: str | torch.device = "cpu", key: str = "ckpt_path"
) -> L.LightningModule:
    """The LightningModule saved in ``ckpt_path``, in eval mode."""
    ckpt = read_checkpoint(ckpt_path, key)
    cls = checkpoint_class(ckpt, ckpt_path, key)
    hparams = ckpt.get("hyper_parameters") or {}
    # Lightning would import whatever "_instantiator" names; the optimizer's _target_ is built
    # by configure_optimizers: neither may come from a file unchecked.
    if any(str(k).startswith("_") for k in hparams):
        raise ConfigError(f"{key}={str(ckpt_path)!r} has hyperparameters wavelab never writes")
    check_targets(hparams, "hyper_parameters")
    check_fits_its_weights(cls, hparams, ckpt, ckpt_path, key)
    try:
        module = cls.load_from_checkpoint(
            resolve_ckpt_path(ckpt_path, key), map_location=map_location, weights_only=True
        )
    except (RuntimeError, KeyError, TypeError) as e:
        raise ConfigError(f"{key}={str(ckpt_path)!r} cannot be loaded: {_torch_reason(e)}") from e
    module.eval()
    return module
