"""Named reference genomes and :func:`prepare_genome`, the library side of `genomix genome prepare`.

The registry itself is data (``genome/data/registry.yaml``): download URL, checksum source, optional
split BED and the chromosomes held out when there is no BED. ``demo`` is the bundled human chr1 3 Mb
FASTA, so a fresh install works offline.

A downloaded file is checked again on every later use, offline, against a record kept beside it in the
style of ``md5sum``/``sha256sum -c``: ``<file>.md5``, the published MD5 it was downloaded against, or, for a
file published without any checksum (hg38's split BED), ``<file>.sha256``, its own size and SHA-256 recorded
on first use (:func:`download_pinned`).
"""
from __future__ import annotations

import datetime
import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import yaml

from ..errors import ChecksumError, ConfigError, DownloadError, InputFormatError
from ..outputs import atomic_write_text, make_output_dir
from .bed import SPLITS, Interval, check_split_bed, holdout_splits, read_bed_splits
from .download import digest_from_manifest, download, fetch_text, file_digest, file_mismatch, verify_file
from .store import COMPRESSION, GenomeStore, combined_sha256, fasta_files, open_store, write_store

DATA_DIR = Path(__file__).resolve().parent / "data"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenomeSpec:
    """One registry entry (see ``registry.yaml``)."""

    name: str
    description: str = ""
    url: str | None = None
    file: str | None = None  # bundled file in genome/data/
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    md5_manifest: str | None = None
    splits_bed: str | None = None
    holdout: dict[str, list[str]] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return self.file or self.url.rsplit("/", 1)[-1]


