"""Generate text from a checkpoint: ``python -m wavelab.sample ckpt_path=... prompt="ROMEO:"``."""

from __future__ import annotations

import logging
import sys

import hydra
import torch
from omegaconf import DictConfig

from wavelab.checkpoints import load_module
from wavelab.config import CONFIG_DIR
from wavelab.errors import ConfigError

log = logging.getLogger("wavelab.sample")


def sample(cfg: DictConfig) -> list[str]:
    device = (
        cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    module = load_module(cfg.ckpt_path, map_location=device)
    return [
        module.generate_text(
            cfg.prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, seed=cfg.seed + i
        )
        for i in range(cfg.num_samples)
    ]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sample")
def main(cfg: DictConfig) -> None:
    try:
        texts = sample(cfg)
    except ConfigError as e:
        log.error("configuration error: %s", e)
        sys.exit(2)
    for text in texts:
        print(text)
        print("-" * 40)


if __name__ == "__main__":
    main()
