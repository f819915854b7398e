"""Score a checkpoint on the validation split: ``python -m wavelab.eval ckpt_path=...``.

The data config defaults to the one the checkpoint's run was trained with (its ``.hydra/``);
``data=...`` overrides it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from wavelab.checkpoints import load_module, resolve_ckpt_path
from wavelab.cli import quiet_lightning
from wavelab.config import CONFIG_DIR, instantiate
from wavelab.errors import ConfigError

log = logging.getLogger("wavelab.eval")


def run_data_config(ckpt_path: Path) -> DictConfig | None:
    """The data config saved by the run that wrote ``<run>/checkpoints/<ckpt>``."""
    saved = ckpt_path.resolve().parent.parent / ".hydra" / "config.yaml"
    return OmegaConf.load(saved).data if saved.is_file() else None


def evaluate(cfg: DictConfig) -> dict[str, float]:
    ckpt = resolve_ckpt_path(cfg.ckpt_path)
    data_cfg = cfg.get("data") or run_data_config(ckpt)
    if data_cfg is None:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} has no saved run config beside it; pass data=<name>"
        )
    datamodule = instantiate(data_cfg)
    datamodule.prepare_data()
    datamodule.setup("validate")
    module = load_module(str(ckpt))
    if module.hparams.get("tokenizer") not in (None, datamodule.model_kwargs().get("tokenizer")):
        raise ConfigError("the data's tokenizer differs from the checkpoint's: wrong data=...?")
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    (metrics,) = trainer.validate(module, datamodule=datamodule, verbose=True)
    out = Path(cfg.paths.output_dir) / "eval_metrics.json"
    out.write_text(json.dumps({"ckpt_path": str(ckpt), **metrics}, indent=1))
    log.info("wrote %s", out)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except ConfigError as e:
        log.error("configuration error: %s", e)
        sys.exit(2)


if __name__ == "__main__":
    quiet_lightning()
    main()
