"""Random access to bgzip-compressed, tabix- or CSI-indexed text files (VCF): the records that overlap a region.

A bgzip file is a series of gzip members ("BGZF blocks") of at most 64 KiB of data each; a *virtual
offset* ``(block start << 16) | offset in the block's data`` addresses any byte. A ``.tbi`` (tabix) or
``.csi`` index maps each contig's genomic bins to chunks of virtual offsets, so a query reads only the
blocks that can hold overlapping records (SAMtools' "Tabix" and "CSI" specifications). Records inside
those chunks are still checked against the region, so the index only has to be a superset, as the
format guarantees.

An index made for another file, or for this one before it changed, would make a query miss records or read
the wrong ones without a word (htslib only warns when the index is older than the file). Such an index is
refused with a message naming both files and the command that rebuilds it: the end of its last record must be
where the file's data ends (:meth:`TabixIndex.check_fits`), and each chunk it gives must start with a record of
the queried contig (:func:`indexed_records`).

Pure Python with ``zlib``: no htslib build, the same reason as the streaming reader (:mod:`.vcf`). The
tests check every query against htslib's own indexes (built with pysam) and a full scan.
"""
from __future__ import annotations

import dataclasses
import gzip
import itertools
import logging
import os
import re
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Sequence, TypeVar

from ..compression import is_bgzf
from ..errors import InputFormatError, RangeError
from .reference import contig_aliases

log = logging.getLogger(__name__)
Item = TypeVar("Item")

_BGZF_FIXED = struct.Struct("<4BI2BH")  # ID1 ID2 CM FLG MTIME XFL OS XLEN
_REGION = re.compile(r"^(?:\{(?P<braced>[^{}]+)\}|(?P<chrom>[^:\s{}]+))(?::(?P<start>[\d,]+)(?:-(?P<end>[\d,]+))?)?$")
TABIX_MIN_SHIFT, TABIX_DEPTH = 14, 5  # a .tbi is a CSI with these fixed: 16 kb leaf bins, six levels


@dataclasses.dataclass(frozen=True)
class Region:
    """A 0-based half-open interval of a contig; ``end=None`` runs to the contig's end."""

    chrom: str
    start: int = 0
    end: int | None = None

    def __str__(self) -> str:
        name = f"{{{self.chrom}}}" if ":" in self.chrom else self.chrom
        return name if self.start == 0 and self.end is None else f"{name}:{self.start + 1}-{self.end or ''}"

    def overlaps(self, chrom: str, start: int, end: int) -> bool:
        """Whether the 0-based half-open span [start, end) of ``chrom`` overlaps the region."""
        return chrom == self.chrom and end > self.start and (self.end is None or start < self.end)


def parse_region(text: str) -> Region:
    """``chr1``, ``chr1:1000`` (from position 1000 on) or ``chr1:1,000-2,000`` (1-based, inclusive, as
    samtools and tabix write them) as a :class:`Region`. A contig whose name holds ``:`` (GRCh38's HLA
    alleles) is written in braces, as htslib takes it: ``{HLA-A*01:01:01:01}:100-200``."""
    match = _REGION.match(text.strip())
    if match is None:
        raise RangeError(f"region {text!r} is not CHROM, CHROM:START or CHROM:START-END (1-based, inclusive; a "
                         "name with ':' goes in braces: {NAME}:START-END)")
    start = int(match["start"].replace(",", "")) if match["start"] else 1
    end = int(match["end"].replace(",", "")) if match["end"] else None
    if start < 1 or (end is not None and end < start):
        raise RangeError(f"region {text!r}: positions are 1-based and START <= END")
    return Region(match["braced"] or match["chrom"], start - 1, end)


def pseudo_bin(depth: int) -> int:
    """The number of the per-contig pseudo-bin that htslib (and ``genomix index-vcf``) write after a contig's
    real bins: the virtual offsets where its first record starts and its last one ends, then its record counts.
    It is one past the last real bin of the scheme, so no query asks for it."""
    return ((1 << (3 * (depth + 1))) - 1) // 7 + 1


