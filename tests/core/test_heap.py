"""trim_heap returns the pages of freed tensors that glibc's heap would otherwise keep."""

import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")

# In a fresh process: one 16 MB tensor freed raises glibc's mmap threshold, so the next ~400 MB
# of 1-4 MB tensors come from the heap; a small tensor after each keeps the freed ones from
# being the heap's top, which malloc would shrink on its own. Prints resident MB: with the
# tensors, after freeing them, after trim_heap.
SCRIPT = textwrap.dedent(
    """
    import os
    import torch
    from wavelab.core.heap import trim_heap

    def resident_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    first = torch.ones(16 << 20, dtype=torch.uint8)
    del first
    big, pins = [], []
    for i in range(160):
        big.append(torch.ones((1 + i % 4) << 20, dtype=torch.uint8))
        pins.append(torch.ones(64, dtype=torch.uint8))
    held = resident_mb()
    del big
    freed = resident_mb()
    trim_heap()
    print(held, freed, resident_mb())
    """
)


def test_trim_heap_returns_freed_tensors_pages():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    ).stdout
    held, freed, trimmed = map(float, out.split())
    tensors_mb = 160 * 2.5
    assert held - freed < tensors_mb / 2, "glibc returned the pages itself: nothing to trim"
    assert freed - trimmed > 0.8 * tensors_mb
