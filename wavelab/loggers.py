"""Building the configured Lightning loggers, with W&B's run identity filled in per job.

conf/logger/wandb.yaml leaves ``mode``, ``group``, ``name`` and ``id`` null to mean "decide per
job"; :func:`wandb_defaults` decides them here, where the Hydra job and the run dir are known.
"""

from __future__ import annotations

import netrc
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlparse

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from wavelab.config import instantiate

RUN_ID_FILE = "wandb_run_id"


def build_loggers(cfg: DictConfig) -> list[Logger]:
    loggers = []
    for logger_cfg in (cfg.get("logger") or {}).values():
        if not logger_cfg:
            continue
        extra = {}
        if str(logger_cfg.get("_target_", "")).endswith("WandbLogger"):
            extra = wandb_defaults(logger_cfg, cfg)
        loggers.append(instantiate(logger_cfg, **extra))
    return loggers


def wandb_defaults(logger_cfg: DictConfig, cfg: DictConfig) -> dict:
    """Values for the W&B keys the config leaves null."""
    run_dir = Path(cfg.paths.output_dir)
    job = HydraConfig.get().job if HydraConfig.initialized() else None
    out = {}
    if logger_cfg.get("mode") is None and "WANDB_MODE" not in os.environ:
        out["mode"] = "online" if has_wandb_credentials() else "offline"
    if logger_cfg.get("group") is None:
        out["group"] = cfg.task_name
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            out["group"] = f"{cfg.task_name}/{Path(HydraConfig.get().sweep.dir).name}"
    if logger_cfg.get("name") is None:
        out["name"] = (job.override_dirname if job else "") or run_dir.name
    if logger_cfg.get("id") is None:
        out["id"] = wandb_run_id(run_dir)
    return out


def wandb_run_id(run_dir: Path) -> str:
    """The run dir's W&B id: made once and kept in the run dir, so resuming re-attaches to it.

    Rank 0 writes it before Lightning starts the other DDP ranks, which then read it.
    """
    path = run_dir / RUN_ID_FILE
    if not path.is_file() and rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(4))  # W&B ids: short, lowercase alphanumeric
    return path.read_text().strip()


def has_wandb_credentials() -> bool:
    """An API key in the environment, or a netrc entry for the W&B host (`wandb login`)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def finish_wandb(exit_code: int) -> None:
    """Closes this process's W&B run, if one was started (a no-op without W&B)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)