@lru_cache(maxsize=1)
def known_genomes() -> dict[str, GenomeSpec]:
    """All named genomes, from ``registry.yaml``."""
    with open(DATA_DIR / "registry.yaml", encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    return {name: GenomeSpec(name=name, **fields) for name, fields in raw.items()}


def cache_dir(path: str | Path | None = None) -> Path:
    """Where downloads and default stores live: ``path``, else ``$GENOMIX_CACHE``, else ~/.cache/genomix."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("GENOMIX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genomix"


def demo_fasta() -> Path:
    """Path of the bundled demo genome (human GRCh37 chr1:1-3,004,950)."""
    return DATA_DIR / known_genomes()["demo"].file


def fetch_genome(spec: GenomeSpec, cache: Path, quiet: bool = False) -> Path:
    """Local path of ``spec``'s FASTA: the bundled file, or a verified (cached) download.

    The MD5 a download was verified against is kept next to it (``<file>.md5``), so the cached file is checked
    again offline. A file put there by hand (fetched on another machine for a cluster without internet) is
    checked against the manifest when it can be reached, and otherwise used with a warning that it is unverified.
    Without any checksum (none pinned in the registry, none in the manifest, or a hand-placed file while the
    manifest cannot be reached) the file is trusted on first use and checked against that later
    (:func:`download_pinned`)."""
    if spec.file:
        path = DATA_DIR / spec.file
        verify_file(path, spec.md5, spec.sha256, spec.size)
        return path
    dest = cache / "downloads" / spec.name / spec.filename
    md5 = spec.md5 or (_manifest_md5(spec, dest) if spec.md5_manifest else None)
    if not (md5 or spec.sha256):
        return download_pinned(spec.url, dest, size=spec.size, quiet=quiet)
    download(spec.url, dest, md5=md5, sha256=spec.sha256, size=spec.size, quiet=quiet)
    if md5 and _recorded(dest, "md5") != md5:  # none yet, or one of a copy deleted since and replaced
        _write_record(dest, "md5", md5)
    return dest


def _record(dest: Path, algorithm: str) -> Path:
    """The record ``<file>.<algorithm>`` (``md5`` or ``sha256``) that the cached ``dest`` is checked against."""
    return dest.with_name(f"{dest.name}.{algorithm}")


def _recorded(dest: Path, algorithm: str) -> str | None:
    """The ``algorithm`` digest that ``dest``'s record holds, None without a record (or a digest in it)."""
    record = _record(dest, algorithm)
    return digest_from_manifest(record.read_text(), dest.name, algorithm) if record.is_file() else None


def _write_record(dest: Path, algorithm: str, digest: str, notes: Sequence[str] = ()) -> None:
    """Write ``dest``'s record as ``<algorithm>sum`` writes it (``<digest>  <name>``), after ``notes`` as ``#``
    comment lines, which ``md5sum -c``/``sha256sum -c`` skip."""
    atomic_write_text(_record(dest, algorithm), "".join(f"# {note}\n" for note in notes) + f"{digest}  {dest.name}\n")


class _Pin(NamedTuple):
    """What a file without a known checksum was on first use (:func:`download_pinned`)."""

    sha256: str
    size: int


def _read_pin(dest: Path) -> _Pin | None:
    """The size and SHA-256 recorded for ``dest`` on first use, None when there is no record yet; a record that
    is not one genomix wrote is refused rather than taken for no record, which would trust the file anew."""
    record = _record(dest, "sha256")
    if not record.is_file():
        return None
    text = record.read_text()
    sha256 = digest_from_manifest(text, dest.name, "sha256")
    size = re.search(r"^# size (\d+)$", text, re.MULTILINE)
    if sha256 is None or size is None:
        raise InputFormatError(f"{record}: not a record of {dest.name} as genomix writes it (a '# size N' line and a "
                               f"'<sha256>  {dest.name}' line); delete it to record the file anew on its next use")
    return _Pin(sha256, int(size.group(1)))


def download_pinned(url: str, dest: Path, size: int | None = None, quiet: bool = False) -> Path:
    """Download (or reuse) ``url`` at ``dest``, a file without a known checksum (none is published, as for hg38's
    split BED), trusted on first use.

    Such a file cannot be verified when it is first downloaded, but it can be held to that first copy: its size
    and SHA-256 are recorded in ``<file>.sha256`` (the style of the ``<file>.md5`` records, the size in a
    comment line) on the first download, or on the first use of a copy that has no record (put there by hand,
    or by an older genomix). Every later use checks the cached copy against the record, so a copy corrupted in
    the cache, or replaced, is refused with what to do instead of silently used (a split BED that changed would
    change a model's training data); a new download after the copy was deleted must match the record too, which
    also lets an interrupted one resume. ``size`` (what the registry states, if anything) checks the first
    download.
    """
    record = _record(dest, "sha256")
    pin = _read_pin(dest)
    if pin is not None and dest.exists():
        wrong = _not_the_file(dest)
        if wrong:  # recorded before this check was made
            raise DownloadError(f"{dest}: the copy recorded in {record} on first use {wrong}, not the file {url} "
                                f"names; delete {dest} and {record}, then run the same command again")
        problem = file_mismatch(dest, sha256=pin.sha256, size=pin.size)
        if problem is not None:
            raise ChecksumError(
                f"{dest}: {problem}: the cached file differs from the copy first downloaded from {url}, recorded in "
                f"{record} (no checksum is known for it), so it was corrupted or replaced since. Delete {dest} "
                "and run the same command again to download it afresh; if the new download fails this check too, "
                f"the source itself has changed: delete {record} as well to trust its new version")
        return dest
    placed = dest.exists()  # by hand (or an older genomix), to be recorded on this first use
    try:
        download(url, dest, sha256=pin.sha256 if pin else None, size=pin.size if pin else size, quiet=quiet)
    except ChecksumError as exc:
        if pin is None:
            raise
        raise ChecksumError(f"{exc}. That checksum is the one recorded in {record} when genomix first downloaded "
                            f"the file, as none is known for it: if the source was updated on purpose, delete "
                            f"{record} and run the same command again to trust its new version") from None
    wrong = _not_the_file(dest) if pin is None else None
    if wrong and placed:  # nothing to trust: such a copy would be held to for good
        raise DownloadError(f"{dest} {wrong}, not the file {url} names; nothing was recorded: replace it with that "
                            "file, or delete it to download it")
    if wrong:
        dest.unlink()
        raise DownloadError(f"{url}: what the server sent {wrong}, not the file; nothing was kept or recorded. "
                            "Check the address and the network (a proxy's sign-in or error page?), then run the same "
                            "command again")
    if pin is None:
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        _write_record(dest, "sha256", file_digest(dest, "sha256"),
                      [f"trust on first use: no checksum is known for {url}, so genomix recorded this copy on {when}",
                       f"size {dest.stat().st_size}"])
        log.info("no checksum is known for %s: recorded the size and SHA-256 of %s in %s (trust on first use), which "
                 "later uses are checked against", url, dest, record)
    return dest


def _not_the_file(path: Path) -> str | None:
    """Why ``path``, a download trusted on first use, cannot be the file asked for (it is empty, or an HTML page,
    which no genome or BED file is), or None."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return "is empty"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "is an HTML page"
    return None


def _manifest_md5(spec: GenomeSpec, dest: Path) -> str | None:
    """The MD5 to verify ``dest`` against: the one recorded when genomix downloaded it, else the manifest's
    (None, with a warning, when the manifest lists none, or for a file put in place by hand while the manifest
    cannot be fetched)."""
    if dest.exists() and _record(dest, "md5").exists():
        return _recorded(dest, "md5")
    try:
        manifest = fetch_text(spec.md5_manifest, hint=f"put a copy of {spec.filename} fetched "
                              f"elsewhere at {dest} (used unverified, with a warning)")
        md5 = digest_from_manifest(manifest, spec.filename)
    except DownloadError as exc:
        if not dest.exists():
            raise
        log.warning("%s was not downloaded by genomix and cannot be verified now (%s); using it as it is", dest, exc)
        return None
    if md5 is None:
        log.warning("%s lists no checksum for %s", spec.md5_manifest, spec.filename)
    return md5


def _user_fasta(genome: str | Path | Sequence[str | Path], specs: dict[str, GenomeSpec]) -> list[Path]:
    """The FASTA files of a genome given by path(s) or a folder of shards, each checked to exist."""
    given = [genome] if isinstance(genome, (str, os.PathLike)) else list(genome)
    paths = [Path(p).expanduser() for p in given]
    for path in paths:
        if not (path.is_file() or (path.is_dir() and len(paths) == 1)):
            raise ConfigError(f"unknown genome {str(path)!r}: not a FASTA file{' or folder' if len(paths) == 1 else ''} "
                              f"and not one of {', '.join(sorted(specs))}; pass a registry name, a path to .fa/.fa.gz "
                              "(several: one store of several sources, contigs prefixed by file), or a folder of one "
                              "genome's FASTA shards")
    return fasta_files(paths)


def _store_stem(genome: str | Path | Sequence[str | Path], fasta: list[Path]) -> str:
    """The default store's name: the folder of shards, the FASTA file, or the first file and how many more."""
    if isinstance(genome, (str, os.PathLike)) and Path(genome).expanduser().is_dir():
        return Path(genome).expanduser().resolve().name
    first = fasta[0].name.split(".")[0]
    return first if len(fasta) == 1 else f"{first}-and-{len(fasta) - 1}-more"


def _identity(paths: Sequence[Path]) -> str:
    """Path, size and modification time of each file (a missing one by its path alone: reading it reports it)."""
    return "; ".join(f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}" if path.is_file()
                     else str(path) for path in paths)


