"""Value quantization of WavGPT codes, simulated in training with a straight-through estimator.

A code sends its kept values at ``value_bits``:

* 16: IEEE half precision (fp16); values beyond fp16's range are clamped to +-65504, never inf;
* 8 or 4: symmetric uniform integers q in [-L, L], L = 2^(bits-1) - 1 (127 or 7), with
  value = q / L * scale. The scale is the largest |value| of its group, rounded *up* to an fp16
  number (it is sent as fp16), so no value of the group is clipped. A group is a whole code
  (``value_scale=code``: one scale per code) or one wavelet band of a code (``band``).

``fake_quantize`` returns exactly what a receiver decodes from the sent bytes, with the identity
as its gradient, so the refiner learns to decode what is actually sent while the filter and the
lifting steps still get a gradient. ``quantize``/``dequantize`` are the integer side, for the
byte format.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wavelab.core.errors import ConfigError

VALUE_BITS = (4, 8, 16)
VALUE_SCALES = ("code", "band")
FP16_MAX = 65504.0
SCALE_BITS = 16  # every scale is sent as one fp16


def check_value_bits(bits: int, key: str = "model.value_bits") -> None:
    """A whole number of VALUE_BITS: 8.0 is refused too, or a checkpoint would record it and the
    byte format, which has integer widths only, could not write its codes."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in VALUE_BITS:
        raise ConfigError(f"{key}={bits!r} is invalid: must be one of {VALUE_BITS} (an integer)")


def check_value_scale(scale: str, key: str = "model.value_scale") -> None:
    if scale not in VALUE_SCALES:
        raise ConfigError(f"{key}={scale!r} is invalid: must be one of {VALUE_SCALES}")


def int_levels(bits: int) -> int:
    """L: the largest integer magnitude of a ``bits``-wide symmetric code (7 for 4 bits)."""
    return 2 ** (bits - 1) - 1


def fp16_ceil(x: Tensor) -> Tensor:
    """The smallest fp16 number >= x, as float32, clamped to fp16's largest finite value.

    x is rounded to the nearest fp16 number, and where that fell below x, stepped up to the next
    one. (A relative margin such as x * (1 + 2^-10) is not enough: below 2^-14 fp16's step is a
    fixed 2^-24, so a small x would still round down.) Zeros stay zero."""
    x = x.float().clamp(max=FP16_MAX)
    near = x.half()
    up = torch.nextafter(near, torch.full_like(near, float("inf")))
    return torch.where(near.float() < x, up, near).float()


def group_scales(values: Tensor, keep: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """(B, n_groups) scales: the largest |kept value| per code and group, fp16-representable.

    values, keep (B, T, d); groups (T,) long in [0, n_groups): the group of each position.
    An empty group gets scale 0 (nothing of it is sent: its values decode to 0)."""
    B = values.shape[0]
    peak = (values.detach().abs() * keep).amax(dim=-1)  # (B, T)
    out = torch.zeros(B, n_groups, dtype=peak.dtype, device=peak.device)
    out = out.scatter_reduce(1, groups.to(peak.device).expand(B, -1), peak, "amax")
    return fp16_ceil(out)


def quantize(values: Tensor, bits: int, scale: Tensor) -> Tensor:
    """Integer codes q in [-L, L] (int tensor) of values at ``bits`` in {4, 8}; scale broadcasts
    against values. A zero scale gives q = 0."""
    L = int_levels(bits)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(values / safe * L).clamp(-L, L).to(torch.int8)


def dequantize(q: Tensor, bits: int, scale: Tensor) -> Tensor:
    return q.float() / int_levels(bits) * scale


def round_values(values: Tensor, bits: int, scale: Tensor | None = None) -> Tensor:
    """What a receiver decodes: fp16 (clamped to its range) at 16 bits, else the dequantized
    integers (``scale`` needed, broadcasting against values). No gradient."""
    if bits == 16:
        return values.detach().clamp(-FP16_MAX, FP16_MAX).half().to(values.dtype)
    if scale is None:
        raise ValueError(f"value_bits={bits} needs a scale")
    return dequantize(quantize(values.detach(), bits, scale), bits, scale).to(values.dtype)


def fake_quantize(values: Tensor, bits: int, scale: Tensor | None = None) -> Tensor:
    """``round_values`` forward, identity backward (straight-through)."""
    return values + (round_values(values, bits, scale) - values).detach()
