"""The one mapping between wavelab's GPT and GPT-2: settings, weight names and layouts.

nanoGPT's names are GPT-2's, so a weight keeps its name both ways; what differs is the layout
of the four projections that GPT-2 stores as ``Conv1D`` (in, out), the transpose of a Linear's
(out, in), and the biases, which a wavelab GPT with ``bias=false`` lacks and GPT-2 always has
(zeros add nothing). GPT-2's attention-mask buffers are not weights.
"""

from __future__ import annotations

import torch

from wavelab.core.errors import ConfigError
from wavelab.wavegpt.model import GPTConfig

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# wavelab's activation and GPT-2's activation_function names for it
TO_GPT2_ACTIVATION = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}
FROM_GPT2_ACTIVATION = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
LAYER_NORM_EPS = 1e-5  # torch's nn.LayerNorm default, which wavelab's GPT uses
# The GPT-2 settings whose other values wavelab's GPT cannot compute, and the value it can.
FIXED = {
    "layer_norm_epsilon": LAYER_NORM_EPS,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False,
}


def gpt2_keys(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """GPT-2's weight names for ``config``'s trunk and their shapes (as GPT-2 stores them)."""
    C, V = config.n_embd, config.vocab_size
    per_layer = {
        "ln_1.weight": (C,),
        "ln_1.bias": (C,),
        "attn.c_attn.weight": (C, 3 * C),
        "attn.c_attn.bias": (3 * C,),
        "attn.c_proj.weight": (C, C),
        "attn.c_proj.bias": (C,),
        "ln_2.weight": (C,),
        "ln_2.bias": (C,),
        "mlp.c_fc.weight": (C, 4 * C),
        "mlp.c_fc.bias": (4 * C,),
        "mlp.c_proj.weight": (4 * C, C),
        "mlp.c_proj.bias": (C,),
    }
    keys = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (config.block_size, C)}
    for i in range(config.n_layer):
        keys.update({f"transformer.h.{i}.{k}": shape for k, shape in per_layer.items()})
    keys.update({"transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)})
    return keys


def is_conv1d(name: str) -> bool:
    return name.startswith("transformer.h.") and name.endswith(CONV1D)


def to_gpt2(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """A wavelab GPT's trunk weights (``GPT.state_dict()``) under GPT-2's names and layout."""
    out = {}
    for name, shape in gpt2_keys(config).items():
        tensor = state.get(name)
        if tensor is None:  # a bias wavelab does not have: zero
            tensor = torch.zeros(shape, dtype=state["transformer.wte.weight"].dtype)
        out[name] = (tensor.t() if is_conv1d(name) else tensor).contiguous()
    return out


def from_gpt2(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """GPT-2's weights as a wavelab GPT's trunk (``bias=true``): the position table cropped to
    ``config.block_size`` (the positions a shorter window reads)."""
    out = {}
    for name in gpt2_keys(config):
        tensor = state[name]
        if name == "transformer.wpe.weight":
            tensor = tensor[: config.block_size]
        out[name] = (tensor.t() if is_conv1d(name) else tensor).contiguous()
    out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def gpt2_config(config: GPTConfig) -> dict:
    """``GPT2Config`` keyword arguments for ``config``'s trunk; ConfigError naming a setting
    GPT-2 has no equivalent of."""
    if config.activation not in TO_GPT2_ACTIVATION:
        raise ConfigError(
            f"model.net.activation={config.activation!r} has no GPT-2 equivalent: export "
            f"handles {', '.join(TO_GPT2_ACTIVATION)}"
        )
    return {
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,  # 4 * n_embd
        "activation_function": TO_GPT2_ACTIVATION[config.activation],
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "tie_word_embeddings": True,
        "bos_token_id": None,  # wavelab's vocabularies have no special tokens
        "eos_token_id": None,
        **FIXED,
    }


def net_from_gpt2(hf: dict, key: str) -> dict:
    """wavelab's ``model.net`` architecture keys from a GPT-2 ``config.json`` (a dict);
    ConfigError naming ``key`` and the first setting wavelab cannot compute."""
    shown = f"{key}: config.json"
    activation = hf.get("activation_function", "gelu_new")
    if activation not in FROM_GPT2_ACTIVATION:
        raise ConfigError(
            f"{shown} has activation_function={activation!r}; allowed are "
            f"{', '.join(FROM_GPT2_ACTIVATION)}"
        )
    for name, value in FIXED.items():
        if name in hf and hf[name] != value:
            raise ConfigError(f"{shown} has {name}={hf[name]!r}; wavelab computes only {value!r}")
    if hf.get("n_inner") not in (None, 4 * hf.get("n_embd", 0)):
        raise ConfigError(f"{shown} has n_inner={hf['n_inner']!r}; wavelab's MLP is 4 * n_embd")
    if hf.get("tie_word_embeddings", True) is not True:
        raise ConfigError(f"{shown} has tie_word_embeddings=false; wavelab ties them")
    net = {"bias": True, "activation": FROM_GPT2_ACTIVATION[activation]}
    for name in ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions"):
        value = hf.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{shown} has {name}={value!r}; need a positive integer")
        net[name] = value
    if net["n_embd"] % net["n_head"]:
        raise ConfigError(f"{shown} has n_embd={net['n_embd']} not divisible by n_head")
    return net
