"""Lightning glue for WavGPT: frozen encoder -> WavGPTCore -> frozen LM head, trained by KD.

The encoder and head never train and their weights stay out of checkpoints (FrozenEncoder keeps
only its identity and fingerprint there).
"""

from __future__ import annotations

import dataclasses
import math

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MeanMetric, MinMetric

from wavelab.errors import ConfigError
from wavelab.lit.legacy import drop_duplicate_keys
from wavelab.lit.optim import build_optimizer, build_scheduler, plain
from wavelab.lit.records import RecordsItsClass
from wavelab.models.encoder import FrozenEncoder
from wavelab.models.wavgpt import (
    WavGPTConfig,
    WavGPTCore,
    WavGPTOutput,
    distillation_loss,
    token_accuracy,
)
from wavelab.sparse_code import code_bits, overhead_bytes, scale_count, sent_bits

CORE_KEYS = {f.name for f in dataclasses.fields(WavGPTConfig)}
# Metrics averaged over real tokens, logged as val/<name>.
TOKEN_METRICS = ("acc", "acc_unrefined", "acc_orig", "ce", "ce_orig", "kl")
# Metrics averaged over codes (one per block).
CODE_METRICS = (
    "keep_ratio",
    "bits_per_token",
    "bits_per_token_ideal",
    "compression_vs_fp32",
    "compression_vs_ids",
)


