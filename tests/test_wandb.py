"""W&B: online/offline choice, the run id kept for resuming, sample tables and plot images."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import matplotlib
import pytest

from wavelab.callbacks.media import log_images
from wavelab.loggers import RUN_ID_FILE, wandb_defaults
from wavelab.run import train

matplotlib.use("Agg")


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_MODE", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc


def test_offline_without_credentials_online_with_and_wandb_mode_wins(
    make_cfg, no_credentials, monkeypatch, tmp_path
):
    cfg = make_cfg("logger=wandb")
    assert wandb_defaults(cfg.logger.wandb, cfg)["mode"] == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai login user password secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_defaults(cfg.logger.wandb, cfg)["mode"] == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert "mode" not in wandb_defaults(cfg.logger.wandb, cfg)  # left to wandb, which reads it


def test_the_run_id_is_made_once_per_run_dir(make_cfg, no_credentials):
    cfg = make_cfg("logger=wandb")
    first = wandb_defaults(cfg.logger.wandb, cfg)["id"]
    assert (Path(cfg.paths.output_dir) / RUN_ID_FILE).read_text() == first
    assert wandb_defaults(cfg.logger.wandb, cfg)["id"] == first


class PlotEveryValidation(L.Callback):
    """Stands in for an analysis callback that writes PNGs (e.g. WavGPT's plots)."""

    def on_validation_end(self, trainer, pl_module):
        import matplotlib.pyplot as plt

        path = Path(trainer.default_root_dir) / f"plot_{trainer.global_step}.png"
        plt.plot([0, 1], [1, 0])
        plt.savefig(path)
        plt.close()
        log_images(trainer, "analysis/plot", [path], captions=[f"step {trainer.global_step}"])


def test_samples_accumulate_in_one_table_and_plots_become_images(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg(
        "model=gpt",
        "logger=wandb",
        "callbacks.samples.every_n_validations=1",
        "+callbacks.plot._target_=test_wandb.PlotEveryValidation",
    )
    train(cfg)
    (files,) = Path(cfg.paths.output_dir).glob("wandb/offline-run-*/files")
    tables = files.glob("media/table/samples_*.table.json")
    latest = max(tables, key=lambda p: int(p.name.split("_")[1]))  # samples_<wandb step>_<hash>
    assert len(json.loads(latest.read_text())["data"]) == 2  # both validations' samples
    assert len(list(files.glob("media/images/analysis/plot_*.png"))) == 2
