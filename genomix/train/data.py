"""The DataModule: windows from a genome store, with the batch plan of the current warm-up stage.

Lightning rebuilds the dataloaders every epoch (``reload_dataloaders_every_n_epochs=1``); each time
this module looks up the warm-up stage of the epoch and makes windows of that stage's length in
micro-batches of its size. Training windows are random positions of the train split, a pure function
of ``(seed, epoch, index)`` (:class:`~genomix.genome.WindowDataset`), drawn per source as the recipe's
``data.source_weights`` say when it has them, and read in the order of a :class:`ResumableSampler`;
validation and test windows tile their split deterministically and unweighted.
"""
from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..errors import ConfigError, GenomixError
from .recipe import DataConfig
from .sampler import ResumableDataLoader, ResumableSampler
from .warmup import Stage, stage_at

OBJECTIVE = {"causal-lm": "causal", "masked-lm": "mlm"}
#: the key of the data split's digest in the state a checkpoint keeps of the DataModule
SPLIT_RECORD = "split_sha256"


def resolve_store(genome: str | Sequence[str], bed: str | None = None, cache: str | Path | None = None,
                  quiet: bool = False) -> Path:
    """Path of a genome store for a registry name (``demo``, ``hg38``…), a FASTA, a folder of FASTA shards, an
    existing ``.h5``, or several FASTA files.

    Names and FASTA files are prepared once (``genomix genome prepare``) and the store is reused. Several files
    are several sources (species) of one corpus: their contigs are named ``<file stem>/<contig>``, so that
    names such as ``chrM`` never collide and ``data.source_weights`` can address each file. A folder stays one
    genome in shards (UCSC's ``chromFa``): its contigs keep their own names, which BED files and
    ``valid_contigs`` use.
    """
    from ..genome import prepare_genome

    if not isinstance(genome, str):
        paths = list(genome)
        _refuse_shared_stems(paths)
        return Path(prepare_genome(paths, cache=cache, bed=bed, quiet=quiet, prefix_contigs=len(paths) > 1))
    path = Path(genome).expanduser()
    if path.suffix in (".h5", ".hdf5"):
        if not path.is_file():
            raise ConfigError(f"genome store {path} does not exist; build it with `genomix genome prepare`")
        if bed is not None:
            _refuse_other_splits(path, bed)
        return path
    return Path(prepare_genome(genome, cache=cache, bed=bed, quiet=quiet))


def _refuse_other_splits(store_path: Path, bed: str) -> None:
    """Refuse a split BED given with a prepared store that does not hold its splits: a store keeps the splits it
    was prepared with, so the run would otherwise train and validate on those, not on the BED's."""
    from ..genome import open_store
    from ..genome.registry import holds_bed_splits

    with open_store(store_path) as store:
        if not holds_bed_splits(store, bed):
            raise ConfigError(f"genome store {store_path} does not hold the splits of {bed} (a store keeps the splits "
                              "it was prepared with): pass the FASTA or genome name with the BED instead, or rebuild "
                              f"the store with `genomix genome prepare --genome FASTA --bed {bed} --out {store_path} "
                              "--force`")


def _refuse_shared_stems(paths: Sequence[str]) -> None:
    """Refuse several FASTA files with one file stem (``a/x.fa``, ``b/x.fa.gz``): their contigs would all be named
    ``x/<contig>``, and ``data.source_weights`` could not tell them apart."""
    from ..genome.store import contig_prefix

    by_stem: dict[str, list[str]] = {}
    for path in paths:
        by_stem.setdefault(contig_prefix(path), []).append(str(path))
    shared = {stem: files for stem, files in by_stem.items() if len(files) > 1 and len(set(files)) > 1}
    if shared:
        named = "; ".join(f"{', '.join(files)} (stem {stem!r})" for stem, files in shared.items())
        raise ConfigError(f"several FASTA files share a file stem: {named}; the contigs of each file are named "
                          "<file stem>/<contig>, so give each file a name of its own (copy or link it)")


