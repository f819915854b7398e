"""Tokenized corpora cached as flat memmaps, keyed by corpus content and tokenizer.

Layout: ``<cache_dir>/tokens/<corpus sha256[:16]>-<tokenizer key>/<array>.bin`` (e.g.
``train.bin``, ``val.bin``) plus ``meta.json`` (dtype, lengths, the tokenizer itself). Every file is written atomically, and
``meta.json`` last, so a crash mid-way leaves no entry that looks complete, and concurrent
writers (DDP ranks, parallel sweep jobs) at worst do the same work twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wavelab.data.corpora import atomic_write_bytes, load_corpus, sha256_hex

log = logging.getLogger(__name__)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def entry_dir(cache_dir: Path, corpus_sha: str, tokenizer_key: str) -> Path:
    return Path(cache_dir).expanduser() / "tokens" / f"{corpus_sha[:16]}-{tokenizer_key}"


def read_meta(entry: Path) -> dict | None:
    meta = entry / "meta.json"
    return json.loads(meta.read_text()) if meta.exists() else None


def write_entry(entry: Path, arrays: dict[str, np.ndarray], meta: dict) -> dict:
    dtype = token_dtype(meta["vocab_size"])
    for name, ids in arrays.items():
        atomic_write_bytes(entry / f"{name}.bin", np.asarray(ids, dtype=dtype).tobytes())
    meta = {**meta, "dtype": dtype.name, "lengths": {k: len(v) for k, v in arrays.items()}}
    atomic_write_bytes(entry / "meta.json", json.dumps(meta, indent=1).encode())
    return meta


def open_array(entry: Path, meta: dict, name: str) -> np.memmap:
    return np.memmap(entry / f"{name}.bin", dtype=meta["dtype"], mode="r")


CorpusSplitter = Callable[[str, str, str], tuple[dict[str, np.ndarray], dict]]


def load_or_build(
    cache_dir: str | Path, corpus: dict, key: str, val_fraction: float, build: CorpusSplitter
) -> tuple[Path, dict]:
    """The cache entry for ``corpus`` (``load_corpus`` keyword arguments) tokenized as ``key``.

    On a miss, ``build(text, train_text, val_text)`` returns the arrays and meta to store; the
    split is contiguous, the last ``val_fraction`` of the characters being validation.
    """
    cache_dir = Path(cache_dir).expanduser()
    text = load_corpus(**corpus, cache_dir=cache_dir)
    entry = entry_dir(cache_dir, sha256_hex(text.encode()), key)
    meta = read_meta(entry)
    if meta is not None:
        return entry, meta
    log.info("tokenizing %s characters into %s", f"{len(text):,}", entry)
    cut = int(len(text) * (1.0 - val_fraction))
    arrays, meta = build(text, text[:cut], text[cut:])
    return entry, write_entry(entry, arrays, meta)
