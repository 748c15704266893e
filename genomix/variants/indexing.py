"""Tabix (``.tbi``) indexes for VCFs, and bgzip copies of plain ones, without htslib: ``genomix index-vcf``.

Region queries (:mod:`.tabix`) need a BGZF file and an index. Users without htslib tools get both from here:
a bgzip file is indexed in place, a plain or gzip-compressed one is copied into BGZF first. The BGZF writer cuts the text into blocks of at most 0xFF00 bytes,
as bgzip does, and notes each record's virtual offsets. The index follows the tabix format: per contig, the
smallest bin that holds each record (six levels, 16 kb leaves), chunks of consecutive records per bin, the
16 kb linear index, and the per-contig pseudo-bin with record counts that htslib writes. htslib reads both
files (the tests query them through pysam).
"""
from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from ..compression import BGZF_EOF, is_bgzf, is_gzip, require_complete_bgzf
from ..errors import InputFormatError
from ..outputs import check_output, make_output_dir, temp_sibling
from .tabix import TABIX_DEPTH, TABIX_MIN_SHIFT, BgzfReader, pseudo_bin, record_span
from .bcf import is_bcf
from .vcf import BOM, HeaderCheck, open_bytes

BLOCK_DATA = 0xFF00
_PSEUDO_BIN = pseudo_bin(TABIX_DEPTH)  # 37450: per-contig offsets and record counts
#: The end of the span a tabix index's bins cover (2^29 = 536,870,912 bases); htslib refuses to index past it.
TABIX_SPAN = 1 << (TABIX_MIN_SHIFT + 3 * TABIX_DEPTH)


def bin_of(start: int, end: int, min_shift: int = TABIX_MIN_SHIFT, depth: int = TABIX_DEPTH) -> int:
    """The smallest bin that holds all of [start, end) (0 is the whole-contig bin)."""
    last, shift = end - 1, min_shift
    offset = ((1 << (3 * depth)) - 1) // 7
    for level in range(depth, 0, -1):
        if start >> shift == last >> shift:
            return offset + (start >> shift)
        shift += 3
        offset -= 1 << (3 * (level - 1))
    return 0


