"""WavGPT core: decodable wavelet embeddings of a frozen encoder's hidden states.

    h (B, T, d) --LiftingDWT--> coeffs --FrequencyFilter--> kept (top keep_ratio, hard mask)
      --fake_quantize--> kept at value_bits (what a code sends)
      --LiftingDWT.inverse--> h_hat --Refiner--> refined --frozen LM head--> logits

``WavGPTCore.code`` stops after the quantization: it is all an encoder needs.

The frozen encoder and LM head live in ``encoder.py``; everything here works on given hidden
states, so it can be tested with random tensors.

Padding: the core zeroes the hidden states of padded steps before the transform. A coefficient
whose support (a run of 2^l steps) holds only padding is then exactly zero, and the filter never
keeps it. The budget of sample b is k_b = max(1, round(keep_ratio * n_real_b * d)) with n_real_b
its real tokens, so padding takes no budget. Coefficients straddling the real/padded boundary
are real data and compete normally; because of them a right-padded sample can have more than
n_real * d eligible coefficients, so keep_ratio = 1 is defined as "keep every eligible
coefficient" (lossless) rather than exactly n_real * d of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.code.quantize import (
    check_value_bits,
    check_value_scale,
    fake_quantize,
    group_scales,
)
from wavelab.wavgpt.distill import KD_MODES, TeacherTopK, full_kl, sparse_kd_and_ce
from wavelab.wavgpt.distortion import pooled_cosine
from wavelab.wavgpt.lifting import LiftingDWT, band_index, resolve_levels

FILTER_INITS = ("dct_like", "lowpass", "uniform")
# What codes the hidden states: the wavelet code of this file, or a baseline of baselines.py.
CODERS = ("wavelet", "pca", "scalar")


@dataclass
class WavGPTConfig:
    block_size: int = 256
    levels: int | None = None  # None: as many as block_size allows
    keep_ratio: float = 1 / 16
    learnable_lifting: bool = True  # False: fixed orthonormal Haar
    # The learned lifting's learning rate relative to the rest; conf says 0.1, and 1.0 here keeps
    # the two optimizer groups of runs saved before the key existed, so that they still resume.
    lifting_lr_scale: float = 1.0
    filter_learned: bool = True  # False: plain top-|coef| baseline
    filter_init: str = "dct_like"  # dct_like | lowpass | uniform
    filter_temperature: float = 0.25  # initial soft-mask temperature, relative to the mean score
    refine: bool = True
    refine_layers: int = 2
    refine_heads: int = 4
    refine_ff: int | None = None  # None: 4 * d
    dropout: float = 0.0
    coder: str = "wavelet"  # wavelet | pca | scalar (the baselines of baselines.py)
    pca_rank: int = 16  # the pca coder's kept principal directions, in [1, d]
    pca_block_mean: bool = False  # the pca coder also sends what its decoded block mean misses
    pca_block_mean_bits: int | None = None  # the bits of those d values; None: value_bits
    kd_temperature: float = 2.0
    kd: str = "sparse"  # sparse: KL over the teacher's top kd_top_k + the rest; full: whole vocab
    kd_top_k: int = 64
    kl_weight: float = 0.9
    ce_weight: float = 0.1
    hidden_mse_weight: float = 0.0
    embedding_weight: float = 0.0
    approx_mse_weight: float = 0.0
    logits_mse_weight: float = 0.0
    value_bits: int = 16  # 16: fp16 values; 8 or 4: integers with an fp16 scale per group
    value_scale: str = "code"  # the group of a scale at 8 or 4 bits: code | band

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the key, the bad value and what is allowed."""
        resolve_levels(self.block_size, self.levels)  # raises for block_size / levels
        _check_filter(self.keep_ratio, self.filter_init)
        check_value_bits(self.value_bits)
        if self.pca_block_mean_bits is not None:
            check_value_bits(self.pca_block_mean_bits, "model.pca_block_mean_bits")
        check_value_scale(self.value_scale)
        positive = {
            "filter_temperature": self.filter_temperature,
            "kd_temperature": self.kd_temperature,
            "refine_heads": self.refine_heads,
            "lifting_lr_scale": self.lifting_lr_scale,
        }
        if self.refine_ff is not None:
            positive["refine_ff"] = self.refine_ff
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"model.{key}={value} is invalid: must be > 0")
        if self.kd not in KD_MODES:
            raise ConfigError(f"model.kd={self.kd!r} is invalid: must be one of {KD_MODES}")
        if not (isinstance(self.kd_top_k, int) and self.kd_top_k >= 1):
            raise ConfigError(
                f"model.kd_top_k={self.kd_top_k!r} is invalid: must be an integer >= 1"
            )
        if self.kd == "sparse" and self.logits_mse_weight > 0:
            raise ConfigError(
                f"model.logits_mse_weight={self.logits_mse_weight} needs the teacher's full "
                "logits: set model.kd=full (and data.teacher_cache=false)"
            )
        if self.refine_layers < 0:
            raise ConfigError(f"model.refine_layers={self.refine_layers} is invalid: must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout} is invalid: must be in [0, 1)")
        if self.coder not in CODERS:
            raise ConfigError(f"model.coder={self.coder!r} is invalid: must be one of {CODERS}")
        if not (isinstance(self.pca_rank, int) and self.pca_rank >= 1):
            # Its upper bound, the encoder's width d, is checked where d is known (PCACore).
            raise ConfigError(f"model.pca_rank={self.pca_rank!r} is invalid: must be an int >= 1")
        weights = self.loss_weights()
        for key, value in weights.items():
            if value < 0:
                raise ConfigError(f"model.{key}_weight={value} is invalid: must be >= 0")
        if sum(weights.values()) == 0:
            raise ConfigError("model.*_weight are all 0: at least one loss weight must be > 0")

    def loss_weights(self) -> dict[str, float]:
        return {
            "kl": self.kl_weight,
            "ce": self.ce_weight,
            "hidden_mse": self.hidden_mse_weight,
            "embedding": self.embedding_weight,
            "approx_mse": self.approx_mse_weight,
            "logits_mse": self.logits_mse_weight,
        }


