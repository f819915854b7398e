"""Hydra callbacks (listed in conf/hydra/default.yaml).

``SweepSetup`` runs once in the launching process before a multirun's jobs: it refuses a SLURM
launcher where there is no SLURM, and records which keys the sweep varies, for the jobs' W&B
names. ``QuietJob`` runs at the start of every job in whichever process the launcher runs it
(joblib and submitit workers never run ``__main__``), so the console stays as quiet there as in
a single run.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from wavelab.core.cli import USER_ERROR_EXIT, quiet_lightning

SWEPT_KEYS_FILE = "swept_keys.yaml"  # in the sweep dir: the keys whose values differ by job
FAILED_JOBS_FILE = (
    "failed_jobs.yaml"  # in the sweep dir: what wavelab.core.slurm saw of failed jobs
)


def swept_keys(hydra_cfg: DictConfig) -> list[str]:
    """The keys a sweep varies, in the order given: those of ``hydra.sweeper.params`` (an
    experiment's grid, Optuna's search space) and the command line's sweeps (``a=1,2``,
    ``range(...)``, ``choice(...)``, ``interval(...)``), minus any key the command line then fixes
    to one value (as Optuna does with them)."""
    params = hydra_cfg.sweeper.get("params") or {}
    lines = [f"{key}={value}" for key, value in params.items()]
    lines += list(hydra_cfg.overrides.task)
    swept: dict[str, bool] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        swept[override.key_or_group] = override.is_sweep_override()
    return [key for key, is_swept in swept.items() if is_swept]


def read_swept_keys(sweep_dir: Path) -> list[str] | None:
    """What ``SweepSetup`` recorded for this sweep; None when it did not run (no multirun)."""
    path = sweep_dir / SWEPT_KEYS_FILE
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def read_failed_jobs(sweep_dir: Path) -> list[dict]:
    """The failed jobs that ``wavelab.core.slurm.SlurmLauncher`` recorded; [] when none failed."""
    path = sweep_dir / FAILED_JOBS_FILE
    return (yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def refuse_slurm_without_slurm(config: DictConfig) -> None:
    """submitit's SLURM executor needs ``srun``; without it, say so in one line (exit 2) instead
    of submitit's traceback."""
    target = str(config.hydra.launcher.get("_target_", ""))
    if target.endswith(".SlurmLauncher") and shutil.which("srun") is None:
        print(
            "error: hydra/launcher=slurm needs SLURM, and there is no srun on this machine's "
            "PATH: run the sweep on a SLURM login node, or drop hydra/launcher=slurm (or use "
            "hydra/launcher=submitit_local) to run its jobs here",
            file=sys.stderr,
        )
        sys.exit(USER_ERROR_EXIT)


class SweepSetup(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        refuse_slurm_without_slurm(config)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEPT_KEYS_FILE).write_text(yaml.safe_dump(swept_keys(config.hydra)))


class QuietJob(Callback):
    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        quiet_lightning()
