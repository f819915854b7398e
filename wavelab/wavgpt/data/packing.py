"""Paragraphs of a streamed corpus packed into WavGPT's word-piece blocks, in flat memory.

Paragraphs are the pieces of ``re.split(r"\\n\\s*\\n", text)`` that are not blank. They are found
in a stream (``paragraphs``), tokenized in batches by the encoder's fast tokenizer (in parallel),
and packed greedily (``BlockPacker``): the blocks are those of packing the whole split at once
(``pack_paragraphs``). Only a paragraph longer than ``LONG_PARAGRAPH`` characters (a text without
blank lines) is tokenized in parts cut at whitespace, which WordPiece tokenizers, splitting at
whitespace first, tokenize alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

SEPARATOR = re.compile(r"\n\s*\n")
LONG_PARAGRAPH = 1 << 22  # characters
BATCH_CHARS = 1 << 20  # characters of paragraphs per tokenizer call
BATCH_BLOCKS = 4096  # blocks per write


def frame_blocks(
    bodies: Sequence[Sequence[int]], block_size: int, cls_id: int, sep_id: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bodies of at most ``block_size - 2`` word pieces -> ``[CLS] body [SEP] [PAD]...`` rows:
    (n, block_size) ids and (n,) real lengths. The one block layout of training and the codec."""
    ids = np.full((len(bodies), block_size), pad_id, dtype=np.int64)
    lengths = np.empty(len(bodies), dtype=np.int64)
    for i, body in enumerate(bodies):
        row = [cls_id, *body, sep_id]
        if len(row) > block_size:
            raise ValueError(f"a body of {len(body)} word pieces does not fit {block_size} tokens")
        ids[i, : len(row)] = row
        lengths[i] = len(row)
    return ids, lengths


class BlockPacker:
    """Greedy packing of paragraphs into bodies of at most ``room`` word pieces, handed to
    ``emit`` in batches: a paragraph starts a new body unless it fits the current one, and one
    longer than a body is cut into full bodies, its rest starting the next."""

    def __init__(self, room: int, emit: Callable[[list[list[int]]], None]):
        self.room, self.emit = room, emit
        self.current: list[int] = []
        self.done: list[list[int]] = []

    def _push(self, body: list[int]) -> None:
        self.done.append(body)
        if len(self.done) >= BATCH_BLOCKS:
            self.emit(self.done)
            self.done = []

    def add(self, para: list[int], continues: bool = False) -> None:
        """One paragraph's ids; ``continues``: more ids of the paragraph added last."""
        if continues:
            para = self.current + para
        elif self.current and len(self.current) + len(para) > self.room:
            self._push(self.current)
            self.current = []
        else:
            para = self.current + para
        start = 0  # sliced from the front, not cut off it: a cut copies the rest each time
        while len(para) - start > self.room:
            self._push(para[start : start + self.room])
            start += self.room
        self.current = para[start:]

    def finish(self) -> None:
        if self.current:
            self._push(self.current)
            self.current = []
        if self.done:
            self.emit(self.done)
            self.done = []


def pack_paragraphs(
    paragraphs: list[list[int]], block_size: int, cls_id: int, sep_id: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy packing into (n_blocks, block_size) ids and (n_blocks,) real lengths."""
    bodies: list[list[int]] = []
    packer = BlockPacker(block_size - 2, bodies.extend)
    for para in paragraphs:
        packer.add(list(para))
    packer.finish()
    return frame_blocks(bodies, block_size, cls_id, sep_id, pad_id)


def paragraphs(pieces: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """``(paragraph, continues)`` for each non-blank piece of ``re.split(SEPARATOR, text)``,
    ``text`` given in pieces cut anywhere. ``continues`` marks a further part of an overlong
    paragraph (see the module's docstring)."""
    carry, continues = "", False
    for piece in pieces:
        buffer = carry + piece
        # Separators before the last one are final: the text between two holds a non-space
        # character. The last may grow with the next piece, so it starts the carry.
        last = None
        start = 0
        for match in SEPARATOR.finditer(buffer):
            if last is not None:
                para = buffer[start : last.start()]
                if para.strip():
                    yield para, continues
                continues = False
                start = last.end()
            last = match
        if last is not None:
            para = buffer[start : last.start()]
            if para.strip():
                yield para, continues
            continues = False
            carry = buffer[last.start() :]
        else:
            carry = buffer[start:]
        if len(carry) > LONG_PARAGRAPH:
            lead = SEPARATOR.match(carry)  # final: the carry goes on well past it
            if lead:
                carry, continues = carry[lead.end() :], False
            cut = max(carry.rfind(" ", 0, LONG_PARAGRAPH), carry.rfind("\n", 0, LONG_PARAGRAPH))
            if cut > 0 and carry[:cut].strip():
                yield carry[:cut], continues
                carry, continues = carry[cut:], True
    for para in SEPARATOR.split(carry):
        if para.strip():
            yield para, continues
        continues = False


def pack_stream(
    pieces: Iterable[str],
    tokenize: Callable[[list[str]], list[list[int]]],
    room: int,
    emit: Callable[[list[list[int]]], None],
) -> None:
    """Packs the paragraphs of ``pieces``, tokenized in batches by ``tokenize``, into bodies of
    at most ``room`` ids, handed to ``emit`` in batches."""
    packer = BlockPacker(room, emit)
    batch: list[tuple[str, bool]] = []
    chars = 0

    def flush() -> None:
        for (_, continues), ids in zip(batch, tokenize([p for p, _ in batch]), strict=True):
            packer.add(ids, continues)
        batch.clear()

    for para, continues in paragraphs(pieces):
        batch.append((para, continues))
        chars += len(para)
        if chars >= BATCH_CHARS:
            flush()
            chars = 0
    flush()
    packer.finish()
