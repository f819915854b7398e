"""Tokenized corpora cached as flat memmaps, keyed by corpus content and tokenizer.

Layout: ``<cache_dir>/tokens/<corpus sha256[:16]>-<tokenizer key>/<array>.bin`` (e.g.
``train.bin``, ``val.bin``) plus ``meta.json`` (dtype, lengths, each file's sha256, the tokenizer
itself). Every file is written atomically, and ``meta.json`` last, so a crash mid-way leaves no
entry that looks complete, and concurrent writers (DDP ranks, parallel sweep jobs) at worst do the
same work twice. An entry whose files no longer match their recorded size and hash (a truncated
copy, a disk error) is rebuilt, with a warning, instead of silently training on part of the data.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from wavelab.core import atomic
from wavelab.core.errors import ConfigError
from wavelab.data.corpora import load_corpus, sha256_hex

log = logging.getLogger(__name__)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def entry_dir(cache_dir: Path, corpus_sha: str, tokenizer_key: str) -> Path:
    return Path(cache_dir).expanduser() / "tokens" / f"{corpus_sha[:16]}-{tokenizer_key}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def damage(entry: Path, meta: dict) -> str | None:
    """Why the entry's arrays don't match ``meta.json`` (None when they all do)."""
    hashes = meta.get("sha256")
    if hashes is None:
        return "it records no file hashes (written by an older wavelab)"
    itemsize = np.dtype(meta["dtype"]).itemsize
    for name, length in meta["lengths"].items():
        path = entry / f"{name}.bin"
        if not path.is_file():
            return f"{path.name} is missing"
        if path.stat().st_size != length * itemsize:
            return f"{path.name} has {path.stat().st_size} bytes, expected {length * itemsize}"
        if file_sha256(path) != hashes[name]:
            return f"{path.name} does not match its recorded sha256"
    return None


def read_meta(entry: Path) -> dict | None:
    """The entry's meta.json if the entry is complete and intact, else None (with a warning
    when an entry exists but is damaged)."""
    meta_path = entry / "meta.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        problem = damage(entry, meta)
    except (ValueError, KeyError, TypeError) as e:
        problem = f"meta.json is unreadable ({e})"
    if problem is None:
        return meta
    log.warning("token cache %s is damaged: %s; rebuilding it", entry, problem)
    return None


def write_entry(entry: Path, arrays: dict[str, np.ndarray], meta: dict) -> dict:
    dtype = token_dtype(meta["vocab_size"])
    hashes = {}
    for name, ids in arrays.items():
        data = np.asarray(ids, dtype=dtype).tobytes()
        atomic.write_bytes(entry / f"{name}.bin", data)
        hashes[name] = sha256_hex(data)
    meta = {
        **meta,
        "dtype": dtype.name,
        "lengths": {k: len(v) for k, v in arrays.items()},
        "sha256": hashes,
    }
    atomic.write_text(entry / "meta.json", json.dumps(meta, indent=1))
    return meta


def open_array(entry: Path, meta: dict, name: str) -> np.memmap:
    return np.memmap(entry / f"{name}.bin", dtype=meta["dtype"], mode="r")


def describe_corpus(corpus: Mapping) -> str:
    """The config key and value that chose the text, for error messages."""
    for key in ("path", "hf_name", "corpus"):
        if corpus.get(key):
            return f"data.{key}={str(corpus[key])!r}"
    return "the corpus"


CorpusSplitter = Callable[[str, str, str], tuple[dict[str, np.ndarray], dict]]


def load_or_build(
    cache_dir: str | Path,
    corpus: dict,
    key: str,
    val_fraction: float,
    build: CorpusSplitter,
    min_lengths: Mapping[str, tuple[int, str]] | None = None,
    length_setting: str = "",
) -> tuple[Path, dict]:
    """The cache entry for ``corpus`` (``load_corpus`` keyword arguments) tokenized as ``key``.

    On a miss, ``build(text, train_text, val_text)`` returns the arrays and meta to store; the
    split is contiguous, the last ``val_fraction`` of the characters being validation.
    ``min_lengths`` maps an array to the length it needs and what that counts (e.g. ``{"train":
    (65, "training tokens")}``); a shorter array means the corpus is too short for the settings
    named in ``length_setting`` (e.g. ``data.block_size=64``): a ConfigError, and nothing cached.
    """
    cache_dir = Path(cache_dir).expanduser()
    text = load_corpus(**corpus, cache_dir=cache_dir)
    if not text.strip():
        raise ConfigError(f"{describe_corpus(corpus)} is invalid: the text is empty")
    entry = entry_dir(cache_dir, sha256_hex(text.encode()), key)

    def check(lengths: Mapping[str, int]) -> None:
        for name, (need, what) in (min_lengths or {}).items():
            if lengths[name] < need:
                raise ConfigError(
                    f"{describe_corpus(corpus)} is too short for {length_setting}, "
                    f"data.val_fraction={val_fraction}: it gives {lengths[name]} {what}, at "
                    f"least {need} are needed (use a longer text or smaller settings)"
                )

    meta = read_meta(entry)
    if meta is not None:
        check(meta["lengths"])
        return entry, meta
    log.info("tokenizing %s characters into %s", f"{len(text):,}", entry)
    cut = int(len(text) * (1.0 - val_fraction))
    arrays, meta = build(text, text[:cut], text[cut:])
    check({name: len(ids) for name, ids in arrays.items()})
    return entry, write_entry(entry, arrays, meta)