def region_bins(start: int, end: int, min_shift: int, depth: int) -> list[int]:
    """Every bin of a (``min_shift``, ``depth``) binning scheme that can hold a record overlapping
    [start, end): one range of bins per level, from the whole-contig bin 0 down to the leaves."""
    bins, offset, shift = [], 0, min_shift + 3 * depth
    last = end - 1
    for level in range(depth + 1):
        bins.extend(range(offset + (start >> shift), offset + (last >> shift) + 1))
        shift -= 3
        offset += 1 << (3 * level)
    return bins


@dataclasses.dataclass
class _ContigIndex:
    bins: dict[int, list[tuple[int, int]]]  # bin -> chunks (begin, end virtual offsets)
    linear: list[int]  # tabix only: smallest virtual offset of a record overlapping each 16 kb window
    end: int | None  # where the contig's last record ends (from its pseudo-bin; None in indexes without one)

    @classmethod
    def without_pseudo_bin(cls, bins: dict[int, list[tuple[int, int]]], linear: list[int],
                           meta: int) -> "_ContigIndex":
        """The contig's index with its pseudo-bin ``meta`` (:func:`pseudo_bin`) taken out of ``bins``."""
        pseudo = bins.pop(meta, None)
        return cls(bins, linear, pseudo[0][1] if pseudo else None)


@dataclasses.dataclass
class TabixIndex:
    """A parsed ``.tbi`` or ``.csi`` index: contig names and their bins (see the module docstring). ``bcf``: it
    indexes a BCF, which bcftools (not ``genomix index-vcf``) rebuilds."""

    names: list[str]
    contigs: list[_ContigIndex]
    min_shift: int
    depth: int
    path: Path
    bcf: bool = False

    @classmethod
    def load(cls, path: str | Path, bcf: bool = False) -> "TabixIndex":
        path = Path(path)
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputFormatError(f"{path}: not a readable index ({exc})") from None
        reader = _Cursor(data, path)
        magic = reader.take(4)
        if magic == b"TBI\x01":
            n_ref = reader.int32()
            reader.take(24)  # format, sequence/begin/end columns, meta character, header lines to skip
            names = reader.names(reader.int32())
            contigs = [reader.tabix_contig(pseudo_bin(TABIX_DEPTH)) for _ in range(n_ref)]
            return cls(names, contigs, TABIX_MIN_SHIFT, TABIX_DEPTH, path, bcf)
        if magic == b"CSI\x01":
            min_shift, depth, aux = reader.int32(), reader.int32(), reader.take(reader.int32())
            names = _Cursor(aux, path).tabix_aux_names() if len(aux) >= 28 else []
            contigs = [reader.csi_contig(pseudo_bin(depth)) for _ in range(reader.int32())]
            return cls(names, contigs, min_shift, depth, path, bcf)
        raise InputFormatError(f"{path}: not a tabix (.tbi) or CSI (.csi) index (magic {magic!r})")

    def chunks(self, region: Region) -> list[tuple[int, int]]:
        """Merged, sorted chunks of virtual offsets that hold every record overlapping ``region``;
        empty for a contig the index does not list (no records there)."""
        if region.chrom not in self.names:
            return []
        contig = self.contigs[self.names.index(region.chrom)]
        end = region.end if region.end is not None else 1 << (self.min_shift + 3 * self.depth)
        floor = 0
        if contig.linear:
            floor = contig.linear[min(region.start >> self.min_shift, len(contig.linear) - 1)]
        found = sorted(c for b in region_bins(region.start, end, self.min_shift, self.depth)
                       for c in contig.bins.get(b, ()) if c[1] > floor)
        merged: list[tuple[int, int]] = []
        for begin, stop in found:
            if merged and begin <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
            else:
                merged.append((max(begin, floor), stop))
        return merged

    def mismatch(self, data: Path, why: str) -> InputFormatError:
        """The error for an index that does not fit ``data``, saying ``why`` and how to rebuild it."""
        return InputFormatError(f"{self.path} does not fit {data}: {why}. The index was made for another file, or "
                                "for this one before it changed, and a query through it would miss records or read "
                                f"the wrong ones: rebuild it with `{self._rebuild(data)}`")

    def _rebuild(self, data: Path) -> str:
        if self.bcf:
            return f"bcftools index -f {data.name}"
        return f"genomix index-vcf --overwrite {data.name}"

    def check_fits(self, bgzf: BgzfReader) -> None:
        """Refuse (:meth:`mismatch`) an index whose last record does not end where the data of the file open in
        ``bgzf`` ends (trailing blank lines aside): it points past the file's end or between its blocks, or the
        file goes on after it (records appended, or a longer file). The end is in the contigs' pseudo-bins
        (:func:`pseudo_bin`); an index without them (tabix before htslib) is not checked here.

        The check costs one seek and one block read, so it runs on every indexed read, whatever the files'
        modification times: a copy or download without its times makes a good index look older than its VCF
        (refusing those would break valid setups), and a foreign index copied in may look newer. An older index
        that is not refused is still used with a warning, as htslib gives: an edit in place that kept every
        record's offset (a changed POS of the same width) would pass."""
        ends = [contig.end for contig in self.contigs if contig.end is not None]
        if ends:
            end = max(ends)
            try:
                bgzf.seek(end)
            except InputFormatError as exc:
                raise self.mismatch(bgzf.path, f"its last record ends at virtual offset {end}, but {exc}") from None
            if any(piece.strip() for piece in iter(lambda: bgzf.read(1 << 16), b"")):
                raise self.mismatch(bgzf.path, f"{bgzf.path.name} goes on after virtual offset {end}, where the "
                                               "index's last record ends")
        if self.path.stat().st_mtime < bgzf.path.stat().st_mtime:
            log.warning("%s is older than %s; if the file changed since, rebuild the index: `%s`", self.path,
                        bgzf.path, self._rebuild(bgzf.path))


