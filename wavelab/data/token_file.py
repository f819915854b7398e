"""A cached token split read window by window with ``os.pread``, not mapped into memory.

A memmap of the split keeps every page it has touched in the process's resident set: random
windows over an epoch touch all of them, so RSS grows to the file's size even though the pages
are clean and the kernel may drop them. Reading each window with ``pread`` copies just its bytes
into a fresh array, so the process holds no more of the file than a batch needs, whatever the
corpus size. The page cache still serves repeated reads, but it is the kernel's memory, not the
run's.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class TokenFile:
    """The tokens of one split file: ``len()``, and ``[a:b]`` slices as fresh numpy arrays."""

    def __init__(self, path: Path, dtype: str | np.dtype):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.size = os.path.getsize(self.path) // self.dtype.itemsize
        self._fd: int | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.size

    def _file(self) -> int:
        """This process's descriptor, opened on first read: a DataLoader worker receives the
        TokenFile pickled, without one, and opens its own."""
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError(f"TokenFile reads contiguous slices, not {index!r}")
        start, stop, _ = index.indices(self.size)
        count = max(0, stop - start)
        item = self.dtype.itemsize
        data = os.pread(self._file(), count * item, start * item)
        return np.frombuffer(data, dtype=self.dtype).copy()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The whole split (for small splits and tests; training reads windows)."""
        tokens = self[:]
        return tokens if dtype is None else tokens.astype(dtype)

    def __getstate__(self) -> dict:
        return {"path": self.path, "dtype": self.dtype, "size": self.size}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _fd=None, _pid=None)

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)
