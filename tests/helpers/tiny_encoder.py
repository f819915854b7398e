"""A tiny random BERT with a word-piece vocabulary, built in code: the encoder of the WavGPT tests.

``tiny_test_encoder()`` is the in-memory model; ``save_tiny_encoder(dir)`` saves it with a matching
tokenizer, so that ``FrozenEncoder(dir)`` and ``load_tokenizer(dir)`` load it offline like a real
encoder directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

# A word-piece vocabulary for tests: enough to spell any lowercase ASCII word.
_TINY_WORDS = ["the", "a", "of", "and", "to", "in", "is", "it", "wave", "let", "lab", "text"]
_TINY_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"-()")
TINY_VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + _TINY_CHARS
    + ["##" + c for c in _TINY_CHARS]
    + _TINY_WORDS
)


def tiny_test_encoder(
    vocab_size: int = len(TINY_VOCAB),
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
    word_std: float = 0.3,
) -> BertForMaskedLM:
    """A randomly initialised BertForMaskedLM built in code (no files); same seed, same weights.

    The word embeddings get std ``word_std`` instead of BERT's 0.02, so token identity dominates
    the hidden states and the tied head (h @ E^T) recovers the input tokens with a peaked but not
    one-hot distribution, as a trained encoder does on unmasked tokens. That gives distillation
    tests a teacher worth imitating; the random MLM head (``cls``) is no such teacher.
    """
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(config).eval()
        nn.init.normal_(model.get_input_embeddings().weight, std=word_std)
    return model


def save_tiny_encoder(directory: str | Path, **kwargs: Any) -> Path:
    """Save ``tiny_test_encoder(**kwargs)`` and a matching WordPiece tokenizer to a directory, so
    that ``FrozenEncoder(directory)`` and ``load_tokenizer(directory)`` work offline."""
    model = tiny_test_encoder(**kwargs)
    vocab_size = model.config.vocab_size
    if vocab_size < len(TINY_VOCAB):
        raise ValueError(
            f"vocab_size={vocab_size} is too small: the tiny vocab needs {len(TINY_VOCAB)}"
        )
    vocab = TINY_VOCAB + [f"[unused{i}]" for i in range(vocab_size - len(TINY_VOCAB))]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # from_pretrained builds the WordPiece tokenizer from vocab.txt the same way in transformers
    # 4 and 5 (their constructors disagree on how to take a vocab file).
    BertTokenizerFast.from_pretrained(directory).save_pretrained(directory)
    return directory
