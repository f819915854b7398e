"""Each weight has one state_dict key, also with ``compile=true``; a checkpoint records the
wavelab version and the checkpoint format that wrote it; every format this wavelab knows loads,
whichever version wrote it, and any other is refused in one line naming who wrote it and which
wavelab reads it."""

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


def test_a_checkpoint_records_its_class_version_and_format(tmp_path):
    import lightning as L

    from wavelab import __version__
    from wavelab.core.checkpoint_format import CHECKPOINT_FORMAT, FORMAT_KEY
    from wavelab.core.records import MODULE_KEY, VERSION_KEY

    checkpoint: dict = {}
    lm().on_save_checkpoint(checkpoint)
    assert checkpoint[MODULE_KEY] == "wavelab.wavegpt.module:LanguageModelModule"
    assert checkpoint[VERSION_KEY] == __version__
    assert checkpoint[FORMAT_KEY] == CHECKPOINT_FORMAT
    assert issubclass(LanguageModelModule, L.LightningModule)


def save(tmp_path, records: dict) -> tuple[LanguageModelModule, str]:
    """A language model's checkpoint with ``records`` (None: the key left out) as its writer's."""
    import lightning as L

    from wavelab.core.records import MODULE_KEY

    module = lm()
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    checkpoint["pytorch-lightning_version"] = L.__version__  # as Lightning's own saves have it
    checkpoint[MODULE_KEY] = "wavelab.wavegpt.module:LanguageModelModule"
    checkpoint.update({k: v for k, v in records.items() if v is not None})
    path = tmp_path / "written.ckpt"
    torch.save(checkpoint, path)
    return module, str(path)


@pytest.mark.parametrize(
    "records",
    [
        {"wavelab_version": "0.1.0", "wavelab_format": None},  # format 1: no number recorded
        {"wavelab_version": "0.1.0", "wavelab_format": 1},
        {"wavelab_version": "0.7.3", "wavelab_format": 2},  # another version, a known format
    ],
    ids=["format-1-unnumbered", "format-1", "format-2-other-version"],
)
def test_every_known_format_loads_whichever_version_wrote_it(tmp_path, records):
    from wavelab.core.checkpoints import load_module

    module, path = save(tmp_path, records)
    loaded = load_module(path)
    for name, tensor in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


@pytest.mark.parametrize(
    "records, names",
    [
        ({"wavelab_version": None, "wavelab_format": None}, ["wavelab < 0.1.0", "formats 1-2"]),
        ({"wavelab_version": "0.0.9", "wavelab_format": None}, ["wavelab 0.0.9", "formats 1-2"]),
        (
            {"wavelab_version": "0.4.0", "wavelab_format": 7},
            ["format 7", "wavelab 0.4.0", "formats 1-2", "read it with wavelab 0.4.0 or a newer"],
        ),
        ({"wavelab_version": "0.1.0", "wavelab_format": 0}, ["format 0", "no format any"]),
    ],
    ids=["no-version", "older-version", "newer-format", "no-such-format"],
)
def test_a_format_this_wavelab_cannot_read_is_refused_naming_who_can(
    entry, tmp_path, records, names
):
    from helpers.cli import assert_clean_error

    _, path = save(tmp_path, records)
    assert_clean_error(entry("sample", f"ckpt_path={path}"), "written.ckpt", *names)
