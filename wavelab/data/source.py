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
    """``path`` wins over the ``datasets`` keys (``hf_disk``, then ``hf_data_files``, then
    ``hf_name``), which win over ``corpus`` (``wavelab.data.corpora``, ``wavelab.data.hf``)."""

    corpus: str | None = "shakespeare"  # shakespeare | tinyshakespeare
    path: str | None = None  # a local text file
    hf_name: str | None = None  # a hub dataset (needs a network), or the builder of hf_data_files
    hf_config: str | None = None  # its config, e.g. wikitext-103-raw-v1
    hf_split: str = "train"  # the split to read; wavelab makes its own train/val split
    hf_text_column: str = "text"  # the column holding the text
    hf_data_files: str | list | None = None  # local files (globs) for a builder: text/json/parquet
    hf_disk: str | None = None  # a dataset directory written by save_to_disk
    hf_streaming: bool = False  # read hf_data_files / hf_name as an IterableDataset

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
        keys = dict(keys)
        if keys.get("hf_data_files") is not None and not isinstance(keys["hf_data_files"], str):
            keys["hf_data_files"] = [str(f) for f in keys["hf_data_files"]]  # a ListConfig
        return cls(**keys)

    def load_kwargs(self) -> dict:
        """The keys as a plain dict."""
        return dataclasses.asdict(self)
