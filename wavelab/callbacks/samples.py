"""Writes generated text to ``<run dir>/samples/`` every few validations."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

log = logging.getLogger(__name__)


class TextSamples(L.Callback):
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
        self.dirpath = Path(dirpath)
        self.every = every_n_validations
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.seed = seed
        self._validations = 0
        self._rows: list[list] = []  # every sample so far: W&B tables are replaced, not appended

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._validations += 1
        if self._validations % self.every or not trainer.is_global_zero:
            return
        text = pl_module.generate_text(
            self.prompt, self.max_new_tokens, self.temperature, self.top_k, seed=self.seed
        )
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"step_{trainer.global_step:07d}.txt"
        path.write_text(text)
        log.info("sample at step %d (%s):\n%s", trainer.global_step, path, text[:400])
        self._rows.append([trainer.global_step, text])
        for logger in trainer.loggers:
            log_text = getattr(logger, "log_text", None)
            if log_text is not None:  # W&B: one table with a row per sample so far
                log_text(key="samples", columns=["step", "text"], data=self._rows)
