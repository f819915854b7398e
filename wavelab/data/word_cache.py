"""Batch encoding through a cache of words: a text's ids are its words' ids in order, and each
distinct word is encoded by the library once.

This is exact where the tokenizer cuts a text into pieces that it then encodes independently
(its pre-tokenizer), and where a word, encoded alone, gives the same pieces. Two families of
``tokenizer.json`` qualify, and for each, ``splitter`` returns the words of a text, or None for
a text that the cut below could not follow; that text goes to the library whole:

- **WordPiece behind BERT's normalizer and pre-tokenizer.** Every piece lies inside a run of
  non-whitespace, and every step (cleaning, CJK spacing, accent stripping, lowercasing,
  punctuation split, WordPiece) works within it. The words are ``str.split()``, used only on
  texts whose only whitespace is space, tab, newline and carriage return. Python counts other
  characters as whitespace that BERT's cleaning deletes (\\x0b, \\x1c to \\x1f, \\x85) or keeps
  inside a word.
- **Byte-level BPE with GPT-2's pattern** (the ``ByteLevel`` pre-tokenizer, no prefix space, no
  normalizer). The words are the pattern's matches, spelled for ASCII (a letter is [A-Za-z], a
  digit [0-9], whitespace [ \\t\\n\\v\\f\\r]), used only on ASCII texts. A match encoded alone
  is that one match again, so it gives the same merges.

Any other tokenizer gets None from ``for_tokenizer``, and the library alone encodes it. So does
a text holding the content of an added token, which the library finds before it pre-tokenizes.
The cache holds at most ``MAX_WORDS`` words, and empties when full, so memory stays flat.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from itertools import chain

from tokenizers import Tokenizer

MAX_WORDS = 1 << 18  # distinct words held: a few tens of MB

# The characters that ``str.split()`` splits at, apart from space, tab, newline and carriage
# return (every c with c.isspace(): a test checks the list).
OTHER_SPACE = "\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_OTHER_SPACE = re.compile(f"[{OTHER_SPACE}]")
# GPT-2's pre-tokenizer pattern on ASCII text; whitespace is [ \t\n\v\f\r].
_GPT2_ASCII = re.compile(
    r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^ \t\n\x0b\x0c\rA-Za-z0-9]+"
    r"|[ \t\n\x0b\x0c\r]+(?![^ \t\n\x0b\x0c\r])|[ \t\n\x0b\x0c\r]+"
)


def _bert_words(text: str) -> list[str] | None:
    return None if _OTHER_SPACE.search(text) else text.split()


def _gpt2_words(text: str) -> list[str] | None:
    return _GPT2_ASCII.findall(text) if text.isascii() else None


def splitter(spec: dict) -> Callable[[str], list[str] | None] | None:
    """The word splitter of a tokenizer's JSON ``spec``, or None where none is exact."""
    model, normalizer, pre = (
        spec.get("model") or {},
        spec.get("normalizer"),
        spec.get("pre_tokenizer"),
    )
    pre_type = (pre or {}).get("type")
    bert_normalizer = normalizer is None or normalizer.get("type") == "BertNormalizer"
    if model.get("type") == "WordPiece" and pre_type == "BertPreTokenizer" and bert_normalizer:
        return _bert_words
    if model.get("type") == "BPE" and normalizer is None and model.get("dropout") is None:
        byte_level = pre_type == "ByteLevel" and pre.get("use_regex", True)
        if byte_level and not pre.get("add_prefix_space", False):
            return _gpt2_words
    return None


def library_ids(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Each text's ids without special tokens, by the library, in parallel on every core."""
    fast = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)  # without offsets
    return [e.ids for e in fast(texts, add_special_tokens=False)]


def batch_encoder(tokenizer: Tokenizer) -> Callable[[list[str]], list[list[int]]]:
    """``library_ids`` through a ``WordCache`` where one is exact."""
    cache = WordCache.for_tokenizer(tokenizer)
    return cache.encode_batch if cache is not None else partial(library_ids, tokenizer)


class WordCache:
    """``encode_batch(texts)``: each text's ids without special tokens, as the library gives
    them, through a cache of words."""

    def __init__(self, tokenizer: Tokenizer, split: Callable[[str], list[str] | None]):
        self._tok, self._split = tokenizer, split
        self._ids: dict[str, list[int]] = {}
        self._added = [t.content for t in tokenizer.get_added_tokens_decoder().values()]

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer) -> WordCache | None:
        split = splitter(json.loads(tokenizer.to_str()))
        return None if split is None else cls(tokenizer, split)

    def _words(self, text: str) -> list[str] | None:
        if any(token in text for token in self._added):
            return None
        return self._split(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        words = [self._words(text) for text in texts]
        ids = self._ids
        new = {w for ws in words if ws is not None for w in set(ws).difference(ids)}
        if len(ids) + len(new) > MAX_WORDS:
            ids.clear()
            new = {w for ws in words if ws is not None for w in ws}
        new_words = list(new)
        ids.update(zip(new_words, library_ids(self._tok, new_words)))
        whole = [text for text, ws in zip(texts, words) if ws is None]
        whole_ids = iter(library_ids(self._tok, whole) if whole else [])
        return [
            next(whole_ids) if ws is None else list(chain.from_iterable(map(ids.__getitem__, ws)))
            for ws in words
        ]
