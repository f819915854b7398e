"""Lightning glue for the GPT and WaveGPT language models (the nn.Module is wavelab.wavegpt.model)."""

from __future__ import annotations

import math

import lightning as L
import torch
from torchmetrics import MeanMetric, MinMetric
from torchmetrics.classification import MulticlassAccuracy

from wavelab.core.errors import ConfigError
from wavelab.core.optim import build_optimizer, build_scheduler, plain
from wavelab.core.records import RecordsItsClass
from wavelab.core.registry import ModelSpec
from wavelab.data.tokenizers import TextTokenizer, tokenizer_from_dict
from wavelab.wavegpt import decode
from wavelab.wavegpt.hf.export import write_model_dir
from wavelab.wavegpt.hf.gpt2_dir import read_gpt2_dir
from wavelab.wavegpt.hf.init_from import load_trunk, net_from_dir
from wavelab.wavegpt.model import GPT, GPTConfig


def check_config(cfg) -> None:
    """A ``model.init_from`` dir is read (its config.json and weight shapes) before any data."""
    if cfg.model.get("init_from"):
        read_gpt2_dir(str(cfg.model.init_from))


class LanguageModelModule(RecordsItsClass, L.LightningModule):
    """Trains ``GPT(GPTConfig(**net))`` on (x_prev, x, y) windows.

    ``tokenizer`` (a ``to_dict()`` of the data's tokenizer) fixes the vocabulary and travels in
    the checkpoint, so sampling and evaluation need nothing but the checkpoint. ``init_from``: a
    local GPT2LMHeadModel dir whose architecture and weights the trunk starts from; the saved
    hyperparameters hold the resulting ``net`` (and no dir), so a checkpoint loads without it.
    """

    spec = ModelSpec(
        label="GPT",
        headline_metrics=("val/loss", "val/loss_best", "val/ppl", "val/acc", "val/bpc"),
        generates_text=True,
        check_config=check_config,
        flops_per_token=lambda module: module.net.flops_per_token(),
        write_hf_dir=write_model_dir,
    )

    def __init__(
        self,
        net: dict,
        optimizer: dict,
        scheduler: dict,
        tokenizer: dict | None = None,
        compile: bool = False,
        init_from: str | None = None,
    ):
        super().__init__()
        net, optimizer, scheduler, tokenizer = map(plain, (net, optimizer, scheduler, tokenizer))
        self.tokenizer: TextTokenizer | None = tokenizer and tokenizer_from_dict(tokenizer)
        gpt2 = None
        if init_from is not None:
            gpt2 = read_gpt2_dir(str(init_from))
            net = net_from_dir(net, gpt2, self.tokenizer)
        elif self.tokenizer is not None:
            net = {**net, "vocab_size": self.tokenizer.vocab_size}
        if net.get("vocab_size") is None:
            raise ConfigError(
                "model.net.vocab_size is unset: give it, or pass the data's tokenizer"
            )
        self.save_hyperparameters(
            {
                "net": net,
                "optimizer": optimizer,
                "scheduler": scheduler,
                "tokenizer": tokenizer,
                "compile": compile,
                "init_from": None,
            },
            logger=False,
        )
        self.net = GPT(GPTConfig(**net))
        if gpt2 is not None:
            load_trunk(self.net, gpt2)
        if compile:  # in place: the weights keep their one state_dict key, net.*
            self.net.compile()

        vocab = self.net.config.vocab_size
        self.val_loss = MeanMetric()
        self.val_acc = MulticlassAccuracy(num_classes=vocab, average="micro")
        self.val_loss_best = MinMetric()

    @property
    def context_size(self) -> int:
        """The most tokens ``forward`` reads at once (a longer context must be cropped)."""
        return self.net.config.block_size

    @property
    def uses_prev_block(self) -> bool:
        return self.net.mode == "prev_block"

    def forward(self, x: torch.Tensor, x_prev: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, prev_idx=x_prev if self.uses_prev_block else None)[0]

    def incremental_decoder(self, batch: int) -> decode.Decoder:
        """A KV-cached decoder of ``batch`` sequences (``wavelab.wavegpt.decode``): its
        ``next_logits(ids)`` equals the full forward's, one new token's work per call."""
        return decode.Decoder(self.net, batch)

    def next_token_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, vocab) logits of the next token (a decoding prior's question)."""
        return self.net.next_token_logits(ids)

    def _step(self, batch):
        x_prev, x, y = batch
        logits, loss = self.net(x, y, prev_idx=x_prev if self.uses_prev_block else None)
        return logits, loss, y

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        _, loss, _ = self._step(batch)
        self.log("train/loss", loss.detach(), on_step=True, prog_bar=True)
        return loss

    def on_train_start(self) -> None:
        # Lightning's sanity check runs validation before training; don't let it set the best.
        self.val_loss_best.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        logits, loss, y = self._step(batch)
        self.val_loss.update(loss, weight=y.numel())
        self.val_acc.update(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss_best.update(loss)
        self.log("val/loss", loss, prog_bar=True)
        metrics = {
            "val/ppl": torch.exp(loss),
            "val/acc": self.val_acc.compute(),
            "val/loss_best": self.val_loss_best.compute(),
        }
        if self.tokenizer is not None and self.tokenizer.kind == "char":
            metrics["val/bpc"] = loss / math.log(2)
        self.log_dict(metrics)
        self.val_loss.reset()
        self.val_acc.reset()

    def configure_optimizers(self):
        opt_cfg = self.hparams.optimizer
        groups = self.net.optimizer_groups(weight_decay=float(opt_cfg.get("weight_decay", 0.0)))
        # self._trainer: None outside a Trainer (the bench)
        optimizer = build_optimizer(opt_cfg, groups, self._trainer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": build_scheduler(optimizer, self.hparams.scheduler),
        }

    def generate_text(
        self,
        prompt: str,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        kv_cache: bool = True,
    ) -> str:
        """The prompt and its continuation; ``kv_cache`` picks the cached decoder over the
        full-window path (the same draws from the same logits)."""
        if self.tokenizer is None:
            raise ValueError("this model was built without a tokenizer; cannot generate text")
        ids = self.tokenizer.encode(prompt) or [0]
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.device).manual_seed(seed)
        was_training = self.net.training
        self.net.eval()
        generate = decode.generate if kv_cache else type(self.net).generate
        out = generate(self.net, idx, max_new_tokens, temperature, top_k, generator=gen)
        self.net.train(was_training)
        return self.tokenizer.decode(out[0].tolist())
