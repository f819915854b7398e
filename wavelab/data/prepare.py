"""Character and BPE token caches built from a streamed corpus, in memory flat in its size.

Each split is tokenized piece by piece and appended to its array (``wavelab.data.writer``); the
ids are those of tokenizing each split's text whole:

- characters map one to one, so any cut is safe; the vocabulary is the sorted set of the whole
  corpus's characters (so validation never holds an unknown one);
- byte-level BPE pre-tokenizes with GPT-2's pattern, whose tokens never span a newline, nor run
  from a non-space character into the space after it, where that newline or space has a
  non-space character on each side: the text is cut only at such points (``bpe_pieces``: after
  a newline where there is one, before a space in a line longer than a piece), and the pieces
  are encoded in parallel batches. The merges are learned from the lines of the training
  split's first ``BPE_SAMPLE_CHARS`` characters, as ``str.splitlines(keepends=True)`` cuts them,
  a line longer than a piece cut as ``bpe_pieces`` cuts it (``lines``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from wavelab.data.stream import PIECE_CHARS, TextStream
from wavelab.data.tokenizers import (
    BPE_SAMPLE_CHARS,
    BPETokenizer,
    CharTokenizer,
    JSONTokenizer,
    TextTokenizer,
    check_kind,
)
from wavelab.data.writer import EntryWriter, token_dtype

BATCH_PIECES = 8  # pieces per parallel encode_batch call: a few MB of text at a time


def split_pieces(text: TextStream, cut: int) -> Iterator[tuple[str, Iterator[str]]]:
    """``("train", pieces)`` then ``("val", pieces)``: each split's pieces, from one pass."""
    stream = text.split(cut)
    pending: list[tuple[str, str]] = []

    def of(split: str) -> Iterator[str]:
        while True:
            if pending:
                name, piece = pending.pop()
            else:
                item = next(stream, None)
                if item is None:
                    return
                name, piece = item
            if name != split:
                pending.append((name, piece))
                return
            yield piece

    yield "train", of("train")
    yield "val", of("val")
    for _ in stream:  # drains the pass, so that its end checks the text did not change
        pass


def _safe_cut(buffer: str) -> int:
    """The last index just after a newline, or else just before a space, that has a
    non-space character on each side (0 if none): GPT-2's pre-tokenizer splits there, whatever
    comes before or after (no token runs from a non-space character into whitespace, and a
    space before a non-space character starts a token), and WordPiece's splits at any
    whitespace. Newlines first, so that text with lines is cut as it always was."""
    for sep, after in (("\n", 1), (" ", 0)):
        i = buffer.rfind(sep, 0, len(buffer) - 1)
        while i > 0:
            if not buffer[i - 1].isspace() and not buffer[i + 1].isspace():
                return i + after
            i = buffer.rfind(sep, 0, i)
    return 0


def bpe_pieces(pieces: Iterable[str], size: int = PIECE_CHARS) -> Iterator[str]:
    """The text recut at ``_safe_cut`` points, in pieces of about ``size`` characters or more
    (a text without such a point, one with no whitespace between non-space characters, stays
    one piece until it has one)."""
    carry = ""
    for piece in pieces:
        buffer = carry + piece
        if len(buffer) < size:
            carry = buffer
            continue
        cut = _safe_cut(buffer)
        if cut == 0:
            carry = buffer
            continue
        yield buffer[:cut]
        carry = buffer[cut:]
    if carry:
        yield carry


def lines(pieces: Iterable[str], size: int = PIECE_CHARS) -> Iterator[list[str]]:
    """The text's ``splitlines(keepends=True)``, in batches, from pieces cut anywhere; a line
    longer than ``size`` characters is cut at ``_safe_cut`` points, which split no word of
    GPT-2's pattern, so that no line is ever held whole."""
    carry = ""
    for piece in pieces:
        batch = (carry + piece).splitlines(keepends=True)
        carry = batch.pop() if batch else ""  # the last line may go on in the next piece
        if len(carry) > size and (cut := _safe_cut(carry)):
            batch.append(carry[:cut])
            carry = carry[cut:]
        if batch:
            yield batch
    if carry:
        yield [carry]


def _batches(pieces: Iterable[str], n: int) -> Iterator[list[str]]:
    batch = []
    for piece in pieces:
        batch.append(piece)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def build_lm(
    text: TextStream,
    cut: int,
    out: EntryWriter,
    kind: str,
    bpe_vocab_size: int,
    given: JSONTokenizer | None = None,
) -> dict:
    """Writes the ``train`` and ``val`` arrays of ``kind`` (char, bpe, or wordpiece and hf,
    which are the ``given`` tokenizer); returns their meta."""
    check_kind(kind, bpe_vocab_size)
    tok: TextTokenizer
    if kind == "char":
        tok = CharTokenizer.from_pieces(text.pieces())
        out.reserve(text.scanned.n_chars * token_dtype(tok.vocab_size).itemsize, text.describe)
    elif kind == "bpe":
        sample = text.head(min(cut, BPE_SAMPLE_CHARS))
        tok = BPETokenizer.train_from_lines(lines(sample, text.piece_chars), bpe_vocab_size)
    elif given is None:
        raise ValueError(f"a {kind} build needs its tokenizer (data.wordpiece_from, hf:<dir>)")
    else:
        tok = given
    for split, pieces in split_pieces(text, cut):
        array = out.array(split, tok.vocab_size)
        if kind == "char":
            for piece in pieces:
                array.write(tok.encode_array(piece, array.dtype))
            continue
        for batch in _batches(bpe_pieces(pieces, text.piece_chars), BATCH_PIECES):
            for ids in tok.encode_batch(batch):
                array.write(ids)
    return {"vocab_size": tok.vocab_size, "tokenizer": tok.to_dict()}
