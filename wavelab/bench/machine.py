"""What every benchmark does to the machine before it measures. Apart from ``wavelab.bench``
itself, which the entry imports to check its settings before torch is loaded."""

from __future__ import annotations

import os

import torch


def prepare(settings) -> tuple[float, float, float]:
    """Checks a benchmark's ``settings``, gives torch ``settings.threads`` intra-op threads
    (None: torch's default) and returns the load average before the run, for its report."""
    settings.validate()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    return os.getloadavg()
