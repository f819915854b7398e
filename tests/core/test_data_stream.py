"""Corpora streamed through tokenization: the same tokens as tokenizing the whole text at once,
no entry made of a file that changed while it was read, none left half-written by a kill -9,
and paths that are not regular files named for what they are."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers.cli import REPO, assert_clean_error
from helpers.small import LM_SMALL

from wavelab.core.errors import ConfigError
from wavelab.data import cache, prepare, tokenizers
from wavelab.data.corpora import shakespeare_complete_works
from wavelab.data.prepare import bpe_pieces, build_lm, split_pieces
from wavelab.data.source import CorpusSource
from wavelab.data.stream import string_stream
from wavelab.data.tokenizers import train_tokenizer
from wavelab.data.writer import EntryWriter
from wavelab.wavgpt.data import packing
from wavelab.wavgpt.data.datamodule import fast_tokenize
from wavelab.wavgpt.model.encoder import load_tokenizer

# Whitespace runs, CR LF, a line separator, accents and an emoji around the cuts.
TRICKY = "\n\n  \n x\r\ny\t\n\nz'll  \u2028 é\U0001f600 \n\n\n  a\n\n \n\nend  \n \n\n"


@pytest.fixture(scope="module")
def text() -> str:
    works = shakespeare_complete_works()
    return works[:60_000] + TRICKY + works[60_000:90_000] + TRICKY


CYRILLIC = str.maketrans("abcdefghijklmnopqrstuvwxyz", "абцдефгхийклмнопярстужвьыз")


@pytest.mark.parametrize("kind", ["char", "bpe"])
@pytest.mark.parametrize("piece_chars", [97, 4096])
@pytest.mark.parametrize("shape", ["lines", "one line", "mostly non-ASCII"])
def test_streamed_tokens_are_those_of_the_whole_text(text, kind, piece_chars, shape, tmp_path):
    if shape == "one line":  # no newline to cut at: the pieces are cut before spaces
        text = text.replace("\n", " ")
        cut_anywhere = [text[i : i + piece_chars] for i in range(0, len(text), piece_chars)]
        assert max(map(len, bpe_pieces(cut_anywhere, piece_chars))) < 3 * piece_chars
    elif shape == "mostly non-ASCII":
        text = text.lower().translate(CYRILLIC)
    stream = string_stream(text, "test", piece_chars)
    stream.scan()
    cut = int(len(text) * 0.9)
    with EntryWriter(tmp_path / "entry") as out:
        meta = out.commit(build_lm(stream, cut, out, kind, 300))
    whole = train_tokenizer(kind, text if kind == "char" else text[:cut], 300)
    assert meta["tokenizer"] == whole.to_dict()
    for split, part in (("train", text[:cut]), ("val", text[cut:])):
        got = np.fromfile(tmp_path / "entry" / f"{split}.bin", dtype=meta["dtype"])
        assert np.array_equal(got, whole.encode(part)), split


@pytest.mark.parametrize("piece_chars", [13, 4096])
def test_streamed_paragraph_packing_is_that_of_the_whole_text(
    text, piece_chars, tiny_encoder_dir, monkeypatch
):
    tok = load_tokenizer(str(tiny_encoder_dir))
    special = (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)

    def tokenize(paragraphs):
        return tok(paragraphs, add_special_tokens=False, verbose=False)["input_ids"]

    monkeypatch.setattr(packing, "LONG_PARAGRAPH", 300)  # overlong paragraphs cut too
    stream = string_stream(text, "test", piece_chars)
    stream.scan()
    cut = int(len(text) * 0.9)
    for split, pieces in split_pieces(stream, cut):
        bodies = []
        packing.pack_stream(pieces, tokenize, 30, bodies.extend)
        got = packing.frame_blocks(bodies, 32, *special)
        part = text[:cut] if split == "train" else text[cut:]
        paragraphs = [p for p in re.split(r"\n\s*\n", part) if p.strip()]
        want = packing.pack_paragraphs(tokenize(paragraphs), 32, *special)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), split


def test_wavgpt_preparation_tokenizes_as_the_transformers_tokenizer(text, tiny_encoder_dir):
    tok = load_tokenizer(str(tiny_encoder_dir))
    paragraphs = [p for p in re.split(r"\n\s*\n", text + TRICKY * 3) if p.strip()]
    want = tok(paragraphs, add_special_tokens=False, verbose=False)["input_ids"]
    assert fast_tokenize(tok)(paragraphs) == want


def test_bpe_merges_are_learned_from_a_bounded_sample(text, tmp_path, monkeypatch):
    sample = 20_000
    monkeypatch.setattr(tokenizers, "BPE_SAMPLE_CHARS", sample)
    monkeypatch.setattr(prepare, "BPE_SAMPLE_CHARS", sample)
    stream = string_stream(text, "test", 4096)
    stream.scan()
    cut = int(len(text) * 0.9)
    with EntryWriter(tmp_path / "entry") as out:
        meta = out.commit(build_lm(stream, cut, out, "bpe", 300))
    on_sample = tokenizers.BPETokenizer.train(text[:sample], 300)
    assert meta["tokenizer"] == on_sample.to_dict()  # the sample's merges...
    on_all = tokenizers.BPETokenizer.train_from_lines([text[:cut].splitlines(True)], 300)
    assert on_sample.to_dict() != on_all.to_dict()  # (which are not the whole split's)
    got = np.fromfile(tmp_path / "entry" / "train.bin", dtype=meta["dtype"])
    assert np.array_equal(got, on_sample.encode(text[:cut]))  # ...encode the whole split


def test_a_file_that_changes_while_it_is_read_is_refused_and_nothing_cached(tmp_path, text):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text)

    def build(stream, cut, out):  # a writer appends to the corpus during the tokenizing pass
        for i, piece in enumerate(stream.pieces()):
            if i == 0:
                with open(corpus, "a") as f:
                    f.write("a late line\n")
            out.array("train", 300).write(np.zeros(len(piece), dtype=np.uint16))
        return {}

    with pytest.raises(ConfigError, match=r"data.path=.*corpus.txt.* changed while it was being"):
        cache.load_or_build(tmp_path / "cache", CorpusSource(path=str(corpus)), "k", 0.1, build)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


KILLED_BUILD = """
import sys
from wavelab.data.lm import LMDataModule
LMDataModule(path=sys.argv[1], cache_dir=sys.argv[2], tokenizer="char").prepare_data()
"""


def test_a_kill_during_preparation_leaves_no_entry_and_the_rerun_rebuilds_it(tmp_path, text):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text * 200)  # ~18 MB: the tokenizing pass lasts long enough to be hit
    root = tmp_path / "cache"
    job = subprocess.Popen(
        [sys.executable, "-c", KILLED_BUILD, str(corpus), str(root)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 120
    while not list(root.glob("tokens/*/.train.bin.tmp*")):
        assert job.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    job.send_signal(signal.SIGKILL)
    job.wait()
    (entry,) = root.glob("tokens/*")
    assert not (entry / "meta.json").exists() and list(entry.glob(".*.tmp*"))
    from wavelab.data.lm import LMDataModule

    dm = LMDataModule(path=str(corpus), cache_dir=str(root), tokenizer="char")
    dm.setup()
    assert len(dm.splits["train"]) + len(dm.splits["val"]) == len(text) * 200
    assert not list(entry.glob(".*.tmp*"))  # the killed build's temp files are gone


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/dev/null", "a character device"), ("/dev/zero", "a character device"), (None, "FIFO")],
)
def test_a_path_that_is_not_a_regular_file_is_named_for_what_it_is(entry, tmp_path, path, kind):
    if path is None:
        path = tmp_path / "pipe"
        os.mkfifo(path)  # nobody writes it: reading it would hang
    result = entry("run", "model=gpt", *LM_SMALL, f"data.path={path}", timeout=120)
    assert_clean_error(result, "data.path", str(path), kind, "not a regular file")
