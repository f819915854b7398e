"""Locating the Hydra configs and building objects from them with readable errors."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from wavelab.errors import ConfigError
from wavelab.run_dirs import register_resolvers

_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    """``wavelab/conf`` inside an installed wheel, else ``conf/`` of the source checkout."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"wavelab's Hydra configs are missing (looked beside {_PACKAGE_DIR})")


CONFIG_DIR = str(config_dir())
register_resolvers()  # before Hydra composes any config: conf/hydra uses ${unique_dir:...}


def instantiate(cfg: DictConfig, **kwargs):
    """``hydra.utils.instantiate`` that re-raises our ConfigError unwrapped."""
    try:
        return hydra.utils.instantiate(cfg, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, ValueError | FileNotFoundError):
            raise ConfigError(str(cause)) from cause
        raise
