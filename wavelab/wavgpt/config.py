"""WavGPT's settings: one dataclass, the single source of its defaults (conf/model/wavgpt.yaml
documents each key and repeats these values), checked on construction."""

from __future__ import annotations

from dataclasses import dataclass

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.code.quantize import check_value_bits, check_value_scale
from wavelab.wavgpt.model.distill import KD_MODES
from wavelab.wavgpt.model.lifting import resolve_levels

FILTER_INITS = ("dct_like", "lowpass", "uniform")
# What codes the hidden states: the wavelet code of this file, or a baseline of baselines.py.
CODERS = ("wavelet", "pca", "scalar")


@dataclass
class WavGPTConfig:
    block_size: int = 256
    levels: int | None = None  # None: as many as block_size allows
    keep_ratio: float = 1 / 16
    learnable_lifting: bool = True  # False: fixed orthonormal Haar
    # The learned lifting's learning rate relative to the rest: at the full rate its scales can
    # grow until training collapses (experiments/README.md).
    lifting_lr_scale: float = 0.1
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
    unrefined_mse_weight: float = 0.0
    logits_mse_weight: float = 0.0
    value_bits: int = 16  # 16: fp16 values; 8 or 4: integers with an fp16 scale per group
    value_scale: str = "code"  # the group of a scale at 8 or 4 bits: code | band

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the key, the bad value and what is allowed."""
        resolve_levels(self.block_size, self.levels)  # raises for block_size / levels
        check_filter(self.keep_ratio, self.filter_init)
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
            "unrefined_mse": self.unrefined_mse_weight,
            "logits_mse": self.logits_mse_weight,
        }


def check_filter(keep_ratio: float, init: str) -> None:
    if not 0.0 < keep_ratio <= 1.0:
        raise ConfigError(f"model.keep_ratio={keep_ratio} is invalid: must be in (0, 1]")
    if init not in FILTER_INITS:
        raise ConfigError(f"model.filter_init={init!r} is invalid: must be one of {FILTER_INITS}")
