"""BCF (binary VCF, version 2.1/2.2, BGZF-compressed as bcftools writes it): the fixed fields of each record.

A BCF file is a text VCF header followed by binary records. Each record's shared part starts with the
contig's index in the header's contig dictionary, the 0-based position, the reference length (which
already covers an INFO END) and QUAL, then typed values: the ID, the alleles (REF first), FILTER and
INFO. Only the contig, position, ID and alleles are decoded; the per-sample part is skipped by its
length. Records become the same :class:`.vcf.Variant` rows as text VCF records, through the same checks.
"""
from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..errors import InputFormatError
from .tabix import BgzfReader, Region, TabixIndex, find_index, indexed_records, record_at

BCF_MAGIC = b"BCF\x02"
_CONTIG = re.compile(r"^##contig=<(.*)>\s*$")
_TYPE_SIZE = {0: 0, 1: 1, 2: 2, 3: 4, 5: 4, 7: 1}


def is_bcf(path: Path) -> bool:
    """Whether ``path`` is a BGZF-compressed BCF file (an uncompressed one is an error: bcftools ``-Ou``
    output is meant for pipes)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == BCF_MAGIC:
        raise InputFormatError(f"{path}: uncompressed BCF; compress it with `bcftools view -Ob -o FILE.bcf`")
    if head[:2] != b"\x1f\x8b":
        return False
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read(4) == BCF_MAGIC
    except (OSError, EOFError):
        return False


def _contigs(header: str, path: Path) -> list[str]:
    """The contig dictionary: ``##contig`` lines in order, or at their ``IDX`` when given."""
    names: dict[int, str] = {}
    for line in header.splitlines():
        match = _CONTIG.match(line)
        if match is None:
            continue
        fields = dict(item.split("=", 1) for item in re.findall(r"(\w+=(?:\"[^\"]*\"|[^,]*))", match[1]))
        if "ID" not in fields:
            raise InputFormatError(f"{path}: header line {line[:80]!r} has no ID")
        index = int(fields["IDX"]) if "IDX" in fields else len(names)
        names[index] = fields["ID"]
    return [names.get(i, "") for i in range(max(names) + 1)] if names else []


def _typed(buf: bytes, off: int, where: Callable[[], str]) -> tuple[bytes, int]:
    """(raw bytes, next offset) of the typed value at ``off`` (BCF's type byte: low nibble the type, high
    nibble the count, 15 meaning the count follows as a typed integer)."""
    try:
        kind, count = buf[off] & 0xF, buf[off] >> 4
        off += 1
        if count == 15:
            width = _TYPE_SIZE[buf[off] & 0xF]
            count = int.from_bytes(buf[off + 1:off + 1 + width], "little", signed=True)
            off += 1 + width
        size = _TYPE_SIZE[kind] * count
    except (IndexError, KeyError):
        raise InputFormatError(f"{where()}: malformed typed value in a BCF record") from None
    if off + size > len(buf):
        raise InputFormatError(f"{where()}: BCF record shorter than its fields")
    return buf[off:off + size], off + size


def _string(raw: bytes) -> str:
    """A BCF string field: UTF-8 (as VCF 4.3 text), up to its first NUL."""
    return raw.split(b"\x00", 1)[0].decode("utf-8", "replace")


class _BcfRecords:
    """Records of one open BCF file, from its header on or from a virtual offset."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bgzf = BgzfReader(path)
        magic = self.bgzf.read(5)
        if magic[:4] != BCF_MAGIC or magic[4] not in (1, 2):
            raise InputFormatError(f"{path}: not BCF 2.1/2.2 (starts with {magic!r})")
        (length,) = struct.unpack("<I", self.bgzf.read(4))
        header = self.bgzf.read(length).rstrip(b"\x00").decode("utf-8", "replace")
        if "\n#CHROM" not in "\n" + header:
            raise InputFormatError(f"{path}: BCF header has no #CHROM line")
        self.contigs = _contigs(header, path)

    def close(self) -> None:
        self.bgzf.close()

    def records(self, stop: int | None = None) -> Iterator[tuple[int, list[str]]]:
        """``(virtual offset, fields)`` of the records from the current position on, up to the one starting
        at ``stop``: VCF's CHROM..INFO (QUAL, FILTER and INFO as '.', not decoded), then the reference length."""
        while stop is None or self.bgzf.tell() < stop:
            start = self.bgzf.tell()
            sizes = self.bgzf.read(8)
            if not sizes:
                return
            if len(sizes) < 8:
                raise InputFormatError(f"{self.path}: BCF record at virtual offset {start} is cut short")
            shared_len, indiv_len = struct.unpack("<II", sizes)
            shared = self.bgzf.read(shared_len)
            if len(self.bgzf.read(indiv_len)) < indiv_len or len(shared) < max(shared_len, 24):
                raise InputFormatError(f"{self.path}: BCF record at virtual offset {start} is cut short (truncated file?)")
            yield start, self._fields(shared, start)

    def _fields(self, shared: bytes, start: int) -> list[str]:
        def where() -> str:
            return record_at(self.path, start)

        chrom, pos, rlen = struct.unpack_from("<iii", shared, 0)
        n_allele = struct.unpack_from("<I", shared, 16)[0] >> 16
        if not 0 <= chrom < len(self.contigs) or not self.contigs[chrom]:
            raise InputFormatError(f"{where()}: contig index {chrom} is not in the header's contig dictionary")
        raw_id, off = _typed(shared, 24, where)
        alleles = []
        for _ in range(n_allele):
            raw, off = _typed(shared, off, where)
            alleles.append(_string(raw))
        if not alleles:
            raise InputFormatError(f"{where()}: record without a REF allele")
        alt = ",".join(alleles[1:]) or "."
        return [self.contigs[chrom], str(pos + 1), _string(raw_id) or ".", alleles[0], alt, ".", ".", ".",
                str(rlen)]


def bcf_records(path: Path, regions: Sequence[Region] | None) -> Iterator[tuple[str, list[str]]]:
    """``(where, fields)`` of a BCF file's records in file order, or of those overlapping ``regions`` (each
    once, through the file's CSI index), for :func:`.vcf.read_vcf` to check and split into alleles."""
    reader = _BcfRecords(path)
    try:
        if regions is None:
            for offset, fields in reader.records():
                yield record_at(path, offset), fields
            return
        index = TabixIndex.load(find_index(path, bcf=True), bcf=True)
        if not index.names:  # bcftools' CSI keeps no names: its contigs are the header's dictionary
            index.names = reader.contigs

        def chunk(stop: int) -> Iterator[tuple[int, tuple[str, list[str]]]]:
            for offset, fields in reader.records(stop):
                yield offset, (record_at(path, offset), fields)

        def span(record: tuple[str, list[str]]) -> tuple[str, int, int]:
            fields = record[1]
            start = int(fields[1]) - 1
            return fields[0], start, start + max(1, int(fields[8]))

        yield from indexed_records(index, regions, reader.bgzf, chunk, span)
    finally:
        reader.close()


__all__ = ["bcf_records", "is_bcf"]
