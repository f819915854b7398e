"""Each weight has one state_dict key, also with ``compile=true``; checkpoints of wavelab <= 0.1,
which held the network a second time (``_forward.*`` / ``_core.*``), still load."""

from __future__ import annotations

import pytest
import torch
from helpers.wavgpt_checkpoint import tiny_module

from wavelab.wavegpt.module import LanguageModelModule

NET = {"block_size": 8, "vocab_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 8}
OPTIM = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}
SCHED = {"warmup_steps": 0, "decay_steps": 1, "min_lr": 1e-4}


def lm(compile: bool = False) -> LanguageModelModule:
    return LanguageModelModule(net=NET, optimizer=OPTIM, scheduler=SCHED, compile=compile)


def weight_keys(module: torch.nn.Module, prefix: str) -> list[str]:
    return [k for k in module.state_dict() if k.startswith(prefix)]


@pytest.mark.parametrize("compile", [False, True])
def test_language_model_registers_its_network_once(compile):
    module = lm(compile)
    # exactly the network's own keys, each once: no `_forward.*` copy, no `_orig_mod.` prefix
    assert list(module.state_dict()) == [f"net.{k}" for k in module.net.state_dict()]


@pytest.mark.parametrize("compile", [False, True])
def test_wavgpt_registers_its_core_once(tiny_encoder_dir, compile):
    module = tiny_module(tiny_encoder_dir, compile=compile)
    keys = list(module.state_dict())
    assert not [k for k in keys if k.startswith("_core") or "_orig_mod" in k]
    assert weight_keys(module, "core.") == [f"core.{k}" for k in module.core.state_dict()]


def old_checkpoint(module: torch.nn.Module, owner: str, alias: str, compiled: bool) -> dict:
    """What wavelab <= 0.1 saved: every ``owner.*`` weight again under ``alias``."""
    state = dict(module.state_dict())
    prefix = alias + ("_orig_mod." if compiled else "")
    for key in [k for k in state if k.startswith(owner)]:
        state[prefix + key.removeprefix(owner)] = state[key].clone()
    return {"state_dict": state}


@pytest.mark.parametrize("compiled", [False, True])
def test_old_language_model_checkpoints_load(compiled):
    torch.manual_seed(0)
    saved = lm()
    checkpoint = old_checkpoint(saved, "net.", "_forward.", compiled)
    assert any(k.startswith("_forward.") for k in checkpoint["state_dict"])
    torch.manual_seed(1)
    loaded = lm()
    loaded.on_load_checkpoint(checkpoint)
    loaded.load_state_dict(checkpoint["state_dict"])  # strict: a leftover key would fail
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


def test_old_wavgpt_checkpoints_load(tiny_encoder_dir):
    torch.manual_seed(0)
    saved = tiny_module(tiny_encoder_dir)
    with torch.no_grad():
        saved.core.refiner.mlp_scale.fill_(0.5)
    checkpoint = old_checkpoint(saved, "core.", "_core.", compiled=False)
    loaded = tiny_module(tiny_encoder_dir)
    loaded.on_load_checkpoint(checkpoint)
    loaded.load_state_dict(checkpoint["state_dict"])
    assert loaded.core.refiner.mlp_scale.item() == 0.5


def test_a_checkpoint_without_the_drop_would_not_load():
    """The old keys are what strict loading refuses: the drop above is what makes them load."""
    checkpoint = old_checkpoint(lm(), "net.", "_forward.", compiled=False)
    with pytest.raises(RuntimeError, match=r"Unexpected key.*_forward"):
        lm().load_state_dict(checkpoint["state_dict"])
