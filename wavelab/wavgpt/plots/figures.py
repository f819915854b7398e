"""Analysis plots of a WavGPT model: what the filter learned and what it keeps.

Three PNGs, computed on a fixed batch of validation blocks:

* ``band_importance.png``: sigmoid of the filter's learned band importances, approximation and
  details from coarse to fine (absent with ``filter_learned=false``, which has none);
* ``selection.png``: how often each coefficient is kept, averaged over the blocks and the d
  channels where it is eligible (its support holds a real token), as a time x band picture:
  one row per band, each coefficient stretched over the 2^level time steps it covers, i.e. the
  time-frequency tiling of the transform; blank where no block has a real token;
* ``band_energy.png``: mean squared coefficient per band under the current lifting steps (log
  scale), next to the fraction of each band the filter keeps.

The training callback ``wavelab.wavgpt.plots.callback.WavGPTPlots`` draws them with ``render``
during a run; ``python -m wavelab.wavgpt.plots ckpt_path=...`` (``wavelab/wavgpt/plots/__main__.py``) draws them
for a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend
from torch import Tensor

from wavelab.wavgpt.model.lifting import band_index

FIGURES = ("band_importance", "selection", "band_energy")


def band_labels(levels: int) -> list[str]:
    """Band 0 = approximation, then details from the coarsest (level L) to the finest (1)."""
    return ["approx", *(f"detail {lv}" for lv in range(levels, 0, -1))]


@torch.no_grad()
def analyse(module, input_ids: Tensor, attention_mask: Tensor) -> dict[str, np.ndarray | None]:
    """Statistics behind the figures, for one batch of blocks of a ``WavGPTModule``."""
    core, device = module.core, module.device
    ids, mask = input_ids.to(device), attention_mask.to(device).bool()
    code = core.code(module.encoder.hidden(ids, mask.long()), mask)
    _, T, d = code.coeffs.shape
    eligible = core.dwt.support_mask(mask).float()  # (B, T): coefficient steps with real data
    kept_t = code.keep.float().sum((0, 2))  # (T,) kept over blocks and channels
    eligible_t = eligible.sum(0) * d
    energy_t = (code.coeffs.float().pow(2) * eligible[..., None]).sum((0, 2))
    bands = band_index(T, core.dwt.levels).to(device)
    n_bands = core.dwt.num_bands

    def per_band(x: Tensor) -> Tensor:
        return torch.zeros(n_bands, device=device).index_add_(0, bands, x)

    band_eligible = per_band(eligible_t).clamp(min=1)
    importance = None
    if core.filter.learned:
        importance = torch.sigmoid(core.filter.band_importance.float()).cpu().numpy()
    return {
        "levels": np.array(core.dwt.levels),
        "importance": importance,
        "selection": (kept_t / eligible_t).cpu().numpy(),  # nan where nothing is eligible
        "energy": (per_band(energy_t) / band_eligible).cpu().numpy(),
        "kept": (per_band(kept_t) / band_eligible).cpu().numpy(),
    }


def tiling(selection: np.ndarray, levels: int) -> np.ndarray:
    """(T,) per-coefficient values -> (bands, T) image, each coefficient repeated over the time
    steps it covers (2^L for the approximation and detail L, 2^l for detail l)."""
    T = len(selection)
    rows = [np.repeat(selection[: T >> levels], 1 << levels)]
    for level in range(levels, 0, -1):
        rows.append(np.repeat(selection[T >> level : T >> (level - 1)], 1 << level))
    return np.stack(rows)


def render(stats: dict, out_dir: str | Path, title: str = "") -> list[Path]:
    """Writes the figures of ``analyse``'s statistics into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    levels = int(stats["levels"])
    labels = band_labels(levels)
    x = np.arange(len(labels))
    figures = {}

    if stats["importance"] is not None:
        fig = Figure(figsize=(7, 3.5))
        ax = fig.subplots()
        ax.bar(x, stats["importance"], color="tab:blue")
        ax.set(xticks=x, ylim=(0, 1), ylabel="σ(band importance)", title="learned band importance")
        ax.set_xticklabels(labels, rotation=45, ha="right")
        figures["band_importance"] = fig

    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    image = np.ma.masked_invalid(tiling(stats["selection"], levels))
    im = ax.imshow(image, aspect="auto", interpolation="nearest", cmap="magma", vmin=0, vmax=1)
    ax.set(xlabel="time step", title="selection frequency (blocks × channels)")
    ax.set_yticks(x, labels)
    fig.colorbar(im, ax=ax, label="fraction kept")
    figures["selection"] = fig

    fig = Figure(figsize=(10, 3.5))
    ax_energy, ax_kept = fig.subplots(1, 2)
    ax_energy.bar(x, stats["energy"], color="tab:orange")
    ax_energy.set(yscale="log", ylabel="mean coefficient²", title="energy per band")
    ax_kept.bar(x, stats["kept"], color="tab:green")
    ax_kept.set(ylim=(0, 1), ylabel="fraction kept", title="kept per band")
    for ax in (ax_energy, ax_kept):
        ax.set_xticks(x, labels, rotation=45, ha="right")
    figures["band_energy"] = fig

    paths = []
    for name, fig in figures.items():
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths
