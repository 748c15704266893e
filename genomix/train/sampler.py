"""A sampler that can resume in the middle of an epoch with exactly the same data order.

The order of an epoch is a pure function of ``(seed, epoch)``; each rank takes every
``world_size``-th index. The sampler counts the samples that were actually *trained* (advanced by
:class:`~genomix.train.callbacks.SamplerProgress` after each training batch, not when the dataloader
prefetches), and that count is saved in the Lightning checkpoint through
:class:`ResumableDataLoader`'s ``state_dict``. On resume the epoch's first ``consumed`` samples are
skipped, so the run continues with the batch the interrupted run would have trained next.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from ..errors import TrainingError


class ResumableSampler(Sampler[int]):
    """Indices ``0..num_samples-1`` (shuffled per epoch if asked), sharded over ranks, resumable.

    ``len()`` is the full per-rank epoch length even after a resume, so Lightning's batch counter,
    which it restores itself, still ends the epoch at the right batch.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        epoch: int = 0,
        seed: int = 0,
        shuffle: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_samples % world_size:
            raise TrainingError(f"{num_samples} samples per epoch do not divide over {world_size} ranks")
        self.num_samples = num_samples
        self.epoch = epoch
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.consumed = 0  # samples of this epoch already trained on this rank

    def __len__(self) -> int:
        return self.num_samples // self.world_size

    def order(self) -> list[int]:
        """This rank's full index order for the current epoch."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            indices = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            indices = list(range(self.num_samples))
        return indices[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.consumed :])

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0

    def advance(self, n: int) -> None:
        """Record that ``n`` more samples of this epoch were trained."""
        self.consumed += n

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed,
                "num_samples": self.num_samples, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue an epoch; a state from another epoch (saved at an epoch end) means start fresh."""
        if state.get("seed") != self.seed:
            raise TrainingError(
                f"the checkpoint's data order used seed {state.get('seed')}, this run seed {self.seed}; "
                "resume with the same recipe seed"
            )
        if state.get("epoch") != self.epoch:
            return
        if state.get("num_samples") != self.num_samples or state.get("world_size") != self.world_size:
            raise TrainingError(
                "cannot continue mid-epoch: the checkpoint's epoch had "
                f"{state.get('num_samples')} samples over {state.get('world_size')} device(s), this run "
                f"{self.num_samples} over {self.world_size}; resume with the same recipe and device count"
            )
        self.consumed = min(int(state["consumed"]), len(self))


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableSampler` whose position Lightning saves and restores.

    Lightning stores ``state_dict()`` of every stateful training dataloader in the checkpoint and
    calls ``load_state_dict`` on the rebuilt loader before iterating it when a fit resumes.
    """

    def __init__(self, dataset: Any, sampler: ResumableSampler, **kwargs: Any) -> None:
        super().__init__(dataset, sampler=sampler, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
