"""Streaming FASTA reader for ``.fa``, ``.fa.gz`` and bgzip files, validating as it goes.

Why not pyfaidx or Biopython here: conversion to a genome store must reach 50 Mb/s on one core and
run on machines where neither is installed. Biopython's ``SeqIO`` builds a Python string per record
line by line (a few Mb/s), and pyfaidx needs an uncompressed or bgzip file plus an index before the
first base can be read. This reader instead works on large decompressed blocks: it locates headers
with ``bytes.find``, validates every byte of a block at once through a 256-entry lookup table, and
drops line breaks with ``bytes.translate``; Python code runs per block and per record, never per line.
Errors name the file, the 1-based line and column and the record, so a user can open the file there, and say
what a file looks like when it is another format users often mistake for FASTA (FASTQ, GenBank, 2bit, a web page).

Sequence bytes are returned as the ASCII codes of the file, case preserved (lower case marks
soft-masked repeats); IUPAC ambiguity codes are accepted, anything else is an error.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from ..compression import GZIP_MAGIC, require_complete_bgzf
from ..errors import InputFormatError

BLOCK_SIZE = 1 << 23  # 8 MiB of decompressed text per step
SEQUENCE_CHARS = b"ACGTNRYSWKMBDHVacgtnryswkmbdhv"
LINE_JUNK = b"\r\n \t"  # removed from sequence lines (line breaks and stray blanks)
SEQUENCE_RULE = "sequence lines may hold only A/C/G/T/N (any case) and IUPAC ambiguity codes"
#: Other compressions a FASTA is often found in, by their first bytes: named in the error instead of reported as
#: "not FASTA".
OTHER_COMPRESSIONS = {b"BZh": "bzip2 (bunzip2 it)", b"\xfd7zXZ\x00": "xz (unxz it)",
                      b"\x28\xb5\x2f\xfd": "zstd (unzstd it)", b"PK\x03\x04": "zip (unzip it)"}
#: Other formats found where a FASTA was expected, by the start of their first line: (prefix, what it is, what to
#: do). The first match wins, so longer prefixes come before shorter ones they start with.
NOT_FASTA = (
    (b"@HD\t", "SAM alignments", "extract sequences with `samtools fasta`"),
    (b"@SQ\t", "SAM alignments", "extract sequences with `samtools fasta`"),
    (b"@", "FASTQ reads", "convert it with `seqtk seq -A in.fq > out.fa`, or pass the reference genome instead"),
    (b"BAM\x01", "BAM alignments", "extract sequences with `samtools fasta`"),
    (b"CRAM", "CRAM alignments", "extract sequences with `samtools fasta`"),
    (b"LOCUS ", "a GenBank flat file", "export it as FASTA (`seqret -osformat fasta`, or Biopython's SeqIO.convert)"),
    (b"ID   ", "an EMBL flat file", "export it as FASTA (`seqret -osformat fasta`, or Biopython's SeqIO.convert)"),
    (b"##gff-version", "GFF annotation", "pass the genome's FASTA, not its annotation"),
    (b"##fileformat=VCF", "a VCF", "pass the reference FASTA, not the variants"),
    (b"C'A\x1a", "a UCSC .2bit file", "convert it with `twoBitToFa in.2bit out.fa`"),
    (b"\x1aA'C", "a UCSC .2bit file", "convert it with `twoBitToFa in.2bit out.fa`"),
    (b"\xff\xfe", "UTF-16 text", "save it as ASCII, e.g. `iconv -f UTF-16 -t ASCII in.fa > out.fa`"),
    (b"\xfe\xff", "UTF-16 text", "save it as ASCII, e.g. `iconv -f UTF-16 -t ASCII in.fa > out.fa`"),
    (b"<", "HTML or XML (a web page saved instead of the download?)", "download the FASTA again"),
    (b";", "an old-style ';' comment line", "delete the comment lines before the first '>' header"),
)
#: Why a byte may be in a sequence line by mistake, for the error: (bytes, what they suggest, what to do).
BAD_BYTE_HINTS = (
    (b"-.", "an alignment gap, so this looks like a multiple alignment",
     "remove the gaps (`seqkit seq -g`); turning them into N would shift every coordinate after them"),
    (b"*", "a stop or end-of-sequence marker", "remove it"),
    (b"0123456789", "a digit, as in the numbered lines of a GenBank/EMBL listing",
     "keep only bases on sequence lines"),
    (b"Uu", "U is RNA", "convert U to T (`seqkit seq --rna2dna`)"),
    (b"Xx", "X hard-masks repeats in RepeatMasker -x output (or is a protein's unknown residue)",
     "for hard-masked DNA write N instead (`seqkit replace -s -p '[Xx]' -r N`)"),
    (b"EFIJLOPQZefijlopqz", "not a nucleotide code, so this looks like a protein sequence",
     f"genomix reads DNA: {SEQUENCE_RULE}"),
    (b">", "a '>' inside a line, as if two records ran together", "start every header on a line of its own"),
)


def _table(chars: bytes) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[np.frombuffer(chars, dtype=np.uint8)] = True
    return table


_VALID_RAW = _table(SEQUENCE_CHARS + LINE_JUNK)


def _class_table() -> bytes:
    """bytes.translate table classifying sequence bytes: 0 = base, 1 = N/IUPAC ambiguity, 2 = invalid."""
    table = np.full(256, 2, dtype=np.uint8)
    table[np.frombuffer(SEQUENCE_CHARS, dtype=np.uint8)] = 1
    table[np.frombuffer(b"ACGTacgt", dtype=np.uint8)] = 0
    return table.tobytes()


_CLASS = _class_table()


def runs_of_ones(mask: np.ndarray) -> np.ndarray:
    """Maximal runs of True in a boolean array, as an ``(k, 2)`` int64 array of start/end."""
    if mask.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    edges = np.flatnonzero(mask[1:] != mask[:-1]) + 1
    bounds = np.concatenate(([0], edges, [mask.size]))
    on = mask[bounds[:-1]]
    return np.stack([bounds[:-1][on], bounds[1:][on]], axis=1).astype(np.int64)


def _merge_touching(runs: list[np.ndarray]) -> np.ndarray:
    """Concatenate sorted run arrays and merge runs that touch (a run split across two blocks)."""
    if not runs:
        return np.zeros((0, 2), dtype=np.int64)
    r = np.concatenate(runs)
    touch = r[1:, 0] == r[:-1, 1]
    return np.stack([r[np.r_[True, ~touch], 0], r[np.r_[~touch, True], 1]], axis=1)


@dataclass(frozen=True)
class FastaRecord:
    """One FASTA record: ``name`` (first word of the header), the full header, its line number, the
    sequence as a uint8 array of ASCII codes (case preserved), and ``n_runs``, the ``(k, 2)`` start/end
    of its maximal runs of N or IUPAC ambiguity codes (found while validating, at no extra pass)."""

    name: str
    header: str
    line: int
    sequence: np.ndarray
    n_runs: np.ndarray


class _CountingReader(io.RawIOBase):
    """Wraps the raw file: hashes (SHA-256) and counts the bytes read, for provenance and progress."""

    def __init__(self, raw: BinaryIO, on_read: Callable[[int], None] | None = None) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = self._raw.readinto(buffer)
        if n:
            self.sha256.update(memoryview(buffer)[:n])
            self.bytes_read += n
            if self._on_read is not None:
                self._on_read(n)
        return n or 0


def _without_bom(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """``blocks`` without a UTF-8 byte-order mark at the start (some Windows editors write one)."""
    bom, head = b"\xef\xbb\xbf", b""
    for block in blocks:
        if head is None:
            yield block
            continue
        head += block  # the file's first bytes, until there are enough to tell
        if len(head) >= len(bom):
            yield head.removeprefix(bom)
            head = None
    if head and head != bom:
        yield head


class FastaReader:
    """Iterate over the records of a FASTA file (plain, gzip or bgzip), validating as it reads.

    After iteration completes, :attr:`sha256` holds the checksum of the file as stored on disk.
    ``on_read(n)`` is called with the number of file bytes consumed (for progress bars).
    """

    def __init__(self, path: str | Path, on_read: Callable[[int], None] | None = None,
                 block_size: int = BLOCK_SIZE) -> None:
        self.path = Path(path).expanduser()  # a quoted or `--fasta=~/x` path reaches us unexpanded
        self.on_read = on_read
        self.block_size = block_size
        self.sha256: str | None = None

    # -- errors ---------------------------------------------------------------------------------------
    def require_file(self) -> None:
        """Refuse a path that is not a file, with the error iterating would give: callers that read lazily
        check first, so that a mistyped path is reported before slow set-up (loading a model)."""
        if self.path.is_dir():
            raise InputFormatError(f"{self.path} is a folder, not a FASTA file; give one of its files")
        if self.path.exists() and not self.path.is_file():
            raise InputFormatError(f"{self.path} is not a regular file (a pipe or a device); save the FASTA to a file "
                                   "and give its path")
        if not self.path.is_file():
            raise InputFormatError(f"{self.path}: no such FASTA file; check the path")

    def _error(self, line: int, what: str, fix: str) -> InputFormatError:
        return InputFormatError(f"{self.path}:{line}: {what}; {fix}")

    # -- reading --------------------------------------------------------------------------------------
    def _blocks(self, counter: _CountingReader) -> Iterator[bytes]:
        buffered = io.BufferedReader(counter, buffer_size=1 << 20)
        head = buffered.peek(16)[:16]
        for magic, name in OTHER_COMPRESSIONS.items():
            if head.startswith(magic):
                raise InputFormatError(f"{self.path}: the file is compressed with {name}; genomix reads plain, gzip "
                                       "and bgzip FASTA (`bgzip` or `gzip` compress it again)")
        compressed = head[:2] == GZIP_MAGIC
        if compressed:
            require_complete_bgzf(self.path)
        stream: BinaryIO = gzip.GzipFile(fileobj=buffered, mode="rb") if compressed else buffered
        try:
            while True:
                block = stream.read(self.block_size)
                if not block:
                    return
                yield block
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # BadGzipFile also covers trailing junk
            raise InputFormatError(
                f"{self.path}: the gzip stream is truncated or corrupt after {counter.bytes_read} bytes "
                f"({exc}); download the file again (a complete copy decompresses with `gzip -t`)"
            ) from None

    def __iter__(self) -> Iterator[FastaRecord]:
        self.require_file()
        try:
            raw = open(self.path, "rb", buffering=0)
        except OSError as exc:
            raise InputFormatError(f"{self.path}: cannot read the FASTA file ({exc.strerror}); check its "
                                   "permissions") from None
        with raw:
            counter = _CountingReader(raw, self.on_read)
            yield from self._parse(_without_bom(self._blocks(counter)))
            self.sha256 = counter.sha256.hexdigest()

    def _parse(self, blocks: Iterator[bytes]) -> Iterator[FastaRecord]:
        names: dict[str, int] = {}
        current: tuple[str, str, int] | None = None  # (name, header, line)
        pieces: list[bytes] = []
        runs: list[np.ndarray] = []
        filled = 0  # bases of the current record so far
        line = 0  # number of complete lines consumed so far
        carry = b""
        at_line_start = True

        def finish() -> FastaRecord | None:
            if current is None:
                return None
            name, header, hline = current
            seq = np.frombuffer(b"".join(pieces), dtype=np.uint8)
            if seq.size == 0:
                raise self._error(hline, f"record {name!r} has no sequence",
                                  "remove the empty record or add its bases")
            return FastaRecord(name, header, hline, seq, _merge_touching(runs))

        for block in _with_end(blocks):
            at_end = block is None
            text = carry if at_end else (carry + block if carry else block)
            carry = b""
            pos = 0
            while pos < len(text):
                if at_line_start and text[pos] == 0x3E:  # '>' starts a header line
                    nl = text.find(b"\n", pos)
                    if nl < 0 and not at_end:
                        carry = text[pos:]  # header continues in the next block
                        break
                    end = len(text) if nl < 0 else nl
                    record = finish()
                    if record is not None:
                        yield record
                    line += 1
                    header = self._header_text(text[pos + 1:end], line)
                    if "\r" in header:  # a CR inside the line: lines end with CR alone (classic Mac OS)
                        raise self._error(line, "lines end with a carriage return alone (CR, not LF or CRLF)",
                                          "convert the line ends, e.g. `tr '\\r' '\\n' < in.fa > out.fa`")
                    name = header.split()[0] if header else ""
                    if not name:
                        raise self._error(line, "header line '>' has no sequence name",
                                          "give every record a name after '>'")
                    if name in names:
                        raise self._error(line, f"duplicate contig name {name!r} (first defined at line "
                                          f"{names[name]})", "rename or remove one of the records")
                    names[name] = line
                    current, pieces, runs, filled = (name, header, line), [], [], 0
                    pos = end + 1
                    at_line_start = True
                    continue
                nxt = text.find(b"\n>", pos)
                stop = len(text) if nxt < 0 else nxt + 1
                region = text[pos:stop]
                seq = region.translate(None, LINE_JUNK)
                if current is None:
                    if seq:  # only blank lines may precede the first header
                        self._invalid(region, line, current)
                else:
                    flags = seq.translate(_CLASS)
                    if b"\x02" in flags:
                        self._invalid(region, line, current)
                    if b"\x01" in flags:
                        runs.append(runs_of_ones(np.frombuffer(flags, dtype=np.bool_)) + filled)
                    pieces.append(seq)
                    filled += len(seq)
                line += region.count(b"\n")
                at_line_start = region.endswith(b"\n")
                pos = stop
            if at_end:
                break
        record = finish()
        if record is None:
            raise self._error(max(line, 1), "no FASTA record found (the file is empty)" if line == 0
                              else "no FASTA record found (the file holds only blank lines)",
                              "pass a FASTA file whose first line starts with '>'")
        yield record

    def _header_text(self, raw: bytes, line: int) -> str:
        """A header line's text without surrounding blanks; refused unless UTF-8, so that a contig name is never
        stored with replacement characters that no BED or VCF could name."""
        try:
            return raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise self._error(line, f"header has byte 0x{raw[exc.start]:02X} at column {exc.start + 2}, which is not "
                              "UTF-8 text", "save the file as ASCII or UTF-8") from None

    def _invalid(self, region: bytes, line: int, current: tuple[str, str, int] | None) -> None:
        """Raise the error for the first bad byte of ``region``; ``line`` counts the lines before it."""
        if current is None:
            self._not_fasta(region, line)
        codes = np.frombuffer(region, dtype=np.uint8)
        i = int(np.flatnonzero(~_VALID_RAW[codes])[0])
        row_start = region.rfind(b"\n", 0, i) + 1
        code = int(codes[i])
        printable = 32 < code < 127
        shown = f"character {chr(code)!r} (byte {code})" if printable else f"byte 0x{code:02X}"
        what, fix = next(((what, fix) for chars, what, fix in BAD_BYTE_HINTS if code in chars), (None, SEQUENCE_RULE))
        if not printable:
            what = "not ASCII text, so the file is binary or in another encoding"
        raise self._error(
            line + region.count(b"\n", 0, i) + 1,
            f"invalid {shown} at column {i - row_start + 1} in contig {current[0]!r}" + (f": {what}" if what else ""),
            fix,
        )

    def _not_fasta(self, region: bytes, line: int) -> None:
        """Raise the error for text before the first header (``region`` starts after ``line`` lines), naming
        the format it looks like when it is a common one."""
        stripped = region.lstrip()
        first = line + region[: len(region) - len(stripped)].count(b"\n") + 1
        for prefix, what, fix in NOT_FASTA:
            if stripped.startswith(prefix):
                raise self._error(first, f"this looks like {what}, not FASTA", fix)
        text = stripped.split(b"\n", 1)[0].rstrip()
        if not text.translate(None, SEQUENCE_CHARS + LINE_JUNK):
            raise self._error(first, "sequence data before the first header (this is not FASTA)",
                              "the file must start with a '>name' header line")
        raise self._error(first, f"text before the first header: {text[:40].decode('utf-8', 'replace')!r}",
                          "the file must start with a '>name' header line; remove what comes before it")


def _with_end(blocks: Iterator[bytes]) -> Iterator[bytes | None]:
    yield from blocks
    yield None


def read_fasta(path: str | Path) -> dict[str, str]:
    """Convenience for small files and tests: ``{name: sequence}`` with case preserved."""
    return {rec.name: rec.sequence.tobytes().decode("ascii") for rec in FastaReader(path)}