def _leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """Make a dataloader worker ignore Ctrl-C and SIGTERM. A terminal sends Ctrl-C, and a batch scheduler SIGTERM, to
    every process of the job, and a worker that stopped on it would fail the step the main process finishes, after
    the first one, to save a checkpoint (:class:`~genomix.train.callbacks.StopCheckpoint`); the main process ends its
    workers itself. Windows are a pure function of ``(seed, epoch, index)``, so the worker seeding Lightning adds
    when there is no ``worker_init_fn`` changes nothing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class GenomeDataModule(L.LightningDataModule):
    """Train/valid/test windows of a genome store for one pretraining run.

    Args:
        store_path: the genome store (see :func:`resolve_store`).
        data: split and augmentation settings of the recipe.
        stages: the warm-up plan (:func:`~genomix.train.warmup.plan_warmup`).
        task: ``causal-lm`` or ``masked-lm`` (sample format).
        steps_per_epoch: optimiser steps per epoch (an epoch is a fixed number of random windows).
        seed: seed of window positions, strands, MLM masks and the sample order.
        val_windows: validation uses ``val_windows`` tiles spread evenly over the valid split, shared out
            over the ranks, so the validation loss does not depend on the number of devices.
    """

    def __init__(self, store_path: str | Path, data: DataConfig, stages: list[Stage], task: str,
                 steps_per_epoch: int, seed: int = 0, val_windows: int | None = None) -> None:
        super().__init__()
        self.store_path = Path(store_path)
        self.data = data
        self.stages = stages
        self.objective = OBJECTIVE[task]
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self.val_windows = val_windows
        self._intervals: dict[str, list[tuple[str, int, int]]] | None = None
        self._datasets: dict[tuple[str, int, str, int | None], Any] = {}
        self._split_digest: str | None = None
        if data.source_weights is not None:
            self._check_source_weights()

    def _check_source_weights(self) -> None:
        """Refuse ``data.source_weights`` that do not fit the store's sources now, before a trainer is built."""
        from ..genome import open_store
        from ..genome.windows import source_shares

        genome = self.data.genome if isinstance(self.data.genome, str) else " ".join(self.data.genome)
        with open_store(self.store_path) as store:
            try:
                source_shares(store.contigs, self.data.source_weights)
            except ConfigError as exc:
                raise ConfigError(f"recipe field data.source_weights, genome {genome} ({self.store_path}): {exc}"
                                  ) from None

    def _split_intervals(self, split: str) -> list[tuple[str, int, int]] | None:
        """Explicit intervals when the recipe holds out contigs or a fraction of each; otherwise the store's own
        splits."""
        fraction = self.data.holdout_fraction
        if not (self.data.valid_contigs or self.data.test_contigs or fraction is not None):
            return None
        if self._intervals is None:
            from ..genome import open_store
            from ..genome.bed import holdout_splits

            with open_store(self.store_path) as store:
                self._intervals = holdout_splits(store.lengths, self.data.valid_contigs, self.data.test_contigs,
                                                 **({} if fraction is None else {"fraction": fraction}))
        return self._intervals.get(split, [])

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _rank(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _windows(self, split: str, stage: Stage, mode: str, samples: int | None, epoch: int) -> Any:
        """The windows of ``split`` at ``stage``'s length, set to ``epoch``: made once per split, length, mode and
        number of samples, and reused (tiling a large valid split takes seconds). A window dataset is a pure
        function of ``(seed, epoch, index)``, so one object serves every epoch and a resumed run alike."""
        key = (split, stage.seq_len, mode, samples)
        if key not in self._datasets:
            self._datasets[key] = self._new_windows(split, stage, mode, samples)
        dataset = self._datasets[key]
        dataset.set_epoch(epoch)
        return dataset

    def _new_windows(self, split: str, stage: Stage, mode: str, samples: int | None) -> Any:
        from ..genome import WindowDataset

        try:
            dataset = WindowDataset(
                self.store_path, stage.seq_len, split=split, intervals=self._split_intervals(split), mode=mode,
                samples_per_epoch=samples, rc_probability=0.5 if (self.data.rc_aug and split == "train") else 0.0,
                max_n_fraction=self.data.max_n_fraction, objective=self.objective,
                mlm_probability=self.data.mlm_probability, seed=self.seed,
                source_weights=self.data.source_weights if split == "train" else None,
            )
        except ValueError as exc:  # genomix's own errors say what to do; the windows' checks are about length
            hint = "" if isinstance(exc, GenomixError) else (
                " (a split shorter than the window is padded with N to its length: a short genome needs a shorter "
                "--seq-len or warmup.start_seq_len)")
            raise ConfigError(f"genome store {self.store_path}, split {split!r}: {exc}{hint}") from exc
        return dataset

    def check_windows(self) -> None:
        """Refuse a genome whose train or valid split cannot give windows at some warm-up stage's length (a genome
        shorter than the window, a split all N) now, before the output folder and the trainer are made, instead
        of at the first training or validation epoch. The windows are kept for the dataloaders."""
        first_of_length: dict[int, Stage] = {}
        for stage in self.stages:
            first_of_length.setdefault(stage.seq_len, stage)
        for stage in first_of_length.values():
            self._windows("train", stage, "random", self.steps_per_epoch * stage.global_batch, 0)
            self._windows("valid", stage, "tiled", None, 0)

    def split_digest(self) -> str:
        """SHA-256 of the train and valid intervals this run draws its windows from.

        A checkpoint records it (:meth:`state_dict`), and a resume compares it with its own before training
        (:func:`genomix.train.run.check_same_split`): a run continued on another split (a BED file edited in
        place, a store prepared again with other splits, other held-out contigs or fraction) would report a
        validation loss on windows it may have trained on, and nothing else would show it."""
        if self._split_digest is None:  # the split does not change during a run: worked out once
            from ..genome import open_store
            from ..genome.windows import split_intervals

            with open_store(self.store_path) as store:  # the test split is evaluated, never trained on
                intervals = {split: split_intervals(store, split, self._split_intervals(split))
                             for split in ("train", "valid")}
            self._split_digest = hashlib.sha256(json.dumps(intervals, sort_keys=True).encode()).hexdigest()
        return self._split_digest

    def state_dict(self) -> dict[str, Any]:
        """What Lightning keeps of this module in a checkpoint: the digest of the data split."""
        return {SPLIT_RECORD: self.split_digest()}

    def train_dataloader(self) -> DataLoader:
        epoch = self._epoch()
        stage = stage_at(self.stages, epoch)
        rank, world = self._rank()
        samples = self.steps_per_epoch * stage.global_batch
        dataset = self._windows("train", stage, "random", samples, epoch)
        sampler = ResumableSampler(samples, epoch=epoch, seed=self.seed, shuffle=False, rank=rank, world_size=world)
        return ResumableDataLoader(
            dataset, sampler, batch_size=stage.micro_batch, drop_last=True, num_workers=self.data.num_workers,
            pin_memory=torch.cuda.is_available(), persistent_workers=False,
            generator=torch.Generator().manual_seed(self.seed), worker_init_fn=_leave_stop_signals_to_the_main_process,
        )

    def _eval_loader(self, split: str, limit: int | None = None) -> DataLoader:
        stage = stage_at(self.stages, self._epoch())
        dataset = self._windows(split, stage, "tiled", None, 0)
        rank, world = self._rank()
        total = len(dataset) if limit is None else min(limit, len(dataset))
        spread = [i * len(dataset) // total for i in range(total)]  # evenly over the whole split
        indices = spread[rank::world]
        subset = torch.utils.data.Subset(dataset, indices)
        return DataLoader(subset, batch_size=stage.micro_batch, shuffle=False, num_workers=self.data.num_workers,
                          generator=torch.Generator().manual_seed(self.seed),
                          worker_init_fn=_leave_stop_signals_to_the_main_process)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("valid", self.val_windows)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
