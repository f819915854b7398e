"""WavGPT's one config: every value is checked when the config is built, once per model build,
and a built config cannot change afterwards."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from helpers.wavgpt_checkpoint import tiny_module

from wavelab.core.errors import ConfigError
from wavelab.wavgpt import config
from wavelab.wavgpt.config import PriorSettings, WavGPTConfig


@pytest.mark.parametrize("coder", ["wavelet", "pca", "scalar"])
def test_building_a_model_checks_its_config_once(tiny_encoder_dir, monkeypatch, coder):
    checks = []
    real = WavGPTConfig.__post_init__
    monkeypatch.setattr(WavGPTConfig, "__post_init__", lambda self: checks.append(real(self)))
    tiny_module(tiny_encoder_dir, coder=coder)
    assert len(checks) == 1


def test_a_built_config_cannot_change():
    cfg = WavGPTConfig(block_size=16)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.keep_ratio = 5.0  # would skip the check
    with pytest.raises(dataclasses.FrozenInstanceError):
        PriorSettings().weight = -1.0


def test_an_unknown_option_is_named_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"model\.keep_ration is not a WavGPT option; known: "):
        WavGPTConfig.from_options({"keep_ration": 0.1})


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"weight": -1}, "prior_weight=-1 is invalid"),
        ({"weight": True}, "prior_weight=True is invalid"),
        ({"beam": 0}, "prior_beam=0 is invalid"),
        ({"candidates": 2.0}, "prior_candidates=2.0 is invalid"),
        ({"beam": 0, "keys": ("weights", "beam", "candidates")}, "beam=0 is invalid"),
    ],
)
def test_prior_settings_name_the_key_the_user_typed(values, names):
    with pytest.raises(ConfigError, match=names):
        PriorSettings(**values)


def test_the_one_config_module_holds_every_wavgpt_setting():
    """The filter, coder, refiner and loss settings are WavGPTConfig's fields, the prior's are
    PriorSettings'; no other module of wavgpt/ defines a config or settings class (but the
    benchmarks, whose settings are how they measure, not what a WavGPT is)."""
    fields = {f.name for f in dataclasses.fields(WavGPTConfig)}
    assert {"keep_ratio", "filter_init", "coder", "refine_layers", "kd", "value_bits"} <= fields
    package = Path(config.__file__).parent
    elsewhere = [
        f"{path.relative_to(package)}: {node.name}"
        for path in package.rglob("*.py")
        if path != Path(config.__file__) and "bench" not in path.relative_to(package).parts
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and node.name.endswith(("Config", "Settings"))
    ]
    assert not elsewhere, elsewhere
