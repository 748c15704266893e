"""Streaming VCF reader (plain, gzip or bgzip): one :class:`Variant` per (record, ALT allele).

Only the eight fixed columns are read; samples and INFO are ignored. A multi-allelic record yields one
variant per ALT allele, each remembering its record's line. Alleles that are not concrete sequences of A, C, G
and T (symbolic ``<DEL>``, breakends, the ``*`` overlapping deletion, a missing ``.``, and bases written with
``N`` or other IUPAC ambiguity codes such as ``R`` or ``Y``, which stand for a choice of bases rather than one)
are still yielded, marked ``sequence_allele = False``, so that callers can report them instead of dropping them
silently or scoring a guess. REF may hold ambiguity codes: some reference FASTAs carry a few, and VCFs called
against them copy them into REF; scoring checks REF against its reference (:mod:`.score`). Bases and ambiguity
codes are upper-cased; symbolic alleles keep their spelling.

A text VCF must name its columns in the ``#CHROM`` header line, after the ``##`` meta lines and before the
first record; a file without it is refused (:class:`HeaderCheck`, which ``genomix index-vcf`` applies too).
Malformed lines raise :class:`~genomix.errors.InputFormatError` naming file and line. The text is UTF-8, as
VCF 4.3 allows in meta lines and INFO values; ``##`` meta lines are not decoded at all (older files carry
Latin-1 there), as ``genomix index-vcf`` does not decode them either, so the two accept the same files. A bgzip
file (BGZF, as bgzip, bcftools and ``genomix index-vcf`` write it) must end with its end-of-file block: htslib
writes whole blocks that end at record boundaries, so a copy cut between blocks (a killed ``bcftools view
-Oz``, an interrupted transfer) decompresses without error, and without the check its missing records would go
unnoticed.

With ``regions``, a bgzip-compressed VCF with a ``.tbi`` or ``.csi`` index is read only where the regions
are (:mod:`.tabix`), the way ``tabix`` and ``bcftools view -r`` do: a gnomAD-sized file is not scanned to
score one gene's variants.

BCF files (as ``bcftools view -Ob`` writes them) are read too, front to back or through their CSI index
(:mod:`.bcf`), and give the same variants as the equivalent VCF.

Why not pysam (which DESIGN.md planned for VCF I/O): scoring reads a VCF or BCF front to back or at
indexed regions, which needs only zlib. pysam would add an htslib build to the two-command install, and it
has no Windows wheels. The FASTA reader avoided pyfaidx and Biopython for the same reasons.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import numbers
import re
from pathlib import Path
from typing import Iterator, Sequence

from ..compression import is_gzip, require_complete_bgzf
from ..errors import InputFormatError
from .bcf import bcf_records, is_bcf
from .tabix import BgzfReader, Region, TabixIndex, find_index, indexed_records, record_at, record_span

FIXED_COLUMNS = ("#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")
_CONCRETE = re.compile(r"[ACGTacgt]+")
_IUPAC = re.compile(r"[ACGTNRYSWKMBDHVacgtnryswkmbdhv]+")
_POSITION = re.compile(r"[0-9]+")
#: The UTF-8 byte-order mark as decoded text; accepted before a VCF's first line (:class:`HeaderCheck`).
BOM = "\ufeff"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One ALT allele of a VCF record: ``pos`` is 1-based as in the file, ``line`` the record's line (0 when
    read through an index, which does not count lines)."""

    chrom: str
    pos: int
    id: str
    ref: str
    alt: str
    line: int

    def __post_init__(self) -> None:
        """Upper-case bases and ambiguity codes (VCF bases are case-insensitive, and a ``Variant`` made in Python
        with ``"g"`` must match the reference's ``G``); symbolic alleles keep their spelling. A ``pos`` that is not
        a 1-based integer (a string, a float, 0: a 0-based coordinate) is refused by name; numpy integers are taken."""
        if isinstance(self.pos, bool) or not isinstance(self.pos, numbers.Integral) or self.pos < 1:
            raise InputFormatError(f"Variant {self.chrom}:{self.pos!r}: pos must be the 1-based position as an int "
                                   f"(as in the VCF), got {type(self.pos).__name__} {self.pos!r}")
        object.__setattr__(self, "pos", int(self.pos))
        for name in ("ref", "alt"):
            allele = getattr(self, name)
            if _IUPAC.fullmatch(allele):
                object.__setattr__(self, name, allele.upper())

    @property
    def sequence_allele(self) -> bool:
        """Whether ALT is a concrete sequence of A, C, G and T (scorable): not a symbolic allele, breakend, ``*``
        or ``.``, nor bases with N or other ambiguity codes, which name no one allele to score."""
        return bool(_CONCRETE.fullmatch(self.alt))

    def location(self, source: str | Path) -> str:
        """Where the record is, for messages: ``file:line``, or ``file (chrom:pos)`` without a line."""
        return f"{source}:{self.line}" if self.line else f"{source} ({self.chrom}:{self.pos})"


