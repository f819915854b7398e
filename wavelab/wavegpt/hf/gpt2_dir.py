"""Reading a local ``GPT2LMHeadModel`` dir (``save_pretrained``'s) for ``model.init_from``, safely.

Nothing is allocated before the dir is known to describe a GPT-2 that wavelab can build: its
``config.json`` is checked, then every weight's shape in the file's header (safetensors) or a
weights-only, memory-mapped load (``pytorch_model.bin``, a pickle: anything but plain tensors is
refused, never run) is compared with the shapes the config implies. A config that asks for an
enormous model whose weights are not there is refused by that comparison.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from wavelab.core.errors import ConfigError
from wavelab.wavegpt.hf.gpt2_map import gpt2_keys, net_from_gpt2
from wavelab.wavegpt.model import GPTConfig

KEY = "model.init_from"
SAFETENSORS, PICKLE = "model.safetensors", "pytorch_model.bin"


@dataclass
class GPT2Dir:
    path: Path
    net: dict  # wavelab's architecture keys from its config.json (n_positions among them)
    file: Path  # its weights


def _shown(init_from: str) -> str:
    return f"{KEY}={init_from!r}"


def read_gpt2_dir(init_from: str) -> GPT2Dir:
    """The dir ``init_from`` with its architecture and its weight shapes checked."""
    shown = _shown(init_from)
    if "://" in str(init_from):
        raise ConfigError(f"{shown} is refused: give a local dir saved with save_pretrained")
    path = Path(init_from).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{shown} is invalid: no such directory")
    try:
        hf = json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        raise ConfigError(f"{shown} is invalid: it has no config.json") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{shown}: config.json is unreadable: {e}") from None
    if not isinstance(hf, dict) or hf.get("model_type") != "gpt2":
        found = hf.get("model_type") if isinstance(hf, dict) else None
        raise ConfigError(
            f"{shown}: config.json has model_type={found!r}; wavelab starts from gpt2 only"
        )
    net = net_from_gpt2(hf, shown)
    if (path / SAFETENSORS).is_file():
        weights = path / SAFETENSORS
    elif (path / PICKLE).is_file():
        weights = path / PICKLE
    else:
        raise ConfigError(
            f"{shown} is invalid: it has neither {SAFETENSORS} nor {PICKLE} (sharded weights "
            "are not read)"
        )
    found = _shapes(weights, shown)
    expected = gpt2_keys(architecture(net, net["n_positions"]))
    for name, shape in expected.items():
        if name not in found:
            raise ConfigError(f"{shown}: {weights.name} has no {name!r}, which config.json implies")
        if found[name] != shape:
            raise ConfigError(
                f"{shown}: {name!r} is {found[name]} in {weights.name} but config.json implies "
                f"{shape}"
            )
    return GPT2Dir(path, net, weights)


def architecture(net: dict, block_size: int, **more) -> GPTConfig:
    """The GPTConfig of ``net`` (``read_gpt2_dir``'s) with a window of ``block_size``."""
    keys = {k: v for k, v in net.items() if k != "n_positions"}
    return GPTConfig(**keys, block_size=block_size, **more)


def _canonical(name: str) -> str:
    """GPT-2's names with the ``transformer.`` prefix that GPT2LMHeadModel's saves have (the
    original checkpoints store the bare GPT2Model's)."""
    if name.startswith(("transformer.", "lm_head.")):
        return name
    return "transformer." + name


def _shapes(weights: Path, shown: str) -> dict[str, tuple[int, ...]]:
    if weights.name == SAFETENSORS:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(weights), framework="pt") as f:
                names = list(f.keys())
                return {_canonical(k): tuple(f.get_slice(k).get_shape()) for k in names}
        except (SafetensorError, OSError, ValueError) as e:
            raise ConfigError(f"{shown}: {weights.name} is unreadable: {e}") from None
    return {k: tuple(t.shape) for k, t in _pickled(weights, shown).items()}


def _pickled(weights: Path, shown: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ConfigError(
            f"{shown}: {weights.name} is refused: a weights-only load fails ({first[:160]})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise ConfigError(f"{shown}: {weights.name} is not a dict of tensors")
    return {_canonical(k): t for k, t in state.items()}


def load_weights(gpt2: GPT2Dir) -> dict[str, torch.Tensor]:
    """The dir's weights under GPT2LMHeadModel's names (shapes already checked)."""
    if gpt2.file.name == SAFETENSORS:
        from safetensors.torch import load_file

        return {_canonical(k): t for k, t in load_file(str(gpt2.file)).items()}
    return _pickled(gpt2.file, _shown(str(gpt2.path)))
