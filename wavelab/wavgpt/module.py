"""Lightning glue for WavGPT: frozen encoder -> WavGPTCore -> frozen LM head, trained by KD.

The encoder and head never train and their weights stay out of checkpoints (FrozenEncoder keeps
only its identity and fingerprint there).
"""

from __future__ import annotations

import functools
import logging
import math

import lightning as L
import torch
from omegaconf import DictConfig
from torch import Tensor
from torchmetrics import MeanMetric, MinMetric

from wavelab.core.errors import ConfigError
from wavelab.core.optim import build_optimizer, build_scheduler, plain
from wavelab.core.records import RecordsItsClass
from wavelab.core.registry import ModelSpec
from wavelab.wavgpt.config import WavGPTConfig
from wavelab.wavgpt.model.baselines import build_coder
from wavelab.wavgpt.model.distill import TeacherTopK, teacher_topk, tied_sparse_kd_and_ce
from wavelab.wavgpt.model.encoder import FrozenEncoder
from wavelab.wavgpt.model.losses import distillation_loss, masked_mean, token_accuracy
from wavelab.wavgpt.model.validation_distortion import ValidationDistortion

log = logging.getLogger(__name__)

# model.* keys that are the module's own kwargs, not the core's.
MODULE_KWARGS = {"encoder", "optimizer", "scheduler", "compile"}
# Metrics averaged over real tokens, logged as val/<name>.
TOKEN_METRICS = ("acc", "acc_unrefined", "acc_orig", "ce", "ce_orig", "kl")
# Metrics averaged over codes (one per block).
CODE_METRICS = (
    "keep_ratio",
    "bits_per_token",
    "bits_per_token_ideal",
    "bits_per_token_block_mean",
    "compression_vs_fp32",
    "compression_vs_ids",
)
# Rates of every code as total bits over total real tokens, the estimator of every reference
# rate too; bits_per_token_block_mean is the mean of each block's own rate, printed beside.
TOTAL_RATES = ("bits_per_token", "bits_per_token_ideal")


def teacher_argmax(teacher: Tensor | TeacherTopK) -> Tensor:
    """(B, T) the frozen head's most likely token."""
    return teacher.argmax if isinstance(teacher, TeacherTopK) else teacher.argmax(-1)


def teacher_ce(teacher: Tensor | TeacherTopK, input_ids: Tensor) -> Tensor:
    """(B, T) the frozen head's cross-entropy against the input ids."""
    if isinstance(teacher, TeacherTopK):
        return teacher.ce
    return torch.nn.functional.cross_entropy(teacher.transpose(1, 2), input_ids, reduction="none")


# Positions whose logits the live teacher computes at once (rows of V floats).
LIVE_TEACHER_ROWS = 128

# Real training tokens whose hidden states fit a coder that learns from data (pca's basis).
FIT_TOKENS = 100_000


def core_options(model: DictConfig | dict) -> dict:
    """The ``model.*`` options that are WavGPTConfig's: all but the module's own kwargs and
    Hydra's ``_target_``-like keys."""
    return {
        k: v for k, v in plain(model).items() if k not in MODULE_KWARGS and not k.startswith("_")
    }


def check_config(cfg: DictConfig) -> None:
    """A training run's settings, checked (by building the config) before any data is
    tokenized or the teacher cache is built."""
    check_something_trains(WavGPTConfig.from_options(core_options(cfg.model)))


def check_something_trains(cfg: WavGPTConfig) -> None:
    """The encoder and head are frozen: a coder with no learned part and no refiner would give
    the optimizer nothing, and the first backward pass a torch error. (Such a coder is still a
    valid code to build and evaluate: the check is training's.)"""
    learned = {"model.refine": cfg.refine}
    if cfg.coder == "wavelet":  # the wavelet code's own learned parts
        learned["model.learnable_lifting"] = cfg.learnable_lifting
        learned["model.filter_learned"] = cfg.filter_learned
    if not any(learned.values()):
        given = ", ".join(f"{key}=false" for key in learned)
        raise ConfigError(
            f"model.coder={cfg.coder} with {given} leaves nothing to train (the encoder and its "
            "head are frozen): set one of them to true"
        )


def training_flops_per_token(module: WavGPTModule) -> float:
    """6 × the trainable parameters (the core's forward and backward, its matmuls counted
    through its weights, as a GPT's are) + 4·d·V for the frozen head (its forward and the
    backward to its input; no weight gradient). The frozen encoder's forward is left out: with
    the teacher cache it never runs during training."""
    trainable = sum(p.numel() for p in module.core.parameters() if p.requires_grad)
    return 6 * trainable + 4 * module.encoder.d * module.encoder.vocab_size


