"""Helpers for wavelab's entry points.

Every ``python -m wavelab.<entry>`` is a Hydra app over ``conf/<entry>.yaml`` built with
:func:`hydra_entry`, so one override syntax (``key=value``) and ``--help`` work everywhere, and
a user error (:class:`ConfigError`) ends as one line and exit code 2. Plus a quieter console for
the entries that run Lightning.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import warnings
from collections.abc import Callable, Sequence

import hydra
from omegaconf import DictConfig, OmegaConf

from wavelab.config import CONFIG_DIR
from wavelab.errors import ConfigError

USER_ERROR_EXIT = 2


def hydra_entry(config_name: str) -> Callable[[Callable[[DictConfig], object]], Callable]:
    """Decorator: ``fn(cfg)`` becomes the Hydra main of ``conf/<config_name>.yaml``.

    A ConfigError raised by ``fn`` is logged as one ``error: ...`` line and exits with
    ``USER_ERROR_EXIT``; anything else is a bug and keeps its traceback. Keep module-level imports
    of an entry light (no Lightning, no transformers) so ``--help`` and config errors are fast.
    """

    def decorate(fn: Callable[[DictConfig], object]) -> Callable:
        @functools.wraps(fn)
        def guarded(cfg: DictConfig):
            try:
                return fn(cfg)
            except ConfigError as e:
                logging.getLogger(fn.__module__).error("error: %s", e)
                sys.exit(USER_ERROR_EXIT)

        return hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(
            guarded
        )

    return decorate


def literal_overrides(argv: Sequence[str], keys: Sequence[str]) -> list[str]:
    """``argv`` with the value of every ``key=value`` of ``keys`` quoted for Hydra, so that free
    text and file names are taken literally, quotes included: unquoted, Hydra reads ``a, b`` as a
    sweep, refuses ``=`` (base64, Lightning's ``step=100.ckpt``) and resolves ``${...}``."""

    def quote(value: str) -> str:
        # OmegaConf resolves `${` unless it is escaped as `\${`; backslashes before it pair up.
        value = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + r"\${", value)
        # Hydra: in '...' a quote is \' and backslashes before a quote (or the end) pair up.
        value = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + r"\'", value)
        return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value) + "'"

    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in keys:
            arg = f"{key}={quote(value)}"
        out.append(arg)
    return out


def required(cfg: DictConfig, key: str) -> str:
    """``cfg[key]`` as a string; ConfigError when it is missing (``???``) or null."""
    if OmegaConf.is_missing(cfg, key) or cfg[key] is None:
        raise ConfigError(f"{key} is missing: give {key}=...")
    return str(cfg[key])


def checked_device(value: str) -> str:
    """A ``device=`` value that torch can use on this machine; ConfigError otherwise."""
    import torch  # not at module level: `--help` stays fast

    try:
        device = torch.device(value)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={value!r} is invalid: use cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={value!r} is invalid: this machine has no CUDA GPU; use cpu")
    return value


def quiet_lightning() -> None:
    """Drops two lines Lightning prints in every run that say nothing about the run: an advert
    for its cloud logger, and a deprecation warning that Lightning's own code draws from torch."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not record.getMessage().startswith("💡 Tip:")
    )
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
