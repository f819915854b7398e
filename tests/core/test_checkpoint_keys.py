"""Each weight has one state_dict key, also with ``compile=true``; a checkpoint records the
wavelab version that wrote it, and one of another version is refused in one line naming it."""

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


def test_a_checkpoint_records_its_class_and_version(tmp_path):
    import lightning as L

    from wavelab import __version__
    from wavelab.core.records import MODULE_KEY, VERSION_KEY

    checkpoint: dict = {}
    lm().on_save_checkpoint(checkpoint)
    assert checkpoint[MODULE_KEY] == "wavelab.wavegpt.module:LanguageModelModule"
    assert checkpoint[VERSION_KEY] == __version__
    assert issubclass(LanguageModelModule, L.LightningModule)


@pytest.mark.parametrize("version", [None, "0.0.9"])
def test_a_checkpoint_of_another_version_is_refused_naming_it(entry, tmp_path, version):
    from helpers.cli import assert_clean_error

    from wavelab.core.records import MODULE_KEY, VERSION_KEY

    module = lm()
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    checkpoint[MODULE_KEY] = "wavelab.wavegpt.module:LanguageModelModule"
    if version:
        checkpoint[VERSION_KEY] = version
    torch.save(checkpoint, tmp_path / "old.ckpt")
    result = entry("sample", f"ckpt_path={tmp_path / 'old.ckpt'}")
    assert_clean_error(result, "old.ckpt", f"wavelab {version or '< 0.1.0'}")
