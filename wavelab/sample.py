"""Generate text from a checkpoint: ``python -m wavelab.sample ckpt_path=... prompt="ROMEO:"``."""

from __future__ import annotations

import inspect

from omegaconf import DictConfig

from wavelab.core.cli import hydra_entry
from wavelab.core.config import check_number
from wavelab.core.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def check_values(cfg: DictConfig) -> None:
    check_number(cfg, "num_samples", integer=True, minimum=1)
    check_number(cfg, "max_new_tokens", integer=True, minimum=0)
    check_number(cfg, "temperature", minimum=0, exclusive=True)
    check_number(cfg, "top_k", integer=True, minimum=1, optional=True)
    check_number(cfg, "seed", integer=True)
    if not isinstance(cfg.kv_cache, bool):
        raise ConfigError(f"kv_cache={cfg.kv_cache!r} is invalid: true or false")
    if str(cfg.device).partition(":")[0] not in DEVICES:
        raise ConfigError(f"device={cfg.device!r} is invalid: one of {', '.join(DEVICES)}")


def sample(cfg: DictConfig) -> list[str]:
    check_values(cfg)
    import torch

    from wavelab.core.checkpoints import checkpoint_class, load_module, read_checkpoint

    spec = checkpoint_class(read_checkpoint(cfg.ckpt_path), cfg.ckpt_path).spec
    if not spec.generates_text:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} is a {spec.label} checkpoint, which does not generate "
            f"text; {spec.use_instead or 'sample needs a text-generating model'}"
        )
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device} is invalid: this machine has no GPU (use device=cpu)")
    module = load_module(cfg.ckpt_path, map_location=device)
    # kv_cache is an option of the models that have a cached decoder; another model's
    # generate_text is called without it and generates its own way.
    options = {"kv_cache": cfg.kv_cache} if takes_kv_cache(module) else {}
    return [
        module.generate_text(
            cfg.prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, seed=cfg.seed + i, **options
        )
        for i in range(cfg.num_samples)
    ]


def takes_kv_cache(module) -> bool:
    return "kv_cache" in inspect.signature(module.generate_text).parameters


@hydra_entry("sample", literal_keys=("ckpt_path",), text_keys=("prompt",))
def main(cfg: DictConfig) -> None:
    """``python -m wavelab.sample`` and the ``wavelab-sample`` command."""
    for text in sample(cfg):
        print(text)
        print("-" * 40)


if __name__ == "__main__":
    main()
