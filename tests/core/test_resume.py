"""Stopping half-way and resuming with resume_dir= ends exactly where one uninterrupted run does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wavelab.run import train

N = 8  # total steps; the interrupted run stops at N/2


@pytest.mark.slow
def test_resume_dir_matches_an_uninterrupted_run(make_cfg, train_cli, tmp_path):
    common = [
        "model=gpt",
        "model.scheduler.decay_steps=8",  # the schedule of the whole run, in both halves
        f"trainer.val_check_interval={N // 2}",
    ]
    whole = train(make_cfg(*common, f"trainer.max_steps={N}", "callbacks.samples=null"))

    train_cli([*common, f"trainer.max_steps={N // 2}", "logger=wandb"], tmp_path)
    (run,) = (tmp_path / "logs/train/runs").iterdir()
    assert json.loads((run / "metrics.json").read_text())["global_step"] == N // 2
    # Only key=value overrides on resume: the rest comes from the run's saved config.
    train_cli([f"resume_dir={run}", f"trainer.max_steps={N}"], tmp_path)

    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["global_step"] == N
    # Same weights, optimizer, schedule and data order: the same numbers, not just close ones.
    for key in ("val/loss", "val/acc", "train/loss"):
        assert resumed["final"][key] == whole[key], key
    # The continued run wrote into its own dir and re-attached to its W&B run.
    run_id = (run / "wandb_run_id").read_text()
    offline = sorted(p.name for p in (run / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(name.endswith(f"-{run_id}") for name in offline)
    assert len(list(Path(run, "checkpoints").glob("*.ckpt"))) == 2
