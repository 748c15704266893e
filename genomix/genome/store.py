"""The genome store: one HDF5 file holding a whole reference, built once, read at random many times.

Layout (``FORMAT_VERSION`` 1)::

    /contig_names     (n,) utf-8 strings, file order
    /contig_lengths   (n,) int64
    /sequences/<i>    (length,) uint8 ASCII codes as in the FASTA (lower case = soft-masked), chunked
    /n_runs           (k, 3) int64 rows (contig index, start, end) of maximal runs of N / IUPAC codes
    /splits/<name>    (m, 3) int64 rows (contig index, start, end), optional (from a BED file)
    attrs: format_version, genomix_version, source, source_sha256, created, chunk_size, compression,
           prefixed_contigs (contig names are <FASTA file name up to its first dot>/<record name>)

Contigs are addressed by index inside the file so that any contig name (including ``/``) is safe.
Chunks are 128 kb and, by default, uncompressed. Measured on the 2-core development machine (E. coli
x4): uncompressed chunks write at ~800 MB/s and a random 1 Mb read costs ~0.4 ms; LZF writes at
~75 MB/s (0.59 bytes/base) and costs ~4 ms per 1 Mb read; gzip-1 ~50 MB/s (0.33 bytes/base), ~4 ms.
Compression would miss both the 50 Mb/s conversion and the 300 windows/s read targets, so it is an
opt-in (``compression="lzf"``/``"gzip"``) for users who value disk space over speed.

Conversion holds one contig at a time in memory (about twice its length in bytes while it is joined:
~0.5 GB for human chr1). The store object opens its HDF5 handle lazily and per process id, so one :class:`GenomeStore` can be
handed to ``DataLoader`` workers (fork or spawn): each worker opens its own handle on first use.
"""
from __future__ import annotations

import hashlib
import operator
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import h5py
import numpy as np

from ..errors import ConfigError, InputFormatError, RangeError, UnknownContigError
from ..outputs import check_output, temp_sibling
from ..tokenizer import BYTE_TO_ID, COMPLEMENT_ID
from .fasta import FastaReader

FORMAT_VERSION = 1
FASTA_SUFFIXES = tuple(ext + gz for ext in (".fa", ".fasta", ".fna") for gz in ("", ".gz", ".bgz"))
CHUNK_SIZE = 1 << 17
COMPRESSION: str | None = None
N_CODE = ord("N")


def _ascii_complement() -> np.ndarray:
    table = np.arange(256, dtype=np.uint8)
    for a, b in ("AT", "CG", "RY", "KM", "BV", "DH"):
        for x, y in ((a, b), (a.lower(), b.lower())):
            table[ord(x)], table[ord(y)] = ord(y), ord(x)
    return table


ASCII_COMPLEMENT = _ascii_complement()
# ASCII code -> token id, and ASCII code -> id of the complement, as bytes.translate tables: translate
# runs several times faster than numpy fancy indexing on uint8 and does the complement in the same pass.
_TO_ID = BYTE_TO_ID.tobytes()
_TO_COMPLEMENT_ID = COMPLEMENT_ID[BYTE_TO_ID].astype(np.uint8).tobytes()


#: How to make contig names unique across the files of a store, by whether they are already named after their files.
_UNIQUE_NAMES_ADVICE = {
    False: "name each file's contigs after it (`genomix genome prepare --prefix-contigs`; `genomix pretrain` does "
           "so when given the files themselves, not their folder), or rename them",
    True: "the two files have one name up to its first dot, after which their contigs are named: give each file a "
          "name of its own (copy or link it)",
}