def _tag(identity: str) -> str:
    """A short hash of ``identity`` that tells the default stores of different inputs apart."""
    return hashlib.sha256(identity.encode()).hexdigest()[:10]


def _splits_for(spec: GenomeSpec | None, bed: Path | None) -> Callable[[dict[str, int]], dict[str, list[Interval]]]:
    def make(lengths: dict[str, int]) -> dict[str, list[Interval]]:
        if bed is not None:
            splits = read_bed_splits(bed, lengths)
            missing = [split for split in SPLITS if split not in splits]
            needed = [split for split in missing if split != "test"]  # test is evaluated, never trained on
            if needed:
                log.warning("%s names no %s rows: `genomix pretrain` refuses a store without them (cutting them from "
                            "the end of each contig instead would overlap the BED's intervals); name the split in the "
                            "BED's fourth column", bed, " or ".join(needed))
            elif missing:
                log.info("%s names no test rows: the store has no test split", bed)
            return splits
        hold = spec.holdout if spec is not None else {}
        present = {k: [c for c in v if c in lengths] for k, v in hold.items()}
        return holdout_splits(lengths, valid=present.get("valid", ()), test=present.get("test", ()))

    return make


def _holds_splits(store: GenomeStore, wanted: dict[str, list[Interval]]) -> bool:
    """Whether ``store`` holds exactly the intervals of each split in ``wanted``, in any order."""
    stored = {split: store.split_intervals(split) for split in store.splits}
    return {k: sorted(v) for k, v in wanted.items()} == {k: sorted(v) for k, v in stored.items()}


def holds_bed_splits(store: GenomeStore, bed: str | Path) -> bool:
    """Whether ``store`` holds exactly the intervals of each split in the split BED ``bed`` (read and validated
    against the store's contigs), in any order."""
    return _holds_splits(store, read_bed_splits(bed, store.lengths))


