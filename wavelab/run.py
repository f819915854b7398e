"""Train a model: ``python -m wavelab.run model=wavegpt`` (see conf/config.yaml).

Builds the data, model, callbacks, loggers and trainer from the config, fits, and returns the
``optimized_metric`` so Hydra sweepers can optimise it. ``resume_dir=<run dir>`` continues a run
in place (see :func:`resume_config`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import InstantiationException
from hydra.types import RunMode
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf, read_write

from wavelab.callbacks.health import DIVERGED_EXIT, TrainingDiverged
from wavelab.cli import quiet_lightning
from wavelab.config import CONFIG_DIR, instantiate
from wavelab.errors import ConfigError
from wavelab.loggers import build_loggers, finish_wandb

log = logging.getLogger("wavelab.run")


def resume_config(cfg: DictConfig) -> DictConfig:
    """The saved config of the run in ``cfg.resume_dir``, with this command's overrides on top.

    ``key=value`` overrides apply (e.g. ``trainer.max_steps=4000`` to train longer); config
    group choices must match the run's, so the original command plus ``resume_dir=`` works, but a
    run cannot switch groups half-way. Training restarts from ``<run dir>/checkpoints/
    last.ckpt`` unless ``ckpt_path`` is given, and writes into the same run dir.
    """
    run_dir = Path(cfg.resume_dir).expanduser().resolve()
    saved_path = run_dir / ".hydra" / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"resume_dir={cfg.resume_dir!r} is invalid: no {saved_path}")
    saved = OmegaConf.load(saved_path)
    choices = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.runtime.choices
    saved.ckpt_path = "last"  # Lightning finds last.ckpt in the checkpoint callback's dir
    task_overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    for override in OverridesParser.create().parse_overrides(list(task_overrides)):
        key = override.key_or_group
        if key == "resume_dir" or key.startswith("hydra."):
            continue
        if key in choices:
            if override.value() != choices[key]:
                raise ConfigError(
                    f"{override.input_line!r} cannot apply when resuming: the run used "
                    f"{key}={choices[key]}"
                )
            continue
        if override.is_delete():
            raise ConfigError(f"{override.input_line!r} cannot apply when resuming")
        OmegaConf.update(saved, key, override.value(), force_add=override.is_add())
    saved.resume_dir = str(run_dir)
    saved.paths.output_dir = str(run_dir)
    log.info("resuming %s", run_dir)
    return saved


def pin_ddp_children_to_this_job() -> None:
    """Makes Lightning's DDP launcher re-run *this* job, in *this* job's dir.

    For every extra rank, Lightning re-runs ``sys.argv`` with ``hydra.run.dir`` set from the Hydra
    config. In a multirun job that command line would start the whole sweep again in every child,
    and ``run.dir`` is not the job's dir; so hand it the job's own overrides and output dir.
    """
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]


def end_distributed(env: dict[str, str]) -> None:
    """Leaves the process as the next job of a multirun needs it.

    Lightning's DDP launcher keeps its process group, and LOCAL_RANK, MASTER_PORT, ... in this
    process's environment; from those the next job would conclude that its ranks were started
    externally, and wait for them forever.
    """
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    os.environ.clear()
    os.environ.update(env)


def build_trainer(cfg: DictConfig) -> L.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = build_loggers(cfg)
    if not loggers:  # logger=none: Lightning refuses an lr monitor with nowhere to write to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    try:
        return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    except InstantiationException as e:
        if not isinstance(e.__cause__, MisconfigurationException):
            raise
        t = cfg.trainer
        raise ConfigError(
            f"trainer.accelerator={t.accelerator}, trainer.devices={t.devices}, "
            f"trainer.precision={t.precision} cannot run here: {e.__cause__} (on a machine "
            "without a GPU use the default trainer, which picks the accelerator itself, or "
            "trainer=cpu)"
        ) from e


def train(cfg: DictConfig) -> dict[str, float]:
    """Fits the configured model; returns the final callback metrics as floats."""
    if cfg.get("resume_dir"):
        cfg = resume_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    pin_ddp_children_to_this_job()
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = instantiate(cfg.model, **datamodule.model_kwargs())
    trainer = build_trainer(cfg)
    # From the first logger call on, a W&B run exists: finish it however the job ends, so the
    # next job of a multirun starts its own run instead of appending to this one.
    exit_code, env = 1, dict(os.environ)
    try:
        # The job's own config: a config composed with its hydra node (tests) would resolve
        # hydra.run.dir again, and claim another run dir.
        job_cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        for logger in trainer.loggers:
            logger.log_hyperparams(OmegaConf.to_container(job_cfg, resolve=True))
        log.info("model: %s parameters", f"{sum(p.numel() for p in model.parameters()):,}")
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        exit_code = 0
    finally:
        finish_wandb(exit_code)
        end_distributed(env)
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if best:
        log.info("best checkpoint: %s", best)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except ConfigError as e:
        log.error("configuration error: %s", e)
        sys.exit(2)
    except TrainingDiverged as e:
        log.error("error: %s", e)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep goes on (Optuna records a failed trial), this job failed
        sys.exit(DIVERGED_EXIT)
    name = cfg.get("optimized_metric")
    if name and name not in metrics:
        log.warning("optimized_metric=%s was not logged; have %s", name, sorted(metrics))
        return None
    return metrics.get(name) if name else None


# Options that need a Hydra plugin from the [sweeps] extra; Hydra's own error when one is missing
# ("Could not find 'hydra/sweeper/optuna'") doesn't say what to install.
PLUGINS = {
    "hparams_search=": "hydra_plugins.hydra_optuna_sweeper",
    "hydra/launcher=submitit": "hydra_plugins.hydra_submitit_launcher",
    "hydra/launcher=slurm": "hydra_plugins.hydra_submitit_launcher",
    "hydra/launcher=joblib": "hydra_plugins.hydra_joblib_launcher",
}


def check_plugins(argv: list[str]) -> None:
    for prefix, module in PLUGINS.items():
        if any(a.startswith(prefix) for a in argv) and importlib.util.find_spec(module) is None:
            sys.exit(f"{prefix}... needs {module.split('.')[1]}: pip install -e '.[sweeps]'")


if __name__ == "__main__":
    check_plugins(sys.argv[1:])
    quiet_lightning()
    main()