def open_bytes(path: Path) -> io.BufferedIOBase:
    """``path``'s bytes, decompressed when it is gzip or bgzip."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def _open_text(path: Path) -> io.TextIOBase:
    """``path`` as text lines; bytes that are not UTF-8 are kept as surrogate escapes, so that a meta line in
    another encoding is skipped, and a record holding them is refused by :func:`_text_records`."""
    return io.TextIOWrapper(open_bytes(path), encoding="utf-8", errors="surrogateescape", newline=None)


def read_vcf(path: str | Path, regions: Sequence[Region] | None = None) -> Iterator[Variant]:
    """The variants of a VCF file in file order, or with ``regions`` those overlapping each region in
    turn, each record once (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise InputFormatError(f"{path} is a directory; give the VCF or BCF file")
    if not path.is_file():
        raise InputFormatError(f"{path}: no such VCF file")
    require_complete_bgzf(path)
    if is_bcf(path):
        for where, fields in bcf_records(path, regions):
            yield from _record(where, 0, fields)
        return
    if regions is not None:
        yield from _read_regions(path, regions)
        return
    for number, fields in _text_records(path):
        yield from _record(f"{path}:{number}", number, fields)


class HeaderCheck:
    """The header rule of text VCFs, applied line by line: the ``#CHROM`` line, with VCF's eight fixed columns
    first, comes before the first record. Shared by the reader and ``genomix index-vcf``, so that a file one of
    them refuses is refused by the other with the same message."""

    def __init__(self, path: str | Path) -> None:
        self.path, self.seen = path, False

    def is_record(self, number: int, line: str) -> bool:
        """Whether line ``number`` (without its line end) is a record, not a meta, header or blank line; raises
        :class:`InputFormatError` for a malformed header line or a record before the header line. A UTF-8
        byte-order mark before the first line (as some Windows editors write) is ignored."""
        if number == 1:
            line = line.removeprefix(BOM)
        if line.startswith("##") or not line.strip():
            return False
        if line.startswith("#"):
            if tuple(line.split("\t")[:8]) != FIXED_COLUMNS:
                raise InputFormatError(f"{self.path}:{number}: the header line must start with the columns "
                                       f"{' '.join(FIXED_COLUMNS)} (tab-separated), found {line[:80]!r}")
            self.seen = True
            return False
        if not self.seen:
            raise self._missing(f"{self.path}:{number}: the #CHROM header line is missing before this record")
        return True

    def finish(self) -> None:
        """Raise :class:`InputFormatError` if the whole file went by without its header line."""
        if not self.seen:
            raise self._missing(f"{self.path}: the #CHROM header line is missing")

    @staticmethod
    def _missing(what: str) -> InputFormatError:
        return InputFormatError(f"{what}; a VCF names its columns ({' '.join(FIXED_COLUMNS)}, tab-separated) in "
                                "that line, after its ## meta lines and before its records. Is this a VCF?")


def _text_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of each record of a text VCF, after checking its header."""
    header = HeaderCheck(path)
    with _open_text(path) as text:
        try:
            for number, line in enumerate(text, start=1):
                line = line.rstrip("\n")
                if header.is_record(number, line):
                    if not line.isascii():
                        _require_utf8(line, f"{path}:{number}")
                    yield number, line.split("\t")
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputFormatError(f"{path}: unreadable compressed data ({exc}); the file may be truncated") from None
    header.finish()


def _require_utf8(line: str, where: str) -> None:
    """Refuse a record line read with surrogate escapes (:func:`_open_text`): not UTF-8 text."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputFormatError(f"{where}: not UTF-8 text (column {exc.start + 1}); VCF files are UTF-8. Is this "
                               "a VCF?") from None


def _read_regions(path: Path, regions: Sequence[Region]) -> Iterator[Variant]:
    records = _text_records(path)
    next(records, None)  # the header is checked as far as the first record; the index finds the rest
    records.close()
    index = TabixIndex.load(find_index(path))

    with BgzfReader(path, text=True) as bgzf:
        def chunk(stop: int) -> Iterator[tuple[int, tuple[list[str], list[Variant]]]]:
            for offset, line in bgzf.lines(stop):
                if line.strip() and not line.startswith("#"):
                    fields = line.split("\t")  # a malformed record fails here, overlapping or not
                    yield offset, (fields, list(_record(record_at(path, offset), 0, fields)))

        def span(record: tuple[list[str], list[Variant]]) -> tuple[str, int, int]:
            return (record[0][0], *record_span(record[0]))

        for _, variants in indexed_records(index, regions, bgzf, chunk, span):
            yield from variants


def _record(where: str, number: int, fields: list[str]) -> Iterator[Variant]:
    if len(fields) < 8:
        raise InputFormatError(f"{where}: {len(fields)} tab-separated columns, a VCF record needs at least 8")
    chrom, pos, vid, ref, alts = fields[:5]
    if not _POSITION.fullmatch(pos):  # int() would also take "+5", "1_000" and " 5"
        raise InputFormatError(f"{where}: POS {pos!r} is not an integer")
    position = int(pos)
    if position < 1:
        raise InputFormatError(f"{where}: POS {position} must be >= 1 (VCF positions are 1-based)")
    if not chrom:
        raise InputFormatError(f"{where}: empty CHROM")
    if not _IUPAC.fullmatch(ref):
        raise InputFormatError(f"{where}: REF {ref!r} is not a DNA sequence")
    for alt in alts.split(","):
        if not alt:
            raise InputFormatError(f"{where}: empty allele in ALT {alts!r}")
        yield Variant(chrom, position, vid, ref, alt, number)


__all__ = ["HeaderCheck", "Region", "Variant", "read_vcf"]
