"""A corpus read as a stream of text pieces, hashed as it goes: memory stays flat in its size.

A ``TextStream`` can be iterated any number of times (``pieces()``); each full iteration yields
the same text, in pieces of at most about ``PIECE_CHARS`` characters cut anywhere. ``scan()``
reads it once for what the cache needs before tokenizing: the sha256 of its UTF-8 bytes (the
cache key, the same as hashing the whole text at once), its length in characters (where the
train/val split falls) and whether it holds any non-blank character. Every later full pass
hashes again and refuses a text that changed in between (a file being rewritten while it is
read), so no cache entry is ever made of two versions of a corpus.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from wavelab.core.errors import ConfigError

PIECE_CHARS = 1 << 20  # characters per piece: the tokenizers' batches are made of these
READ_BYTES = 1 << 22  # bytes per read of a file


@dataclass(frozen=True)
class Scan:
    sha256: str
    n_chars: int
    blank: bool  # only whitespace (or nothing)


def regular_file(path: str | os.PathLike, key: str) -> Path:
    """``path`` if it is a readable regular file; else a ConfigError that says what it is."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{key}={str(path)!r} is invalid: no such file") from None
    except OSError as e:
        raise ConfigError(
            f"{key}={str(path)!r} is invalid: cannot stat it ({e.strerror})"
        ) from None
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISSOCK: "a socket",
    }
    for test, kind in kinds.items():
        if test(mode):
            raise ConfigError(
                f"{key}={str(path)!r} is invalid: it is {kind}, not a regular file; give a "
                "text file"
            )
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{key}={str(path)!r} is invalid: not readable (permission denied)")
    return path


class TextStream:
    """Text from ``source()``, an iterable made afresh on each call of str pieces, or of
    ``(piece, data)`` pairs whose ``data`` bytes, over the whole stream, are its UTF-8 (a
    file's own bytes: hashed as read, not encoded again)."""

    def __init__(
        self, source: Callable[[], Iterable[str]], describe: str, piece_chars: int = PIECE_CHARS
    ):
        self._source = source
        self.piece_chars = piece_chars
        self.describe = describe  # the config key and value that chose the text
        self.scanned: Scan | None = None

    def _raw(self, digest=None) -> Iterator[str]:
        """The text in pieces of at most ``piece_chars``, its UTF-8 fed to ``digest``."""
        for item in self._source():
            piece, data = item if isinstance(item, tuple) else (item, None)
            if digest is not None:
                digest.update(piece.encode("utf-8", "surrogatepass") if data is None else data)
            for start in range(0, len(piece), self.piece_chars):
                yield piece[start : start + self.piece_chars]

    def text(self) -> str:
        """The whole text at once (for small texts)."""
        return "".join(self._raw())

    def scan(self) -> Scan:
        digest, n, blank = hashlib.sha256(), 0, True
        for piece in self._raw(digest):
            n += len(piece)
            blank = blank and (not piece or piece.isspace())
        self.scanned = Scan(digest.hexdigest(), n, blank)
        return self.scanned

    def pieces(self) -> Iterator[str]:
        """The whole text again; ConfigError at its end if it is not the scanned text."""
        assert self.scanned is not None, "scan() first"
        digest = hashlib.sha256()
        yield from self._raw(digest)
        if digest.hexdigest() != self.scanned.sha256:
            raise ConfigError(
                f"{self.describe} changed while it was being read (its content hash differs "
                "between two passes); nothing was cached: rerun once it is no longer written to"
            )

    def split(self, cut: int) -> Iterator[tuple[str, str]]:
        """``("train", piece)`` for the first ``cut`` characters, then ``("val", piece)``."""
        pos = 0
        for piece in self.pieces():
            end = pos + len(piece)
            if end <= cut:
                yield "train", piece
            elif pos >= cut:
                yield "val", piece
            else:
                yield "train", piece[: cut - pos]
                yield "val", piece[cut - pos :]
            pos = end

    def head(self, cut: int) -> Iterator[str]:
        """The first ``cut`` characters (the training split), without reading further."""
        pos = 0
        for piece in self._raw():
            if pos + len(piece) >= cut:
                if cut > pos:
                    yield piece[: cut - pos]
                return
            yield piece
            pos += len(piece)


def string_stream(text: str, describe: str, piece_chars: int = PIECE_CHARS) -> TextStream:
    return TextStream(lambda: (text,), describe, piece_chars)


def _file_pieces(path: Path, key: str) -> Iterator[tuple[str, bytes]]:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    with open(path, "rb") as f:
        while True:
            data = f.read(READ_BYTES)
            final = not data
            pending = len(decoder.getstate()[0])  # bytes of a character cut by the last read
            try:
                text = decoder.decode(data, final=final)
            except UnicodeDecodeError as e:
                at = offset - pending + e.start
                bad = e.object[e.start] if e.start < len(e.object) else 0
                raise ConfigError(
                    f"{key}={str(path)!r} is invalid: not UTF-8 text (byte {bad:#04x} at offset "
                    f"{max(at, 0)}); wavelab reads corpora as UTF-8, so convert it first, e.g. "
                    f"iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8.txt"
                ) from None
            if "\x00" in text:
                raise ConfigError(
                    f"{key}={str(path)!r} is invalid: it contains NUL bytes, so it is binary, "
                    "not text"
                )
            offset += len(data)
            if text or data:
                yield text, data  # data: these bytes, less or more a character cut by a read
            if final:
                return


def file_stream(
    path: str | os.PathLike, key: str = "data.path", piece_chars: int = PIECE_CHARS
) -> TextStream:
    """A UTF-8 text file, read in pieces; anything else (missing, not a regular file, another
    encoding, binary data) is a ConfigError naming ``key`` and the file."""
    path = regular_file(path, key)
    return TextStream(lambda: _file_pieces(path, key), f"{key}={str(path)!r}", piece_chars)
