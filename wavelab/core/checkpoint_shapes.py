"""A checkpoint's hyperparameters checked against its own weights before any model is built.

The hyperparameters decide how large a model is (``n_embd=8192`` asks for gigabytes) while the
weights that must fill it may be a few kilobytes: building first and comparing after would let a
small file exhaust the memory. So the module is first built on the ``meta`` device, where tensors
have shapes but no storage, and its state dict is compared with the checkpoint's, key by key;
tensors the module holds beyond its state dict (non-persistent buffers) are bounded too. Only a
module that fits is then built for real. The weights themselves must be numbers (no NaN).
"""

from __future__ import annotations

from pathlib import Path

import torch

from wavelab.core.errors import ConfigError

# Bytes a module may hold beyond the weights its checkpoint stores (masks, caches): at least
# this much, and at most as much as the weights themselves, whichever is larger.
EXTRA_BYTES_FLOOR = 1 << 30


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())[:200]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def check_weights_are_numbers(state: dict, shown: str) -> None:
    """ConfigError naming the first floating-point tensor of ``state`` that holds a NaN."""
    for name, t in state.items():
        if torch.is_tensor(t) and t.is_floating_point() and torch.isnan(t).any():
            raise ConfigError(f"{shown} is damaged: its weight {name!r} holds NaN values")


def check_fits_its_weights(
    cls: type[torch.nn.Module],
    hparams: dict,
    ckpt: dict,
    ckpt_path: str | Path,
    key: str = "ckpt_path",
) -> None:
    """ConfigError unless ``cls(**hparams)``, built on the meta device, has exactly the
    checkpoint's tensor names and shapes, holds a bounded amount beyond them, and the weights
    are numbers. Builds nothing with storage but what the module itself loads from disk."""
    shown = f"{key}={str(ckpt_path)!r}"
    found = ckpt["state_dict"]
    try:
        with torch.device("meta"):
            module = cls(**hparams)
    except ConfigError as e:
        raise ConfigError(f"{shown} has hyperparameters that build no model: {e}") from None
    except Exception as e:  # anything the file's values make the constructor raise
        raise ConfigError(
            f"{shown} has hyperparameters that build no model: {_reason(e)}"
        ) from None
    expected = module.state_dict()
    mismatch = f"{shown} does not fit its own hyperparameters"
    for name, tensor in expected.items():
        if not torch.is_tensor(tensor):
            continue
        if name not in found:
            raise ConfigError(f"{mismatch}: they build {name!r}, which its weights lack")
        if not torch.is_tensor(found[name]) or tuple(found[name].shape) != tuple(tensor.shape):
            shape = tuple(found[name].shape) if torch.is_tensor(found[name]) else "no tensor"
            raise ConfigError(
                f"{mismatch}: {name!r} is {shape} in its weights but {tuple(tensor.shape)} in "
                "the model they describe"
            )
    extra = [name for name in found if name not in expected]
    if extra:
        raise ConfigError(f"{mismatch}: its weights hold {extra[0]!r}, which the model lacks")
    stored = sum(_nbytes(t) for t in found.values() if torch.is_tensor(t))
    names = set(expected)
    beyond = sum(
        _nbytes(t)
        for name, t in (*module.named_parameters(), *module.named_buffers())
        if name not in names and t.device.type == "meta"
    )
    limit = max(EXTRA_BYTES_FLOOR, stored)
    if beyond > limit:
        raise ConfigError(
            f"{shown} has hyperparameters that ask for {beyond / 2**30:.1f} GiB beyond its "
            f"{stored / 2**20:.1f} MiB of weights (at most {limit / 2**30:.1f} GiB): refused"
        )
    check_weights_are_numbers(found, shown)
