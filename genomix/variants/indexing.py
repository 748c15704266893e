"""Write a bgzip-compressed VCF and its tabix (``.tbi``) index without htslib: ``genomix index-vcf``.

Region queries (:mod:`.tabix`) need a BGZF file and an index. Users who have a plain or gzip-compressed VCF
and no htslib tools get both from here. The BGZF writer cuts the text into blocks of at most 0xFF00 bytes,
as bgzip does, and notes each record's virtual offsets. The index follows the tabix format: per contig, the
smallest bin that holds each record (six levels, 16 kb leaves), chunks of consecutive records per bin, the
16 kb linear index, and the per-contig pseudo-bin with record counts that htslib writes. htslib reads both
files (the tests query them through pysam).
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from ..errors import InputFormatError
from .tabix import TABIX_DEPTH, TABIX_MIN_SHIFT, record_span

BLOCK_DATA = 0xFF00
_EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_PSEUDO_BIN = ((1 << (3 * (TABIX_DEPTH + 1))) - 1) // 7 + 1  # 37450: per-contig offsets and record counts


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
        self.fh.write(_EOF_BLOCK)

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


def _open_text(path: Path) -> io.BufferedReader:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # type: ignore[return-value]


def index_vcf(source: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write ``out`` (default: ``source`` with ``.gz`` added when it is plain text; required for a gzip
    input) as BGZF and ``<out>.tbi`` beside it; returns ``out``. Records must be sorted by position within
    each contig and each contig's records contiguous (as ``bcftools sort`` leaves them). Both files are
    written to temporary names and renamed when complete."""
    source = Path(source)
    if not source.is_file():
        raise InputFormatError(f"{source}: no such VCF file")
    if out is None:
        with open(source, "rb") as fh:
            if fh.read(2) == b"\x1f\x8b":
                raise InputFormatError(f"{source} is compressed: pass --out for the bgzip copy (e.g. calls.bgz.vcf.gz)")
        out = source.with_name(source.name + ".gz")
    out = Path(out)
    if out.resolve() == source.resolve():
        raise InputFormatError(f"{out}: the output must not be the input")
    names: list[str] = []
    contigs: list[_ContigBins] = []
    tmp = out.with_name(out.name + ".tmp")
    last_pos = 0
    with _open_text(source) as text, open(tmp, "wb") as raw:
        writer = BgzfWriter(raw)
        try:
            for number, line in enumerate(text, start=1):
                begin = writer.tell()
                writer.write(line if line.endswith(b"\n") else line + b"\n")
                if line.startswith(b"#") or not line.strip():
                    continue
                fields = line.rstrip(b"\r\n").decode("ascii").split("\t")
                if len(fields) < 8 or not fields[1].isdigit():
                    raise InputFormatError(f"{source}:{number}: not a VCF record (8+ tab-separated columns, integer POS)")
                start, end = record_span(fields)
                if not names or names[-1] != fields[0]:
                    if fields[0] in names:
                        raise InputFormatError(f"{source}:{number}: contig {fields[0]} appears again after other "
                                               "contigs; sort the VCF (bcftools sort) before indexing")
                    names.append(fields[0])
                    contigs.append(_ContigBins())
                    last_pos = 0
                if start < last_pos:
                    raise InputFormatError(f"{source}:{number}: {fields[0]}:{start + 1} comes after position "
                                           f"{last_pos + 1}; sort the VCF (bcftools sort) before indexing")
                last_pos = start
                contigs[-1].add(start, end, begin, writer.tell())
            writer.close()
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            tmp.unlink(missing_ok=True)
            raise InputFormatError(f"{source}: unreadable VCF ({exc})") from None
        except InputFormatError:
            tmp.unlink(missing_ok=True)
            raise
    names_blob = b"".join(n.encode("ascii") + b"\x00" for n in names)
    index = [b"TBI\x01", struct.pack("<8i", len(names), 2, 1, 2, 0, ord("#"), 0, len(names_blob)), names_blob]
    index.extend(c.encode() for c in contigs)
    packed = io.BytesIO()
    index_writer = BgzfWriter(packed)
    index_writer.write(b"".join(index))
    index_writer.close()
    tbi, tbi_tmp = out.with_name(out.name + ".tbi"), out.with_name(out.name + ".tbi.tmp")
    tbi_tmp.write_bytes(packed.getvalue())
    os.replace(tmp, out)
    os.replace(tbi_tmp, tbi)
    return out


__all__ = ["BgzfWriter", "bin_of", "index_vcf"]
