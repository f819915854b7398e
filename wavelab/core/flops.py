"""Peak dense tensor-core FLOP/s of common accelerators, for model FLOPs utilisation (MFU).

Vendor datasheet figures for 16-bit (bf16, else fp16) matrix math *without* structured
sparsity, per device. Matched by substring of ``torch.cuda.get_device_name()`` in order, so the
more specific names come first (``h100 pcie`` before ``h100``, ``l40s`` before ``l4``).
"""

from __future__ import annotations

import torch

PEAK_FLOPS_16BIT: list[tuple[str, float]] = [
    ("h200", 989e12),
    ("h100 pcie", 756e12),
    ("h100 nvl", 835e12),
    ("h100", 989e12),  # SXM
    ("a100", 312e12),
    ("a800", 312e12),
    ("l40s", 362e12),
    ("l40", 181e12),
    ("l4", 121e12),
    ("a10g", 70e12),  # AWS's A10 variant
    ("a10", 125e12),
    ("a6000", 155e12),
    ("v100", 125e12),  # fp16 (no bf16), SXM2; PCIe is 112e12
    ("t4", 65e12),  # fp16
]

# MFU compares against 16-bit peaks, so it is only reported for 16-bit training.
_16BIT_PRECISIONS = ("bf16-mixed", "16-mixed", "bf16-true", "16-true", "bf16", "16")


def peak_flops(device: torch.device, precision: str) -> float | None:
    """Peak FLOP/s of one device at ``precision``; None where unknown (CPUs, fp32, new GPUs)."""
    if device.type != "cuda" or str(precision) not in _16BIT_PRECISIONS:
        return None
    name = torch.cuda.get_device_name(device).lower()
    return next((flops for key, flops in PEAK_FLOPS_16BIT if key in name), None)