class WavGPTModule(RecordsItsClass, L.LightningModule):
    """``encoder``: FrozenEncoder kwargs; ``core``: WavGPTConfig fields (flat in the config)."""

    def __init__(
        self,
        encoder: dict,
        optimizer: dict,
        scheduler: dict,
        compile: bool = False,
        **core,
    ):
        super().__init__()
        encoder, optimizer, scheduler, core = map(plain, (encoder, optimizer, scheduler, core))
        unknown = sorted(set(core) - CORE_KEYS)
        if unknown:
            raise ConfigError(
                f"model.{unknown[0]} is not a WavGPT option; known: {', '.join(sorted(CORE_KEYS))}"
            )
        self.save_hyperparameters(
            {
                "encoder": encoder,
                "optimizer": optimizer,
                "scheduler": scheduler,
                "compile": compile,
                **core,
            },
            logger=False,
        )
        self.cfg = WavGPTConfig(**core)
        self.encoder = FrozenEncoder(**encoder)
        self.core = WavGPTCore(self.cfg, d=self.encoder.d)
        if compile:  # in place: the weights keep their one state_dict key, core.*
            self.core.compile()
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_{name}": MeanMetric()
                for stage in ("train", "val")
                for name in (*TOKEN_METRICS, *CODE_METRICS, "loss")
            }
        )
        self.val_loss_best = MinMetric()

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, WavGPTOutput]:
        """Hidden states of the frozen encoder and everything the core makes of them."""
        h = self.encoder.hidden(input_ids, attention_mask)
        return h, self.core(h, attention_mask)

    def code_bits(self, out: WavGPTOutput, sent: bool = False) -> Tensor:
        """(B,) bits a receiver needs per code. Ideal: the format's overhead (header, both
        fingerprints, checksum) and scales, as ``SparseCode.to_bytes`` sends them, + positions
        at log2 C(T·d, k) + values. ``sent``: exactly the bytes ``to_bytes`` writes (entropy-coded
        positions; a numpy pass over the keep mask per band)."""
        fingerprint_bytes = len(bytes.fromhex(self.encoder.fingerprint))
        bits, scale = self.cfg.value_bits, self.cfg.value_scale
        levels = self.core.dwt.levels
        if sent:
            return sent_bits(out.keep, levels, bits, scale, fingerprint_bytes).to(out.k.device)
        header = 8 * overhead_bytes(fingerprint_bytes)
        n_scales = scale_count(bits, scale, levels)
        return code_bits(out.k, self.cfg.block_size, self.encoder.d, bits, header, n_scales)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        drop_duplicate_keys(checkpoint, "_core.")

    def _shared_step(self, batch: dict, stage: str) -> Tensor:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        h, out = self.encode(ids, mask)
        teacher = self.encoder.logits(h)
        student = self.encoder.logits(out.refined)
        loss, terms = distillation_loss(
            student,
            teacher,
            ids,
            mask,
            self.cfg,
            refined=out.refined,
            target_h=h,
            approx=out.h_hat,
        )
        n_real = mask.sum(1).float()  # (B,)
        with torch.no_grad():
            values = {
                "loss": loss,
                "kl": terms["kl"],
                "ce": terms["ce"],
                "acc": token_accuracy(student, ids, mask),
                "acc_orig": token_accuracy(teacher, ids, mask),
            }
            if stage == "val":
                unrefined = self.encoder.logits(out.h_hat)
                ce_orig = torch.nn.functional.cross_entropy(
                    teacher.transpose(1, 2), ids, reduction="none"
                )
                values["acc_unrefined"] = token_accuracy(unrefined, ids, mask)
                values["ce_orig"] = (ce_orig * mask).sum() / mask.sum()
            ideal = self.code_bits(out)  # (B,)
            # Validation logs the bytes actually sent; a training step keeps the ideal, which
            # needs no copy of the (B, T, d) mask to the CPU per step.
            bits = self.code_bits(out, sent=True) if stage == "val" else ideal
            per_code = {
                "keep_ratio": out.keep_ratio,
                "bits_per_token": bits / n_real,
                "compression_vs_fp32": n_real * self.encoder.d * 32 / bits,
                "compression_vs_ids": n_real * math.log2(self.encoder.vocab_size) / bits,
            }
            if stage == "val":
                per_code["bits_per_token_ideal"] = ideal / n_real
        tokens = mask.sum()
        for name, value in values.items():
            self.metrics[f"{stage}_{name}"].update(value.detach(), weight=tokens)
        for name, value in per_code.items():
            self.metrics[f"{stage}_{name}"].update(value.float())
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self._shared_step(batch, "train")
        self.log("train/loss", loss.detach(), prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if (self.global_step % self.trainer.log_every_n_steps) == 0:
            self._log_and_reset(
                "train", ("acc", "acc_orig", "kl", "ce", "keep_ratio", "bits_per_token")
            )

    def on_train_start(self) -> None:
        self.val_loss_best.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        loss = self.metrics["val_loss"].compute()
        self.val_loss_best.update(loss)
        self.log("val/loss_best", self.val_loss_best.compute())
        ce, ce_orig = self.metrics["val_ce"].compute(), self.metrics["val_ce_orig"].compute()
        self.log_dict({"val/ppl": torch.exp(ce), "val/ppl_orig": torch.exp(ce_orig)})
        self._log_and_reset("val", ("loss", *TOKEN_METRICS, *CODE_METRICS))

    def _log_and_reset(self, stage: str, names: tuple[str, ...]) -> None:
        for name in names:
            metric = self.metrics[f"{stage}_{name}"]
            if metric.update_called:
                self.log(f"{stage}/{name}", metric.compute(), prog_bar=name in ("loss", "acc"))
            metric.reset()

    def configure_optimizers(self):
        # Only the refiner's matrices decay: decaying the lifting steps or the filter's
        # importances would pull them away from Haar and from the learned selection.
        trainable = {n: p for n, p in self.core.named_parameters() if p.requires_grad}
        decay = [p for n, p in trainable.items() if n.startswith("refiner.") and p.dim() >= 2]
        decay_ids = {id(p) for p in decay}
        groups = [
            {
                "params": decay,
                "weight_decay": float(self.hparams.optimizer.get("weight_decay", 0.0)),
            },
            {
                "params": [p for p in trainable.values() if id(p) not in decay_ids],
                "weight_decay": 0.0,
            },
        ]
        # self._trainer: None outside a Trainer (the bench)
        optimizer = build_optimizer(self.hparams.optimizer, groups, self._trainer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": build_scheduler(optimizer, self.hparams.scheduler),
        }
