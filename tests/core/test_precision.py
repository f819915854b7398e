"""Every shipped precision trains every model with the default gradient clipping.

The gpu, ddp and fsdp trainer presets default to bf16-mixed, where fused AdamW and clipping used
to crash at the first optimizer step. On CPU, Lightning runs ``precision=16-mixed`` as bf16-mixed;
float16 with its GradScaler is exercised through Lightning's MixedPrecision plugin on CPU instead.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers.small import compose_config

from wavelab.core.config import CONFIG_DIR
from wavelab.run import train

MODELS = ["gpt", "wavegpt", "wavgpt"]
FAST = ["trainer.max_steps=2", "trainer.val_check_interval=2", "callbacks.samples=null"]


def preset_precisions(tmp_path_factory) -> set[str]:
    out = set()
    for preset in sorted(Path(CONFIG_DIR, "trainer").glob("*.yaml")):
        cfg = compose_config([f"trainer={preset.stem}"], tmp_path_factory.mktemp("compose"))
        out.add(str(cfg.trainer.precision))
    return out


def test_the_shipped_presets_use_the_precisions_tested_here(tmp_path_factory):
    assert preset_precisions(tmp_path_factory) == {"32-true", "bf16-mixed"}


def assert_trained(metrics: dict) -> None:
    for key in ("train/loss", "val/loss"):
        assert math.isfinite(metrics[key]), (key, metrics)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_precision_trains_with_default_clipping(make_cfg, model, precision):
    cfg = make_cfg(f"model={model}", f"trainer.precision={precision}", *FAST)
    assert cfg.trainer.gradient_clip_val > 0  # the default clipping stays on
    assert_trained(train(cfg))


@pytest.mark.parametrize("model", ["gpt", "wavgpt"])
def test_float16_with_grad_scaler_trains_with_default_clipping(make_cfg, model):
    plugins = (
        "trainer.plugins=[{_target_: wavelab.core.checkpoint_io.AtomicCheckpointIO}, "
        "{_target_: lightning.pytorch.plugins.precision.MixedPrecision, "
        "precision: 16-mixed, device: cpu}]"
    )
    cfg = make_cfg(f"model={model}", "trainer.precision=null", plugins, *FAST)
    assert_trained(train(cfg))


@pytest.mark.parametrize(
    ("precision", "clip", "fused"),
    [("32-true", 1.0, True), ("bf16-mixed", 1.0, False), ("bf16-mixed", 0.0, True)],
)
def test_fused_adamw_stays_on_wherever_lightning_allows_it(precision, clip, fused):
    """The fused kernel is the benchmarks' speed: only mixed precision with clipping loses it."""
    import lightning as L
    import torch

    from wavelab.core.optim import build_optimizer

    trainer = L.Trainer(
        accelerator="cpu", precision=precision, gradient_clip_val=clip, logger=False
    )
    cfg = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3, "fused": True}
    optimizer = build_optimizer(cfg, [{"params": [torch.nn.Parameter(torch.zeros(2))]}], trainer)
    assert bool(optimizer.defaults["fused"]) is fused
