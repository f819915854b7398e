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
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, read_write

from wavelab.core.cli import hydra_entry, one_line, print_config_tree, quiet_lightning, user_error
from wavelab.core.config import check_number, instantiate
from wavelab.core.errors import DIVERGED_EXIT, ConfigError, TrainingDiverged

# Lightning, torch and the models are imported inside the functions that run, so that --help
# and config errors answer in about a second instead of after seconds of imports.
if TYPE_CHECKING:
    import lightning as L

    from wavelab.core.registry import ModelSpec

log = logging.getLogger("wavelab.run")


# Overrides that resume_dir refuses: the optimizer and its schedule continue from last.ckpt's
# state, which a changed value would silently contradict (e.g. a new lr against restored moments).
FIXED_ON_RESUME = ("model.optimizer", "model.scheduler")


def resume_config(cfg: DictConfig) -> DictConfig:
    """The saved config of the run in ``cfg.resume_dir``, with this command's overrides on top.

    ``key=value`` overrides apply (e.g. ``trainer.max_steps=4000`` to train longer), except
    changes of ``model.optimizer.*`` and ``model.scheduler.*``; config group choices must match
    the run's, so the original command plus ``resume_dir=`` works, but a run cannot switch groups
    half-way. Training restarts from ``<run dir>/checkpoints/last.ckpt`` unless ``ckpt_path`` is
    given, and writes into the same run dir. The saved config is a file from disk: the objects it
    names are built only if conf/ names them too (wavelab.core.config.instantiate).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from wavelab.core.saved_config import load_saved_config, saved_choices

    run_dir = Path(cfg.resume_dir).expanduser().resolve()
    saved_path = run_dir / ".hydra" / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"resume_dir={cfg.resume_dir!r} is invalid: no {saved_path}")
    saved = load_saved_config(saved_path)
    choices = saved_choices(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    saved.ckpt_path = str(last)
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
        was = OmegaConf.select(saved, key, default=None)
        if key.startswith(FIXED_ON_RESUME) and override.value() != was:
            raise ConfigError(
                f"{override.input_line!r} cannot apply when resuming: the optimizer and its "
                f"schedule continue from last.ckpt (the run has {key}={was}); start a new run "
                "to change them"
            )
        OmegaConf.update(saved, key, override.value(), force_add=override.is_add())
    if saved.ckpt_path == str(last) and not last.is_file():
        raise ConfigError(
            f"resume_dir={cfg.resume_dir!r} cannot resume: {last} does not exist (the run saved "
            "no checkpoint yet)"
        )
    for folder in (run_dir, last.parent):
        if folder.is_dir() and not os.access(folder, os.W_OK):
            raise ConfigError(
                f"resume_dir={cfg.resume_dir!r} cannot be continued: {folder} is read-only (copy "
                "the run dir somewhere writable and resume that)"
            )
    saved.resume_dir = str(run_dir)
    saved.paths.output_dir = str(run_dir)
    log.info("resuming %s", run_dir)
    return saved


def use_init_from_tokenizer(cfg: DictConfig) -> None:
    """``model.init_from=<dir>`` brings its tokenizer: ``data.tokenizer`` becomes ``hf:<dir>``
    unless it names an ``hf:`` tokenizer already."""
    init_from = cfg.model.get("init_from")
    if not init_from:
        return
    from wavelab.data.tokenizers import HF_PREFIX

    if not str(cfg.data.get("tokenizer", "")).startswith(HF_PREFIX):
        cfg.data.tokenizer = f"{HF_PREFIX}{init_from}"


def check_values(cfg: DictConfig) -> None:
    """The values Lightning and the models would reject late, or not at all, checked up front."""
    check_number(cfg, "seed", integer=True)
    t = cfg.trainer
    if not (t.get("max_steps") == -1 and isinstance(t.get("max_epochs"), int) and t.max_epochs > 0):
        check_number(cfg, "trainer.max_steps", integer=True, minimum=1)
    interval = t.get("val_check_interval")
    if isinstance(interval, float) and not 0.0 < interval <= 1.0:
        raise ConfigError(
            f"trainer.val_check_interval={interval} is invalid: a fraction of an epoch must be "
            "in (0, 1]; an integer counts steps"
        )
    check_number(cfg, "trainer.val_check_interval", minimum=0, exclusive=True, optional=True)
    check_number(cfg, "model.optimizer.lr", minimum=0, exclusive=True)
    model_spec(cfg).check_config(cfg)  # the model's own checks, before any data is cached


def model_spec(cfg: DictConfig) -> ModelSpec:
    from wavelab.core.registry import model_class

    return model_class(str(cfg.model.get("_target_"))).spec


def check_resume_checkpoint(cfg: DictConfig) -> dict | None:
    """The ``ckpt_path`` checkpoint, if any, checked against the config before Lightning sees it:
    a readable wavelab checkpoint of the configured model class, with steps left to train."""
    from wavelab.core.checkpoints import checkpoint_class, read_checkpoint

    if not cfg.get("ckpt_path"):
        return None
    ckpt = read_checkpoint(cfg.ckpt_path)
    cls = checkpoint_class(ckpt, cfg.ckpt_path)
    if f"{cls.__module__}.{cls.__qualname__}" != cfg.model.get("_target_"):
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} is a {cls.spec.label} checkpoint, but the config "
            f"builds {cfg.model.get('_target_')}: pass the model=... it was trained with"
        )
    step, max_steps = ckpt.get("global_step", 0), cfg.trainer.max_steps
    if 0 < max_steps <= step and not cfg.get("resume_dir"):
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} is at step {step}, and trainer.max_steps={max_steps}: "
            "nothing is left to train (raise trainer.max_steps)"
        )
    return ckpt


def pin_ddp_children_to_this_job() -> None:
    """Makes Lightning's DDP launcher re-run *this* job, in *this* job's dir.

    For every extra rank, Lightning re-runs ``sys.argv`` with ``hydra.run.dir`` set from the Hydra
    config. In a multirun job that command line would start the whole sweep again in every child,
    and ``run.dir`` is not the job's dir; so hand it the job's own overrides and output dir.
    """
    from hydra.types import RunMode

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
    import torch

    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    os.environ.clear()
    os.environ.update(env)


def build_trainer(cfg: DictConfig) -> L.Trainer:
    import torch
    from hydra.errors import InstantiationException
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar

    from wavelab.core.loggers import build_loggers

    callbacks = [
        instantiate(c, f"callbacks.{k}") for k, c in (cfg.get("callbacks") or {}).items() if c
    ]
    loggers = build_loggers(cfg)
    if not loggers:  # logger=none: Lightning refuses an lr monitor with nowhere to write to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if cfg.trainer.get("enable_progress_bar") is False:  # and a progress bar it was told to hide
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    try:
        return instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    except InstantiationException as e:
        if not isinstance(e.__cause__, MisconfigurationException):
            raise
        t = cfg.trainer
        given = f"trainer.accelerator={t.accelerator}, trainer.devices={t.devices}"
        reason = one_line(str(e.__cause__))
        if str(t.accelerator) in ("gpu", "cuda") and not torch.cuda.is_available():
            raise ConfigError(
                f"{given} cannot run here: {reason} (this machine has no GPU: use the default "
                "trainer, which picks the accelerator itself, or trainer=cpu)"
            ) from e
        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
        given_keys = [o for o in overrides if o.lstrip("+~").startswith("trainer.")]
        # The trainer keys the user gave that Lightning's reason names, else all of them.
        named = [o for o in given_keys if o.partition("=")[0].split(".")[-1] in reason]
        named = named or given_keys
        if named:
            raise ConfigError(f"{', '.join(named)}: Lightning refuses them: {reason}") from e
        raise ConfigError(f"Lightning refuses the trainer settings: {reason}") from e


def is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return rank_zero_only.rank == 0


def announce(cfg: DictConfig) -> None:
    """The run dir, and the composed config as a tree (``extras.print_config``), rank 0 only."""
    run_dir = Path(cfg.paths.output_dir)
    log.info("run dir: %s", run_dir)
    if OmegaConf.select(cfg, "extras.print_config", default=True):
        print_config_tree(cfg, run_dir / "config_tree.log")


def log_summary(trainer: L.Trainer, headline: tuple[str, ...], seconds: float) -> None:
    """Final and best ``headline`` metrics, the best checkpoint and the wall time, a line each."""
    from wavelab.callbacks.summary import RunSummary

    def shown(metrics: dict) -> str:
        return ", ".join(f"{k} {float(metrics[k]):.4g}" for k in headline if k in metrics)

    log.info("final (step %d): %s", trainer.global_step, shown(trainer.callback_metrics))
    summary = next((c for c in trainer.callbacks if isinstance(c, RunSummary)), None)
    if summary is not None and summary.best:
        log.info("best (step %d): %s", summary.best_step, shown(summary.best))
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if best:
        log.info("best checkpoint: %s", best)
    minutes, secs = divmod(round(seconds), 60)
    log.info("wall time: %dh %02dm %02ds", minutes // 60, minutes % 60, secs)


def requeued_run_dir(cfg: DictConfig) -> str | None:
    """This run's dir when this process is a SLURM job that SLURM requeued (``SLURM_RESTART_COUNT``
    >= 1: Lightning's auto-requeue on the time-limit signal, or ``scontrol requeue``) and an earlier
    start of it left ``checkpoints/last.ckpt`` there (saved on the SIGTERM that ended that start,
    callbacks/health.py): the job continues it as ``resume_dir=`` would. Else None."""
    if int(os.environ.get("SLURM_RESTART_COUNT") or 0) < 1 or cfg.get("resume_dir"):
        return None
    run_dir = Path(cfg.paths.output_dir)
    return str(run_dir) if (run_dir / "checkpoints" / "last.ckpt").is_file() else None


def train(cfg: DictConfig) -> dict[str, float]:
    """Fits the configured model; returns the final callback metrics as floats."""
    started = time.monotonic()
    requeued = requeued_run_dir(cfg)
    if requeued:
        log.info("SLURM requeued this job (restart %s)", os.environ["SLURM_RESTART_COUNT"])
        cfg.resume_dir = requeued
    if cfg.get("resume_dir"):
        cfg = resume_config(cfg)
    use_init_from_tokenizer(cfg)
    check_values(cfg)
    ckpt = check_resume_checkpoint(cfg)

    import lightning as L

    from wavelab.core.checkpoints import check_state_matches
    from wavelab.core.loggers import finish_wandb

    quiet_lightning()
    # The job's own config, for showing and logging: a config composed with its hydra node
    # (tests) would resolve hydra.run.dir again, and claim another run dir.
    job_cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    rank_zero = is_rank_zero()
    if rank_zero:
        announce(job_cfg)
    L.seed_everything(cfg.seed, workers=True)
    pin_ddp_children_to_this_job()
    datamodule = instantiate(cfg.data, "data")
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = instantiate(cfg.model, "model", **datamodule.model_kwargs())
    if ckpt is not None:
        check_state_matches(model.state_dict(), ckpt, cfg.ckpt_path)
        del ckpt
    trainer = build_trainer(cfg)
    # From the first logger call on, a W&B run exists: finish it however the job ends, so the
    # next job of a multirun starts its own run instead of appending to this one.
    exit_code, env = 1, dict(os.environ)
    try:
        for logger in trainer.loggers:
            logger.log_hyperparams(OmegaConf.to_container(job_cfg, resolve=True))
        log.info(
            "model: %s parameters; device: %s x%d, precision %s",
            f"{sum(p.numel() for p in model.parameters()):,}",
            trainer.strategy.root_device.type,
            trainer.num_devices,
            trainer.precision,
        )
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        exit_code = 0
    finally:
        finish_wandb(exit_code)
        end_distributed(env)
    if rank_zero:
        log_summary(trainer, model.spec.headline_metrics, time.monotonic() - started)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra_entry("config", literal_keys=("data.path", "ckpt_path", "resume_dir"))
def train_entry(cfg: DictConfig) -> float | None:
    from hydra.types import RunMode

    try:
        metrics = train(cfg)
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
    "hydra/launcher=local": "hydra_plugins.hydra_submitit_launcher",
    "hydra/launcher=slurm": "hydra_plugins.hydra_submitit_launcher",
    "hydra/launcher=joblib": "hydra_plugins.hydra_joblib_launcher",
}


def check_plugins(argv: list[str]) -> None:
    for prefix, module in PLUGINS.items():
        if any(a.startswith(prefix) for a in argv) and importlib.util.find_spec(module) is None:
            user_error(
                __name__, f"{prefix}... needs {module.split('.')[1]}: pip install -e '.[sweeps]'"
            )


def claim_run_dir(argv: list[str]) -> None:
    """A ``hydra.run.dir=`` that holds another run is refused before Hydra writes into it."""
    from wavelab.core.run_dir_claim import claim_given_run_dir

    try:
        claim_given_run_dir(argv, os.environ)
    except ConfigError as e:
        user_error(__name__, str(e))


def main() -> None:
    """``python -m wavelab.run`` and the ``wavelab-train`` command."""
    check_plugins(sys.argv[1:])
    claim_run_dir(sys.argv[1:])
    train_entry()


if __name__ == "__main__":
    main()
