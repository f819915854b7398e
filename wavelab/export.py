"""Export a checkpoint for ``transformers``: ``python -m wavelab.export ckpt_path=... out=DIR``."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from wavelab.core.cli import hydra_entry
from wavelab.core.errors import ConfigError

log = logging.getLogger(__name__)


def run_export(cfg: DictConfig):
    if not isinstance(cfg.overwrite, bool):
        raise ConfigError(f"overwrite={cfg.overwrite!r} is invalid: true or false")
    from wavelab.core.checkpoints import (
        checkpoint_class,
        load_module,
        read_checkpoint,
        resolve_ckpt_path,
    )
    from wavelab.hf.export import check_out_dir, export
    from wavelab.wavegpt.module import LanguageModelModule

    ckpt = resolve_ckpt_path(cfg.ckpt_path)
    out = check_out_dir(str(cfg.out), cfg.overwrite, ckpt)
    cls = checkpoint_class(read_checkpoint(ckpt), ckpt)
    if not issubclass(cls, LanguageModelModule):
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} is a {cls.spec.label} checkpoint; export handles the "
            "GPT and WaveGPT language models (model=gpt, wavegpt, wavegpt_causal)"
        )
    return export(load_module(ckpt), ckpt, out)


@hydra_entry("export", literal_keys=("ckpt_path", "out"))
def main(cfg: DictConfig) -> None:
    """``python -m wavelab.export`` and the ``wavelab-export`` command."""
    log.info("wrote %s", run_export(cfg))


if __name__ == "__main__":
    main()
