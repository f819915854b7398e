"""WavGPT's analysis callbacks: plots of the filter and text reconstructions, every few
validations, from a fixed batch of validation blocks so that steps compare like for like.

* ``WavGPTPlots``: ``<run dir>/plots/step_*/{band_importance,selection,band_energy}.png``
  (see ``wavelab.wavgpt.plots``), also at the end of fit; images go to loggers that take them (W&B).
* ``Reconstructions``: ``<run dir>/reconstructions/step_*.txt`` with, per example, the original
  text, what the frozen head reads from the untouched hidden states, and what it reads from the
  code; a W&B table when the logger is W&B.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch

from wavelab.callbacks.every_n import EveryNValidations
from wavelab.callbacks.media import log_images, logger_methods
from wavelab.core.errors import ConfigError
from wavelab.wavgpt.codec import WavGPTCodec
from wavelab.wavgpt.plots.figures import analyse, render

log = logging.getLogger(__name__)


class _OnValidationBlocks(EveryNValidations):
    """Keeps the first ``num_blocks`` validation blocks (CPU copies) and calls ``write`` on rank
    0 every ``every_n_validations`` validations, with the module in eval mode."""

    def __init__(self, dirpath: str, every_n_validations: int, num_blocks: int):
        super().__init__(every_n_validations)
        if num_blocks < 1:
            raise ConfigError(f"num_blocks={num_blocks} is invalid: must be >= 1")
        self.dirpath = Path(dirpath)
        self.num_blocks = num_blocks
        self._batch: dict[str, torch.Tensor] | None = None
        self._last_step = -1

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        have = 0 if self._batch is None else len(self._batch["input_ids"])
        if have >= self.num_blocks or trainer.sanity_checking:
            return
        take = {
            k: batch[k][: self.num_blocks - have].cpu() for k in ("input_ids", "attention_mask")
        }
        if self._batch is None:
            self._batch = take
        else:
            self._batch = {k: torch.cat([self._batch[k], take[k]]) for k in take}

    def on_nth_validation(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or self._batch is None:
            return
        if not pl_module.core.has_bands:  # bands and codes are the wavelet coder's
            log.info("%s: skipped, model.coder=%s", type(self).__name__, pl_module.cfg.coder)
            return
        if trainer.global_step == self._last_step:  # e.g. fit ends right after a validation
            return
        self._last_step = trainer.global_step
        was_training = pl_module.training
        pl_module.eval()
        try:
            self.write(trainer, pl_module, self._batch["input_ids"], self._batch["attention_mask"])
        finally:
            pl_module.train(was_training)

    def write(self, trainer, pl_module, input_ids, attention_mask) -> None:
        raise NotImplementedError


class WavGPTPlots(_OnValidationBlocks):
    def __init__(self, dirpath: str, every_n_validations: int = 2, num_blocks: int = 16):
        super().__init__(dirpath, every_n_validations, num_blocks)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_nth_validation(trainer, pl_module)

    def write(self, trainer, pl_module, input_ids, attention_mask) -> None:
        step = trainer.global_step
        stats = analyse(pl_module, input_ids, attention_mask)
        paths = render(stats, self.dirpath / f"step_{step:07d}", title=f"step {step}")
        log.info("plots at step %d in %s", step, paths[0].parent)
        for path in paths:
            log_images(trainer, f"plots/{path.stem}", [path])


class Reconstructions(_OnValidationBlocks):
    def __init__(self, dirpath: str, every_n_validations: int = 2, num_examples: int = 4):
        super().__init__(dirpath, every_n_validations, num_examples)
        self._tokenizer = None
        self._rows: list[list] = []  # every example so far: W&B tables are replaced, not appended

    def write(self, trainer, pl_module, input_ids, attention_mask) -> None:
        codec = WavGPTCodec(pl_module, tokenizer=self._tokenizer)
        self._tokenizer = codec.tokenizer  # load it once per run
        codes = codec.encode_ids(input_ids, attention_mask)
        columns = {
            "original": codec.ids_to_texts(input_ids, attention_mask),
            "head": codec.head_decode(input_ids, attention_mask),
            "code": codec.decode(codes),
        }
        step = trainer.global_step
        lines = [
            f"step {step}: original text / frozen head on the encoder's states / from the code"
        ]
        for i, code in enumerate(codes):
            texts = [columns[name][i] for name in columns]
            lines += [
                "",
                f"--- example {i}: k={code.k} coefficients, {codec.size(code)}",
                *(f"{name + ':':<10}{text}" for name, text in zip(columns, texts)),
            ]
            self._rows.append([step, i, *texts])
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"step_{step:07d}.txt"
        path.write_text("\n".join(lines) + "\n")
        log.info("reconstructions at step %d in %s", step, path)
        for log_table in logger_methods(trainer, "log_table"):  # W&B
            log_table(key="reconstructions", columns=["step", "example", *columns], data=self._rows)