class WavGPTModule(RecordsItsClass, L.LightningModule):
    """``encoder``: FrozenEncoder kwargs; ``core``: WavGPTConfig fields (flat in the config)."""

    spec = ModelSpec(
        label="WavGPT",
        headline_metrics=(
            "val/loss",
            "val/loss_best",
            "val/acc",
            "val/bits_per_token",
            "val/compression_vs_fp32",
        ),
        check_config=check_config,
        use_instead="encode and decode text with python -m wavelab.wavgpt.codec",
        flops_per_token=training_flops_per_token,
    )

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
        self.cfg = WavGPTConfig.from_options(core)
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
        self.encoder = FrozenEncoder(**encoder)
        if self.cfg.kd == "sparse" and self.cfg.kd_top_k > self.encoder.vocab_size:
            raise ConfigError(
                f"model.kd_top_k={self.cfg.kd_top_k} is invalid: the encoder's vocabulary has "
                f"only {self.encoder.vocab_size} tokens"
            )
        self.core = build_coder(self.cfg, self.encoder.d)
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
        self.distortion = ValidationDistortion()

    def hidden_states(self, batch: dict) -> Tensor:
        """(B, T, d) the frozen encoder's states of the batch: from the teacher cache when the
        batch carries them, else computed."""
        if "h" in batch:
            return batch["h"]
        return self.encoder.hidden(batch["input_ids"], batch["attention_mask"])

    def tied_loss(self, teacher: Tensor | TeacherTopK) -> bool:
        """Whether the loss can take the tied head's logits a few rows at a time (sparse KD,
        and no term that needs them whole)."""
        sparse = isinstance(teacher, TeacherTopK)
        return sparse and self.encoder.head == "tied" and self.cfg.logits_mse_weight == 0

    def teacher(self, batch: dict, h: Tensor) -> Tensor | TeacherTopK:
        """What the loss needs of the frozen head on the untouched states: its top K (from the
        teacher cache, or computed) for sparse KD, its full logits for ``model.kd=full``."""
        if "teacher_idx" in batch:
            return TeacherTopK(
                batch["teacher_idx"],
                batch["teacher_logp"],
                batch["teacher_rest_logp"],
                batch["teacher_ce"],
            )
        if self.cfg.kd == "full":
            return self.encoder.logits(h).detach()
        # LIVE_TEACHER_ROWS positions at a time: the (B, T, V) logits and their exponentials
        # never exist whole.
        ids, k, tau = batch["input_ids"], self.cfg.kd_top_k, self.cfg.kd_temperature
        states, flat_ids, rows = h.flatten(0, 1), ids.flatten(), LIVE_TEACHER_ROWS
        with torch.no_grad():
            parts = [
                teacher_topk(
                    self.encoder.logits(states[i : i + rows]), k, tau, flat_ids[i : i + rows]
                )
                for i in range(0, len(states), rows)
            ]
        return TeacherTopK.cat(parts).unflatten(ids.shape)

    def on_fit_start(self) -> None:
        # A coder fitted on data (pca's basis) fits on training states; a resumed run has it.
        if not self.core.is_fitted():
            self.fit_coder(self.trainer.datamodule.train_dataloader())
        self.check_teacher_cache(getattr(self.trainer.datamodule, "teacher_meta", None))

    def check_teacher_cache(self, meta: dict | None) -> None:
        """ConfigError unless the datamodule's teacher cache (``meta``; None: none) was made
        by this model's encoder, K and temperature, for sparse KD."""
        if meta is None:
            return
        if self.cfg.kd == "full":
            raise ConfigError(
                "model.kd=full needs the teacher's full logits every step, which the teacher "
                "cache does not hold: set data.teacher_cache=false, or model.kd=sparse"
            )
        key = meta["key"]
        mine = (self.encoder.fingerprint, self.encoder.layer, self.cfg.kd_top_k)
        cached = (key["encoder_fingerprint"], key["layer"], key["top_k"])
        if mine != cached or key["temperature"] != float(self.cfg.kd_temperature):
            raise ConfigError(
                f"data.teacher does not match the model: the teacher cache holds encoder "
                f"{cached[0]} layer {cached[1]}, K={cached[2]}, tau={key['temperature']}; the "
                f"model has encoder {mine[0]} layer {mine[1]}, model.kd_top_k={mine[2]}, "
                f"model.kd_temperature={self.cfg.kd_temperature} (data.teacher interpolates "
                "them from model.*: do not override it apart)"
            )

    @torch.no_grad()
    def fit_coder(self, batches) -> None:
        """Fits the coder on the first ~FIT_TOKENS real tokens of ``batches``; under DDP rank
        0's fit is sent to every rank, so all decode alike."""
        states, masks, tokens = [], [], 0
        for batch in batches:
            batch = {k: v.to(self.device) for k, v in batch.items()}
            states.append(self.hidden_states(batch).float())
            masks.append(batch["attention_mask"])
            tokens += int(batch["attention_mask"].sum())
            if tokens >= FIT_TOKENS:
                break
        self.core.fit(torch.cat(states), torch.cat(masks))
        if self._trainer is not None:  # None outside a Trainer: one process, nothing to send
            for buffer in self.core.buffers():
                buffer.copy_(self._trainer.strategy.broadcast(buffer, src=0))
        log.info("%s: fitted on %d real tokens", type(self.core).__name__, tokens)

    def fingerprint_bytes(self) -> int:
        return len(bytes.fromhex(self.encoder.fingerprint))

    def _shared_step(self, batch: dict, stage: str) -> Tensor:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        h = self.hidden_states(batch)
        out = self.core(h, mask)
        teacher = self.teacher(batch, h)
        student, per_token = None, None
        if self.tied_loss(teacher):
            kl, ce, predicted = tied_sparse_kd_and_ce(
                out.refined,
                self.encoder.tied_weight,
                teacher,
                self.cfg.kd_temperature,
                ids,
                recompute=self.cfg.recompute_head_logits,
            )
            per_token = (kl, ce)
        else:
            student = self.encoder.logits(out.refined)
            predicted = student.argmax(-1)
        loss, terms = distillation_loss(
            student,
            teacher,
            ids,
            mask,
            self.cfg,
            refined=out.refined,
            target_h=h,
            unrefined=out.unrefined,
            per_token=per_token,
        )
        del student  # the loss keeps what its backward needs; the (B, T, V) logits can go now
        n_real = mask.sum(1).float()  # (B,)
        with torch.no_grad():
            values = {
                "loss": loss,
                "kl": terms["kl"],
                "ce": terms["ce"],
                "acc": token_accuracy(predicted, ids, mask),
                "acc_orig": token_accuracy(teacher_argmax(teacher), ids, mask),
            }
            if stage == "val":
                unrefined = self.encoder.argmax(out.unrefined.flatten(0, 1)).view_as(ids)
                values["acc_unrefined"] = token_accuracy(unrefined, ids, mask)
                values["ce_orig"] = masked_mean(teacher_ce(teacher, ids), mask)
            ideal = self.core.bits(out.code, self.fingerprint_bytes())  # (B,)
            # Validation logs the bytes actually sent; a training step keeps the ideal, which
            # needs no copy of the (B, T, d) mask to the CPU per step.
            if stage == "val":
                bits = self.core.sent_bits(out.code, self.fingerprint_bytes())
            else:
                bits = ideal
            per_code = {
                "keep_ratio": out.code.keep_ratio,
                "bits_per_token": bits / n_real,
                "bits_per_token_block_mean": bits / n_real,
                "compression_vs_fp32": n_real * self.encoder.d * 32 / bits,
                "compression_vs_ids": n_real * math.log2(self.encoder.vocab_size) / bits,
            }
            if stage == "val":
                per_code["bits_per_token_ideal"] = ideal / n_real
        tokens = mask.sum()
        for name, value in values.items():
            self.metrics[f"{stage}_{name}"].update(value.detach(), weight=tokens)
        for name, value in per_code.items():
            weight = n_real if name in TOTAL_RATES else 1.0
            self.metrics[f"{stage}_{name}"].update(value.float(), weight=weight)
        if stage == "val":
            self.distortion.update(ids, mask, h, out, predicted, teacher_argmax(teacher))
        return loss

    def gather_blocks(self, local: Tensor) -> Tensor:
        """(n, ...) per-rank rows -> (world * n, ...) rows of every rank (itself when alone); the
        ranks hold equally many validation blocks (the data module drops a remainder)."""
        gathered = self.all_gather(local)
        return gathered.flatten(0, 1) if self.trainer.world_size > 1 else gathered

    @functools.cached_property
    def tokenizer(self):
        """The encoder's tokenizer, loaded on first use (transformers: only when validating)."""
        from wavelab.wavgpt.model.encoder import load_tokenizer

        return load_tokenizer(self.hparams.encoder["name_or_path"])

    def block_texts(self, ids: Tensor, mask: Tensor) -> list[str]:
        """(N, T) ids and mask -> each block's text: its real ids decoded, special tokens
        dropped (what the ids carry, as the lossless references compress it)."""
        return [
            self.tokenizer.decode(row[m.bool()].tolist(), skip_special_tokens=True)
            for row, m in zip(ids.cpu(), mask.cpu())
        ]

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
        keep = not self.trainer.sanity_checking  # the sanity check sees only a few blocks
        vocab = self.encoder.vocab_size
        self.log_dict(self.distortion.compute(self.gather_blocks, self.block_texts, vocab, keep))

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
        # The learned lifting has its own learning rate (model.lifting_lr_scale × lr).
        lifting = [p for n, p in trainable.items() if n.startswith("dwt.")]
        grouped = {id(p) for p in decay + lifting}
        groups = [
            {
                "params": decay,
                "weight_decay": float(self.hparams.optimizer.get("weight_decay", 0.0)),
            },
            {
                "params": [p for p in trainable.values() if id(p) not in grouped],
                "weight_decay": 0.0,
            },
        ]
        if lifting:
            lr = self.cfg.lifting_lr_scale * float(self.hparams.optimizer["lr"])
            groups.append({"params": lifting, "weight_decay": 0.0, "lr": lr})
        # self._trainer: None outside a Trainer (the bench)
        optimizer = build_optimizer(self.hparams.optimizer, groups, self._trainer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": build_scheduler(optimizer, self.hparams.scheduler),
        }