def write_store(
    fasta: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | Path,
    source: str | None = None,
    splits: Mapping[str, Iterable[tuple[str, int, int]]] | Callable[[dict[str, int]], Mapping] | None = None,
    on_read: Callable[[int], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
    compression: str | None = COMPRESSION,
    prefix_contigs: bool = False,
) -> Path:
    """Convert a FASTA file, or several (shards: one file per chromosome, or the genomes of several species
    for one pretraining corpus), into a genome store at ``out``, atomically.

    Contigs are stored in the order of the files and of their records; a contig name must be unique across
    the files (the error names both). Species share names (``X``, ``chrM``): ``prefix_contigs`` names each
    contig ``<file name up to its first dot>/<name>`` (``genome_celegans_1pct/X``). The store's ``source_sha256`` is the file's SHA-256, or for several
    files the SHA-256 of their hex digests joined in order. The store is written under a temporary name in
    the destination folder and renamed only when complete; on any error the temporary file is removed and
    ``out`` is left untouched; ``out`` may not be one of the FASTA files (a rebuild would destroy its own input).
    ``splits`` is either a mapping ``split name -> [(contig, start, end), ...]``
    or a function of ``{contig: length}`` returning one (used to validate a BED file against the contigs
    actually read).
    """
    from .. import __version__

    files = fasta_files(fasta)
    out = check_output(out, files, overwrite=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out)
    readers = [FastaReader(path, on_read=on_read) for path in files]
    try:
        h5 = h5py.File(tmp, "w")
    except OSError as exc:  # a folder that exists but takes no new file
        reason = os.strerror(exc.errno) if exc.errno else exc
        raise InputFormatError(f"cannot write the genome store {out}: {reason}; choose another output path") from None
    try:
        with h5:
            seqs = h5.create_group("sequences")
            names: list[str] = []
            lengths: list[int] = []
            runs: list[np.ndarray] = []
            read_from: dict[str, Path] = {}
            for i, (reader, record) in enumerate((r, rec) for r in readers for rec in r):
                name = f"{contig_prefix(reader.path)}/{record.name}" if prefix_contigs else record.name
                if name in read_from:  # a name repeated inside one file is the reader's error
                    raise InputFormatError(f"{reader.path}: contig {name!r} is also in {read_from[name]}; contig "
                                           "names must be unique across the FASTA files of one store: "
                                           + _UNIQUE_NAMES_ADVICE[prefix_contigs])
                read_from[name] = reader.path
                n = record.sequence.size
                seqs.create_dataset(str(i), data=record.sequence, chunks=(min(chunk_size, n),),
                                    compression=compression)
                r = record.n_runs
                runs.append(np.column_stack([np.full(len(r), i, dtype=np.int64), r]))
                names.append(name)
                lengths.append(n)
            h5.create_dataset("contig_names", data=np.array(names, dtype=h5py.string_dtype()))
            h5.create_dataset("contig_lengths", data=np.asarray(lengths, dtype=np.int64))
            h5.create_dataset("n_runs", data=np.concatenate(runs).reshape(-1, 3))
            if splits is not None:
                table = splits(dict(zip(names, lengths))) if callable(splits) else splits
                index = {name: i for i, name in enumerate(names)}
                group = h5.create_group("splits")
                for split, rows in table.items():
                    arr = np.array([(index[c], s, e) for c, s, e in rows], dtype=np.int64).reshape(-1, 3)
                    group.create_dataset(split, data=arr)
            h5.attrs.update(
                format_version=FORMAT_VERSION,
                genomix_version=__version__,
                source=source or "; ".join(str(path.resolve()) for path in files),
                source_sha256=combined_sha256([reader.sha256 or "" for reader in readers]),
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                chunk_size=chunk_size,
                compression=compression or "none",
                prefixed_contigs=prefix_contigs,
            )
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def contig_prefix(path: str | os.PathLike) -> str:
    """What ``prefix_contigs`` puts before a contig's name for FASTA file ``path``: its file name up to the first
    dot (``genome_celegans_1pct`` for ``genome_celegans_1pct.fa.gz``)."""
    return Path(path).name.split(".")[0]


def fasta_files(fasta: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The FASTA files of one genome as paths: a file, a list of files, or a folder of shards (its ``.fa``,
    ``.fasta``, ``.fna`` and ``.fa.gz``-style files, in name order; UCSC's ``chromFa`` layout)."""
    paths = [Path(fasta)] if isinstance(fasta, (str, os.PathLike)) else [Path(f) for f in fasta]
    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        paths = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(FASTA_SUFFIXES))
        if not paths:
            raise InputFormatError(f"{folder}: a folder without FASTA files ({', '.join(FASTA_SUFFIXES[:4])}, ...)")
    if not paths:
        raise InputFormatError("no FASTA file given")
    repeated = sorted({str(p) for p in paths if paths.count(p) > 1})
    if repeated:
        raise InputFormatError(f"FASTA file(s) given more than once: {', '.join(repeated)}")
    return paths


def combined_sha256(digests: list[str]) -> str:
    """One file's SHA-256, or that of several files' hex digests joined in order ("" if any is unknown)."""
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(digests).encode()).hexdigest() if all(digests) else ""


class GenomeStore:
    """Random access to a genome store written by :func:`write_store` (see the module docstring).

    Coordinates are 0-based and half-open. :meth:`fetch` returns token ids (``int64``) or, with
    ``as_bytes=True``, the stored ASCII codes (case preserved). The instance is picklable and safe to
    share with ``DataLoader`` workers: the HDF5 handle is opened lazily in each process.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InputFormatError(f"{self.path} is a folder, not a genome store; give the path of the store's "
                                   ".h5 file")
        if not self.path.is_file():
            raise InputFormatError(
                f"{self.path}: no genome store here; create one with `genomix genome prepare --out {self.path}`"
            )
        if not h5py.is_hdf5(self.path):
            raise InputFormatError(f"{self.path}: not a genomix genome store (not an HDF5 file); "
                                   + _store_hint(self.path))
        try:
            with h5py.File(self.path, "r") as h5:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in h5["contig_names"][()]]
                self.lengths: dict[str, int] = dict(zip(names, (int(x) for x in h5["contig_lengths"][()])))
                self._runs = h5["n_runs"][()]
                self.splits: dict[str, np.ndarray] = (
                    {k: v[()] for k, v in h5["splits"].items()} if "splits" in h5 else {}
                )
                self.attrs: dict[str, object] = {k: _plain(v) for k, v in h5.attrs.items()}
        except (OSError, KeyError) as exc:
            raise InputFormatError(
                f"{self.path}: not a genomix genome store ({exc}); rebuild it with `genomix genome prepare`"
            ) from None
        version = self.attrs.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise InputFormatError(f"{self.path}: genome store format {version}, but this genomix reads format "
                                   f"{FORMAT_VERSION}; rebuild it with `genomix genome prepare --force`, or use the "
                                   f"genomix version that made it ({self.attrs.get('genomix_version', '?')})")
        self.contigs: list[str] = names
        self._index = {name: i for i, name in enumerate(names)}
        # rows of n_runs are grouped by contig index: row range of contig i is bounds[i]:bounds[i + 1]
        self._run_bounds = np.searchsorted(self._runs[:, 0], np.arange(len(names) + 1), side="left")
        self._h5: h5py.File | None = None
        self._pid: int | None = None

    # -- process-local handle ------------------------------------------------------------------------
    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")  # a fresh handle per process (fork/spawn safe)
            self._pid = os.getpid()
        return self._h5

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"] = state["_pid"] = None
        return state

    def close(self) -> None:
        """Close this process's HDF5 handle (reopened automatically on the next fetch)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = self._pid = None

    def __enter__(self) -> "GenomeStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GenomeStore({str(self.path)!r}, {len(self.contigs)} contigs, {sum(self.lengths.values()):,} bp)"

    # -- lookups -------------------------------------------------------------------------------------
    def contig_index(self, contig: str) -> int:
        """Index of ``contig`` in the store; :class:`UnknownContigError` (with a hint) if absent."""
        try:
            return self._index[contig]
        except KeyError:
            shown = ", ".join(self.contigs[:8]) + (", ..." if len(self.contigs) > 8 else "")
            raise UnknownContigError(
                f"unknown contig {contig!r} in genome store {self.path} (it has {len(self.contigs)}: {shown})"
            ) from None

    def contig_length(self, contig: str) -> int:
        """Length of ``contig``; :class:`UnknownContigError` (with a hint) if absent, never a bare KeyError."""
        self.contig_index(contig)
        return self.lengths[contig]

    def n_runs(self, contig: str) -> np.ndarray:
        """``(k, 2)`` start/end of the N runs of ``contig``, sorted."""
        i = self.contig_index(contig)
        return self._runs[self._run_bounds[i]:self._run_bounds[i + 1], 1:]

    def n_count(self, contig: str, start: int, end: int) -> int:
        """Number of N (or ambiguity code) positions in ``[start, end)``, from the N-run index alone."""
        runs = self.n_runs(contig)
        if runs.size == 0:
            return 0
        overlap = np.minimum(runs[:, 1], end) - np.maximum(runs[:, 0], start)
        return int(overlap[overlap > 0].sum())

    # -- sequence access -----------------------------------------------------------------------------
    def fetch(self, contig: str, start: int, end: int, strand: str = "+", pad: bool = False,
              as_bytes: bool = False) -> np.ndarray:
        """Sequence of ``contig[start:end]`` as token ids (``int64``) or, with ``as_bytes``, ASCII codes.

        ``strand='-'`` returns the reverse complement. Positions outside the contig raise
        :class:`RangeError` unless ``pad=True``, which fills them with N; so do coordinates that are not integers
        (a float would otherwise be truncated silently) and ``end < start``. A strand other than ``+``/``-``
        raises :class:`ConfigError`.
        """
        idx = self.contig_index(contig)
        length = self.lengths[contig]
        start, end = _coordinate(contig, "start", start), _coordinate(contig, "end", end)
        if strand not in ("+", "-"):
            raise ConfigError(f"{contig}:{start}-{end}: strand must be '+' or '-', got {strand!r}; pass "
                              "strand='-' for the reverse complement (a BED '.' strand means '+')")
        if end < start:
            raise RangeError(f"{contig}:{start}-{end}: end is before start; coordinates are 0-based half-open, "
                             "so request start <= end (strand='-' reverse-complements, it does not swap them)")
        lo, hi = max(start, 0), min(end, length)
        if (lo != start or hi != end) and not pad:
            raise RangeError(
                f"{contig}:{start}-{end} is outside the contig (length {length:,}); request 0 <= start <= "
                f"end <= {length:,} or pass pad=True to fill with N"
            )
        if lo == start and hi == end:
            codes = self._file()[f"sequences/{idx}"][start:end]
        else:
            codes = np.full(end - start, N_CODE, dtype=np.uint8)
            if hi > lo:
                codes[lo - start:hi - start] = self._file()[f"sequences/{idx}"][lo:hi]
        if as_bytes:
            return ASCII_COMPLEMENT[codes[::-1]] if strand == "-" else codes
        if strand == "-":
            return np.frombuffer(codes[::-1].tobytes().translate(_TO_COMPLEMENT_ID), np.uint8).astype(np.int64)
        return np.frombuffer(codes.tobytes().translate(_TO_ID), np.uint8).astype(np.int64)

    def sequence(self, contig: str, start: int = 0, end: int | None = None) -> str:
        """The stored text of a region (case preserved), for inspection and tests."""
        end = self.contig_length(contig) if end is None else end
        return self.fetch(contig, start, end, as_bytes=True).tobytes().decode("ascii")

    def n_fraction(self, contig: str | None = None) -> float:
        """Fraction of N positions in one contig, or in the whole genome when ``contig`` is None."""
        if contig is not None:
            length = self.contig_length(contig)
            return self.n_count(contig, 0, length) / length
        total = sum(self.lengths.values())
        return float((self._runs[:, 2] - self._runs[:, 1]).sum()) / total if total else 0.0

    def split_intervals(self, split: str) -> list[tuple[str, int, int]]:
        """Intervals stored for ``split`` (``train``/``valid``/``test`` from a BED file)."""
        if split not in self.splits:
            raise ConfigError(f"split {split!r} is not stored in {self.path} (stored: "
                              f"{', '.join(sorted(self.splits)) or 'none'}); rebuild it with `genomix genome prepare "
                              "--bed SPLITS.bed --force` to store BED splits")
        return [(self.contigs[c], int(s), int(e)) for c, s, e in self.splits[split]]


def _coordinate(contig: str, which: str, value: object) -> int:
    """``value`` as a Python int if it is an integer (numpy integers included), else :class:`RangeError`."""
    try:
        return operator.index(value)
    except TypeError:
        raise RangeError(f"{contig}: {which} must be an integer (0-based), got {value!r}; round it explicitly "
                         "if a float is meant") from None


def _store_hint(path: Path) -> str:
    """What to do with a file given where a store was expected: build a store from it if it is a FASTA."""
    with open(path, "rb") as fh:
        head = fh.read(1)
    if head == b">" or path.name.endswith(FASTA_SUFFIXES):
        return f"this looks like a FASTA: build a store from it with `genomix genome prepare --genome {path}`"
    return "give the .h5 file that `genomix genome prepare` wrote"


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def open_store(path: str | Path) -> GenomeStore:
    """Open a genome store made by ``genomix genome prepare`` (or :func:`write_store`)."""
    return GenomeStore(path)
