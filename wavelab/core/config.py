"""Locating the Hydra configs, checking values, and building objects from them safely.

Every object wavelab builds from a config goes through :func:`instantiate`, which builds only the
``_target_`` classes named in conf/ (plus torch's optimizers): a config file from a downloaded run
dir (``resume_dir=``, eval's saved data config) or a checkpoint's hyperparameters could otherwise
name any callable, e.g. ``torch.load`` with ``weights_only: false``, and run it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

import hydra
import yaml
from hydra.errors import InstantiationException
from omegaconf import DictConfig, ListConfig, OmegaConf

from wavelab.core.errors import ConfigError
from wavelab.core.run_dirs import register_resolvers

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # wavelab/
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader when built with it


def config_dir() -> Path:
    """``wavelab/conf`` inside an installed wheel, else ``conf/`` of the source checkout."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"wavelab's Hydra configs are missing (looked beside {_PACKAGE_DIR})")


CONFIG_DIR = str(config_dir())
register_resolvers()  # before Hydra composes any config: conf/hydra uses ${unique_dir:...}


def _targets_in(node) -> set[str]:
    if isinstance(node, Mapping):
        found = {node["_target_"]} if isinstance(node.get("_target_"), str) else set()
        return found.union(*(_targets_in(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_targets_in(v) for v in node))
    return set()


def yaml_targets(conf_dir: str | Path) -> frozenset[str]:
    """Every ``_target_`` in the yaml files under ``conf_dir`` (links followed: conf/experiment
    is one)."""
    found: set[str] = set()
    for root, _, files in os.walk(conf_dir, followlinks=True):
        for name in files:
            if name.endswith(".yaml"):
                text = Path(root, name).read_text()
                found |= _targets_in(yaml.load(text, Loader=_YAML_LOADER))
    return frozenset(found)


def config_dirs() -> list[Path]:
    """conf/, then the local dirs that this command's ``hydra.searchpath`` adds (``file://``
    entries): a user's own config groups, e.g. a model package's ``model/*.yaml``. Only the
    running command's Hydra config counts, never a config read from a file."""
    from hydra.core.hydra_config import HydraConfig

    dirs = [Path(CONFIG_DIR)]
    if HydraConfig.initialized():
        for entry in HydraConfig.get().searchpath:
            if str(entry).startswith("file://"):
                dirs.append(Path(str(entry)[len("file://") :]).expanduser().resolve())
    return dirs


@functools.cache
def _targets_under(dirs: tuple[Path, ...]) -> frozenset[str]:
    return frozenset().union(*(yaml_targets(d) for d in dirs))


def config_targets() -> frozenset[str]:
    """Every ``_target_`` the config dirs name (read once per set of dirs)."""
    return _targets_under(tuple(config_dirs()))


# Packages whose classes a user may add from the command line besides conf/'s own, e.g.
# `+callbacks.stop._target_=lightning.pytorch.callbacks.EarlyStopping`: each maps to the base
# class a target must subclass. A target is looked up as an attribute of the (already imported)
# package, never imported by the name it gives, and functions (torch.load, ...) never pass.
_PART_PACKAGES = {
    "torch.optim": ("torch.optim", "Optimizer"),
    "lightning.pytorch.callbacks": ("lightning.pytorch.callbacks", "Callback"),
    "lightning.pytorch.loggers": ("lightning.pytorch.loggers", "Logger"),
    "lightning.pytorch.plugins": ("lightning.pytorch.plugins", "Precision"),
    "lightning.pytorch.plugins.precision": ("lightning.pytorch.plugins", "Precision"),
    "lightning.pytorch.strategies": ("lightning.pytorch.strategies", "Strategy"),
}


def allowed_target(target: str) -> bool:
    """A class conf/ names, a torch.optim optimizer, or a Lightning callback, logger, precision
    plugin or strategy class (see _PART_PACKAGES)."""
    if target in config_targets():
        return True
    package, _, name = target.rpartition(".")
    if package not in _PART_PACKAGES:
        return False
    import importlib  # only the fixed package names above are ever imported

    base_package, base_name = _PART_PACKAGES[package]
    base = getattr(importlib.import_module(base_package), base_name)
    cls = getattr(importlib.import_module(package), name, None)
    return isinstance(cls, type) and issubclass(cls, base)


def check_targets(cfg, where: str = "") -> None:
    """Raises ConfigError for the first ``_target_`` (at any depth, interpolations resolved as
    hydra would resolve them) that is not allowed."""
    if isinstance(cfg, DictConfig | ListConfig):
        keys = list(cfg) if isinstance(cfg, DictConfig) else range(len(cfg))
        items = ((k, cfg[k]) for k in keys if not OmegaConf.is_missing(cfg, k))
    elif isinstance(cfg, Mapping):
        items = cfg.items()
    elif isinstance(cfg, list | tuple):
        items = enumerate(cfg)
    else:
        return
    for key, value in items:
        path = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip(".")
        if key != "_target_":
            check_targets(value, path)
        elif not isinstance(value, str) or not allowed_target(value):
            raise ConfigError(
                f"{path}={value!r} is refused: wavelab builds only the classes its own conf/ "
                "names and torch.optim optimizers (a config from a run dir or a checkpoint "
                "could otherwise run any code)"
            )


def instantiate(cfg: DictConfig | Mapping, key: str = "", **kwargs):
    """``hydra.utils.instantiate`` of allowed targets only (see :func:`check_targets`), with our
    ConfigError re-raised unwrapped. ``key`` is where ``cfg`` sits, for error messages."""
    check_targets(cfg, key)
    for value in kwargs.values():
        check_targets(value, key)
    try:
        return hydra.utils.instantiate(cfg, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, ValueError | FileNotFoundError):
            message = str(cause)
            if key and not message.startswith(key):  # a library's message: say where it applies
                message = f"{key}: {message}"
            raise ConfigError(message) from cause
        raise


_MISSING = object()


def check_number(
    cfg: DictConfig,
    key: str,
    *,
    integer: bool = False,
    minimum: float | None = None,
    exclusive: bool = False,
    optional: bool = False,
) -> None:
    """Raises ConfigError unless ``cfg.<key>`` is a number (an int if ``integer``) at or above
    ``minimum`` (above, if ``exclusive``); null passes if ``optional``; a missing key passes."""
    if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
        return
    value = OmegaConf.select(cfg, key)
    if value is None and optional:
        return
    kinds = (int,) if integer else (int, float)
    is_number = isinstance(value, kinds) and not isinstance(value, bool)
    too_small = (
        minimum is not None and is_number and (value <= minimum if exclusive else value < minimum)
    )
    if not is_number or too_small:
        what = "an integer" if integer else "a number"
        if minimum is not None:
            what += f" {'>' if exclusive else '>='} {minimum}"
        raise ConfigError(f"{key}={value!r} is invalid: must be {what}")
