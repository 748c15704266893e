"""Sequence-length warm-up: the stage plan of lengths, batch sizes and gradient accumulation.

HyenaDNA trains long-context models by starting at a short window and doubling it in stages, which
stabilises the first steps of long convolutions and makes them cheap. Tokens per optimiser step stay
constant, so each doubling halves the number of sequences per step; per device a forward holds at most
``micro_batch_tokens`` tokens and the rest becomes gradient accumulation. Stages are whole epochs so
that Lightning rebuilds the dataloaders (``reload_dataloaders_every_n_epochs=1``) at every change.
"""
from __future__ import annotations

import dataclasses

from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Stage:
    """One warm-up stage: from epoch ``first_epoch`` on, windows of ``seq_len`` bases.

    ``micro_batch`` sequences per device per forward, ``accumulate`` forwards per optimiser step;
    ``global_batch`` = micro_batch × accumulate × world size sequences per optimiser step.
    """

    first_epoch: int
    seq_len: int
    micro_batch: int
    accumulate: int
    global_batch: int

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len


def _largest_divisor_at_most(n: int, cap: int) -> int:
    for d in range(min(n, max(cap, 1)), 0, -1):
        if n % d == 0:
            return d
    return 1


def plan_stage(first_epoch: int, seq_len: int, tokens_per_step: int, micro_batch_tokens: int, world_size: int) -> Stage:
    """Batch size and accumulation for one length at a fixed number of tokens per optimiser step."""
    if tokens_per_step % (seq_len * world_size):
        raise ConfigError(
            f"{tokens_per_step} tokens per step cannot be split into windows of {seq_len} over "
            f"{world_size} device(s); choose global_batch and lengths that are powers of two"
        )
    global_batch = tokens_per_step // seq_len
    per_device = global_batch // world_size
    micro = _largest_divisor_at_most(per_device, micro_batch_tokens // seq_len)
    return Stage(first_epoch, seq_len, micro, per_device // micro, global_batch)


def plan_warmup(
    seq_len: int,
    global_batch: int,
    micro_batch_tokens: int,
    world_size: int = 1,
    start_seq_len: int | None = None,
    stage_epochs: int = 1,
) -> list[Stage]:
    """Stages from ``start_seq_len`` doubling up to ``seq_len`` (last stage open-ended).

    ``global_batch`` counts sequences of the final length per optimiser step; without a start length
    (or one >= ``seq_len``) there is a single stage.
    """
    if stage_epochs < 1:
        raise ConfigError(f"warm-up stage_epochs must be >= 1, got {stage_epochs}")
    tokens = global_batch * seq_len
    lengths = [seq_len]
    if start_seq_len is not None and start_seq_len < seq_len:
        if start_seq_len < 1:
            raise ConfigError(f"warm-up start_seq_len must be positive, got {start_seq_len}")
        lengths = []
        length = start_seq_len
        while length < seq_len:
            lengths.append(length)
            length *= 2
        lengths.append(seq_len)
    return [
        plan_stage(i * stage_epochs, length, tokens, micro_batch_tokens, world_size)
        for i, length in enumerate(lengths)
    ]


def stage_at(stages: list[Stage], epoch: int) -> Stage:
    """The stage in force during ``epoch``."""
    current = stages[0]
    for stage in stages:
        if stage.first_epoch <= epoch:
            current = stage
    return current
