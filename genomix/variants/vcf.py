"""Streaming VCF reader (plain, gzip or bgzip): one :class:`Variant` per (record, ALT allele).

Only the eight fixed columns are read; samples and INFO are ignored. A multi-allelic record yields one
variant per ALT allele, each remembering its record's line. Alleles that are not sequences (symbolic
``<DEL>``, breakends, the ``*`` overlapping deletion, a missing ``.``) are still yielded, marked
``sequence_allele = False``, so that callers can report them instead of dropping them silently.
Malformed lines raise :class:`~genomix.errors.InputFormatError` naming file and line.

Why not pysam (which DESIGN.md planned for VCF I/O): scoring reads a VCF once, front to back, so neither an
index nor BCF is needed. pysam would add an htslib build to the two-command install, and it has no Windows
wheels. The FASTA reader avoided pyfaidx and Biopython for the same reasons.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import re
from pathlib import Path
from typing import Iterator

from ..errors import InputFormatError

GZIP_MAGIC = b"\x1f\x8b"
FIXED_COLUMNS = ("#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")
_SEQUENCE = re.compile(r"[ACGTNacgtn]+")
_IUPAC_REF = re.compile(r"[ACGTNRYSWKMBDHVacgtnryswkmbdhv]+")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One ALT allele of a VCF record: ``pos`` is 1-based as in the file, ``line`` the record's line."""

    chrom: str
    pos: int
    id: str
    ref: str
    alt: str
    line: int

    @property
    def sequence_allele(self) -> bool:
        """Whether ALT is a plain sequence (scorable), not a symbolic allele, breakend, ``*`` or ``.``."""
        return bool(_SEQUENCE.fullmatch(self.alt))


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    raw = gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")  # bgzip is multi-member gzip
    return io.TextIOWrapper(raw, encoding="ascii", errors="strict", newline=None)


def read_vcf(path: str | Path) -> Iterator[Variant]:
    """The variants of a VCF file in file order (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: no such VCF file")
    header_seen = False
    with _open_text(path) as text:
        try:
            for number, line in enumerate(text, start=1):
                line = line.rstrip("\n")
                if line.startswith("##") or not line.strip():
                    continue
                fields = line.split("\t")
                if line.startswith("#"):
                    if tuple(fields[:8]) != FIXED_COLUMNS:
                        raise InputFormatError(f"{path}:{number}: the header line must start with the columns "
                                               f"{' '.join(FIXED_COLUMNS)} (tab-separated), found {line[:80]!r}")
                    header_seen = True
                    continue
                if not header_seen:
                    raise InputFormatError(f"{path}:{number}: a record before the #CHROM header line; is this a VCF?")
                yield from _record(path, number, fields)
        except UnicodeDecodeError as exc:
            raise InputFormatError(f"{path}: not ASCII text ({exc.reason} at byte {exc.start}); is this a VCF?") from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputFormatError(f"{path}: unreadable compressed data ({exc}); the file may be truncated") from None
    if not header_seen:
        raise InputFormatError(f"{path}: no #CHROM header line; is this a VCF?")


def _record(path: Path, number: int, fields: list[str]) -> Iterator[Variant]:
    if len(fields) < 8:
        raise InputFormatError(f"{path}:{number}: {len(fields)} tab-separated columns, a VCF record needs at least 8")
    chrom, pos, vid, ref, alts = fields[:5]
    try:
        position = int(pos)
    except ValueError:
        raise InputFormatError(f"{path}:{number}: POS {pos!r} is not an integer") from None
    if position < 1:
        raise InputFormatError(f"{path}:{number}: POS {position} must be >= 1 (VCF positions are 1-based)")
    if not chrom:
        raise InputFormatError(f"{path}:{number}: empty CHROM")
    if not _IUPAC_REF.fullmatch(ref):
        raise InputFormatError(f"{path}:{number}: REF {ref!r} is not a DNA sequence")
    for alt in alts.split(","):
        if not alt:
            raise InputFormatError(f"{path}:{number}: empty allele in ALT {alts!r}")
        yield Variant(chrom, position, vid, ref.upper(), alt.upper() if _SEQUENCE.fullmatch(alt) else alt, number)


__all__ = ["Variant", "read_vcf"]