class BgzfWriter:
    """Bytes into BGZF blocks; :meth:`tell` is the virtual offset of the next byte, normalised as htslib
    reports it (a full block's end is the next block's start)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.buffer, self.coffset = fh, bytearray(), 0

    def tell(self) -> int:
        return (self.coffset << 16) | len(self.buffer)

    def write(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= BLOCK_DATA:
            self._flush(bytes(self.buffer[:BLOCK_DATA]))
            del self.buffer[:BLOCK_DATA]

    def close(self) -> None:
        if self.buffer:
            self._flush(bytes(self.buffer))
            self.buffer.clear()
        self.fh.write(BGZF_EOF)

    def _flush(self, data: bytes) -> None:
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = deflate.compress(data) + deflate.flush()
        size = 18 + len(body) + 8
        self.fh.write(struct.pack("<4BI2BH2BHH", 0x1F, 0x8B, 8, 4, 0, 0, 0xFF, 6, ord("B"), ord("C"), 2, size - 1))
        self.fh.write(body + struct.pack("<II", zlib.crc32(data), len(data)))
        self.coffset += size


@dataclasses.dataclass
class _ContigBins:
    bins: dict[int, list[list[int]]] = dataclasses.field(default_factory=dict)
    linear: list[int] = dataclasses.field(default_factory=list)
    first: int = -1
    last: int = 0
    records: int = 0

    def add(self, start: int, end: int, begin_offset: int, end_offset: int) -> None:
        chunks = self.bins.setdefault(bin_of(start, end), [])
        if chunks and chunks[-1][1] == begin_offset:
            chunks[-1][1] = end_offset
        else:
            chunks.append([begin_offset, end_offset])
        last_window = (end - 1) >> TABIX_MIN_SHIFT
        if len(self.linear) <= last_window:
            self.linear.extend([-1] * (last_window + 1 - len(self.linear)))
        for window in range(start >> TABIX_MIN_SHIFT, last_window + 1):
            if self.linear[window] < 0:
                self.linear[window] = begin_offset
        if self.first < 0:
            self.first = begin_offset
        self.last, self.records = end_offset, self.records + 1

    def encode(self) -> bytes:
        out = [struct.pack("<i", len(self.bins) + 1)]
        for number, chunks in sorted(self.bins.items()):
            out.append(struct.pack("<Ii", number, len(chunks)))
            out.extend(struct.pack("<QQ", b, e) for b, e in chunks)
        out.append(struct.pack("<IiQQQQ", _PSEUDO_BIN, 2, self.first, self.last, self.records, 0))
        linear, previous = [], 0
        for offset in self.linear:  # a window without records takes the previous window's offset
            previous = offset if offset >= 0 else previous
            linear.append(previous)
        out.append(struct.pack(f"<i{len(linear)}Q", len(linear), *linear))
        return b"".join(out)


def _copied_lines(source: Path, writer: BgzfWriter) -> Iterator[tuple[int, int, bytes]]:
    """``(start, end, line)`` virtual offsets of each line of a plain or gzip file as it is copied into
    ``writer``, without a UTF-8 byte-order mark before the first (htslib would read that line as a record)."""
    with open_bytes(source) as text:
        for number, line in enumerate(text, start=1):
            if number == 1:
                line = line.removeprefix(BOM.encode())
            begin = writer.tell()
            writer.write(line if line.endswith(b"\n") else line + b"\n")
            yield begin, writer.tell(), line
    writer.close()


def _bgzf_lines(source: Path) -> Iterator[tuple[int, int, bytes]]:
    """``(start, end, line)`` virtual offsets of each line of a BGZF file, read in place."""
    with BgzfReader(source) as bgzf:
        while True:
            begin, line = bgzf.tell(), bgzf.readline()
            if not line:
                return
            yield begin, bgzf.tell(), line


def _tabix_index(lines: Iterable[tuple[int, int, bytes]], source: Path) -> bytes:
    """The BGZF-compressed ``.tbi`` of a VCF's lines (see the module docstring)."""
    names: list[str] = []
    contigs: list[_ContigBins] = []
    last_pos = 0
    header = HeaderCheck(source)
    for number, (begin, end_offset, line) in enumerate(lines, start=1):
        if line.startswith(b"##"):
            continue  # meta lines are not decoded: their free text may be UTF-8
        try:
            text = line.rstrip(b"\r\n").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputFormatError(f"{source}:{number}: not UTF-8 text (column {exc.start + 1}); VCF files are "
                                   "UTF-8. Is this a VCF?") from None
        if not header.is_record(number, text):
            continue
        fields = text.split("\t")
        if len(fields) < 8 or not (fields[1].isascii() and fields[1].isdigit()):
            raise InputFormatError(f"{source}:{number}: not a VCF record (8+ tab-separated columns, integer POS)")
        if int(fields[1]) < 1:
            raise InputFormatError(f"{source}:{number}: POS {fields[1]} must be >= 1 (VCF positions are 1-based)")
        start, end = record_span(fields)
        if end > TABIX_SPAN:
            raise InputFormatError(f"{source}:{number}: {fields[0]}:{start + 1} reaches past base {TABIX_SPAN:,}, the "
                                   "last a tabix (.tbi) index can address (contigs over 512 Mb); genomix index-vcf "
                                   "writes .tbi only: index the bgzip file with a CSI index instead (`tabix -C -p vcf "
                                   "FILE` or `bcftools index FILE`), which genomix reads")
        if not names or names[-1] != fields[0]:
            if fields[0] in names:
                raise InputFormatError(f"{source}:{number}: contig {fields[0]} appears again after other contigs; "
                                       "sort the VCF (bcftools sort) before indexing")
            names.append(fields[0])
            contigs.append(_ContigBins())
            last_pos = 0
        if start < last_pos:
            raise InputFormatError(f"{source}:{number}: {fields[0]}:{start + 1} comes after position {last_pos + 1}; "
                                   "sort the VCF (bcftools sort) before indexing")
        last_pos = start
        contigs[-1].add(start, end, begin, end_offset)
    header.finish()
    names_blob = b"".join(n.encode("utf-8") + b"\x00" for n in names)
    parts = [b"TBI\x01", struct.pack("<8i", len(names), 2, 1, 2, 0, ord("#"), 0, len(names_blob)), names_blob]
    parts.extend(c.encode() for c in contigs)
    packed = io.BytesIO()
    writer = BgzfWriter(packed)
    writer.write(b"".join(parts))
    writer.close()
    return packed.getvalue()


