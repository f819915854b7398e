"""A GPT or WaveGPT checkpoint as a model dir that ``transformers`` loads.

``model=gpt``: a plain ``GPT2LMHeadModel`` (config.json, model.safetensors), no remote code.
WaveGPT: ``WaveGPTForCausalLM`` with its modeling file in the dir and an ``auto_map``, for
``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)``. Both carry the
checkpoint's tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import torch

from wavelab.core.errors import ConfigError
from wavelab.wavegpt.hf.gpt2_map import gpt2_config, to_gpt2
from wavelab.wavegpt.hf.tokenizer_files import save_tokenizer
from wavelab.wavegpt.model import GPT

EXPORTABLE_MODES = ("prev_block", "causal")


def gpt2_model(net: GPT):
    """The ``GPT2LMHeadModel`` that computes what ``net`` (a GPT without a branch) does."""
    from transformers import GPT2Config, GPT2LMHeadModel

    state = to_gpt2(net.state_dict(), net.config)
    model = GPT2LMHeadModel(GPT2Config(**gpt2_config(net.config)))
    model.load_state_dict({**state, "lm_head.weight": state["transformer.wte.weight"]})
    return model


def wavegpt_model(net: GPT):
    """The ``WaveGPTForCausalLM`` that computes what ``net`` (a WaveGPT) does, registered for
    the Auto classes so that its save carries the modeling file."""
    from wavelab.wavegpt.hf.modeling_wavegpt import WaveGPTConfig, WaveGPTForCausalLM

    wn = net.config.wavenet
    if wn.mode not in EXPORTABLE_MODES:
        raise ConfigError(
            f"model.net.wavenet.mode={wn.mode!r} has no causal-LM equivalent (every position "
            f"reads the window's last token): export handles {', '.join(EXPORTABLE_MODES)}"
        )
    WaveGPTConfig.register_for_auto_class()
    WaveGPTForCausalLM.register_for_auto_class("AutoModelForCausalLM")
    config = WaveGPTConfig(
        wavenet_mode=wn.mode,
        wavenet_n_layers=wn.n_layers,
        wavenet_channels=wn.channels,
        **gpt2_config(net.config),
    )
    own = net.state_dict()
    state = {
        name.replace("transformer.ln_f.", "ln_f."): tensor
        for name, tensor in to_gpt2(own, net.config).items()
    }
    state.update({k: v for k, v in own.items() if k.startswith("wavenet")})
    state["lm_head.weight"] = state["transformer.wte.weight"]
    model = WaveGPTForCausalLM(config)
    model.load_state_dict(state)
    return model


def write_model_dir(module, out: Path) -> None:
    """Writes ``module`` (a LanguageModelModule) as a model dir into the new dir ``out``."""
    if module.tokenizer is None:
        raise ConfigError("the checkpoint has no tokenizer; an exported model needs one")
    net = module.net  # its weights are copied (and cast to the export's float32) by load_state_dict
    with torch.no_grad():
        model = gpt2_model(net) if net.mode is None else wavegpt_model(net)
    model.save_pretrained(str(out))
    save_tokenizer(module.tokenizer, out)
