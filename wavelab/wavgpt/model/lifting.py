"""A learnable lifting wavelet transform along the time axis of (B, T, d) hidden states.

One level of the transform splits the sequence into even and odd steps and runs the three lifting
steps per channel c (d channels, each with its own parameters):

    e, o   = x[0::2], x[1::2]
    r      = o - P[c] * e                  predict: r is what the even step fails to explain
    a      = e + U[c] * r                  update: a keeps the running mean
    approx = a * exp(log_sa[c])
    detail = -r * exp(log_sd[c])

Haar at init: P = 1, U = 1/2, exp(log_sa) = sqrt(2), exp(log_sd) = 1/sqrt(2), which gives
approx = (e + o) / sqrt(2) and detail = (e - o) / sqrt(2). The sign of the detail matches PyWavelets
(``pywt.dwt([1, 2], 'haar')`` gives cD = -1/sqrt(2)), so at init every band equals the
corresponding band of ``pywt.wavedec(x, 'haar', level=L, axis=1)`` exactly, not only up to sign.
The sign is a constant, not a parameter, so it can not drift.

The inverse undoes the steps in reverse order. Predict and update only ever add a function of the
*other* half, so they are invertible for any P and U. The scales are divided out, so they must
never reach zero: they are parametrised as exp(log_scale), which is positive for every finite
parameter and therefore keeps the transform exactly invertible whatever the optimiser does (a raw
scale could be pushed through zero, and a step that lands near it would blow up the inverse).

Coefficient layout, concatenated along T (the order of ``pywt.wavedec``, coarsest first):

    [ approx_L | detail_L | detail_{L-1} | ... | detail_1 ]
      T/2^L      T/2^L      T/2^(L-1)            T/2

where detail_l comes from level l (l = 1 is the first, finest split). detail_l therefore sits at
positions [T / 2^l, T / 2^(l-1)). Band indices, used by the frequency filter, are 0 for the
approximation and then 1..L for detail_L..detail_1, i.e. band index grows with frequency.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor


def band_index(T: int, levels: int) -> Tensor:
    """(T,) long: the band of each coefficient position, 0 = approx, L = finest detail."""
    bands = torch.zeros(T, dtype=torch.long)
    for level in range(1, levels + 1):
        bands[T >> level : T >> (level - 1)] = levels - level + 1
    return bands


class LiftingDWT(nn.Module):
    """Multi-level lifting DWT along dim 1 of (B, T, d) tensors; Haar at init, exact inverse."""

    def __init__(self, d: int, block_size: int, levels: int, learnable: bool = True) -> None:
        """``levels`` >= 1 with ``block_size`` divisible by 2**levels (WavGPTConfig checks and
        resolves them: ``resolved_levels``)."""
        super().__init__()
        self.d = d
        self.block_size = block_size
        self.levels = levels
        self.learnable = learnable
        shape = (self.levels, d)
        init = {
            "predict": torch.ones(shape),
            "update": torch.full(shape, 0.5),
            "log_approx_scale": torch.full(shape, 0.5 * math.log(2.0)),
            "log_detail_scale": torch.full(shape, -0.5 * math.log(2.0)),
        }
        for name, value in init.items():
            # Buffers for the fixed-Haar baseline: they still follow .to(device) and land in the
            # state_dict, but no optimiser can see them.
            if learnable:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    @property
    def num_bands(self) -> int:
        return self.levels + 1

    def _check(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.d:
            raise ValueError(f"expected a (B, T, {self.d}) tensor, got shape {tuple(x.shape)}")
        if x.shape[1] % 2**self.levels:
            raise ValueError(
                f"sequence length T={x.shape[1]} is not divisible by 2**levels={2**self.levels}"
            )

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, d) signal -> (B, T, d) coefficients in the layout of the module docstring."""
        self._check(x)
        details = []
        a = x
        for lv in range(self.levels):
            e, o = a[:, 0::2], a[:, 1::2]
            r = o - self.predict[lv] * e
            a = (e + self.update[lv] * r) * self.log_approx_scale[lv].exp()
            details.append(-r * self.log_detail_scale[lv].exp())
        return torch.cat([a, *reversed(details)], dim=1)

    def inverse(self, coeffs: Tensor) -> Tensor:
        """(B, T, d) coefficients -> (B, T, d) signal; exact for any parameter values."""
        self._check(coeffs)
        B, T, d = coeffs.shape
        a = coeffs[:, : T >> self.levels]
        for lv in reversed(range(self.levels)):
            n = T >> (lv + 1)  # detail of this level sits at [n, 2n)
            r = -coeffs[:, n : 2 * n] / self.log_detail_scale[lv].exp()
            e = a / self.log_approx_scale[lv].exp() - self.update[lv] * r
            o = r + self.predict[lv] * e
            a = torch.stack([e, o], dim=2).reshape(B, 2 * n, d)  # interleave e0 o0 e1 o1 ...
        return a

    def support_mask(self, mask: Tensor) -> Tensor:
        """(B, T) token mask -> (B, T) bool: coefficients whose support touches a real token.

        Each coefficient of a two-tap lifting transform depends on one contiguous run of 2^l time
        steps, so a coefficient is "real" iff any of those steps is; the rest are exactly zero
        when padded steps are zero, whatever the parameters.
        """
        details = []
        a = mask.bool()
        for _ in range(self.levels):
            a = a[:, 0::2] | a[:, 1::2]
            details.append(a)
        return torch.cat([a, *reversed(details)], dim=1)
