"""Writes generated text to ``<run dir>/samples/`` every few validations."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

from wavelab.callbacks.every_n import EveryNValidations
from wavelab.callbacks.media import logger_methods

log = logging.getLogger(__name__)


class TextSamples(EveryNValidations):
    def __init__(
        self,
        dirpath: str,
        every_n_validations: int = 2,
        prompt: str = "\n",
        max_new_tokens: int = 300,
        temperature: float = 0.8,
        top_k: int | None = 200,
        seed: int = 1234,
    ):
        super().__init__(every_n_validations)
        self.dirpath = Path(dirpath)
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.seed = seed
        self._rows: list[list] = []  # every sample so far: W&B tables are replaced, not appended

    def on_nth_validation(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        text = pl_module.generate_text(
            self.prompt, self.max_new_tokens, self.temperature, self.top_k, seed=self.seed
        )
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"step_{trainer.global_step:07d}.txt"
        path.write_text(text)
        log.info("sample at step %d (%s):\n%s", trainer.global_step, path, text[:400])
        self._rows.append([trainer.global_step, text])
        for log_text in logger_methods(trainer, "log_text"):  # W&B: a row per sample so far
            log_text(key="samples", columns=["step", "text"], data=self._rows)
