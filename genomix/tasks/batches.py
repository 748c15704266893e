"""Batches of labelled sequences for a classification model: length checks, truncation, padding and
reverse-complement augmentation."""
from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import RangeError
from ..tokenizer import pad_batch, reverse_complement
from .labelled import LabelledSequences


def fit_lengths(data: LabelledSequences, max_length: int, truncation: str) -> LabelledSequences:
    """``data`` with every sequence at most ``max_length`` long: an error naming the first one that is
    longer (``truncation="error"``), or the sequence's start or end kept (``keep-start``/``keep-end``)."""
    lengths = data.lengths()
    too_long = np.flatnonzero(lengths > max_length)
    if not too_long.size:
        return data
    if truncation == "error":
        row = int(too_long[0])
        raise RangeError(f"{data.origin(row)}: this example is {lengths[row]} bases long, past the limit of "
                         f"{max_length} ({too_long.size} of {data.source}'s {len(data)} examples are); use a model "
                         "with a longer max_seq_len, or cut them with --truncation keep-start / keep-end (recipe field "
                         "truncation)")
    cut = (lambda s: s[:max_length]) if truncation == "keep-start" else (lambda s: s[-max_length:])
    return dataclasses.replace(data, ids=[cut(s) if len(s) > max_length else s for s in data.ids])


class SequenceDataset(Dataset):
    """Examples addressed by (row, reverse-complement?) keys, as :class:`EpochOrder` yields them:
    (token ids, label, row)."""

    def __init__(self, data: LabelledSequences) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, bool]) -> tuple[np.ndarray, int, int]:
        row, flip = key
        ids = np.asarray(self.data.ids[row], dtype=np.int64)
        return (reverse_complement(ids) if flip else ids), int(self.data.labels[row]), row


class EpochOrder(Sampler):
    """Keys (row, reverse-complement?) for one pass: in order for evaluation; for training a permutation
    and coin flips (``rc_aug``) drawn from ``(seed, epoch)`` only, so a run resumed at an epoch boundary
    sees the batches the uninterrupted run would have (Lightning calls :meth:`set_epoch`).

    ``world`` > 1 (data-parallel training): every rank draws the same permutation and keeps positions
    ``rank, rank + world, ...`` of it, after dropping the last ``size % world`` positions so that all ranks
    take the same number of steps. Rank r's i-th batch of ``b`` rows and the other ranks' i-th batches
    then hold exactly the rows of the one-device run's i-th batch of ``world * b`` rows."""

    def __init__(self, size: int, shuffle: bool, rc_aug: bool = False, seed: int = 0, rank: int = 0,
                 world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        self.size, self.shuffle, self.rc_aug, self.seed = size, shuffle, rc_aug, seed
        self.rank, self.world = rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.world

    def __iter__(self) -> Iterator[tuple[int, bool]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        rows = torch.randperm(self.size, generator=g) if self.shuffle else torch.arange(self.size)
        flips = torch.rand(self.size, generator=g) < 0.5 if self.rc_aug else torch.zeros(self.size, dtype=torch.bool)
        keep = slice(self.rank, len(self) * self.world, self.world)
        return iter(zip(rows[keep].tolist(), flips[keep].tolist()))


class Collate:
    """Pads examples to the longest into ``input_ids``/``attention_mask`` (``padding_side``: left for
    causal models, whose last position has then seen the whole sequence), with ``labels`` and the rows'
    indices into their split (``index``)."""

    def __init__(self, padding_side: str = "left") -> None:
        self.padding_side = padding_side

    def __call__(self, examples: list[tuple[np.ndarray, int, int]]) -> dict[str, torch.Tensor]:
        ids, mask = pad_batch([seq for seq, _, _ in examples], side=self.padding_side)
        return {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "labels": torch.tensor([label for _, label, _ in examples], dtype=torch.long),
            "index": torch.tensor([row for _, _, row in examples], dtype=torch.long),
        }


def loader(data: LabelledSequences, batch_size: int, *, train: bool, padding_side: str, rc_aug: bool = False,
           num_workers: int = 0, seed: int = 0, rank: int = 0, world: int = 1) -> DataLoader:
    """Batches of ``data``: shuffled and optionally reverse-complemented per epoch (``train``), else in order;
    ``rank``'s share of a ``world`` of data-parallel processes (see :class:`EpochOrder`)."""
    order = EpochOrder(len(data), shuffle=train, rc_aug=rc_aug and train, seed=seed, rank=rank, world=world)
    return DataLoader(SequenceDataset(data), batch_size=batch_size, sampler=order, collate_fn=Collate(padding_side),
                      num_workers=num_workers, persistent_workers=num_workers > 0)
