"""Every shipped config is checked: each option of each config group and each experiment preset
composes through Hydra's search path and builds its objects (datamodule, model, callbacks,
loggers, Trainer) as ``wavelab.run`` builds them; every swept key exists; the entry configs
document every key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from helpers.cli import REPO
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from wavelab.core.config import CONFIG_DIR, instantiate
from wavelab.core.errors import ConfigError
from wavelab.run import build_trainer

CONF = Path(CONFIG_DIR)
# conf/experiment is a link to this folder: the presets join Hydra's search path through it.
EXPERIMENTS = sorted(p.stem for p in (REPO / "experiments").glob("*.yaml"))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def build(cfg):
    """The datamodule (set up), the model and the Trainer, as wavelab.run builds them."""
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = instantiate(cfg.model, **datamodule.model_kwargs())
    return datamodule, model, build_trainer(cfg)


def swept_keys_exist(cfg) -> None:
    """Every key a sweeper varies is a key of the composed config (a typo would add a new one),
    or a config group of it (study_point=r1,r2)."""
    absent = object()
    for key in cfg.hydra.sweeper.get("params") or {}:
        if key in cfg.hydra.runtime.choices:
            continue
        assert OmegaConf.select(cfg, key, default=absent) is not absent, key


def test_hydra_finds_every_preset_through_the_search_path():
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        found = GlobalHydra.instance().config_loader().get_group_options("experiment")
    GlobalHydra.instance().clear()
    assert len(EXPERIMENTS) >= 2 and found == EXPERIMENTS


# Presets that need the hub (a model or a dataset) are built here offline: with the tiny encoder
# and make_cfg's local corpus (data.path wins over data.hf_name).
OFFLINE_ENCODER = {"wavgpt_seed_setup"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_presets_compose_and_instantiate(make_cfg, experiment, request):
    offline = []
    if experiment in OFFLINE_ENCODER:
        offline = [f"model.encoder.name_or_path={request.getfixturevalue('tiny_encoder_dir')}"]
    cfg = make_cfg(f"experiment={experiment}", *offline, small=False)
    assert cfg.hydra.runtime.choices.experiment == experiment
    datamodule, model, trainer = build(cfg)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) > 0
    assert trainer.max_steps == cfg.trainer.max_steps
    swept_keys_exist(cfg)
    for swept_model in (cfg.hydra.sweeper.get("params") or {}).get("model", "").split(","):
        if swept_model:
            swept = make_cfg(
                f"experiment={experiment}", f"model={swept_model}", run=swept_model, small=False
            )
            instantiate(swept.model, **datamodule.model_kwargs())


def group_options():
    model_for = {"shakespeare_wordpiece": "model=wavgpt", "wavgpt": "model=wavgpt"}
    # The rate–distortion study's bundles: groups of its preset, not of the library's defaults.
    study = ("model=wavgpt", "experiment=wavgpt_rate_distortion")
    for group in ("data", "model", "trainer", "logger", "callbacks", "debug"):
        for name in options(group):
            model = (model_for.get(name, "model=gpt"),)
            yield pytest.param(model, group, name, id=f"{group}={name}")
    for group in ("study_method", "study_point"):
        for name in options(group):
            yield pytest.param(study, group, name, id=f"{group}={name}")


@pytest.mark.parametrize(("model", "group", "name"), group_options())
def test_group_options_compose_and_build(make_cfg, model, group, name):
    cfg = make_cfg(*model, f"{group}={name}")
    assert cfg.hydra.runtime.choices[group] == name
    if name == "fsdp" and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"fsdp.* requires a GPU"):
            build(cfg)
        return
    _, model, trainer = build(cfg)
    assert any(p.requires_grad for p in model.parameters())
    one_batch = cfg.trainer.get("fast_dev_run")
    assert trainer.max_steps == (1 if one_batch else cfg.trainer.max_steps)


@pytest.mark.parametrize("search", options("hparams_search"))
def test_hparams_search_presets_sweep_existing_keys(make_cfg, search):
    cfg = make_cfg(f"hparams_search={search}", small=False)
    assert cfg.hydra.sweeper.params and cfg.hydra.mode == RunMode.MULTIRUN
    swept_keys_exist(cfg)


def test_hub_encoder_config_says_what_to_do_offline(make_cfg, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = make_cfg("model=wavgpt", "model/encoder=bert_base_uncased", small=False)
    assert cfg.model.encoder.head == "mlm" and cfg.data.tokenizer == "bert-base-uncased"
    with pytest.raises(ConfigError, match=r"model.encoder.name_or_path='bert-base-uncased' .*hub"):
        instantiate(cfg.model)


# A mapping key at the start of a line (not a list item, not a comment).
KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w.@/-]*):(\s|$)")
# A key whose value is a block scalar (`|`, `|-`, `>`, ...): the lines below it are text, not keys.
BLOCK_SCALAR = re.compile(r":\s*[|>][-+0-9]*\s*(#.*)?$")
# Keys whose meaning is Hydra's or Python's, not ours: the defaults list, and the instantiation
# keys (`_target_` names its class, whose docs are the key's; `_partial_`/`_recursive_` are Hydra's).
SELF_EXPLAINED = {"defaults", "_target_", "_partial_", "_recursive_"}
# Every shipped config: the groups and entries under conf/, and the experiment presets, which
# conf/experiment links to (rglob does not follow that link).
CONFIG_FILES = sorted(CONF.rglob("*.yaml")) + sorted((REPO / "experiments").glob("*.yaml"))


def undocumented_keys(path: Path) -> list[str]:
    """Keys with neither a comment on their line nor a comment line right above them, at their
    indentation (a comment indented further continues the comment of the line above it)."""
    missing, previous, text_below = [], "", None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if text_below is not None and indent > text_below:
            continue  # a line of a block scalar's text
        text_below = None
        match = KEY.match(line)
        if match and match["key"] not in SELF_EXPLAINED:
            documented = "#" in line[match.end() :] or previous.startswith(match["indent"] + "#")
            if not documented:
                missing.append(f"{path.name}:{number}: {line.strip()}")
        if match and BLOCK_SCALAR.search(line):
            text_below = len(match["indent"])
        previous = line
    return missing


@pytest.mark.parametrize(
    "config", CONFIG_FILES, ids=[str(p.relative_to(REPO)) for p in CONFIG_FILES]
)
def test_every_config_documents_every_key(config):
    assert undocumented_keys(config) == []


def test_a_key_without_a_comment_is_found(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "# the seed\nseed: 1\nsteps: 2  # how many\nlr: 3\nnet:\n  - a: 1\n"
        "help:  # the help text\n  template: |-\n    Usage: text, not a key\n  other: 4\n"
        "width: 5  # a comment that goes on\n           # below the key\nheight: 6\n"
    )
    assert undocumented_keys(path) == [
        "c.yaml:4: lr: 3",
        "c.yaml:5: net:",
        "c.yaml:8: template: |-",
        "c.yaml:10: other: 4",
        "c.yaml:13: height: 6",
    ]


def test_wavgpt_defaults_have_one_source():
    """conf/model/wavgpt.yaml repeats WavGPTConfig's defaults: where the two disagree, a run
    from the config and a module built in code would be different models."""
    import dataclasses

    from wavelab.wavgpt.config import WavGPTConfig

    shipped = OmegaConf.load(Path(CONFIG_DIR) / "model" / "wavgpt.yaml")
    for field in dataclasses.fields(WavGPTConfig):
        if not OmegaConf.is_interpolation(shipped, field.name):
            assert shipped[field.name] == field.default, (field.name, field.default)


def test_prior_defaults_have_one_source():
    """conf/codec.yaml's prior_* keys repeat PriorSettings' defaults, and the study's conf/
    prior_eval.yaml its beam and candidates."""
    from wavelab.wavgpt.config import PriorSettings

    defaults = PriorSettings()
    codec = OmegaConf.load(Path(CONFIG_DIR) / "codec.yaml")
    assert (codec.prior_weight, codec.prior_beam, codec.prior_candidates) == (
        defaults.weight,
        defaults.beam,
        defaults.candidates,
    )
    study = OmegaConf.load(Path(CONFIG_DIR) / "prior_eval.yaml")
    assert (study.beam, study.candidates) == (defaults.beam, defaults.candidates)
    assert defaults.weight in study.weights
