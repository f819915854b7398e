"""``python -m wavelab.wavgpt.plots ckpt_path=...`` (keys: conf/plots.yaml): WavGPT's analysis plots of
a checkpoint, computed on its first validation blocks and written as PNGs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from wavelab.core.cli import checked_device, hydra_entry, required
from wavelab.core.errors import ConfigError

# Keys whose values are file names, passed to Hydra literally.
LITERAL_KEYS = ("ckpt_path", "out", "text_file")


def saved_corpus_keys(ckpt: Path) -> dict:
    """The corpus keys and val_fraction of the run that wrote ``<run>/checkpoints/<ckpt>``.

    Read as plain values from its ``.hydra/config.yaml``: nothing of that file (which may come
    from anywhere) is instantiated. Empty without a saved config.
    """
    from wavelab.data.source import CorpusSource

    saved = ckpt.resolve().parent.parent / ".hydra" / "config.yaml"
    if not saved.is_file():
        return {}
    try:
        data = OmegaConf.to_container(OmegaConf.load(saved).get("data") or {}, resolve=False)
    except Exception as e:  # yaml and omegaconf raise many types for a malformed file
        raise ConfigError(f"ckpt_path's run config {saved} is unreadable: {e}") from None
    keys = [f.name for f in dataclasses.fields(CorpusSource)] + ["val_fraction"]
    return {k: data[k] for k in keys if k in data and not str(data[k]).startswith("${")}


def checked_out(value: str) -> Path:
    """``out=`` as a directory path that is no file and lies under no file."""
    out = Path(value).expanduser()
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"out={value!r} is invalid: {path} is a file, not a directory")
            break
    return out


def run(cfg: DictConfig) -> list[Path]:
    ckpt_path = required(cfg, "ckpt_path")
    device = checked_device(str(cfg.device))
    blocks = cfg.blocks
    if not isinstance(blocks, int) or blocks < 1:
        raise ConfigError(f"blocks={blocks!r} is invalid: must be an integer >= 1")
    if cfg.text_file is not None and not Path(str(cfg.text_file)).expanduser().is_file():
        raise ConfigError(f"text_file={str(cfg.text_file)!r} is invalid: no such file")
    ckpt = Path(ckpt_path).expanduser()
    out = checked_out(str(cfg.out) if cfg.out is not None else str(ckpt.with_suffix("")) + "_plots")

    from wavelab.core.checkpoints import load_module
    from wavelab.wavgpt.data.datamodule import WordPieceDataModule
    from wavelab.wavgpt.module import WavGPTModule
    from wavelab.wavgpt.plots.figures import analyse, render

    module = load_module(ckpt_path, map_location=device)
    if not isinstance(module, WavGPTModule):
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} is invalid: it holds a {type(module).__name__} (a "
            "language model), not a WavGPT checkpoint"
        )
    if not module.core.has_bands:
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} is invalid: its model.coder={module.cfg.coder!r} has no "
            "wavelet bands to plot (the plots are the wavelet coder's)"
        )
    source = {"path": str(cfg.text_file)} if cfg.text_file is not None else saved_corpus_keys(ckpt)
    data = WordPieceDataModule(
        tokenizer=module.hparams.encoder["name_or_path"],
        block_size=module.cfg.block_size,
        batch_size=blocks,
        num_val_blocks=blocks,
        cache_dir=cfg.paths.cache_dir,
        **source,
    )
    data.prepare_data()
    data.setup("validate")
    batch = next(iter(data.val_dataloader()))
    stats = analyse(module, batch["input_ids"], batch["attention_mask"])
    paths = render(stats, out, title=ckpt.name)
    for path in paths:
        print(path)
    return paths


@hydra_entry("plots", text_keys=LITERAL_KEYS)
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
