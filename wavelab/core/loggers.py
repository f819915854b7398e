"""Building the configured Lightning loggers, with W&B's run identity filled in per job.

conf/logger/wandb.yaml leaves ``mode``, ``group``, ``name`` and ``id`` null to mean "decide per
job"; :func:`wandb_defaults` decides them here, where the Hydra job and the run dir are known. A
sweep's runs are named by the keys it varies, which ``wavelab.core.hydra_callbacks.SweepSetup``
records before its jobs start (each job sees only its own overrides).
:class:`ResumableCSVLogger` is Lightning's CSVLogger made to continue a run's ``metrics.csv``.
"""

from __future__ import annotations

import csv
import io
import netrc
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlparse

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from wavelab.core import atomic
from wavelab.core.config import instantiate
from wavelab.core.hydra_callbacks import read_swept_keys

RUN_ID_FILE = "wandb_run_id"


def build_loggers(cfg: DictConfig) -> list[Logger]:
    loggers = []
    for logger_cfg in (cfg.get("logger") or {}).values():
        if not logger_cfg:
            continue
        is_wandb = str(logger_cfg.get("_target_", "")).endswith("WandbLogger")
        logger = instantiate(logger_cfg, **(wandb_defaults(logger_cfg, cfg) if is_wandb else {}))
        if is_wandb:
            # Lightning always hands wandb.init `anonymous=None`, which wandb (>= 0.19) answers
            # with "The anonymous setting has no effect" in every run; the setting is gone.
            logger._wandb_init.pop("anonymous", None)
        loggers.append(logger)
    return loggers


def wandb_defaults(logger_cfg: DictConfig, cfg: DictConfig) -> dict:
    """Values for the W&B keys the config leaves null."""
    run_dir = Path(cfg.paths.output_dir)
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    out = {}
    if logger_cfg.get("mode") is None and "WANDB_MODE" not in os.environ:
        out["mode"] = "online" if has_wandb_credentials() else "offline"
    if logger_cfg.get("group") is None:
        out["group"] = run_group(cfg.task_name, hydra)
    if logger_cfg.get("name") is None:
        out["name"] = (run_name(hydra) if hydra else "") or run_dir.name
    if logger_cfg.get("id") is None:
        out["id"] = wandb_run_id(run_dir)
    return out


def in_sweep(hydra: DictConfig | None) -> bool:
    return hydra is not None and hydra.mode == RunMode.MULTIRUN


def run_group(task_name: str, hydra: DictConfig | None) -> str:
    """``<task>[/<experiment or hparams_search>][/<sweep time>]``, e.g.
    ``train/gpt_optuna/2026-11-23_18-00-00``: a sweep's jobs share it, and it says what ran."""
    parts = [task_name]
    if hydra is not None:
        choices = hydra.runtime.choices
        study = choices.get("experiment") or choices.get("hparams_search")
        if study and study != task_name:  # experiments name their task after themselves
            parts.append(study)
    if in_sweep(hydra):
        parts.append(Path(hydra.sweep.dir).name)
    return "/".join(parts)


def run_name(hydra: DictConfig) -> str:
    """In a sweep, the values of the keys it varies (``n_layer=2,lr=0.0003``), so the runs of a
    group tell apart at a glance; in a single run, its overrides (Hydra's override_dirname)."""
    swept = read_swept_keys(Path(hydra.sweep.dir)) if in_sweep(hydra) else None
    if not swept:
        return hydra.job.override_dirname
    values = {}
    for line in hydra.overrides.task:
        key, _, value = line.lstrip("+~").partition("=")
        values[key] = value
    names = short_names([k for k in swept if k in values])
    return ",".join(f"{names[k]}={short_value(values[k])}" for k in names)


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its last part (``model.optimizer.lr`` -> ``lr``), unless two keys share
    it; then those keep their full name."""
    last = {k: k.replace("/", ".").rsplit(".", 1)[-1] for k in keys}
    clashes = {name for name in last.values() if list(last.values()).count(name) > 1}
    return {k: (k if name in clashes else name) for k, name in last.items()}


def short_value(value: str) -> str:
    """Floats with 3 significant digits (Optuna's 0.000314159... -> 0.000314), else as typed."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if value.lstrip("-").isdigit() else f"{number:.3g}"


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


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer, minus deleting an existing ``metrics.csv``: it continues it.

    Lightning's writer removes the file whenever its dir is not empty, which on ``resume_dir``
    threw away the run's history. This one keeps the rows (without a line a killed process left
    half-written) and their columns, so new metric keys still widen the header; and it rewrites
    the file atomically when the header changes, so a kill then cannot empty it.
    """

    def _check_log_dir_exists(self) -> None:
        if not os.path.isfile(self.metrics_file_path):
            return
        fieldnames, rows = self.read_rows()
        self.metrics_keys = fieldnames
        self.write_rows(fieldnames, rows)  # drops a torn last line before anything is appended

    def read_rows(self) -> tuple[list[str], list[dict[str, str]]]:
        """The file's header and its complete rows (a last line without its newline is torn)."""
        with open(self.metrics_file_path, newline="") as f:
            text = f.read()
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
        return list(reader.fieldnames or []), rows

    def write_rows(self, fieldnames: list[str], rows: list[dict[str, str]]) -> None:
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        atomic.write_text(self.metrics_file_path, out.getvalue())

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        self.write_rows(fieldnames, self.read_rows()[1])

    def keep_steps_before(self, step: int) -> None:
        """Drops the rows logged at ``step`` or later, and the unsaved ones.

        Resuming from a checkpoint taken at global step N replays every step from N on and logs
        its rows again; a row is logged at the global step of the batch it describes, so the
        rows written before that checkpoint are exactly those at steps below N.
        """
        self.metrics = [m for m in self.metrics if m["step"] < step]
        if os.path.isfile(self.metrics_file_path):
            fieldnames, rows = self.read_rows()
            self.write_rows(fieldnames, [r for r in rows if int(r["step"]) < step])


class ResumableCSVLogger(CSVLogger):
    """CSVLogger whose ``metrics.csv`` survives resuming (see :class:`AppendingExperimentWriter`).

    Rows are also flushed whenever a checkpoint is saved, so the file holds every row logged
    before the checkpoint a resume would restart from; ``wavelab.callbacks.resume.ResumeInPlace``
    drops the rows logged after it.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self.save()