def index_vcf(source: str | os.PathLike, out: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Index a VCF whose records are sorted by position within each contig, each contig's records together
    (as ``bcftools sort`` leaves them); returns the indexed BGZF file, with ``<file>.tbi`` beside it. The file
    must have the ``#CHROM`` header line that the reader requires (:class:`~.vcf.HeaderCheck`).

    A bgzip file is indexed in place when ``out`` is not given, replacing an existing ``.tbi`` only with
    ``overwrite``. Otherwise ``out`` (default for plain text: ``source`` with ``.gz`` added) receives a BGZF copy,
    replacing an existing file only with ``overwrite``.
    Files are written to temporary names and renamed when complete, so a refused or interrupted run leaves
    nothing partial."""
    source = Path(source)
    if not source.is_file():
        raise InputFormatError(f"{source}: no such VCF file")
    if is_bcf(source):
        raise InputFormatError(f"{source} is a BCF file; `bcftools index {source.name}` indexes it (genomix "
                               "index-vcf indexes text VCFs only)")
    require_complete_bgzf(source)
    try:
        if out is None and is_bgzf(source):
            check_output(f"{source}.tbi", (source,), overwrite)  # as tabix, an existing index only with -f
            return _write_index(_tabix_index(_bgzf_lines(source), source), source)
        if out is None:
            if is_gzip(source):
                raise InputFormatError(f"{source} is gzip, not bgzip, so it cannot be indexed in place: give a bgzip "
                                       "copy's name with out=PATH (--out PATH), e.g. calls.bgz.vcf.gz")
            out = source.with_name(source.name + ".gz")
        out = check_output(out, (source,), overwrite)
        # refused as the output's, not reported below as an unreadable input
        make_output_dir(out.parent, option="out (--out)")
        tmp = temp_sibling(out)  # a killed run's copy is removed by the next run (its process is gone)
        try:
            with open(tmp, "wb") as raw:
                index = _tabix_index(_copied_lines(source, BgzfWriter(raw)), source)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return _replace_indexed(tmp, index, out)
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        written = getattr(exc, "filename", None)
        if written is not None and Path(written) != source:  # the copy or its index, not the VCF
            raise InputFormatError(f"{written}: cannot write it ({exc.strerror or exc}); choose another out "
                                   "(--out)") from None
        raise InputFormatError(f"{source}: unreadable VCF ({exc})") from None


def _replace_indexed(tmp: Path, index: bytes, out: Path) -> Path:
    """Rename the finished copy ``tmp`` to ``out`` with its ``index`` beside it. Two files cannot be replaced in
    one step, so ``out`` is removed first and renamed last: a run killed part way (kill -9, a power cut) leaves at
    worst an index beside no ``out``, which a rerun replaces, never ``out`` without its index or beside the index
    of the file it replaced."""
    out.unlink(missing_ok=True)
    _write_index(index, out)
    os.replace(tmp, out)
    return out


def _write_index(index: bytes, data: Path) -> Path:
    tbi = data.with_name(data.name + ".tbi")
    tmp = temp_sibling(tbi)
    tmp.write_bytes(index)
    os.replace(tmp, tbi)
    return data


__all__ = ["BgzfWriter", "bin_of", "index_vcf"]
