"""Fixed-length training windows drawn from a genome store, as a ``torch`` Dataset.

Determinism that survives resumption: the window (and its strand and MLM mask) returned for ``index``
is a pure function of ``(seed, epoch, index)``, computed from a fresh ``numpy`` generator seeded with
exactly that triple. No state advances between calls, so a run resumed at step k, any number of
workers, or a different worker order, sees the same data as an uninterrupted run. Call
:meth:`WindowDataset.set_epoch` at each epoch start (the training loop does this) to get new windows.

Placement: inside an interval at least as long as the window, the window lies wholly inside it; a
shorter interval gets a window centred on it that takes flanking sequence from the contig, as
HyenaDNA does. The flanks are context only: their labels are ignored, so a validation window scores no
training bases and a training window learns to predict none of the held-out bases around it (HyenaDNA scores
the whole window). Positions past either end of the contig are filled with N (labels ignore them), so
windows near contig ends are valid samples.

Sources: a store of several FASTA files names each contig ``<file stem>/<record>`` (one file per species,
say). Random windows are drawn in proportion to the window positions each interval offers, so a corpus of
genomes is dominated by its largest; ``source_weights`` instead draws each window from source ``s`` with
probability ``w_s / sum(w)`` and, inside a source, in proportion to its positions as before (the species
sampling of HyenaDNA and Caduceus). It reweights the same single draw per window, so samples stay a pure
function of ``(seed, epoch, index)``, and without weights the draws are exactly the unweighted ones.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..tokenizer import A_ID, MASK_ID, N_ID, PAD_ID, T_ID
from .bed import Interval, holdout_splits
from .store import GenomeStore, open_store

IGNORE_INDEX = -100
OBJECTIVES = ("causal", "mlm")
MODES = ("random", "tiled")


def check_source_weights(weights: Mapping[str, float]) -> None:
    """Refuse source weights that cannot define a distribution: each must be a finite number >= 0 (0 leaves the
    source out of training) and at least one must be positive. Raises :class:`ConfigError`."""
    for source, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"the weight of source {source!r} must be a finite number >= 0 (0 leaves it out), "
                              f"got {weight!r}")
    if not any(weights.values()):
        raise ConfigError(f"every source weight is 0 ({dict(weights)}): give at least one source a positive weight")


def contig_sources(contigs: Iterable[str]) -> dict[str, str]:
    """``{contig: source}``, a contig's source being its name up to the first ``/`` (``genome_celegans_1pct/X``
    is in source ``genome_celegans_1pct``), as a store of several FASTA files names them. A contig without
    ``/`` means the store was not made that way: :class:`ConfigError` saying how to make one."""
    sources = {contig: contig.split("/", 1)[0] for contig in contigs}
    plain = [contig for contig in sources if "/" not in contig]
    if plain:
        shown = ", ".join(repr(c) for c in plain[:3]) + (", ..." if len(plain) > 3 else "")
        raise ConfigError(f"source weights need contigs named <source>/<contig>, but contig(s) {shown} have no "
                          "source: build the store from several FASTA files (genomix pretrain --genome A.fa B.fa, "
                          "or genomix genome prepare --prefix-contigs), one source per file")
    return sources


def source_shares(contigs: Iterable[str], weights: Mapping[str, float]) -> dict[str, float]:
    """Each source's share of training windows, ``w_s / sum(w)``, after checking ``weights`` against the sources
    of ``contigs`` (:func:`contig_sources`): every source needs a weight, 0 to leave it out, so that a source
    forgotten in a recipe is an error rather than silently never trained on; a weight for a source the store
    lacks is an error too. Raises :class:`ConfigError` naming the sources."""
    check_source_weights(weights)
    available = sorted(set(contig_sources(contigs).values()))
    unknown = sorted(set(weights) - set(available))
    missing = [source for source in available if source not in weights]
    if unknown or missing:
        wrong = [f"unknown source(s) {unknown}"] if unknown else []
        wrong += [f"no weight for {missing} (0 leaves a source out)"] if missing else []
        raise ConfigError(f"source weights do not fit the store: {'; '.join(wrong)}; its sources: {available}")
    total = float(sum(weights.values()))
    return {source: weights[source] / total for source in available}


def causal_labels(ids: np.ndarray) -> np.ndarray:
    """Labels for causal LM: the ids themselves (the model shifts), with N and PAD set to -100."""
    labels = ids.copy()
    labels[(ids == N_ID) | (ids == PAD_ID)] = IGNORE_INDEX
    return labels


def mask_for_mlm(ids: np.ndarray, rng: np.random.Generator, probability: float = 0.15
                 ) -> tuple[np.ndarray, np.ndarray]:
    """BERT-style masking of real bases (A/C/G/T only; N and specials are never chosen).

    Each base is chosen with ``probability``; a chosen base becomes [MASK] 80% of the time, a random
    base 10%, and stays unchanged 10%. Returns ``(inputs, labels)`` with labels = original id at chosen
    positions and -100 elsewhere.
    """
    real = (ids >= A_ID) & (ids <= T_ID)
    chosen = real & (rng.random(ids.shape, dtype=np.float32) < probability)
    action = rng.random(ids.shape, dtype=np.float32)
    inputs = ids.copy()
    inputs[chosen & (action < 0.8)] = MASK_ID
    swap = chosen & (action >= 0.8) & (action < 0.9)
    inputs[swap] = rng.integers(A_ID, T_ID + 1, size=int(swap.sum()))
    labels = np.full_like(ids, IGNORE_INDEX)
    labels[chosen] = ids[chosen]
    return inputs, labels


def split_intervals(store: GenomeStore, split: str, intervals: Sequence[Interval] | None = None) -> list[Interval]:
    """The non-empty intervals that ``split`` draws windows from: ``intervals`` when given, else the store's own
    split, else, for a store without BED splits, the 5 % hold-out cut of every contig
    (:func:`~genomix.genome.bed.holdout_splits`). A store whose BED named no row of ``split`` is refused: the
    hold-out cut would overlap the BED's other splits, so a run would validate or test on bases it trains on. An
    interval on a contig the store lacks raises here, before any window is read."""
    if intervals is None:
        if split in store.splits:
            intervals = store.split_intervals(split)
        elif store.splits:
            instead = ("" if split == "train" else f"; cutting {split} from the end of each contig instead would "
                       "overlap the BED's intervals")
            raise ConfigError(
                f"the store holds the splits of a BED file ({', '.join(sorted(store.splits))}) but no {split!r} "
                f"rows{instead}. Name {split} rows in the BED's fourth column and use that BED (a store prepared "
                "from the old one: `genomix genome prepare --bed SPLITS.bed --force`), or go without --bed to hold "
                "out the end of each contig")
        else:
            intervals = holdout_splits(store.lengths).get(split, [])
    for contig, _, _ in intervals:
        store.contig_index(contig)
    return [(c, int(s), int(e)) for c, s, e in intervals if e > s]


def _ignore_flanks(labels: np.ndarray, start: int, interval: tuple[int, int], strand: str) -> None:
    """Ignore (in place) the labels of a window starting at ``start`` that lie outside its ``interval``, the
    flanks of a window centred on a shorter interval (read reversed on the ``-`` strand)."""
    inside = slice(max(interval[0] - start, 0), max(min(interval[1] - start, len(labels)), 0))
    if inside.start == 0 and inside.stop == len(labels):
        return
    outside = np.ones(len(labels), dtype=bool)
    outside[inside] = False
    labels[outside[::-1] if strand == "-" else outside] = IGNORE_INDEX


class WindowDataset(Dataset):
    """Windows of ``length`` bases from a split of a genome store, in causal-LM or MLM sample format.

    Args:
        store: a :class:`GenomeStore` or the path of one.
        length: window length in bases (any size, 1 k to several M).
        split: ``train``/``valid``/``test``: intervals stored in the store (from a BED file) if present,
            else chromosome/region hold-out splits (:func:`~genomix.genome.bed.holdout_splits`).
        intervals: explicit ``(contig, start, end)`` intervals; overrides ``split``.
        mode: ``random`` (``samples_per_epoch`` random windows per epoch) or ``tiled`` (consecutive
            non-overlapping windows covering every interval once; the same in every epoch apart from
            reverse-complement draws).
        samples_per_epoch: length of a random epoch; default: the split's size in bases / ``length``.
        rc_probability: chance of returning the reverse complement of a window (augmentation).
        max_n_fraction: windows with a larger fraction of N are skipped (tiled) or redrawn (random,
            up to ``max_tries`` times, then the least-N candidate is used).
        objective: ``causal`` (labels = ids, N/PAD ignored) or ``mlm`` (15% masking, 80/10/10).
        seed: base seed; samples depend only on ``(seed, epoch, index)``.
        source_weights: ``{source: weight}`` for ``random`` mode over a store of several FASTA files: a window
            comes from source ``s`` with probability ``w_s / sum(w)`` (see the module docstring and
            :func:`source_shares`); ``None`` draws in proportion to the positions of the whole split.

    Each sample is ``{"input_ids": LongTensor(length), "labels": LongTensor(length)}``.
    """

    def __init__(self, store: GenomeStore | str | Path, length: int, split: str = "train",
                 intervals: Sequence[Interval] | None = None, mode: str = "random",
                 samples_per_epoch: int | None = None, rc_probability: float = 0.0,
                 max_n_fraction: float = 1.0, objective: str = "causal", mlm_probability: float = 0.15,
                 seed: int = 0, max_tries: int = 16, source_weights: Mapping[str, float] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if source_weights is not None and mode != "random":
            raise ValueError("source_weights apply to random windows; tiled windows cover every interval once")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if length < 1:
            raise ValueError(f"window length must be positive, got {length}")
        self.store = store if isinstance(store, GenomeStore) else open_store(store)
        self.length, self.mode, self.objective = int(length), mode, objective
        self.rc_probability, self.max_n_fraction = float(rc_probability), float(max_n_fraction)
        self.mlm_probability, self.seed, self.max_tries = float(mlm_probability), int(seed), int(max_tries)
        self.epoch = 0
        self.intervals = split_intervals(self.store, split, intervals)
        if not self.intervals:
            size = sum(self.store.lengths.values())
            raise ConfigError(f"no intervals for split {split!r} in {self.store.path} ({size:,} bases); a split BED "
                              f"(--bed) with {split!r} rows gives them, and without one a genome needs room to hold "
                              "out valid and test (the last 5 % each of every contig of 20 bases or more)")
        if mode == "tiled":
            self._tiles = self._make_tiles()
            if not self._tiles:
                raise ValueError(f"every {length}-base tile of split {split!r} has more than "
                                 f"{max_n_fraction:.0%} N; lower the window length or raise max_n_fraction")
            self._len = len(self._tiles)
        else:
            if all(self.store.n_count(contig, s, e) == e - s for contig, s, e in self.intervals):
                raise ConfigError(f"split {split!r} is all N ({sum(e - s for _, s, e in self.intervals):,} bases): "
                                  "no window of it has a base to learn or score; choose splits that hold sequence "
                                  "(--bed), or check the genome")
            spans = np.array([max(e - s - self.length + 1, 1) for _, s, e in self.intervals], dtype=np.float64)
            # probability mass per position of each interval: 1 (in proportion to positions) or its source's
            self._rate = np.ones_like(spans) if source_weights is None else self._source_rates(spans, source_weights)
            self._cum = np.cumsum(spans * self._rate)
            total = sum(e - s for _, s, e in self.intervals)
            self._len = int(samples_per_epoch) if samples_per_epoch else max(total // self.length, 1)

    def _source_rates(self, spans: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
        """Per interval, the probability of each of its positions: its source's share over the positions of
        that source in this split (0 for a source weighted 0)."""
        shares = source_shares(self.store.contigs, weights)
        sources = contig_sources(contig for contig, _, _ in self.intervals)
        of = np.array([sources[contig] for contig, _, _ in self.intervals])
        rates = np.zeros_like(spans)
        for source, share in shares.items():
            here = of == source
            if share and not here.any():
                raise ConfigError(f"source {source!r} has weight {weights[source]} but no intervals in this split "
                                  "(all of it held out?): give it weight 0 or keep some of it for training")
            rates[here] = share / spans[here].sum() if share else 0.0
        return rates

    # -- placement -----------------------------------------------------------------------------------
    def _window_start(self, start: int, end: int, offset: int) -> int:
        if end - start >= self.length:
            return start + offset
        return (start + end) // 2 - self.length // 2  # centred, flanks from the contig

    def _n_fraction(self, contig: str, start: int) -> float:
        return self.store.n_count(contig, start, start + self.length) / self.length + \
            (max(0, -start) + max(0, start + self.length - self.store.lengths[contig])) / self.length

    def _make_tiles(self) -> list[tuple[str, int, int, int]]:
        """``(contig, window start, interval start, interval end)`` of every tile."""
        tiles = []
        for contig, s, e in self.intervals:
            if e - s < self.length:
                starts = [self._window_start(s, e, 0)]
            else:
                starts = list(range(s, e - self.length + 1, self.length))
                if starts[-1] + self.length < e:  # cover the tail with a window ending at the interval end
                    starts.append(e - self.length)
            tiles += [(contig, st, s, e) for st in starts if self._n_fraction(contig, st) <= self.max_n_fraction]
        return tiles

    def _random_window(self, rng: np.random.Generator) -> tuple[str, int, int, int]:
        """``(contig, window start, interval start, interval end)`` of a window drawn with ``rng``."""
        best: tuple[float, str, int, int, int] | None = None
        for _ in range(max(self.max_tries, 1)):
            pick = rng.random() * self._cum[-1]
            i = int(np.searchsorted(self._cum, pick, side="right"))
            contig, s, e = self.intervals[i]
            offset = int((pick - (self._cum[i - 1] if i else 0.0)) / self._rate[i])  # a rate of 1 leaves it exact
            start = self._window_start(s, e, min(offset, max(e - s - self.length, 0)))
            frac = self._n_fraction(contig, start)
            if frac <= self.max_n_fraction:
                return contig, start, s, e
            if best is None or frac < best[0]:
                best = (frac, contig, start, s, e)
        return best[1:]

    # -- Dataset API ---------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose windows ``__getitem__`` returns (pure function of seed, epoch, index)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._len

    def _draw(self, index: int) -> tuple[str, int, tuple[int, int], str, np.random.Generator]:
        if not 0 <= index < self._len:
            raise IndexError(f"sample index {index} out of range for {self._len} windows")
        rng = np.random.default_rng((self.seed, self.epoch, int(index)))
        contig, start, lo, hi = self._tiles[index] if self.mode == "tiled" else self._random_window(rng)
        strand = "-" if rng.random() < self.rc_probability else "+"
        return contig, start, (lo, hi), strand, rng

    def locate(self, index: int) -> tuple[str, int, int, str]:
        """``(contig, start, end, strand)`` of sample ``index`` in the current epoch."""
        contig, start, _, strand, _ = self._draw(index)
        return contig, start, start + self.length, strand

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        contig, start, interval, strand, rng = self._draw(index)
        ids = self.store.fetch(contig, start, start + self.length, strand=strand, pad=True)
        if self.objective == "mlm":
            inputs, labels = mask_for_mlm(ids, rng, self.mlm_probability)
        else:
            inputs, labels = ids, causal_labels(ids)
        _ignore_flanks(labels, start, interval, strand)
        return {"input_ids": torch.from_numpy(np.ascontiguousarray(inputs)),
                "labels": torch.from_numpy(labels)}
