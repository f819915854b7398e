"""End to end through Hydra composition of the real conf/ and the real Lightning Trainer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers.cli import assert_clean_error
from omegaconf import OmegaConf

from wavelab.core.errors import ConfigError
from wavelab.eval import evaluate
from wavelab.run import train
from wavelab.sample import sample


@pytest.mark.parametrize("model", ["gpt", "wavegpt"])
def test_fast_dev_run(make_cfg, model):
    cfg = make_cfg(f"model={model}", "debug=fdr")
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"])


@pytest.mark.parametrize("mode", ["prev_block", "causal"])
def test_short_run_writes_metrics_checkpoints_and_samples(make_cfg, mode):
    cfg = make_cfg(
        "model=wavegpt",
        f"model.net.wavenet.mode={mode}",
        "callbacks.samples.every_n_validations=1",
        "callbacks.samples.max_new_tokens=20",
    )
    metrics = train(cfg)
    for key in ("val/loss", "val/ppl", "val/bpc", "val/acc", "val/loss_best"):
        assert math.isfinite(metrics[key]), key
    assert metrics["val/loss_best"] <= metrics["val/loss"] + 1e-6
    assert metrics["val/bpc"] == pytest.approx(metrics["val/loss"] / math.log(2))
    run = Path(cfg.paths.output_dir)
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and len(ckpts) == 2
    assert len(list((run / "samples").glob("step_*.txt"))) == 2
    assert (run / "csv" / "metrics.csv").read_text().count("val/loss") >= 1


@pytest.mark.parametrize("model", ["gpt", "wavgpt"])
def test_runs_without_any_logger(make_cfg, model):
    cfg = make_cfg(f"model={model}", "logger=none", "callbacks.samples=null")
    metrics = train(cfg)
    assert math.isfinite(metrics["val/loss"])
    run = Path(cfg.paths.output_dir)
    assert (run / "metrics.json").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert not (run / "csv").exists()


def test_last_ckpt_follows_the_run_and_resuming_keeps_the_best(make_cfg):
    """With lr≈0 the validation loss never improves after the first validation, so the best
    checkpoint stays at step 2 while last.ckpt (what resume_dir restores) follows the run."""
    cfg_args = (
        "model=gpt",
        "callbacks.samples=null",
        "model.optimizer.lr=1e-30",  # updates vanish in fp32: the weights never change
        "model.scheduler.min_lr=0",
        "trainer.val_check_interval=2",
    )
    cfg = make_cfg(*cfg_args)
    train(cfg)
    ckpts = Path(cfg.paths.output_dir) / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "last.ckpt",
        next(p.name for p in ckpts.glob("step0000002-*.ckpt")),
    ]
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 6

    # Resuming keeps that best checkpoint: only files that no checkpointer tracks are stale (the
    # best one is tracked by callbacks.model_checkpoint, not by callbacks.last_checkpoint).
    train(make_cfg(*cfg_args, "trainer.max_steps=8", f"ckpt_path={ckpts / 'last.ckpt'}"))
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "last.ckpt",
        next(p.name for p in ckpts.glob("step0000002-*.ckpt")),
    ]
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 8


def test_same_seed_same_numbers(make_cfg):
    a = train(make_cfg("model=gpt", "callbacks.samples=null"))
    b = train(make_cfg("model=gpt", "callbacks.samples=null", run="again"))
    assert a["val/loss"] == b["val/loss"] and a["train/loss"] == b["train/loss"]


@pytest.mark.slow
def test_resume_continues_step_optimizer_and_schedule(make_cfg):
    first = make_cfg("model=wavegpt", "trainer.max_steps=3", "model.scheduler.decay_steps=9")
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == 3
    resumed = make_cfg(
        "model=wavegpt",
        "trainer.max_steps=9",
        "model.scheduler.decay_steps=9",
        f"ckpt_path={last}",
        run="resumed",
    )
    train(resumed)
    final = torch.load(
        Path(resumed.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True
    )
    assert final["global_step"] == 9
    assert final["lr_schedulers"][0]["last_epoch"] == 9
    adam_steps = final["optimizer_states"][0]["state"][0]["step"]
    assert int(adam_steps) == 9  # Adam moments continued rather than restarting at 0


@pytest.mark.slow
def test_sample_and_eval_entries(make_cfg, tmp_path):
    cfg = make_cfg("model=gpt")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    ckpt = run / "checkpoints" / "last.ckpt"
    # What the CLI's Hydra writes and eval reads back to find the run's data config.
    (run / ".hydra").mkdir()
    OmegaConf.save({k: v for k, v in cfg.items() if k != "hydra"}, run / ".hydra" / "config.yaml")

    texts = sample(
        make_cfg(
            f"ckpt_path={ckpt}",
            "prompt=ROMEO:",
            "max_new_tokens=40",
            "num_samples=2",
            config_name="sample",
        )
    )
    assert len(texts) == 2 and all(t.startswith("ROMEO:") and len(t) == 46 for t in texts)

    ev = evaluate(
        make_cfg(
            f"ckpt_path={ckpt}",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            config_name="eval",
        )
    )
    assert ev["val/loss"] == pytest.approx(metrics["val/loss"], rel=1e-5)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            ["model.net.n_embd=30", "model.net.n_head=4"],
            r"model.net.n_embd=30 is invalid: must be divisible",
        ),
        (
            ["model.net.wavenet.mode=sideways"],
            r"model.net.wavenet.mode='sideways' is invalid: allowed",
        ),
        (["model.net.wavenet.mode=block"], r"allow_future_leak=true"),
        (
            ["data.path=/no/such/corpus.txt"],
            r"data.path='/no/such/corpus.txt' is invalid: no such file",
        ),
    ],
)
def test_bad_configs_give_clear_errors(make_cfg, overrides, match):
    with pytest.raises(ConfigError, match=match):
        train(make_cfg("model=wavegpt", *overrides))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_trainer_without_a_gpu_says_what_to_use(make_cfg):
    with pytest.raises(
        ConfigError, match=r"trainer.accelerator=gpu.* cannot run here.*trainer=cpu"
    ):
        train(make_cfg("model=gpt", "trainer.accelerator=gpu"))


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["gpt", "wavgpt"])
def test_trains_on_a_gpu_with_bf16_autocast(make_cfg, model):
    cfg = make_cfg(f"model={model}", "trainer=gpu", "trainer.accelerator=gpu", "logger=none")
    assert cfg.trainer.precision == "bf16-mixed"
    metrics = train(cfg)
    assert math.isfinite(metrics["val/loss"]) and math.isfinite(metrics["train/loss"])
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()


def test_cli_reports_config_errors_without_traceback(entry, corpus_file):
    result = entry("run", "model=gpt", "model.net.n_head=3", f"data.path={corpus_file}")
    line = assert_clean_error(result, "model.net.n_embd=128", "model.net.n_head=3")
    assert "must be divisible by" in line
