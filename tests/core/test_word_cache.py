"""The word cache gives the library's own ids, text for text, on texts made to find where a
cut between words could differ: every kind of whitespace and control character, contractions,
accents, CJK, added tokens, words too long for WordPiece."""

from __future__ import annotations

import random
import sys

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

import wavelab.data.word_cache as word_cache
from wavelab.data.tokenizers import BPETokenizer, WordPieceTokenizer
from wavelab.data.word_cache import OTHER_SPACE, WordCache, library_ids, splitter

ASCII_PIECES = [
    "the", "The", "THE", "a", "don", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'",
    "12", "3.5", "x9", "9x", ",", ".", "!?", "--", "(", ")", "[", "]", "#", "\\", "@", "_",
    " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x01", "\x7f",
    "[CLS]", "[MASK]", "<|endoftext|>", "endoftext", "w" * 120,
]  # fmt: skip
UNICODE_PIECES = [
    "é", "e\u0301", "Ωmega", "ΣΑΣ", "ς", "İ", "中文", "日本語", "😀", "\u200b", "\ufeff", "\xa0",
    "\u2028", "\u3000", "\x85", "\u2009", "ß", "ﬁ", "Ⅻ", "٣", "\ufffd",
]  # fmt: skip


def texts(pieces: list[str], n: int, seed: int) -> list[str]:
    """``n`` texts of up to 16 pieces; a piece that sends its text to the library whole (other
    whitespace, an added token) is drawn a tenth as often, so most texts take the words."""
    rng = random.Random(seed)
    whole = {"\x0b", "\x0c", "\x1c", "\x1f", "[CLS]", "[MASK]", "<|endoftext|>", *OTHER_SPACE}
    weights = [1 if p in whole or not p.isascii() else 10 for p in pieces]
    return ["".join(rng.choices(pieces, weights, k=rng.randint(0, 16))) for _ in range(n)]


def wordpiece(tiny_encoder_dir) -> Tokenizer:
    return WordPieceTokenizer.from_model_dir(str(tiny_encoder_dir))._tok


def bpe() -> Tokenizer:
    sample = " ".join(texts(ASCII_PIECES + UNICODE_PIECES, 300, seed=1))
    tok = BPETokenizer.train(sample * 3, 400)._tok
    tok.add_special_tokens(["<|endoftext|>"])  # as GPT-2's: found in a text before its words
    return tok


def test_the_other_space_characters_are_every_one_str_split_splits_at():
    found = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()} - set(" \t\n\r")
    assert found == {
        chr(c) for c in range(sys.maxunicode + 1) if word_cache._OTHER_SPACE.match(chr(c))
    }
    assert OTHER_SPACE  # the class is not empty


@pytest.mark.parametrize("pieces", ["ascii", "unicode"])
@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_the_word_cache_gives_the_library_s_ids(kind, pieces, tiny_encoder_dir, monkeypatch):
    tok = wordpiece(tiny_encoder_dir) if kind == "wordpiece" else bpe()
    chosen = ASCII_PIECES if pieces == "ascii" else ASCII_PIECES + UNICODE_PIECES
    batch = texts(chosen, 600, seed=0)
    cache = WordCache.for_tokenizer(tok)
    assert cache is not None
    # most texts go through the words, not the library (the test would hold vacuously else)
    by_words = sum(cache._words(t) is not None for t in batch)
    assert by_words > 0.3 * len(batch), by_words
    monkeypatch.setattr(word_cache, "MAX_WORDS", 50)  # the cache empties many times
    for start in range(0, len(batch), 100):
        part = batch[start : start + 100]
        assert cache.encode_batch(part) == library_ids(tok, part)
        words = {w for t in part for w in cache._words(t) or []}
        assert len(cache._ids) <= max(50, len(words))  # flat: one batch's words at most


def test_the_packaged_encoder_s_wordpiece_is_cached_and_exact():
    from wavelab.wavgpt.model.encoder import load_tokenizer

    tok = WordPieceTokenizer(Tokenizer.from_str(load_tokenizer().backend_tokenizer.to_str()))
    batch = texts(ASCII_PIECES + UNICODE_PIECES, 300, seed=2)
    assert WordCache.for_tokenizer(tok._tok) is not None
    assert tok.encode_batch(batch) == library_ids(tok._tok, batch)


def test_tokenizers_whose_cut_is_not_known_go_to_the_library():
    prefixed = Tokenizer(models.BPE())
    prefixed.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    normalized = Tokenizer(models.BPE())
    normalized.normalizer = normalizers.NFKC()
    normalized.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    split_on_whitespace = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    split_on_whitespace.pre_tokenizer = pre_tokenizers.Whitespace()
    for tok in (prefixed, normalized, split_on_whitespace):
        assert WordCache.for_tokenizer(tok) is None
    assert splitter({"model": {"type": "Unigram"}}) is None