class _Cursor:
    """Little-endian reads over an index's decompressed bytes, with a clear error at a short file."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise InputFormatError(f"{self.path}: index ends early (truncated or corrupt); rebuild it with tabix -p vcf")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int32(self) -> int:
        return struct.unpack("<i", self.take(4))[0]

    def uint64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def names(self, length: int) -> list[str]:
        return [n.decode("utf-8", "replace") for n in self.take(length).split(b"\x00") if n]

    def tabix_aux_names(self) -> list[str]:
        self.take(24)
        return self.names(self.int32())

    def _chunks(self) -> list[tuple[int, int]]:
        return [(self.uint64(), self.uint64()) for _ in range(self.int32())]

    def tabix_contig(self, meta: int) -> _ContigIndex:
        bins = {}
        for _ in range(self.int32()):
            number = struct.unpack("<I", self.take(4))[0]
            bins[number] = self._chunks()
        linear = [self.uint64() for _ in range(self.int32())]
        return _ContigIndex.without_pseudo_bin(bins, linear, meta)

    def csi_contig(self, meta: int) -> _ContigIndex:
        bins = {}
        for _ in range(self.int32()):
            number = struct.unpack("<I", self.take(4))[0]
            self.uint64()  # the bin's own smallest offset; the chunks are filtered by overlap instead
            bins[number] = self._chunks()
        return _ContigIndex.without_pseudo_bin(bins, [], meta)


class BgzfReader:
    """A bgzip file read as one byte stream that can seek to, and report, virtual offsets. Like htslib, a
    position at the end of a block is reported as the start of the next one. ``text``: the file holds lines (a
    VCF), so that :meth:`seek` can refuse an offset inside one."""

    def __init__(self, path: str | Path, text: bool = False) -> None:
        self.path, self.text = Path(path), text
        self.fh: BinaryIO = open(self.path, "rb")
        self.size = os.fstat(self.fh.fileno()).st_size
        self._data, self._coffset, self._next, self._pos = b"", 0, 0, 0
        self.seek(0)

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> "BgzfReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def block(self, coffset: int) -> tuple[bytes, int]:
        """The data of the block at file offset ``coffset`` and the next block's offset; (b"", offset)
        at the end of the file."""
        self.fh.seek(coffset)
        head = self.fh.read(_BGZF_FIXED.size)
        if not head:
            return b"", coffset
        if len(head) < _BGZF_FIXED.size or head[:4] != b"\x1f\x8b\x08\x04":
            raise InputFormatError(f"{self.path}: no BGZF block at byte {coffset}; indexed reads need a file "
                                   "compressed with bgzip or bcftools (not gzip), and an index built for this file")
        xlen = _BGZF_FIXED.unpack(head)[-1]
        extra = self.fh.read(xlen)
        size = None
        pos = 0
        while pos + 4 <= len(extra):
            sub_len = struct.unpack("<H", extra[pos + 2:pos + 4])[0]
            if extra[pos:pos + 2] == b"BC" and sub_len == 2:
                size = struct.unpack("<H", extra[pos + 4:pos + 6])[0] + 1
            pos += 4 + sub_len
        if size is None:
            raise InputFormatError(f"{self.path}: gzip member at byte {coffset} has no BGZF size field; compress "
                                   "the file with bgzip (htslib), not gzip, for indexed reads")
        rest = self.fh.read(size - _BGZF_FIXED.size - xlen)
        try:
            data = zlib.decompress(rest[:-8], -15)
        except zlib.error as exc:
            raise InputFormatError(f"{self.path}: corrupt BGZF block at byte {coffset} ({exc})") from None
        crc, isize = struct.unpack("<II", rest[-8:])
        if len(data) != isize or zlib.crc32(data) != crc:
            raise InputFormatError(f"{self.path}: BGZF block at byte {coffset} fails its CRC/size check; the file "
                                   "is corrupt or truncated")
        return data, coffset + size

    def _load(self, coffset: int) -> None:
        """Make the first block at or after ``coffset`` that holds data the current one (bgzip ends files
        with an empty block: at the end, the current data is empty)."""
        while True:
            data, following = self.block(coffset)
            if data or following == coffset:
                self._data, self._coffset, self._next, self._pos = data, coffset, following, 0
                return
            coffset = following

    def _advance(self) -> None:
        while self._data and self._pos >= len(self._data):
            self._load(self._next)

    def seek(self, voffset: int) -> None:
        """Go to ``voffset``. Offsets come from indexes, so one that cannot be a position in this file raises
        :class:`InputFormatError` instead of reading on from elsewhere: past the end of the file or of its block's
        data, not at the start of a block, or in a ``text`` file inside a line (checked where the byte before it
        is in the same block)."""
        coffset, within = voffset >> 16, voffset & 0xFFFF
        if coffset > self.size:
            raise InputFormatError(f"{self.path} has {self.size} bytes, and virtual offset {voffset} is at byte "
                                   f"{coffset}")
        self._load(coffset)
        data = self._data if self._coffset == coffset else b""  # b"": an empty block, skipped by _load
        if within > len(data):
            raise InputFormatError(f"{self.path}: virtual offset {voffset} is past the {len(data)} bytes of data of "
                                   f"the block at byte {coffset}")
        if self.text and within and data[within - 1] != ord("\n"):
            raise InputFormatError(f"{self.path}: virtual offset {voffset} is inside a line, not at its start")
        self._pos = within
        self._advance()

    def tell(self) -> int:
        return (self._coffset << 16) | self._pos

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the file)."""
        out = bytearray()
        while n > len(out) and self._data:
            piece = self._data[self._pos:self._pos + n - len(out)]
            out += piece
            self._pos += len(piece)
            self._advance()
        return bytes(out)

    def readline(self) -> bytes:
        """The next line with its newline (without one at the end of the file); b"" at the end."""
        out = bytearray()
        while self._data:
            newline = self._data.find(b"\n", self._pos)
            stop = len(self._data) if newline < 0 else newline + 1
            out += self._data[self._pos:stop]
            self._pos = stop
            self._advance()
            if newline >= 0:
                break
        return bytes(out)

    def lines(self, stop: int) -> Iterator[tuple[int, str]]:
        """``(virtual offset, line)`` for every line that starts at or after the current position and before
        ``stop``."""
        while self.tell() < stop:
            begin, raw = self.tell(), self.readline()
            if not raw:
                return
            try:
                line = raw.rstrip(b"\r\n").decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputFormatError(f"{record_at(self.path, begin)}: not UTF-8 text (column {exc.start + 1}); "
                                       "VCF files are UTF-8. Is this a VCF?") from None
            yield begin, line


