"""Train a model: ``python -m wavelab.run model=wavegpt`` (see conf/config.yaml).

Builds the data, model, callbacks, loggers and trainer from the config, fits, and returns the
``optimized_metric`` so Hydra sweepers can optimise it.
"""

from __future__ import annotations

import logging
import sys

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from wavelab.config import CONFIG_DIR, instantiate
from wavelab.errors import ConfigError

log = logging.getLogger("wavelab.run")


def build_trainer(cfg: DictConfig) -> L.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fits the configured model; returns the final callback metrics as floats."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = instantiate(cfg.model, **datamodule.model_kwargs())
    trainer = build_trainer(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    log.info("model: %s parameters", f"{sum(p.numel() for p in model.parameters()):,}")
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
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
    name = cfg.get("optimized_metric")
    if name and name not in metrics:
        log.warning("optimized_metric=%s was not logged; have %s", name, sorted(metrics))
        return None
    return metrics.get(name) if name else None


if __name__ == "__main__":
    main()
