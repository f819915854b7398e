"""W&B: online/offline choice, the run id kept for resuming, sample tables and plot images."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import matplotlib
import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

import wavelab.core.config
from wavelab.callbacks.media import log_images
from wavelab.core.hydra_callbacks import swept_keys
from wavelab.core.loggers import (
    RUN_ID_FILE,
    build_loggers,
    finish_wandb,
    run_group,
    short_names,
    short_value,
    wandb_defaults,
)
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
    # A test-only callback: let wavelab build it, as it would one of conf/'s own.
    allowed = wavelab.core.config.config_targets() | {"test_wandb.PlotEveryValidation"}
    monkeypatch.setattr(wavelab.core.config, "config_targets", lambda: allowed)
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


@pytest.mark.parametrize(
    ("params", "command_line", "swept"),
    [
        # a grid on the command line: the comma lists vary, single values do not
        (
            {},
            ["model=gpt", "model.net.n_layer=1,2", "model.optimizer.lr=1e-3,3e-4"],
            ["model.net.n_layer", "model.optimizer.lr"],
        ),
        # an experiment's grid (hydra.sweeper.params), plus a range on the command line
        (
            {"model": "gpt,wavegpt", "seed": "1,2"},
            ["data.block_size=range(32,65,32)"],
            ["model", "seed", "data.block_size"],
        ),
        # Optuna's search space, two of its keys fixed on the command line
        (
            {
                "model.optimizer.lr": "tag(log, interval(1e-4, 3e-3))",
                "model.net.n_layer": "range(2, 6)",
                "model.net.n_embd": "choice(64, 128)",
            },
            ["model.net.n_layer=1", "model.net.n_embd=16"],
            ["model.optimizer.lr"],
        ),
    ],
)
def test_swept_keys_are_the_ones_with_several_values(params, command_line, swept):
    hydra = OmegaConf.create({"sweeper": {"params": params}, "overrides": {"task": command_line}})
    assert swept_keys(hydra) == swept


def test_run_names_are_short_and_unambiguous():
    assert short_names(["model.net.n_layer", "model.optimizer.lr"]) == {
        "model.net.n_layer": "n_layer",
        "model.optimizer.lr": "lr",
    }
    # two keys ending alike keep their full names; a group keeps its name
    assert short_names(["model.net.dropout", "model.encoder.dropout", "model"]) == {
        "model.net.dropout": "model.net.dropout",
        "model.encoder.dropout": "model.encoder.dropout",
        "model": "model",
    }
    assert [short_value(v) for v in ("0.000314159265", "3", "1e-3", "gpt", "-2")] == [
        "0.000314",
        "3",
        "0.001",
        "gpt",
        "-2",
    ]


def test_the_group_names_the_task_and_the_study(make_cfg):
    cfg = make_cfg("logger=wandb", "hparams_search=gpt_optuna")  # a multirun preset
    sweep_time = Path(HydraConfig.get().sweep.dir).name
    assert run_group(cfg.task_name, HydraConfig.get()) == f"train/gpt_optuna/{sweep_time}"
    assert run_group("train", None) == "train"


def test_wandb_is_not_told_the_anonymous_setting(make_cfg, monkeypatch, capfd):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg("model=gpt", "logger=wandb")
    (wandb_logger,) = [lg for lg in build_loggers(cfg) if type(lg).__name__ == "WandbLogger"]
    wandb_logger.experiment  # noqa: B018  (starts the W&B run)
    finish_wandb(0)
    assert "anonymous" not in capfd.readouterr().err