def indexed_records(index: TabixIndex, regions: Sequence[Region], bgzf: BgzfReader,
                    read_chunk: Callable[[int], Iterable[tuple[int, Item]]],
                    span: Callable[[Item], tuple[str, int, int]]) -> Iterator[Item]:
    """The records of ``regions`` in the file open in ``bgzf``, region by region, each record once:
    ``read_chunk(stop)`` gives ``(virtual offset, record)`` for each record from the current position to the
    end of an index chunk, and ``span(record)`` its contig and 0-based half-open span, which must overlap the
    region (a chunk also holds records that do not).

    An index that does not fit the file is refused (:meth:`TabixIndex.mismatch`): first by its end
    (:meth:`TabixIndex.check_fits`), then chunk by chunk, whose offset must be a position in the file
    (:meth:`BgzfReader.seek`) where a record of the region's contig starts, as every index made for
    this file has it."""
    path = bgzf.path
    index.check_fits(bgzf)
    seen: set[int] = set()
    for region in regions:
        spelled = [name for name in contig_aliases(region.chrom) if name in index.names]
        if region.chrom not in index.names and len(spelled) == 1:  # chr1 for 1, MT for chrM, ...
            region = dataclasses.replace(region, chrom=spelled[0])
        if region.chrom not in index.names:
            log.warning("%s: no records on %s (the file's contigs: %s)", path, region.chrom,
                        ", ".join(index.names[:10]) + (" ..." if len(index.names) > 10 else ""))
        for begin, stop in index.chunks(region):
            try:
                bgzf.seek(begin)
            except InputFormatError as exc:
                raise index.mismatch(path, f"it has records of {region.chrom} at virtual offset {begin}, but "
                                           f"{exc}") from None
            start, records = bgzf.tell(), iter(read_chunk(stop))
            first = next(records, None)
            found = span(first[1])[0] if first is not None and first[0] == start else None
            if first is None or found != region.chrom:
                raise index.mismatch(path, f"it has a record of {region.chrom} at virtual offset {begin}, where "
                                           f"{path.name} has " + (f"one of {found}" if found else "no record"))
            for offset, record in itertools.chain([first], records):
                if offset not in seen and region.overlaps(*span(record)):
                    seen.add(offset)
                    yield record


