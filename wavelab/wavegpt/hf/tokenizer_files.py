"""A wavelab tokenizer as the ``tokenizer.json`` + ``tokenizer_config.json`` that
``AutoTokenizer.from_pretrained(dir)`` reads, encoding exactly as wavelab does.

Characters become a word-level vocabulary over single characters (every character its own
piece, joined back without spaces); a BPE, WordPiece or GPT-2 tokenizer is its own JSON, minus
the post-processor that adds special tokens around a text (wavelab adds none).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from wavelab.data.tokenizers import CharTokenizer, TextTokenizer


def hf_tokenizer(tokenizer: TextTokenizer) -> Tokenizer:
    """The ``tokenizers.Tokenizer`` that encodes and decodes as ``tokenizer`` does."""
    if isinstance(tokenizer, CharTokenizer):
        vocab = {c: i for i, c in enumerate(tokenizer.chars)}
        tok = Tokenizer(models.WordLevel(vocab, unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
        return tok
    spec = json.loads(tokenizer.to_dict()["json"])
    spec["post_processor"] = None
    spec["truncation"] = None
    spec["padding"] = None
    return Tokenizer.from_str(json.dumps(spec))


def save_tokenizer(tokenizer: TextTokenizer, out: Path) -> None:
    """Writes ``tokenizer`` into the model dir ``out`` as transformers' fast tokenizer."""
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=hf_tokenizer(tokenizer)).save_pretrained(str(out))
