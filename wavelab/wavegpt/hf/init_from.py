"""``model.init_from=<dir>``: a wavelab GPT or WaveGPT whose trunk starts as a GPT-2's.

The architecture keys (n_layer, n_head, n_embd, vocab_size, bias, activation) come from the
dir's config.json; the window (``block_size``, the data's) may be shorter than GPT-2's
``n_positions``, whose first rows it then reads. A WaveGPT's branch keeps its own init behind
its zero gate, so at step 0 it computes exactly the GPT-2's logits.
"""

from __future__ import annotations

from wavelab.core.errors import ConfigError
from wavelab.data.tokenizers import TextTokenizer
from wavelab.wavegpt.hf.gpt2_dir import KEY, GPT2Dir, load_weights
from wavelab.wavegpt.hf.gpt2_map import from_gpt2
from wavelab.wavegpt.model import GPT


def net_from_dir(net: dict, gpt2: GPT2Dir, tokenizer: TextTokenizer | None) -> dict:
    """``model.net`` with the dir's architecture keys; ConfigError if the window or the
    tokenizer does not fit it."""
    positions, vocab = gpt2.net["n_positions"], gpt2.net["vocab_size"]
    shown = f"{KEY}={str(gpt2.path)!r}"
    if net["block_size"] > positions:
        raise ConfigError(
            f"data.block_size={net['block_size']} is invalid with {shown}: its model reads at "
            f"most n_positions={positions} tokens"
        )
    if tokenizer is not None and tokenizer.vocab_size > vocab:
        raise ConfigError(
            f"data.tokenizer ({tokenizer.kind}, {tokenizer.vocab_size} ids) does not fit "
            f"{shown}, whose vocab_size is {vocab}: use its own, data.tokenizer=hf:<dir>"
        )
    return {**net, **{k: v for k, v in gpt2.net.items() if k != "n_positions"}}


def load_trunk(model: GPT, gpt2: GPT2Dir) -> None:
    """Copies the dir's weights into ``model``'s trunk (all but a WaveNet branch)."""
    state = from_gpt2(load_weights(gpt2), model.config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("wavenet") for k in missing):
        raise ValueError(f"GPT-2 mapping mismatch: missing {missing}, unexpected {unexpected}")
