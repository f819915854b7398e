"""Every shipped config composes, and every experiment preset builds its objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from wavelab.config import CONFIG_DIR, instantiate

CONF = Path(CONFIG_DIR)
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_the_experiment_folder_is_on_the_search_path():
    assert "wavegpt_vs_gpt_shakespeare" in EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_presets_compose_and_instantiate(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}")
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = instantiate(cfg.model, **datamodule.model_kwargs())
    assert sum(p.numel() for p in model.parameters()) > 0
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.max_steps == cfg.trainer.max_steps
    for sweep_value in cfg.hydra.sweeper.get("params", {}).get("model", "").split(","):
        if sweep_value:
            swept = make_cfg(f"experiment={experiment}", f"model={sweep_value}", run=sweep_value)
            instantiate(swept.model, **datamodule.model_kwargs())


@pytest.mark.parametrize("model", options("model"))
def test_model_configs(make_cfg, model):
    cfg = make_cfg(f"model={model}")
    built = instantiate(cfg.model, tokenizer={"kind": "char", "chars": "abc"})
    assert built.net.config.vocab_size == 3


@pytest.mark.parametrize(
    ("group", "name"),
    [(g, n) for g in ("data", "trainer", "logger", "callbacks", "debug") for n in options(g)],
)
def test_group_options_compose(make_cfg, group, name):
    cfg = make_cfg(f"{group}={name}")
    if group == "data":
        instantiate(cfg.data)
    if group == "trainer":
        assert cfg.trainer._target_.endswith("Trainer")
