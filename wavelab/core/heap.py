"""Handing freed heap memory back to the system between the batches of a long inference loop.

On CPU, PyTorch's tensors live in glibc's malloc heap. glibc raises its mmap threshold to the
largest block freed so far, so after the first big tensors later ones come from the heap, and
memory freed there is kept for reuse; a loop over thousands of batches whose tensors differ in
size (codes of different lengths) fragments it, and the process holds memory that nothing
uses, more the longer it runs. ``trim_heap`` asks malloc to return it (``malloc_trim``); where
the C library has no ``malloc_trim`` (not glibc) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def _malloc_trim():
    return getattr(ctypes.CDLL(None), "malloc_trim", None)


def trim_heap() -> None:
    """Return the heap's free pages to the system, where malloc can."""
    malloc_trim = _malloc_trim()
    if malloc_trim is not None:
        malloc_trim(0)
