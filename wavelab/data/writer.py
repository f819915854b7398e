"""Token arrays written as they are made: appended to temp files, hashed on the way, renamed into
place together when the whole entry is complete.

Plain appends, not a memmap: a full disk is then an ``OSError`` at the write that did not fit
(reported as one line, with the temp files removed) rather than a SIGBUS at some later page.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from wavelab.core import atomic
from wavelab.core.errors import ConfigError


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id: a byte per character of most text."""
    for dtype in (np.uint8, np.uint16):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint32)


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds ``path`` (or would, once created)."""
    path = Path(path).expanduser().absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def disk_full(path: Path, what: str) -> ConfigError:
    return ConfigError(
        f"disk full while writing {path} ({what}; {gb(free_bytes(path.parent))} free): nothing "
        "was cached; free some space or set paths.cache_dir to a larger disk"
    )


class ArrayWriter:
    """One flat array of ``dtype``, appended to ``path``'s temp file."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.path, self.dtype = path, np.dtype(dtype)
        self.tmp = atomic.temp_path(path)
        self.length = 0
        self.digest = hashlib.sha256()
        self._file = open(self.tmp, "wb")  # noqa: SIM115 (closed by finish or EntryWriter)

    def write(self, values) -> None:
        data = np.ascontiguousarray(values, dtype=self.dtype)  # written and hashed in place
        try:
            self._file.write(data)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise disk_full(self.path, "the token cache") from None
            raise
        self.digest.update(data)
        self.length += data.size

    def finish(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise disk_full(self.path, "the token cache") from None
            raise
        finally:
            self._file.close()


class EntryWriter:
    """``with EntryWriter(entry) as out: out.array(name, vocab_size).write(ids); out.commit(meta)``.

    Nothing appears under ``entry`` but temp files until ``commit``, which renames the arrays into
    place and writes ``meta.json`` last; leaving the block without it removes the temp files.
    """

    def __init__(self, entry: Path):
        self.entry = entry
        self.arrays: dict[str, ArrayWriter] = {}

    def __enter__(self) -> EntryWriter:
        self.entry.mkdir(parents=True, exist_ok=True)
        return self

    def array(self, name: str, vocab_size: int) -> ArrayWriter:
        writer = ArrayWriter(self.entry / f"{name}.bin", token_dtype(vocab_size))
        self.arrays[name] = writer
        return writer

    @property
    def lengths(self) -> dict[str, int]:
        return {name: w.length for name, w in self.arrays.items()}

    def reserve(self, n_bytes: int, what: str) -> None:
        """ConfigError unless the disk has ``n_bytes`` free for ``what``."""
        free = free_bytes(self.entry)
        if n_bytes > free:
            raise ConfigError(
                f"the token cache for {what} needs {gb(n_bytes)} in {self.entry}, but its disk "
                f"has {gb(free)} free: free some space or set paths.cache_dir to a larger disk"
            )

    def commit(self, meta: dict) -> dict:
        dtypes = {w.dtype.name for w in self.arrays.values()}
        assert len(dtypes) == 1, f"one dtype per entry, got {dtypes}"
        for writer in self.arrays.values():
            writer.finish()
        for writer in self.arrays.values():
            os.replace(writer.tmp, writer.path)
        meta = {
            **meta,
            "dtype": dtypes.pop(),
            "lengths": self.lengths,
            "sha256": {name: w.digest.hexdigest() for name, w in self.arrays.items()},
        }
        try:
            atomic.write_text(self.entry / "meta.json", json.dumps(meta, indent=1))
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise disk_full(self.entry / "meta.json", "the token cache") from None
            raise
        return meta

    def __exit__(self, *exc) -> None:
        for writer in self.arrays.values():
            if not writer._file.closed:
                writer._file.close()
            writer.tmp.unlink(missing_ok=True)
