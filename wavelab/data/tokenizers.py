"""Tokenizers for language modelling: characters, a byte-level BPE trained offline, and the
WordPiece of a BERT-style encoder (its ``tokenizer.json``), so that a language model can read
the very tokens a WavGPT code holds.

All serialise to a plain dict (``to_dict``/``tokenizer_from_dict``) so a checkpoint carries the
exact tokenizer it was trained with.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from wavelab.core.errors import ConfigError
from wavelab.data.word_cache import batch_encoder

TOKENIZER_KINDS = ("char", "bpe", "wordpiece", "hf")
HF_PREFIX = "hf:"  # data.tokenizer=hf:<dir>: the tokenizer.json of a Hugging Face model dir
# The BPE merges are learned from the training split's first BPE_SAMPLE_CHARS characters (about
# 32 MB of text): enough to count a corpus's frequent words, and a training cost that stays the
# same however large the corpus is. Encoding then covers every character.
BPE_SAMPLE_CHARS = 1 << 25


class TextTokenizer(Protocol):
    kind: str
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def to_dict(self) -> dict: ...


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: str):
        self.chars = chars
        self.vocab_size = len(chars)
        self._index = {c: i for i, c in enumerate(chars)}
        ascii_ids = {ord(c): i for c, i in self._index.items() if c.isascii()}
        self._ascii_known = bytes(sorted(ascii_ids))
        self._ascii_table = None  # byte -> its id, where every ASCII id is a byte (sorted chars)
        if max(ascii_ids.values(), default=0) < 256:
            self._ascii_table = bytes(ascii_ids.get(b, 0) for b in range(256))
        self._table: np.ndarray | None = None  # code point -> id (-1: not in the vocabulary)

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        return cls.from_pieces([text])

    @classmethod
    def from_pieces(cls, pieces: Iterable[str]) -> CharTokenizer:
        """The sorted set of characters of a text given in pieces (code point order, as
        ``sorted(set(text))``), vectorised in flat memory: an ASCII piece's new characters are
        what ``bytes.translate`` leaves once the known ones are deleted; other pieces mark their
        code points in one flag per code point."""
        seen = np.zeros(N_CODE_POINTS, dtype=bool)
        ascii_seen = b""
        for piece in pieces:
            if piece.isascii():
                new = piece.encode("ascii").translate(None, ascii_seen)
                if new:
                    ascii_seen = bytes(sorted(set(ascii_seen) | set(new)))
            else:
                seen[_code_points(piece)] = True
        seen[list(ascii_seen)] = True
        return cls("".join(map(chr, np.flatnonzero(seen).tolist())))

    def encode_array(self, text: str, dtype=np.int64) -> np.ndarray:
        """``encode(text)`` as an array of ``dtype``, vectorised: ASCII text through a byte
        table (``bytes.translate``; ASCII characters sort first, so their ids are bytes too),
        other text through a table indexed by code point."""
        if self._ascii_table is not None and text.isascii():
            raw = text.encode("ascii")
            unknown = raw.translate(None, self._ascii_known)
            if unknown:
                self.encode(chr(unknown[0]))  # raises, naming the character
            ids = np.frombuffer(raw.translate(self._ascii_table), dtype=np.uint8)
            return ids.astype(dtype, copy=False)
        if self._table is None:
            self._table = np.full(N_CODE_POINTS, -1, dtype=np.int32)
            self._table[[ord(c) for c in self.chars]] = np.arange(self.vocab_size)
        ids = self._table[_code_points(text)]
        if len(ids) and ids.min() < 0:
            self.encode(text[int(np.argmax(ids < 0))])  # raises, naming the character
        return ids.astype(dtype)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._index[c] for c in text]
        except KeyError as e:
            raise ConfigError(
                f"character {e.args[0]!r} is not in this character-level vocabulary "
                f"({self.vocab_size} characters seen in the training corpus)"
            ) from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}


N_CODE_POINTS = 0x110000


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class JSONTokenizer:
    """A tokenizer as its ``tokenizer.json`` defines it (normalization, pre-tokenization, model),
    without the special tokens it adds around a text."""

    kind = "json"

    def __init__(self, tokenizer: Tokenizer):
        # A model's tokenizer.json may truncate and pad to its model's length: a corpus piece
        # must keep every token.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer
        # ids may skip numbers (a vocab.txt that lists a piece twice): size the model by the top
        self.vocab_size = max(tokenizer.get_vocab().values()) + 1

    def vocab(self) -> dict[str, int]:
        return self._tok.get_vocab()

    def fingerprint(self) -> str:
        """sha256 of its JSON: the same tokenizer, wherever it was loaded from."""
        return hashlib.sha256(self._tok.to_str().encode()).hexdigest()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Each text's ids (``wavelab.data.word_cache``)."""
        return self._batch_encoder(texts)

    @functools.cached_property
    def _batch_encoder(self):
        return batch_encoder(self._tok)

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "json": self._tok.to_str()}


