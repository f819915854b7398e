"""The train sampler's order: a bijection per epoch, disjoint across ranks, resumable, and in
memory that does not grow with the dataset (checked by enumeration at small sizes and by
tracemalloc at a billion windows)."""

from __future__ import annotations

import itertools
import tracemalloc

import pytest

from wavelab.data.loading import ResumableSampler
from wavelab.data.permutation import Permutation, derive_key


class Sized:
    """A dataset of ``n`` items that holds none of them: the sampler only reads its length."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 100, 1000, 4097])
@pytest.mark.parametrize("key", [0, 1, derive_key(7, 3)])
def test_the_permutation_is_a_bijection_of_range_n(n, key):
    perm = Permutation(n, key)
    assert sorted(perm[i] for i in range(n)) == list(range(n))
    with pytest.raises(IndexError):
        perm[n]


def test_each_epoch_and_seed_has_its_own_order():
    orders = {
        tuple(Permutation(1000, derive_key(seed, epoch))[i] for i in range(1000))
        for seed in (0, 1)
        for epoch in (0, 1, 2)
    }
    assert len(orders) == 6
    identity = tuple(range(1000))
    assert identity not in orders
    # shuffled, not nearly sorted: few neighbours in the order are neighbours in the data
    order = next(iter(orders))
    assert sum(abs(a - b) == 1 for a, b in itertools.pairwise(order)) < 20


def epoch(n: int, world: int, rank: int, seed: int = 3, ep: int = 0, skip: int = 0) -> list:
    sampler = ResumableSampler(Sized(n), num_replicas=world, rank=rank, seed=seed, skip=skip)
    sampler.set_epoch(ep)
    return list(sampler)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 101, 1000])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_ranks_read_disjoint_slices_of_one_order_dropping_the_remainder(n, world):
    order = [Permutation(n, derive_key(3, 1))[i] for i in range(n)]
    ranks = [epoch(n, world, r, ep=1) for r in range(world)]
    per_rank = n // world  # drop_last: every rank reads as many, none is padded
    for r, got in enumerate(ranks):
        assert len(got) == per_rank == len(ResumableSampler(Sized(n), world, r, seed=3))
        assert got == order[r : per_rank * world : world]  # positions r, r + world, ...
    seen = [i for got in ranks for i in got]
    assert len(set(seen)) == len(seen) == per_rank * world  # disjoint, and nothing but the cut


@pytest.mark.parametrize("world", [1, 3])
@pytest.mark.parametrize("skip", [0, 1, 10, 33])
def test_a_resumed_epoch_reads_the_rest_without_repeat_or_skip(world, skip):
    n = 100
    for rank in range(world):
        full = epoch(n, world, rank, ep=2)
        sampler = ResumableSampler(Sized(n), num_replicas=world, rank=rank, seed=3, skip=skip)
        sampler.set_epoch(2)
        resumed = list(sampler)
        assert full[:skip] + resumed == full  # what was read before, then exactly the rest
        sampler.set_epoch(3)
        assert list(sampler) == epoch(n, world, rank, ep=3)  # the next epoch is whole


def test_a_billion_windows_cost_no_memory_to_shuffle():
    n = 10**9
    tracemalloc.start()
    try:
        sampler = ResumableSampler(Sized(n), num_replicas=2, rank=1, seed=5, skip=12345)
        sampler.set_epoch(4)
        drawn = list(itertools.islice(iter(sampler), 1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, f"{peak} bytes traced"
    assert len(set(drawn)) == 1000 and all(0 <= i < n for i in drawn)
    order = Permutation(n, derive_key(5, 4))
    assert drawn[:3] == [order[1 + 2 * (12345 + k)] for k in range(3)]