def _check_reusable(store: GenomeStore, source: str, fasta: list[Path] | None, spec: GenomeSpec | None,
                    bed: Path | None, compression: str | None, prefix_contigs: bool) -> None:
    """Refuse to reuse an existing store that a rebuild with these arguments would not reproduce: another
    source FASTA, or the same path now holding other bytes (``fasta``, when given, is hashed as the build hashed
    it), other chunk compression, contigs named otherwise, or other splits than the build would store (``bed``'s,
    or without one the hold-out cut; a BED is read only when building)."""
    differences = []
    if bool(store.attrs.get("prefixed_contigs", False)) != prefix_contigs:
        differences.append("names its contigs " + ("after their files" if not prefix_contigs else "as in the FASTA"))
    if store.attrs.get("source") != source:
        differences.append(f"was built from {store.attrs.get('source')}, not {source}")
    elif fasta is not None and store.attrs.get("source_sha256") not in (
            None, "", combined_sha256([file_digest(path) for path in fasta])):
        differences.append(f"was built from other contents of {source} (the FASTA changed since)")
    if store.attrs.get("compression", "none") != (compression or "none"):
        differences.append(f"has compression {store.attrs.get('compression', 'none')}, not {compression or 'none'}")
    if not differences:  # the splits are compared by the contigs, which only the same FASTA is sure to have
        if bed is not None and not holds_bed_splits(store, bed):
            differences.append(f"has other splits than {bed}")
        elif bed is None and not _holds_splits(store, _splits_for(spec, None)(store.lengths)):
            differences.append("has other splits than the hold-out cut a store without --bed gets (was it built "
                               "with a --bed?)")
    if differences:
        raise ConfigError(f"{store.path} exists but {'; '.join(differences)}: pass --force to rebuild it or choose "
                          "another --out")


def prepare_genome(genome: str | Path | Sequence[str | Path], out: str | Path | None = None,
                   cache: str | Path | None = None, bed: str | Path | None = None, quiet: bool = False,
                   force: bool = False, compression: str | None = COMPRESSION, prefix_contigs: bool = False) -> Path:
    """Build (or reuse) the genome store for a registry name, ``demo``, a FASTA path, or several FASTA files
    (a list, or a folder of shards: see :func:`~.store.fasta_files`) stored as one genome; returns its path.
    ``prefix_contigs`` names contigs after their files (several species share names such as ``X``; see
    :func:`~.store.write_store`).

    Named genomes are downloaded into the cache with resume and checksum verification; the split BED
    of the entry (hg38: HyenaDNA's ``sequences_human.bed``, published without a checksum, so trusted on first
    use: :func:`download_pinned`) or ``bed`` is validated and stored with the sequences; without one,
    chromosome hold-out splits are stored. An existing ``out`` is reused unless ``force`` (without downloading
    the FASTA again, which may have been deleted from the cache to save space). The store is written atomically.
    """
    from tqdm.auto import tqdm

    root = cache_dir(cache)
    specs = known_genomes()
    spec = specs.get(str(genome)) if isinstance(genome, (str, os.PathLike)) else None
    # what else makes a store differ from the default one of its FASTA: the default name tells them apart, so
    # that `genomix pretrain --bed` or several species never meet a cached store made otherwise
    variant = (f"; bed {_identity([Path(bed).expanduser()])}" if bed is not None else "") + \
        ("; prefixed contigs" if prefix_contigs else "")
    if spec is not None:
        fasta = None  # fetched below, only when the store is built: a reusable store needs no FASTA
        source = spec.url or f"genomix bundled {spec.file}"
        default_out = root / "stores" / (f"{spec.name}-{_tag(variant)}.h5" if variant else f"{spec.name}.h5")
        if bed is None and spec.splits_bed:
            bed = download_pinned(spec.splits_bed, root / "downloads" / spec.name / spec.splits_bed.rsplit("/", 1)[-1],
                                  quiet=quiet)
    else:
        fasta = _user_fasta(genome, specs)
        source = "; ".join(str(path.resolve()) for path in fasta)
        # a changed FASTA gets a new store
        default_out = root / "stores" / f"{_store_stem(genome, fasta)}-{_tag(_identity(fasta) + variant)}.h5"
    given_out = out is not None
    out = Path(out).expanduser() if given_out else default_out
    if bed is not None:
        check_split_bed(bed)
    if out.exists() and not force:
        # a default store's name holds its FASTA's size and time; one at a path the user chose is checked by content
        _check_reusable(open_store(out), source, fasta if given_out else None, spec, Path(bed) if bed else None,
                        compression, prefix_contigs)
        log.info("genome store %s already exists; reusing it (pass --force to rebuild)", out)
        return out
    make_output_dir(out.parent, "--out" if given_out else "--cache-dir (or $GENOMIX_CACHE)")
    if fasta is None:
        fasta = [fetch_genome(spec, root, quiet=quiet)]
    with tqdm(total=sum(path.stat().st_size for path in fasta), unit="B", unit_scale=True, desc=f"store {out.name}",
              disable=quiet) as bar:
        write_store(fasta, out, source=source, splits=_splits_for(spec, Path(bed) if bed else None),
                    on_read=bar.update, compression=compression, prefix_contigs=prefix_contigs)
    return out