class BPETokenizer(JSONTokenizer):
    """Byte-level BPE (GPT-2 style), trained with HF ``tokenizers`` on the training split's first
    ``BPE_SAMPLE_CHARS`` characters."""

    kind = "bpe"

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPETokenizer:
        """Trained on ``text[:BPE_SAMPLE_CHARS]``."""
        return cls.train_from_lines([text[:BPE_SAMPLE_CHARS].splitlines(keepends=True)], vocab_size)

    @classmethod
    def train_from_lines(cls, batches: Iterable[list[str]], vocab_size: int) -> BPETokenizer:
        """Trained on the lines (``str.splitlines(keepends=True)``) of a sample, given in
        batches: the trainer counts words line by line, so the sample is never held whole."""
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(batches, trainer=trainer)
        return cls(tok)


def _tokenizer_json(path: Path, key: str, value: str, allowed: str) -> Tokenizer:
    if not (path / "tokenizer.json").is_file():
        raise ConfigError(
            f"{key}={value!r} is invalid: {path / 'tokenizer.json'} does not exist ({allowed})"
        )
    try:
        return Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as e:  # tokenizers raises a bare Exception for unparsable JSON
        raise ConfigError(
            f"{key}={value!r}: {path / 'tokenizer.json'} is unreadable: {e}"
        ) from None


class WordPieceTokenizer(JSONTokenizer):
    """An encoder's own WordPiece, so that a language model reads a WavGPT code's tokens."""

    kind = "wordpiece"

    @classmethod
    def from_model_dir(cls, name_or_path: str) -> WordPieceTokenizer:
        """The tokenizer of ``data.wordpiece_from``: a model directory holding tokenizer.json,
        or a packaged model (``packaged:all-MiniLM-L6-v2``)."""
        from wavelab.core.packaged import packaged_model_dir

        key = "data.wordpiece_from"
        path = Path(packaged_model_dir(name_or_path, key) or name_or_path).expanduser()
        allowed = "give a model directory with a tokenizer.json, or packaged:all-MiniLM-L6-v2"
        tok = _tokenizer_json(path, key, name_or_path, allowed)
        if not isinstance(tok.model, models.WordPiece):
            raise ConfigError(
                f"{key}={name_or_path!r} is invalid: its tokenizer is a "
                f"{type(tok.model).__name__}, not a WordPiece"
            )
        return cls(tok)


class HFTokenizer(JSONTokenizer):
    """The tokenizer of a Hugging Face model dir (``data.tokenizer=hf:<dir>``), e.g. GPT-2's
    byte-level BPE for a model started from its weights (``model.init_from``)."""

    kind = "hf"

    @classmethod
    def from_spec(cls, spec: str) -> HFTokenizer:
        """The tokenizer of ``data.tokenizer=hf:<dir>``."""
        path = Path(spec[len(HF_PREFIX) :]).expanduser()
        allowed = "give a model dir saved with save_pretrained, which holds one"
        return cls(_tokenizer_json(path, "data.tokenizer", spec, allowed))


def check_kind(kind: str, bpe_vocab_size: int) -> None:
    """ConfigError unless ``kind`` and ``bpe_vocab_size`` make a tokenizer."""
    if kind == "bpe":
        if bpe_vocab_size < 257:
            raise ConfigError(
                f"data.bpe_vocab_size={bpe_vocab_size} is invalid: must be >= 257 "
                "(256 byte symbols plus at least one merge)"
            )
    elif kind not in TOKENIZER_KINDS:
        raise ConfigError(
            f"data.tokenizer={kind!r} is invalid: allowed are char, bpe, wordpiece, "
            f"{HF_PREFIX}<model dir>"
        )


def train_tokenizer(kind: str, text: str, bpe_vocab_size: int) -> TextTokenizer:
    """The tokenizer of ``kind`` trained on all of ``text`` (in memory; see
    ``wavelab.data.prepare`` for corpora streamed from disk)."""
    check_kind(kind, bpe_vocab_size)
    if kind == "char":
        return CharTokenizer.train(text)
    if kind == "bpe":
        return BPETokenizer.train(text, bpe_vocab_size)
    raise ValueError(
        f"a {kind} tokenizer is loaded (WordPieceTokenizer.from_model_dir), not trained"
    )


def tokenizer_from_dict(d: Mapping) -> TextTokenizer:
    """The tokenizer of a ``to_dict()`` (a dict, or the config node Hydra passes it as);
    ValueError saying what is wrong with a damaged one."""
    kind = d.get("kind") if isinstance(d, Mapping) else None
    if kind == "char" and isinstance(d.get("chars"), str):
        return CharTokenizer(d["chars"])
    if kind == "bpe" and isinstance(d.get("json"), str):
        try:
            return BPETokenizer(Tokenizer.from_str(d["json"]))
        except Exception as e:  # tokenizers raises a bare Exception for unparsable JSON
            raise ValueError(f"the tokenizer's BPE JSON is unreadable: {e}") from None
    json_kinds = {"wordpiece": WordPieceTokenizer, "hf": HFTokenizer}
    if kind in json_kinds and isinstance(d.get("json"), str):
        try:
            return json_kinds[kind](Tokenizer.from_str(d["json"]))
        except Exception as e:  # tokenizers raises a bare Exception for unparsable JSON
            raise ValueError(f"the tokenizer's {kind} JSON is unreadable: {e}") from None
    if kind in TOKENIZER_KINDS:
        field = "chars" if kind == "char" else "json"
        raise ValueError(f"the {kind} tokenizer has no {field!r} string")
    raise ValueError(f"the tokenizer kind is {kind!r}: it must be one of {TOKENIZER_KINDS}")
