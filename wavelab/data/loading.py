"""DataLoaders shared by wavelab's datamodules: seeded, resumable, sharded across DDP ranks."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from wavelab.core.errors import ConfigError
from wavelab.data.permutation import Permutation, derive_key

log = logging.getLogger(__name__)


class ResumableSampler(DistributedSampler):
    """Seeded shuffled windows, sharded across ranks, that can start part-way into an epoch, in
    memory that does not grow with the dataset.

    Each epoch's order is ``Permutation(len(dataset), derive_key(seed, epoch))``, computed index
    by index rather than stored (``torch.randperm`` would hold one int per window). As in a
    ``DistributedSampler`` with ``drop_last=True``, the order is cut to a multiple of the world
    size and rank ``r`` reads its positions ``r, r + world_size, ...``, so ranks are disjoint and
    together read one order. Lightning cannot restore a sampler's position, so a resumed run is
    told how many of its samples the interrupted run already consumed (``skip``) and starts the
    epoch it resumes there. Being a ``DistributedSampler``, Lightning does not replace it under
    DDP.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, skip: int = 0):
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        start, self.skip = self.skip, 0  # only the epoch being resumed starts late
        if self.num_samples == 0:
            return iter(())
        order = Permutation(len(self.dataset), derive_key(self.seed, self.epoch))
        step = self.num_replicas
        positions = range(self.rank + start * step, self.total_size, step)
        return map(order.__getitem__, positions)

    # __len__ stays the full epoch: Lightning's restored batch counter already counts the skipped
    # batches, so the epoch ends exactly where the uninterrupted one did.


class ShardedDataModule(L.LightningDataModule):
    """Base for datamodules with ``batch_size`` and ``num_workers`` hyperparameters.

    ``train_loader`` shuffles with the run's seed, shards over ranks and resumes mid-epoch;
    ``shardable`` trims fixed validation sets so that no rank repeats an item.
    """

    @staticmethod
    def check_val_fraction(val_fraction: float) -> None:
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction} is invalid: must be in (0, 1)")

    def _world(self) -> tuple[int, int]:
        """(world size, global rank) of the attached trainer; (1, 0) when used on its own."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer else (1, 0)

    def train_loader(self, ds: Dataset) -> DataLoader:
        batch_size = self.hparams.batch_size
        world_size, rank = self._world()
        skip = 0
        if self.trainer is not None:  # resuming: skip what the interrupted run already read
            batches_done = self.trainer.global_step * self.trainer.accumulate_grad_batches
            per_epoch = (len(ds) // world_size) // batch_size
            skip = (batches_done % per_epoch) * batch_size if per_epoch else 0
        # The run's seed (seed_everything exports it), so the data order follows `seed`.
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = ResumableSampler(ds, world_size, rank, seed=seed, skip=skip)
        return self.loader(ds, sampler=sampler, drop_last=True)

    def shardable(self, items: np.ndarray | range, key: str) -> np.ndarray | range:
        """``items`` cut to a multiple of the world size.

        DistributedSampler would pad the last ranks with repeated items, which the synced means
        then count twice; drop the remainder instead, and say so.
        """
        world_size, _ = self._world()
        keep = len(items) - len(items) % world_size
        if keep < len(items):
            log.warning(
                "%d validation items do not split over %d processes: using the first %d "
                "(set %s to a multiple of the world size)",
                len(items),
                world_size,
                keep,
                key,
            )
        return items[:keep]

    def loader(self, ds: Dataset, sampler=None, drop_last: bool = False) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=drop_last,
        )