def index_paths(path: str | Path) -> list[Path]:
    """Where the index of ``path`` may be, in the order looked for: ``<path>.tbi``, then ``<path>.csi``."""
    path = Path(path)
    return [path.with_name(path.name + suffix) for suffix in (".tbi", ".csi")]


def find_index(path: Path, bcf: bool = False) -> Path:
    """``<path>.tbi`` or ``<path>.csi``, whichever exists (an error naming how to make one otherwise; for a
    ``bcf``, only bcftools can: ``genomix index-vcf`` reads text VCFs)."""
    for candidate in index_paths(path):
        if candidate.is_file():
            return candidate
    if bcf:
        raise InputFormatError(f"{path}: region queries of a BCF need its CSI index ({path.name}.csi next to it): "
                               f"`bcftools index {path.name}` writes it (genomix index-vcf indexes text VCFs only)")
    if is_bgzf(path):
        how = f"`genomix index-vcf {path.name}` indexes it in place"
    else:
        copy = path.name.removesuffix(".gz").removesuffix(".vcf") + ".bgz.vcf.gz"
        how = (f"it is not bgzip, so `genomix index-vcf {path.name} --out {copy}` writes a bgzip copy with its index "
               "(query that copy)")
    raise InputFormatError(f"{path}: region queries need a bgzip VCF with an index ({path.name}.tbi or .csi next to "
                           f"it); {how}; htslib's `tabix -p vcf` and `bcftools index -t` index bgzip files too")


def record_at(path: Path, offset: int) -> str:
    """Where a record read by virtual offset is (an indexed read or a BCF, which have no line numbers), for
    messages."""
    return f"{path} (record at virtual offset {offset})"


def record_span(fields: list[str]) -> tuple[int, int]:
    """0-based half-open span of a VCF record as tabix indexes it: POS-1 to POS-1+len(REF), or to INFO END."""
    start = int(fields[1]) - 1
    end = start + max(1, len(fields[3]))
    if len(fields) > 7:
        for item in fields[7].split(";"):
            if item.startswith("END="):
                try:
                    end = max(end, int(item[4:]))
                except ValueError:
                    pass
                break
    return start, end


__all__ = ["BgzfReader", "Region", "TabixIndex", "find_index", "index_paths", "indexed_records", "parse_region",
           "pseudo_bin", "record_at", "record_span", "region_bins"]
