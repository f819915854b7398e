"""WavGPT through Hydra composition of the real conf/ and a real Lightning fit (tiny encoder)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from wavelab.core.checkpoints import load_module
from wavelab.core.errors import ConfigError
from wavelab.run import train

CODE_METRICS = ("val/keep_ratio", "val/bits_per_token", "val/compression_vs_fp32")


def test_fast_run_logs_metrics_and_keeps_the_encoder_out_of_checkpoints(make_cfg):
    cfg = make_cfg("model=wavgpt")
    metrics = train(cfg)
    for key in (
        "val/loss",
        "val/acc",
        "val/acc_unrefined",
        "val/acc_orig",
        "val/ppl",
        "val/ppl_orig",
        "val/kl",
        "val/loss_best",
        *CODE_METRICS,
    ):
        assert math.isfinite(metrics[key]), key
    assert metrics["val/keep_ratio"] == pytest.approx(1 / 16, rel=0.1)
    # Honest accounting: 16-bit values plus positions cost more than 16 bits per kept value.
    assert metrics["val/bits_per_token"] > 16 * 32 / 16

    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert not any(k.startswith("encoder.model.") for k in state)
    assert state["encoder._extra_state"]["name_or_path"] == cfg.model.encoder.name_or_path
    module = load_module(str(ckpt))
    assert torch.equal(
        module.core.dwt.predict,
        torch.load(ckpt, weights_only=True)["state_dict"]["core.dwt.predict"],
    )


def test_keep_everything_without_refinement_matches_the_original_head(make_cfg):
    metrics = train(
        make_cfg(
            "model=wavgpt", "model.keep_ratio=1.0", "model.refine=false", "trainer.max_steps=3"
        )
    )
    assert metrics["val/acc"] == metrics["val/acc_orig"]
    assert metrics["val/acc_unrefined"] == metrics["val/acc_orig"]


@pytest.mark.parametrize(
    "baseline",
    [["model.learnable_lifting=false"], ["model.filter_learned=false"], ["model.refine=false"]],
)
def test_baselines_train(make_cfg, baseline):
    metrics = train(make_cfg("model=wavgpt", "debug=fdr", *baseline))
    assert math.isfinite(metrics["train/loss"])


def test_the_learned_lifting_can_learn_slower(make_cfg):
    from wavelab.core.config import instantiate

    def groups(*overrides):
        module = instantiate(make_cfg("model=wavgpt", "model.optimizer.lr=0.002", *overrides).model)
        names = {id(p): n for n, p in module.core.named_parameters()}
        optimizer = module.configure_optimizers()["optimizer"]
        # initial_lr: the peak that the schedule scales (lr is already its first step's)
        return [
            (g["initial_lr"], sorted(names[id(p)] for p in g["params"]))
            for g in optimizer.param_groups
        ]

    same = groups("model.lifting_lr_scale=1")  # its own group, at the others' lr
    assert len(same) == 3 and {lr for lr, _ in same} == {0.002}
    slower = groups()  # conf/model/wavgpt.yaml: 0.1
    assert len(slower) == 3 and slower[2][0] == pytest.approx(0.0002)
    assert same[2][1] == slower[2][1]
    lifting = [n for _, names in same for n in names if n.startswith("dwt.")]
    assert lifting and slower[2][1] == sorted(lifting)
    assert sorted(n for _, names in slower for n in names) == sorted(
        n for _, names in same for n in names
    )


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["model.keep_ratio=1.5"], r"model.keep_ratio=1.5 is invalid: must be in \(0, 1\]"),
        (["model.keep_ratio=0"], r"model.keep_ratio=0.* is invalid"),
        (
            ["data.block_size=48", "model.levels=5"],
            r"model.block_size=48 is not divisible by 2\*\*model.levels=32",
        ),
        (
            ["model.encoder.name_or_path=/no/such/encoder"],
            r"model.encoder.name_or_path='/no/such/encoder'",
        ),
        (["+model.keep_ratioo=0.5"], r"model.keep_ratioo is not a WavGPT option"),
        (["model.lifting_lr_scale=0"], r"model.lifting_lr_scale=0.* is invalid: must be > 0"),
    ],
)
def test_bad_configs_give_clear_errors(make_cfg, overrides, match):
    with pytest.raises(ConfigError, match=match):
        train(make_cfg("model=wavgpt", *overrides))
