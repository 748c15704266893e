"""Genome data: registry and downloads, FASTA -> HDF5 genome store, random access, splits, windows.

Typical use::

    from genomix.genome import prepare_genome, open_store, WindowDataset
    store = open_store(prepare_genome("demo"))          # or "hg38", or a path to a FASTA
    ids = store.fetch("chr1", 10_000, 11_024, strand="-")
    ds = WindowDataset(store, length=1024, split="train", rc_probability=0.5)

Only numpy, h5py, yaml and tqdm are needed (torch for the window dataset, imported on first use, so
that `genomix genome prepare` starts fast); pyfaidx/pysam/Biopython are never imported here.
"""
from __future__ import annotations

from .bed import holdout_splits, read_bed_splits
from .download import verify_file
from .fasta import FastaReader, FastaRecord, read_fasta
from .registry import GenomeSpec, cache_dir, demo_fasta, known_genomes, prepare_genome
from .store import GenomeStore, open_store, write_store

_WINDOWS = ("WindowDataset", "causal_labels", "mask_for_mlm")


def __getattr__(name: str):
    if name in _WINDOWS:
        from . import windows

        return getattr(windows, name)
    raise AttributeError(f"module 'genomix.genome' has no attribute {name!r}")


__all__ = [
    "FastaReader", "FastaRecord", "GenomeSpec", "GenomeStore", "WindowDataset", "cache_dir", "causal_labels",
    "demo_fasta", "holdout_splits", "mask_for_mlm", "open_store", "prepare_genome",
    "read_bed_splits", "read_fasta", "known_genomes", "verify_file", "write_store",
]
