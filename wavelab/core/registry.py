"""The models wavelab knows: each is a LightningModule that a ``conf/model/*.yaml`` names and
that carries a :class:`ModelSpec` as its ``spec`` class attribute.

That file and that attribute are a model's whole registration: the shared core (run, sample,
checkpoints, the throughput callback) reads the spec and never names a model. The classes come
only from conf/ (the shipped one, or a config dir the user's own command line added), so a
checkpoint that names a class is looked up among these, never imported by the name it gives.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from wavelab.core.config import config_dirs, yaml_targets
from wavelab.core.errors import ConfigError

if TYPE_CHECKING:
    import lightning as L


def _no_checks(cfg: DictConfig) -> None:
    return None


def _no_flops(module: L.LightningModule) -> float | None:
    return None


@dataclass(frozen=True)
class ModelSpec:
    """What the shared core needs to know of a model.

    ``label``: the model's name in messages. ``headline_metrics``: the logged metrics the
    end-of-run summary shows, in order. ``check_config``: checks of the composed config that
    raise ConfigError, run before any data is prepared or cached. ``generates_text``: whether
    it is a language model that ``python -m wavelab.sample`` and a decoding prior can use: the
    module has ``generate_text``, ``next_token_logits(ids)`` giving (B, V) logits of the next token,
    ``tokenizer`` and ``context_size``; ``use_instead``
    says what to run otherwise. ``flops_per_token``: training FLOPs per token of a module, for
    the throughput callback's MFU (None: not known). ``write_hf_dir(module, dir)``: writes the
    module as a Hugging Face model dir into the new ``dir`` (``python -m wavelab.export``; None:
    no export).
    """

    label: str
    headline_metrics: tuple[str, ...] = ("val/loss", "val/loss_best")
    check_config: Callable[[DictConfig], None] = field(default=_no_checks)
    generates_text: bool = False
    use_instead: str = ""
    flops_per_token: Callable[[L.LightningModule], float | None] = field(default=_no_flops)
    write_hf_dir: Callable[[L.LightningModule, Path], None] | None = None


@functools.cache
def _model_targets(dirs: tuple[Path, ...]) -> frozenset[str]:
    return frozenset().union(*(yaml_targets(d / "model") for d in dirs if (d / "model").is_dir()))


def model_targets() -> frozenset[str]:
    """The dotted paths of the LightningModules that a ``model/*.yaml`` of conf/ names."""
    return _model_targets(tuple(config_dirs()))


def record_name(target: str) -> str:
    """A class's dotted path as a checkpoint records it: ``module:Class``."""
    module, _, cls = target.rpartition(".")
    return f"{module}:{cls}"


def known_modules() -> dict[str, str]:
    """Recorded name (``module:Class``) -> dotted path, for every registered model."""
    return {record_name(target): target for target in model_targets()}


def model_class(target: str) -> type[L.LightningModule]:
    """The registered LightningModule at ``target`` (a dotted path conf/model names)."""
    if target not in model_targets():
        raise ConfigError(
            f"model._target_={target!r} is refused: it is not a model that a conf/model/*.yaml "
            "names"
        )
    module, _, name = target.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    if not isinstance(getattr(cls, "spec", None), ModelSpec):
        raise ConfigError(
            f"model._target_={target!r} has no ModelSpec: give the class a `spec = "
            "ModelSpec(...)` attribute (wavelab.core.registry)"
        )
    return cls


def spec_of(module: object) -> ModelSpec | None:
    """The spec of a LightningModule (an instance or a class), None for a foreign one."""
    spec = getattr(module, "spec", None)
    return spec if isinstance(spec, ModelSpec) else None
