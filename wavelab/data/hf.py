"""Text from the Hugging Face ``datasets`` library, read row batch by row batch.

Three ways in, chosen by the corpus keys (``wavelab.data.source.CorpusSource``):

- ``hf_disk``: a directory written by ``Dataset.save_to_disk`` (or ``DatasetDict``'s);
- ``hf_data_files``: local files read by a ``datasets`` builder (``hf_name`` = text, json,
  parquet or csv; left null, it follows the files' extension);
- ``hf_name`` alone: a dataset on the hub (needs a network or the local Hugging Face cache).

``hf_streaming`` reads files and hub datasets as an ``IterableDataset``: nothing is converted to
Arrow first. The corpus is the named column's rows joined by newlines, as one text.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path

from wavelab.core.errors import ConfigError
from wavelab.data.stream import TextStream, regular_file

BUILDERS = {".txt": "text", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
ROWS_PER_BATCH = 1024


def _data_files(pattern: str | list) -> list[str]:
    patterns = [pattern] if isinstance(pattern, str) else [str(p) for p in pattern]
    files = []
    for p in patterns:
        matches = sorted(glob.glob(os.path.expanduser(p), recursive=True))
        if not matches:
            raise ConfigError(f"data.hf_data_files={p!r} is invalid: it matches no file")
        files += [str(regular_file(m, "data.hf_data_files")) for m in matches]
    return files


def _builder(name: str | None, files: list[str]) -> str:
    if name:
        return name
    suffixes = {Path(f).suffix.lower() for f in files}
    builders = {BUILDERS.get(s) for s in suffixes}
    if len(builders) != 1 or None in builders:
        raise ConfigError(
            f"data.hf_data_files has files ending in {sorted(suffixes)}: set data.hf_name to the "
            f"datasets builder that reads them ({', '.join(sorted(set(BUILDERS.values())))})"
        )
    return builders.pop()


def _open(source, cache_dir: Path):
    """The dataset (``Dataset`` or ``IterableDataset``) of the corpus keys, and their key."""
    import datasets

    hf_cache = str(cache_dir / "hf")
    if source.hf_disk:
        key = f"data.hf_disk={str(source.hf_disk)!r}"
        path = Path(source.hf_disk).expanduser()
        if not path.is_dir():
            raise ConfigError(f"{key} is invalid: not a directory written by save_to_disk")
        try:
            ds = datasets.load_from_disk(str(path))
        except Exception as e:  # datasets raises FileNotFoundError, ValueError, ArrowInvalid...
            raise ConfigError(f"{key} could not be loaded as a saved dataset: {e}") from None
        if isinstance(ds, datasets.DatasetDict):
            if source.hf_split not in ds:
                raise ConfigError(
                    f"data.hf_split={source.hf_split!r} is invalid: {key} has the splits "
                    f"{sorted(ds)}"
                )
            ds = ds[source.hf_split]
        return ds, key
    if source.hf_data_files:
        files = _data_files(source.hf_data_files)
        builder = _builder(source.hf_name, files)
        key = f"data.hf_data_files={source.hf_data_files!r}"
        try:
            ds = datasets.load_dataset(
                builder,
                data_files=files,
                split=source.hf_split,
                streaming=source.hf_streaming,
                cache_dir=hf_cache,
            )
        except Exception as e:  # a file the builder cannot parse, an unknown split, ...
            raise ConfigError(
                f"{key} could not be read with the {builder!r} builder: {_first_line(e)}"
            ) from None
        return ds, key
    name, config, split = source.hf_name, source.hf_config, source.hf_split
    try:
        ds = datasets.load_dataset(name, config, split=split, streaming=source.hf_streaming)
    except Exception as e:  # datasets raises many types for "offline" and "no such dataset"
        raise ConfigError(
            f"data.hf_name={name!r} (hf_config={config!r}, hf_split={split!r}) could not be "
            f"loaded: {_first_line(e)}. It needs a network or a local Hugging Face cache; "
            "offline, use data=shakespeare_char, data.path=/path/to/text.txt, or local files "
            "with data.hf_data_files=... or data.hf_disk=..."
        ) from None
    return ds, f"data.hf_name={name!r}"


def _first_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def _rows(ds, column: str, key: str) -> Iterator[list[str]]:
    names = ds.column_names
    if names is None:  # a streamed dataset learns its columns from its first rows
        first = next(iter(ds), {})
        names = list(first)
    if column not in names:
        raise ConfigError(
            f"data.hf_text_column={column!r} is invalid: the dataset of {key} has the columns "
            f"{list(names)}"
        )
    try:
        for batch in ds.select_columns([column]).iter(batch_size=ROWS_PER_BATCH):
            rows = batch[column]
            if not all(isinstance(r, str) for r in rows):
                bad = next(r for r in rows if not isinstance(r, str))
                raise ConfigError(
                    f"data.hf_text_column={column!r} is invalid: it holds a "
                    f"{type(bad).__name__}, not text, in the dataset of {key}"
                )
            yield rows
    except ConfigError:
        raise
    except Exception as e:  # a file that turns out unreadable part-way (streaming reads late)
        raise ConfigError(f"{key} could not be read: {_first_line(e)}") from None


def hf_stream(source, cache_dir: Path) -> TextStream:
    """The corpus of ``source`` (a ``CorpusSource`` with hf_* keys) as a ``TextStream``."""
    ds, key = _open(source, cache_dir)

    def pieces() -> Iterator[str]:
        first = True
        for rows in _rows(ds, source.hf_text_column, key):
            if not rows:
                continue
            yield ("" if first else "\n") + "\n".join(rows)
            first = False

    return TextStream(pieces, key)
