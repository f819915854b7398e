"""A seeded pseudo-random permutation of ``range(n)`` that is computed, not stored.

``Permutation(n, key)[i]`` is a bijection of ``[0, n)`` in O(1) memory: a balanced Feistel
network on the ``2 * half`` bits that cover ``n`` (a bijection of ``[0, 4 ** half)`` whatever its
round function), restricted to ``[0, n)`` by cycle walking: an image ``>= n`` is encrypted again
until it falls inside, which keeps it a bijection of ``[0, n)``. The domain is less than
``4 * n``, so a walk takes fewer than four steps on average. The round function is splitmix64's
finalizer, keyed per round; six rounds make the order look random to training (each window is
equally likely anywhere in the epoch), which is all a data order needs: it is not cryptographic.
"""

from __future__ import annotations

MASK64 = (1 << 64) - 1
ROUNDS = 6


def mix64(x: int) -> int:
    """splitmix64's finalizer: a bijective, well-mixing map of 64-bit integers."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def derive_key(*parts: int) -> int:
    """One 64-bit key from integers (a seed and an epoch, say): each part mixed in turn."""
    key = 0
    for part in parts:
        key = mix64(key ^ (part & MASK64))
    return key


class Permutation:
    """The bijection of ``[0, n)`` keyed by ``key`` (``derive_key(seed, epoch)``)."""

    def __init__(self, n: int, key: int):
        if n < 1:
            raise ValueError(f"a permutation of {n} items")
        self.n = n
        self.half = max(1, ((n - 1).bit_length() + 1) // 2)  # 4 ** half >= n
        self.mask = (1 << self.half) - 1
        self.round_keys = [derive_key(key, r) for r in range(ROUNDS)]

    def _encrypt(self, x: int) -> int:
        half, mask = self.half, self.mask
        left, right = x >> half, x & mask
        for k in self.round_keys:
            left, right = right, left ^ (mix64(right ^ k) & mask)
        return (left << half) | right

    def __getitem__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for a permutation of {self.n}")
        x = self._encrypt(i)
        while x >= self.n:  # cycle walking: ends, since the cycle through i holds i < n
            x = self._encrypt(x)
        return x

    def __len__(self) -> int:
        return self.n
