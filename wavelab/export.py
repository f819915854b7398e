"""Export a checkpoint for ``transformers``: ``python -m wavelab.export ckpt_path=... out=DIR``."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from wavelab.core.cli import hydra_entry
from wavelab.core.errors import ConfigError

log = logging.getLogger(__name__)


def run_export(cfg: DictConfig) -> Path:
    if not isinstance(cfg.overwrite, bool):
        raise ConfigError(f"overwrite={cfg.overwrite!r} is invalid: true or false")
    from wavelab.core.checkpoints import (
        checkpoint_class,
        load_module,
        read_checkpoint,
        resolve_ckpt_path,
    )
    from wavelab.core.user_files import output_dir, write_dir

    ckpt = resolve_ckpt_path(cfg.ckpt_path)
    out = output_dir(str(cfg.out), "out", protect=[ckpt], overwrite=cfg.overwrite)
    spec = checkpoint_class(read_checkpoint(ckpt), ckpt).spec
    if spec.write_hf_dir is None:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} is a {spec.label} checkpoint, which has no Hugging "
            "Face export; export handles the language models (model=gpt, wavegpt, "
            "wavegpt_causal)"
        )
    module = load_module(ckpt)
    return write_dir(out, lambda tmp: spec.write_hf_dir(module, tmp), "out")


@hydra_entry("export", literal_keys=("ckpt_path", "out"))
def main(cfg: DictConfig) -> None:
    """``python -m wavelab.export`` and the ``wavelab-export`` command."""
    log.info("wrote %s", run_export(cfg))


if __name__ == "__main__":
    main()
