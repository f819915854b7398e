"""A cached token split read window by window with ``os.pread``, not mapped into memory.

A memmap of the split keeps every page it has touched in the process's resident set: random
windows over an epoch touch all of them, so RSS grows to the file's size even though the pages
are clean and the kernel may drop them. Reading each window with ``pread`` copies just its bytes
into a fresh array, so the process holds no more of the file than a batch needs, whatever the
corpus size. The page cache still serves repeated reads, but it is the kernel's memory, not the
run's.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np


class TokenFile:
    """One cached array file, flat or in rows of shape ``row`` (WavGPT's blocks, a teacher
    cache's per-block arrays): ``len()`` counts rows, ``[i]`` is one and ``[a:b]`` several,
    as fresh arrays."""

    def __init__(self, path: Path, dtype: str | np.dtype, row: tuple[int, ...] = ()):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row = tuple(row)
        self.size = os.path.getsize(self.path) // (self.dtype.itemsize * math.prod(self.row))
        self._fd: int | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.size

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.size, *self.row)

    @property
    def nbytes(self) -> int:
        """Bytes of its whole rows, as a numpy array's ``nbytes``."""
        return self.size * self.dtype.itemsize * math.prod(self.row)

    def _file(self) -> int:
        """This process's descriptor, opened on first read: a DataLoader worker receives the
        TokenFile pickled, without one, and opens its own."""
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def __getitem__(self, index: int | slice) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            i = int(index) + self.size if index < 0 else int(index)
            if not 0 <= i < self.size:
                raise IndexError(f"index {index} of {self.size}")
            return self[i : i + 1][0]
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError(f"TokenFile reads rows and contiguous slices, not {index!r}")
        start, stop, _ = index.indices(self.size)
        count, item = max(0, stop - start), self.dtype.itemsize * math.prod(self.row)
        data = np.frombuffer(os.pread(self._file(), count * item, start * item), self.dtype)
        return data.reshape(count, *self.row).copy()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The whole split (for small splits and tests; training reads windows)."""
        tokens = self[:]
        return tokens if dtype is None else tokens.astype(dtype)

    def __getstate__(self) -> dict:
        return {"path": self.path, "dtype": self.dtype, "row": self.row, "size": self.size}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _fd=None, _pid=None)

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)
