"""Tokenized corpora cached as flat memmaps, keyed by corpus content and tokenizer.

Layout: ``<cache_dir>/tokens/<corpus sha256[:16]>-<tokenizer key>/<array>.bin`` (e.g.
``train.bin``, ``val.bin``) plus ``meta.json`` (dtype, lengths, each file's sha256, the tokenizer
itself). Arrays are written as they are tokenized, into temp files that are renamed into place
when complete, and ``meta.json`` last, so a crash mid-way leaves no entry that looks complete, and concurrent writers (DDP ranks, parallel sweep jobs) at worst do the
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
from wavelab.data.corpora import corpus_stream
from wavelab.data.source import CorpusSource
from wavelab.data.stream import TextStream
from wavelab.data.token_file import TokenFile
from wavelab.data.writer import EntryWriter

log = logging.getLogger(__name__)


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


def open_tokens(entry: Path, meta: dict, name: str, row: tuple[int, ...] = ()) -> TokenFile:
    """A token split read window by window, or in rows of ``row`` (``TokenFile``): training's
    RSS stays that of its batches, not the split's."""
    return TokenFile(entry / f"{name}.bin", meta["dtype"], row)


Build = Callable[[TextStream, int, "EntryWriter"], dict]


def load_or_build(
    cache_dir: str | Path,
    source: CorpusSource,
    key: str,
    val_fraction: float,
    build: Build,
    min_lengths: Mapping[str, tuple[int, str]] | None = None,
    length_setting: str = "",
) -> tuple[Path, dict]:
    """The cache entry for the corpus of ``source`` tokenized as ``key``.

    The text is streamed twice: once to hash it (the entry's name), and on a miss once more by
    ``build(text, cut, out)``, which writes its arrays through ``out`` and returns the meta to
    store. The split is contiguous: the first ``cut`` characters are training, the last
    ``val_fraction`` of them validation. ``min_lengths`` maps an array to the length it needs
    and what that counts (e.g. ``{"train": (65, "training tokens")}``); a shorter array means
    the corpus is too short for the settings named in ``length_setting`` (e.g.
    ``data.block_size=64``): a ConfigError, and nothing cached.
    """
    cache_dir = Path(cache_dir).expanduser()
    text = corpus_stream(source, cache_dir)
    scan = text.scan()
    if scan.blank:
        raise ConfigError(f"{text.describe} is invalid: the text is empty")
    entry = entry_dir(cache_dir, scan.sha256, key)

    def check(lengths: Mapping[str, int]) -> None:
        for name, (need, what) in (min_lengths or {}).items():
            if lengths[name] < need:
                raise ConfigError(
                    f"{text.describe} is too short for {length_setting}, "
                    f"data.val_fraction={val_fraction}: it gives {lengths[name]} {what}, at "
                    f"least {need} are needed (use a longer text or smaller settings)"
                )

    meta = read_meta(entry)
    if meta is not None:
        check(meta["lengths"])
        return entry, meta
    atomic.remove_stale_temp_files(entry)  # of a build that was killed
    log.info("tokenizing %s characters into %s", f"{scan.n_chars:,}", entry)
    cut = int(scan.n_chars * (1.0 - val_fraction))
    with EntryWriter(entry) as out:
        meta = build(text, cut, out)
        check(out.lengths)
        meta = out.commit(meta)
    return entry, meta
