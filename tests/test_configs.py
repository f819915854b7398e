"""Every shipped config composes, and every experiment preset builds its objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from wavelab.config import CONFIG_DIR, instantiate
from wavelab.errors import ConfigError

CONF = Path(CONFIG_DIR)
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def build(cfg):
    """The datamodule (set up) and the model, as wavelab.run builds them."""
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule, instantiate(cfg.model, **datamodule.model_kwargs())


def test_the_experiment_folder_is_on_the_search_path():
    assert {"wavegpt_vs_gpt_shakespeare", "wavgpt_minilm_shakespeare"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_presets_compose_and_instantiate(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", small=False)
    datamodule, model = build(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.max_steps == cfg.trainer.max_steps
    for swept_model in (cfg.hydra.sweeper.get("params") or {}).get("model", "").split(","):
        if swept_model:
            swept = make_cfg(
                f"experiment={experiment}", f"model={swept_model}", run=swept_model, small=False
            )
            instantiate(swept.model, **datamodule.model_kwargs())


@pytest.mark.parametrize("model", options("model"))
def test_model_configs(make_cfg, model):
    _, module = build(make_cfg(f"model={model}"))
    assert any(p.requires_grad for p in module.parameters())


def test_hub_encoder_config_says_what_to_do_offline(make_cfg, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = make_cfg("model=wavgpt", "model/encoder=bert_base_uncased", small=False)
    assert cfg.model.encoder.head == "mlm" and cfg.data.tokenizer == "bert-base-uncased"
    with pytest.raises(ConfigError, match=r"model.encoder.name_or_path='bert-base-uncased' .*hub"):
        instantiate(cfg.model)


@pytest.mark.parametrize(
    ("group", "name"),
    [(g, n) for g in ("data", "trainer", "logger", "callbacks", "debug") for n in options(g)],
)
def test_group_options_compose(make_cfg, group, name):
    model = "model=wavgpt" if name in ("shakespeare_wordpiece", "wavgpt") else "model=gpt"
    cfg = make_cfg(model, f"{group}={name}")
    assert cfg.trainer.max_steps > 0
