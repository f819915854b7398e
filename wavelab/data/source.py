"""Which text a datamodule reads: the corpus keys every datamodule shares.

In a data config they sit flat beside the datamodule's own keys (``data.path=...``,
``data.hf_name=...``); each datamodule takes them as ``**source`` and reads its text through
one ``CorpusSource``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from wavelab.core.errors import ConfigError


@dataclass(frozen=True)
class CorpusSource:
    """``path`` wins over ``hf_name``, which wins over ``corpus`` (``wavelab.data.corpora``)."""

    corpus: str | None = "shakespeare"  # shakespeare | tinyshakespeare
    path: str | None = None  # a local text file
    hf_name: str | None = None  # a Hugging Face `datasets` name (needs a network)
    hf_config: str | None = None  # its config, e.g. wikitext-103-raw-v1
    hf_split: str = "train"  # the split to read; wavelab makes its own train/val split
    hf_text_column: str = "text"  # the column holding the text

    @classmethod
    def from_keys(cls, keys: Mapping, owner: str) -> CorpusSource:
        """The source of a datamodule's ``**source`` keys; ConfigError for a key it does not
        know (``owner``: the datamodule's name, for the message)."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(keys) - set(known))
        if unknown:
            raise ConfigError(
                f"data.{unknown[0]} is not an option of {owner}: its corpus keys are "
                f"{', '.join(known)} (the others: see its config in conf/data/)"
            )
        return cls(**keys)

    def load_kwargs(self) -> dict:
        """Keyword arguments of ``wavelab.data.corpora.load_corpus`` (without ``cache_dir``)."""
        return dataclasses.asdict(self)
