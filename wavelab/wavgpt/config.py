"""Every setting that shapes a WavGPT, in one module: ``WavGPTConfig`` (encoder states -> code
-> refined states: the coder, filter, refiner, losses and value format) and ``PriorSettings``
(decoding a code under a language-model prior). Each is the single source of its defaults
(conf/model/wavgpt.yaml and conf/codec.yaml document each key, and a test ties their values to
these), and each value is checked here, once, when the object is built; nothing downstream
checks it again. Both are frozen, so a checked object stays checked."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.code.quantize import check_value_bits, check_value_scale

FILTER_INITS = ("dct_like", "lowpass", "uniform")
# sparse: KL over the teacher's top kd_top_k tokens plus one bucket for the rest; full: all.
KD_MODES = ("sparse", "full")
# What codes the hidden states: the wavelet code (model/core.py) or a baseline (model/baselines.py).
CODERS = ("wavelet", "pca", "scalar")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def max_levels(block_size: int) -> int:
    """The largest L such that block_size is divisible by 2**L."""
    if block_size < 1:
        raise ConfigError(f"model.block_size={block_size} is invalid: must be a positive integer")
    return (block_size & -block_size).bit_length() - 1


def resolve_levels(block_size: int, levels: int | None) -> int:
    """``levels`` as given, or as many as block_size allows; raises ConfigError if impossible."""
    most = max_levels(block_size)
    if levels is None:
        if most == 0:
            raise ConfigError(
                f"model.block_size={block_size} is invalid: it must be even so that at least one "
                "wavelet level fits"
            )
        return most
    if levels < 1:
        raise ConfigError(
            f"model.levels={levels} is invalid: must be >= 1 (or null for the maximum)"
        )
    if block_size % 2**levels:
        raise ConfigError(
            f"model.block_size={block_size} is not divisible by 2**model.levels={2**levels}: use "
            f"model.levels <= {most}, or a model.block_size that is a multiple of {2**levels}"
        )
    return levels


@dataclass(frozen=True)
class WavGPTConfig:
    block_size: int = 256
    levels: int | None = None  # None: as many as block_size allows
    keep_ratio: float = 1 / 16
    learnable_lifting: bool = True  # False: fixed orthonormal Haar
    # The learned lifting's learning rate relative to the rest: at the full rate its scales can
    # grow until training collapses (experiments/wavgpt_rate_distortion.md).
    lifting_lr_scale: float = 0.1
    filter_learned: bool = True  # False: plain top-|coef| baseline
    filter_init: str = "dct_like"  # dct_like | lowpass | uniform
    filter_temperature: float = 0.25  # initial soft-mask temperature, relative to the mean score
    refine: bool = True
    refine_layers: int = 2
    refine_heads: int = 4
    refine_ff: int | None = None  # None: 4 * d
    dropout: float = 0.0
    coder: str = "wavelet"  # wavelet | pca | scalar
    pca_rank: int = 16  # the pca coder's kept principal directions, in [1, d]
    pca_block_mean: bool = False  # the pca coder also sends what its decoded block mean misses
    pca_block_mean_bits: int | None = None  # the bits of those d values; None: value_bits
    kd_temperature: float = 2.0
    kd: str = "sparse"  # sparse: KL over the teacher's top kd_top_k + the rest; full: whole vocab
    kd_top_k: int = 64
    recompute_head_logits: bool = True  # tied head, sparse KD: make the logits again in backward
    kl_weight: float = 0.9
    ce_weight: float = 0.1
    hidden_mse_weight: float = 0.0
    embedding_weight: float = 0.0
    unrefined_mse_weight: float = 0.0
    logits_mse_weight: float = 0.0
    value_bits: int = 16  # 16: fp16 values; 8 or 4: integers with an fp16 scale per group
    value_scale: str = "code"  # the group of a scale at 8 or 4 bits: code | band

    @classmethod
    def from_options(cls, options: Mapping) -> WavGPTConfig:
        """The config from ``model.*`` options (plain values); ConfigError naming an unknown key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"model.{unknown[0]} is not a WavGPT option; known: {', '.join(sorted(known))}"
            )
        return cls(**options)

    def __post_init__(self) -> None:
        """Raise ConfigError naming the key, the bad value and what is allowed."""
        resolve_levels(self.block_size, self.levels)  # raises for block_size / levels
        if not (_is_number(self.keep_ratio) and 0.0 < self.keep_ratio <= 1.0):
            raise ConfigError(f"model.keep_ratio={self.keep_ratio!r} is invalid: must be in (0, 1]")
        if self.filter_init not in FILTER_INITS:
            raise ConfigError(
                f"model.filter_init={self.filter_init!r} is invalid: must be one of {FILTER_INITS}"
            )
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
            if not (_is_number(value) and value > 0):
                raise ConfigError(f"model.{key}={value!r} is invalid: must be > 0")
        if not isinstance(self.recompute_head_logits, bool):
            raise ConfigError(
                f"model.recompute_head_logits={self.recompute_head_logits!r} is invalid: "
                "must be true or false"
            )
        if self.kd not in KD_MODES:
            raise ConfigError(f"model.kd={self.kd!r} is invalid: must be one of {KD_MODES}")
        if not _is_count(self.kd_top_k, 1):
            raise ConfigError(
                f"model.kd_top_k={self.kd_top_k!r} is invalid: must be an integer >= 1"
            )
        if self.kd == "sparse" and self.logits_mse_weight > 0:
            raise ConfigError(
                f"model.logits_mse_weight={self.logits_mse_weight} needs the teacher's full "
                "logits: set model.kd=full (and data.teacher_cache=false)"
            )
        if not _is_count(self.refine_layers, 0):
            raise ConfigError(
                f"model.refine_layers={self.refine_layers!r} is invalid: must be an integer >= 0"
            )
        if not (_is_number(self.dropout) and 0.0 <= self.dropout < 1.0):
            raise ConfigError(f"model.dropout={self.dropout!r} is invalid: must be in [0, 1)")
        if self.coder not in CODERS:
            raise ConfigError(f"model.coder={self.coder!r} is invalid: must be one of {CODERS}")
        if not _is_count(self.pca_rank, 1):
            # Its upper bound, the encoder's width d, is checked where d is known (PCACore).
            raise ConfigError(f"model.pca_rank={self.pca_rank!r} is invalid: must be an int >= 1")
        weights = self.loss_weights()
        for key, value in weights.items():
            if not (_is_number(value) and value >= 0):
                raise ConfigError(f"model.{key}_weight={value!r} is invalid: must be >= 0")
        if sum(weights.values()) == 0:
            raise ConfigError("model.*_weight are all 0: at least one loss weight must be > 0")

    @property
    def resolved_levels(self) -> int:
        """The lifting's levels: ``levels``, or as many as block_size allows."""
        return resolve_levels(self.block_size, self.levels)

    def loss_weights(self) -> dict[str, float]:
        return {
            "kl": self.kl_weight,
            "ce": self.ce_weight,
            "hidden_mse": self.hidden_mse_weight,
            "embedding": self.embedding_weight,
            "unrefined_mse": self.unrefined_mse_weight,
            "logits_mse": self.logits_mse_weight,
        }


@dataclass(frozen=True)
class PriorSettings:
    """How strongly and how widely a prior decodes (wavelab/wavgpt/codec/prior.py).

    ``keys`` are how the command that built it names the three fields (the codec's
    ``prior_weight``, ``prior_beam``, ``prior_candidates`` by default), so that an error names
    the key the user typed."""

    weight: float = 0.1  # λ: the prior's log-probabilities' weight; 0: the head alone
    beam: int = 4  # hypotheses kept per position
    candidates: int = 8  # the head's most likely tokens tried at each position
    keys: tuple[str, str, str] = dataclasses.field(
        default=("prior_weight", "prior_beam", "prior_candidates"), compare=False, repr=False
    )

    def __post_init__(self) -> None:
        weight_key, beam_key, candidates_key = self.keys
        if not (_is_number(self.weight) and self.weight >= 0):
            raise ConfigError(f"{weight_key}={self.weight!r} is invalid: must be a number >= 0")
        for key, value in ((beam_key, self.beam), (candidates_key, self.candidates)):
            if not _is_count(value, 1):
                raise ConfigError(f"{key}={value!r} is invalid: must be an integer >= 1")
        object.__setattr__(self, "weight", float(self.weight))
