"""Composing wavelab's configs from Python, as the command line would (benchmarks, tests)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, OverrideParseException
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from omegaconf import DictConfig, open_dict

from wavelab.core.config import CONFIG_DIR
from wavelab.core.errors import ConfigError


def compose(
    overrides: list[str], config_name: str = "config", output_dir: str | Path | None = None
) -> DictConfig:
    """``conf/<config_name>.yaml`` with ``overrides``, composed by Hydra.

    With ``output_dir``, the config holds its ``hydra`` node too, with ``output_dir`` as the run
    dir, and becomes the current ``HydraConfig``: everything that asks Hydra where the run is
    (``paths.output_dir``, the W&B defaults) then sees it, as in a real run. Works inside a
    running Hydra app as well (e.g. ``python -m wavelab.bench``), whose own state it restores.
    An override Hydra cannot apply (unknown key or option, bad syntax) raises ConfigError.
    """
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
            cfg = hydra_compose(
                config_name=config_name,
                overrides=list(overrides),
                return_hydra_config=output_dir is not None,
            )
    except HydraException as e:
        # Hydra's message on one line, without its search-path listing.
        message = " ".join(str(e).split("Config search path:")[0].split())
        if isinstance(e, OverrideParseException):
            message = f"{e.override!r}: {message}"
        raise ConfigError(message) from e
    finally:
        restore_gh_from_backup(backup)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
    return cfg
