"""Tokenized corpora cached as flat memmaps, keyed by corpus content and tokenizer.

Layout: ``<cache_dir>/tokens/<corpus sha256[:16]>-<tokenizer key>/{train,val}.bin`` plus
``meta.json`` (dtype, lengths, the tokenizer itself). Every file is written atomically, and
``meta.json`` last, so a crash mid-way leaves no entry that looks complete, and concurrent
writers (DDP ranks, parallel sweep jobs) at worst do the same work twice.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wavelab.data.corpora import atomic_write_bytes

SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def entry_dir(cache_dir: Path, corpus_sha: str, tokenizer_key: str) -> Path:
    return Path(cache_dir).expanduser() / "tokens" / f"{corpus_sha[:16]}-{tokenizer_key}"


def read_meta(entry: Path) -> dict | None:
    meta = entry / "meta.json"
    return json.loads(meta.read_text()) if meta.exists() else None


def write_entry(entry: Path, splits: dict[str, np.ndarray], meta: dict) -> dict:
    dtype = token_dtype(meta["vocab_size"])
    for name, ids in splits.items():
        atomic_write_bytes(entry / f"{name}.bin", np.asarray(ids, dtype=dtype).tobytes())
    meta = {**meta, "dtype": dtype.name, "lengths": {k: len(v) for k, v in splits.items()}}
    atomic_write_bytes(entry / "meta.json", json.dumps(meta, indent=1).encode())
    return meta


def open_split(entry: Path, meta: dict, split: str) -> np.memmap:
    return np.memmap(entry / f"{split}.bin", dtype=meta["dtype"], mode="r")