def _check_filter(keep_ratio: float, init: str) -> None:
    if not 0.0 < keep_ratio <= 1.0:
        raise ConfigError(f"model.keep_ratio={keep_ratio} is invalid: must be in (0, 1]")
    if init not in FILTER_INITS:
        raise ConfigError(f"model.filter_init={init!r} is invalid: must be one of {FILTER_INITS}")


def _band_logits(init: str, num_bands: int) -> Tensor:
    """Initial band importances (pre-sigmoid); band 0 = approx, higher = finer detail."""
    freq = torch.linspace(0.0, 1.0, num_bands)  # 0 = coarsest, 1 = finest
    if init == "uniform":
        return torch.zeros(num_bands)
    if init == "dct_like":
        # Like a JPEG quantisation table: a smooth fall-off with frequency, from sigmoid(2) ~ 0.88
        # for the approximation to sigmoid(-2) ~ 0.12 for the finest details.
        return 2.0 - 4.0 * freq
    # lowpass: the approximation and the coarsest detail dominate; each finer band is e^-4 times
    # less important, floored so that the sigmoid keeps a usable gradient.
    return (4.0 - 4.0 * torch.arange(num_bands, dtype=torch.float)).clamp(min=-6.0)


class FrequencyFilter(nn.Module):
    """Keep the top-k coefficients per sample: hard mask forward, straight-through backward.

    score = sigmoid(band_importance[band]) * sigmoid(dim_importance[c]) * |coef| (learned), or
    |coef| (``learned=False``, no parameters). The backward pass goes through
    soft = sigmoid((score - thr) / (temperature * mean_score)), thr the k-th largest score of the
    sample. Dividing by the sample's mean score makes the soft mask, like the hard top-k, invariant
    to a common rescaling of all scores, so the temperature is unitless; thr and the mean are not
    detached, so the gradient only rewards changing the *ranking*.
    """

    def __init__(
        self,
        d: int,
        levels: int,
        keep_ratio: float,
        learned: bool = True,
        init: str = "dct_like",
        temperature: float = 0.25,
    ) -> None:
        super().__init__()
        _check_filter(keep_ratio, init)
        self.d = d
        self.levels = levels
        self.keep_ratio = keep_ratio
        self.learned = learned
        if learned:
            self.band_importance = nn.Parameter(_band_logits(init, levels + 1))
            self.dim_importance = nn.Parameter(torch.zeros(d))
            self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    def budget(self, mask: Tensor, support: Tensor) -> Tensor:
        """(B,) long: coefficients to keep per sample, from its real tokens only."""
        n_real = mask.sum(dim=1)
        n_eligible = support.sum(dim=1) * self.d
        if self.keep_ratio == 1.0:
            return n_eligible
        k = torch.round(self.keep_ratio * n_real * self.d).long().clamp(min=1)
        return torch.minimum(k, n_eligible)

    def scores(self, coeffs: Tensor) -> Tensor:
        score = coeffs.abs()
        if self.learned:
            band = band_index(coeffs.shape[1], self.levels).to(coeffs.device)
            score = score * torch.sigmoid(self.band_importance)[band][:, None]
            score = score * torch.sigmoid(self.dim_importance)
        return score

    def forward(
        self, coeffs: Tensor, mask: Tensor, support: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """coeffs (B, T, d), mask (B, T) real tokens, support (B, T) eligible coefficient steps.

        Returns kept coefficients (B, T, d), hard 0/1 mask (B, T, d), k (B,) and the achieved keep
        ratio k / (n_real * d) (B,).
        """
        B, T, d = coeffs.shape
        k = self.budget(mask, support)
        eligible = support[:, :, None].expand(B, T, d).reshape(B, T * d)
        score = self.scores(coeffs).reshape(B, T * d)
        # Scores are >= 0, so -1 ranks every ineligible coefficient last; k <= n_eligible.
        ranked = score.masked_fill(~eligible, -1.0)
        # One topk over the largest budget, then a per-sample rank cut: no loop over samples.
        top_scores, top_idx = ranked.topk(int(k.max()), dim=1)  # (B, kmax), sorted descending
        keep_rank = torch.arange(top_idx.shape[1], device=coeffs.device) < k[:, None]
        hard = torch.zeros_like(score).scatter(1, top_idx, keep_rank.to(score.dtype))
        if self.learned:
            thr = top_scores.gather(1, k[:, None] - 1)  # (B, 1) k-th largest score
            scale = (score * eligible).sum(1, keepdim=True) / eligible.sum(1, keepdim=True)
            temp = self.log_temperature.exp() * scale.clamp(min=torch.finfo(score.dtype).tiny)
            soft = torch.sigmoid((score - thr) / temp) * eligible
            st = hard + soft - soft.detach()  # value: hard; gradient: soft
        else:
            st = hard
        kept = coeffs * st.reshape(B, T, d)
        ratio = k.to(coeffs.dtype) / (mask.sum(dim=1) * d)
        return kept, hard.reshape(B, T, d), k, ratio


class Refiner(nn.Module):
    """Residual token MLP, then a pre-norm transformer encoder; exactly the identity at init.

    The MLP's residual scale starts at 0 and the output projections of every attention and
    feed-forward block start at zero, so a fresh refiner passes h_hat through unchanged: training
    starts from the plain wavelet reconstruction, whose logits are already close to the teacher's,
    and the refiner only learns a correction (ReZero-style). There is no final LayerNorm because
    the frozen LM head expects hidden states on the encoder's own scale.
    """

    def __init__(
        self, d: int, layers: int, heads: int, ff: int, dropout: float = 0.0, enabled: bool = True
    ) -> None:
        super().__init__()
        self.enabled = enabled
        if not enabled:
            return
        if d % heads:
            raise ConfigError(
                f"model.refine_heads={heads} is invalid: must divide the encoder width d={d}"
            )
        self.mlp = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d), nn.Dropout(dropout)
        )
        self.mlp_scale = nn.Parameter(torch.zeros(()))
        self.encoder = None
        if layers > 0:
            layer = nn.TransformerEncoderLayer(
                d, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            for block in self.encoder.layers:
                for proj in (block.self_attn.out_proj, block.linear2):
                    nn.init.zeros_(proj.weight)
                    nn.init.zeros_(proj.bias)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        """h (B, T, d), mask (B, T) real tokens -> (B, T, d)."""
        if not self.enabled:
            return h
        h = h + self.mlp_scale * self.mlp(h)
        if self.encoder is not None:
            h = self.encoder(h, src_key_padding_mask=~mask.bool())
        return h


def build_refiner(cfg: WavGPTConfig, d: int) -> Refiner:
    """The refiner every coder decodes through: same size for the wavelet code and the baselines."""
    return Refiner(
        d,
        cfg.refine_layers,
        cfg.refine_heads,
        cfg.refine_ff or 4 * d,
        cfg.dropout,
        enabled=cfg.refine,
    )


def check_hidden_states(h: Tensor, mask: Tensor | None, d: int, block_size: int) -> Tensor:
    """Raises ValueError unless h is (B, T <= block_size, d) with a (B, T) mask holding a real
    token in every sample; returns the mask as bool (None: all real)."""
    if h.dim() != 3 or h.shape[-1] != d:
        raise ValueError(f"expected hidden states of shape (B, T, {d}), got {tuple(h.shape)}")
    B, T, _ = h.shape
    if T > block_size:
        raise ValueError(f"sequence length T={T} exceeds model.block_size={block_size}")
    mask = torch.ones(B, T, dtype=torch.bool, device=h.device) if mask is None else mask.bool()
    if mask.shape != (B, T):
        raise ValueError(f"expected a ({B}, {T}) attention mask, got {tuple(mask.shape)}")
    if not mask.any(dim=1).all():
        raise ValueError("every sample needs at least one real token (attention_mask is all 0)")
    return mask


@dataclass
class WavGPTOutput:
    coeffs: Tensor  # (B, T, d) all lifting coefficients, layout of LiftingDWT
    keep: Tensor  # (B, T, d) hard 0/1 mask of kept coefficients
    kept: Tensor  # (B, T, d) coeffs * mask at value_bits (straight-through gradients)
    h_hat: Tensor  # (B, T, d) inverse transform of kept, before refinement
    refined: Tensor  # (B, T, d) refined hidden states, for the frozen LM head
    k: Tensor  # (B,) coefficients kept per sample
    keep_ratio: Tensor  # (B,) achieved k / (n_real * d)
    scales: Tensor | None = None  # (B, G) fp16 scales of kept; G 1 (code) or levels+1 (band);
    # None at value_bits 16


class WavGPTCore(nn.Module):
    """Lifting DWT + frequency filter + inverse + refiner on given hidden states."""

    def __init__(self, cfg: WavGPTConfig, d: int) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.d = d
        self.dwt = LiftingDWT(d, cfg.block_size, cfg.levels, learnable=cfg.learnable_lifting)
        self.filter = FrequencyFilter(
            d,
            self.dwt.levels,
            cfg.keep_ratio,
            learned=cfg.filter_learned,
            init=cfg.filter_init,
            temperature=cfg.filter_temperature,
        )
        self.refiner = build_refiner(cfg, d)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> WavGPTOutput:
        """h (B, T, d) hidden states, mask (B, T) of real tokens (None: all real)."""
        mask = check_hidden_states(h, mask, self.d, self.cfg.block_size)
        coeffs, kept, keep, k, ratio, scales = self._code(h, mask)
        h_hat = self.dwt.inverse(kept)
        return WavGPTOutput(coeffs, keep, kept, h_hat, self.refiner(h_hat, mask), k, ratio, scales)

    def code(
        self, h: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """The encoder's half of ``forward``: transform, filter and quantize, no refiner.

        Returns coeffs (B, T, d), kept (B, T, d) at value_bits, keep (B, T, d) hard mask,
        k (B,), keep ratio (B,) and scales (B, G) (None at 16 bits), as in ``WavGPTOutput``.
        """
        return self._code(h, check_hidden_states(h, mask, self.d, self.cfg.block_size))

    def _code(
        self, h: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """``code`` of checked inputs: ``forward`` checks them once, for the refiner too."""
        coeffs = self.dwt(h * mask[..., None])
        kept, keep, k, ratio = self.filter(coeffs, mask, self.dwt.support_mask(mask))
        bits = self.cfg.value_bits
        if bits == 16:
            return coeffs, fake_quantize(kept, bits), keep, k, ratio, None
        T = h.shape[1]
        if self.cfg.value_scale == "band":
            groups = band_index(T, self.dwt.levels).to(h.device)  # (T,)
        else:
            groups = torch.zeros(T, dtype=torch.long, device=h.device)
        scales = group_scales(kept, keep, groups, int(groups.max()) + 1)  # (B, G)
        per_step = scales[:, groups, None].to(kept.dtype)  # (B, T, 1)
        return coeffs, fake_quantize(kept, bits, per_step), keep, k, ratio, scales


def masked_mean(per_token: Tensor, mask: Tensor) -> Tensor:
    """Mean of a (B, T) tensor over real tokens only."""
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


def distillation_loss(
    student_logits: Tensor,
    teacher: Tensor | TeacherTopK,
    input_ids: Tensor,
    attention_mask: Tensor,
    cfg: WavGPTConfig,
    refined: Tensor | None = None,
    target_h: Tensor | None = None,
    approx: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the WavGPT losses; every term is a mean over real tokens.

    kl:         tau^2 * KL(p_teacher || p_student), p = softmax(logits / tau) (the usual Hinton
                distillation term: the student is pushed to cover the teacher's distribution;
                tau^2 keeps its gradient scale independent of tau). Over the whole vocabulary
                when ``teacher`` is its (B, T, V) logits, over its top K plus a rest bucket when
                it is a ``TeacherTopK`` (sparse KD, ``wavelab.wavgpt.distill``).
    ce:         cross-entropy of the student's logits (tau = 1) against the input ids, i.e. the
                reconstruction of the text itself.
    hidden_mse: mean over d of (refined - target_h)^2.
    embedding:  1 - cosine of the mean-pooled refined and target_h (the block's sentence
                embedding, ``distortion.pooled_cosine``), a mean over blocks. KD and CE train
                the refined states for the head's logits only, and they drift from the original
                embedding (pooled cosine 0.1-0.3 in experiments/); this term anchors the
                block's embedding alone, where hidden_mse pulls every state back to h.
    approx_mse: mean over d of (approx - target_h)^2, approx = h_hat before refinement.
    logits_mse: mean over V of (student_logits - teacher_logits)^2 (full logits only).

    Terms with weight 0 are skipped, except kl and ce, which are always returned for logging.
    Returns (total, {name: term}) with unweighted terms.
    """
    tau = cfg.kd_temperature
    sparse = isinstance(teacher, TeacherTopK)
    if sparse:  # both terms in one fused pass over the vocabulary
        kl, ce = sparse_kd_and_ce(student_logits, teacher, tau, input_ids)  # (B, T) each
    else:
        kl = full_kl(student_logits, teacher, tau)
        ce = F.cross_entropy(student_logits.transpose(1, 2), input_ids, reduction="none")
    terms = {
        "kl": masked_mean(kl, attention_mask) * tau**2,
        "ce": masked_mean(ce, attention_mask),
    }
    mse_inputs = {
        "hidden_mse": (refined, target_h),
        "approx_mse": (approx, target_h),
        "logits_mse": (student_logits, None if sparse else teacher),
    }
    weights = cfg.loss_weights()
    needs_h = "refined and target_h"
    for name, (pred, target) in mse_inputs.items():
        if weights[name] == 0:
            continue
        if pred is None or target is None:
            needs = {
                "hidden_mse": needs_h,
                "approx_mse": "approx and target_h",
                "logits_mse": "the teacher's full logits (model.kd=full)",
            }
            raise ValueError(f"model.{name}_weight={weights[name]} needs {needs[name]}")
        terms[name] = masked_mean((pred - target.detach()).pow(2).mean(-1), attention_mask)
    if weights["embedding"] > 0:
        if refined is None or target_h is None:
            raise ValueError(f"model.embedding_weight={weights['embedding']} needs {needs_h}")
        terms["embedding"] = 1 - pooled_cosine(refined, target_h.detach(), attention_mask).mean()
    total = sum(weights[name] * value for name, value in terms.items())
    return total, terms


def token_accuracy(logits: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Fraction of real tokens whose argmax prediction is the input token."""
    return masked_mean((logits.argmax(-1) == input_ids).float(), attention_mask)
