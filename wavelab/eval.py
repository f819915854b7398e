"""Score a checkpoint on the validation split: ``python -m wavelab.eval ckpt_path=...``.

The data config defaults to the one the checkpoint's run was trained with (its ``.hydra/``);
``data=...`` overrides it. That saved file may come from a downloaded run dir, so the objects it
names are built only if conf/ names them too (wavelab.core.config.instantiate).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from wavelab.core.cli import hydra_entry, quiet_lightning
from wavelab.core.config import CONFIG_DIR, instantiate
from wavelab.core.errors import ConfigError

log = logging.getLogger("wavelab.eval")


def check_data_choice(cfg: DictConfig) -> None:
    """``data`` is an optional group in eval.yaml, so Hydra silently skips an unknown option."""
    from hydra.core.hydra_config import HydraConfig

    choice = HydraConfig.get().runtime.choices.get("data") if HydraConfig.initialized() else None
    if choice is not None and not cfg.get("data"):
        options = sorted(p.stem for p in (Path(CONFIG_DIR) / "data").glob("*.yaml"))
        raise ConfigError(f"data={choice} is invalid: the options are {', '.join(options)}")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    check_data_choice(cfg)
    from wavelab.core.checkpoints import load_module, resolve_ckpt_path

    ckpt = resolve_ckpt_path(cfg.ckpt_path)
    module = load_module(ckpt)
    quiet_lightning()  # Lightning is imported by now
    from wavelab.core.saved_config import run_data_config

    data_cfg = cfg.get("data") or run_data_config(ckpt)
    if data_cfg is None:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} has no saved run config beside it; pass data=<name>"
        )
    datamodule = instantiate(data_cfg, "data")
    datamodule.prepare_data()
    datamodule.setup("validate")
    if module.hparams.get("tokenizer") not in (None, datamodule.model_kwargs().get("tokenizer")):
        raise ConfigError("the data's tokenizer differs from the checkpoint's: wrong data=...?")
    trainer = instantiate(cfg.trainer, "trainer", logger=False, callbacks=[])
    (metrics,) = trainer.validate(module, datamodule=datamodule, verbose=True)
    out = Path(cfg.paths.output_dir) / "eval_metrics.json"
    out.write_text(json.dumps({"ckpt_path": str(ckpt), **metrics}, indent=1))
    log.info("wrote %s", out)
    return metrics


@hydra_entry("eval", literal_keys=("data.path", "ckpt_path"))
def main(cfg: DictConfig) -> None:
    """``python -m wavelab.eval`` and the ``wavelab-eval`` command."""
    evaluate(cfg)


if __name__ == "__main__":
    main()
