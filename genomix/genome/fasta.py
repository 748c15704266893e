"""Streaming FASTA reader for ``.fa``, ``.fa.gz`` and bgzip files, validating as it goes.

Why not pyfaidx or Biopython here: conversion to a genome store must reach 50 Mb/s on one core and
run on machines where neither is installed. Biopython's ``SeqIO`` builds a Python string per record
line by line (a few Mb/s), and pyfaidx needs an uncompressed or bgzip file plus an index before the
first base can be read. This reader instead works on large decompressed blocks: it locates headers
with ``bytes.find``, validates every byte of a block at once through a 256-entry lookup table, and
drops line breaks with ``bytes.translate``; Python code runs per block and per record, never per line.
Errors name the file, the 1-based line and column and the record, so a user can open the file there.

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

from ..errors import InputFormatError

BLOCK_SIZE = 1 << 23  # 8 MiB of decompressed text per step
SEQUENCE_CHARS = b"ACGTNRYSWKMBDHVacgtnryswkmbdhv"
LINE_JUNK = b"\r\n \t"  # removed from sequence lines (line breaks and stray blanks)
GZIP_MAGIC = b"\x1f\x8b"
#: Other compressions a FASTA is often found in, by their first bytes: named in the error instead of reported as
#: "not FASTA".
OTHER_COMPRESSIONS = {b"BZh": "bzip2 (bunzip2 it)", b"\xfd7zXZ\x00": "xz (unxz it)",
                      b"\x28\xb5\x2f\xfd": "zstd (unzstd it)"}


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
        self.path = Path(path)
        self.on_read = on_read
        self.block_size = block_size
        self.sha256: str | None = None

    # -- errors ---------------------------------------------------------------------------------------
    def require_file(self) -> None:
        """Refuse a path that is not a file, with the error iterating would give: callers that read lazily
        check first, so that a mistyped path is reported before slow set-up (loading a model)."""
        if not self.path.is_file():
            raise InputFormatError(f"{self.path}: no such FASTA file; check the path")

    def _error(self, line: int, what: str, fix: str) -> InputFormatError:
        return InputFormatError(f"{self.path}:{line}: {what}; {fix}")

    # -- reading --------------------------------------------------------------------------------------
    def _blocks(self, counter: _CountingReader) -> Iterator[bytes]:
        buffered = io.BufferedReader(counter, buffer_size=1 << 20)
        head = buffered.peek(6)[:6]
        for magic, name in OTHER_COMPRESSIONS.items():
            if head.startswith(magic):
                raise InputFormatError(f"{self.path}: the file is compressed with {name}; genomix reads plain, gzip "
                                       "and bgzip FASTA (`bgzip` or `gzip` compress it again)")
        compressed = head[:2] == GZIP_MAGIC
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
        with open(self.path, "rb", buffering=0) as raw:
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
                    header = text[pos + 1:end].decode("ascii", "replace").strip()
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
            raise self._error(max(line, 1), "no FASTA record found (the file is empty)"
                              if not names else "no FASTA record found",
                              "pass a FASTA file whose first line starts with '>'")
        yield record

    def _invalid(self, region: bytes, line: int, current: tuple[str, str, int] | None) -> None:
        """Raise the error for the first bad byte of ``region``; ``line`` counts the lines before it."""
        if current is None:
            first = line + region[: len(region) - len(region.lstrip())].count(b"\n") + 1
            raise self._error(first, "sequence data before the first header (this is not FASTA)",
                              "the file must start with a '>name' header line")
        codes = np.frombuffer(region, dtype=np.uint8)
        i = int(np.flatnonzero(~_VALID_RAW[codes])[0])
        row_start = region.rfind(b"\n", 0, i) + 1
        raise self._error(
            line + region.count(b"\n", 0, i) + 1,
            f"invalid character {chr(codes[i])!r} (byte {codes[i]}) at column {i - row_start + 1} in contig "
            f"{current[0]!r}",
            "sequence lines may hold only A/C/G/T/N (any case) and IUPAC ambiguity codes",
        )


def _with_end(blocks: Iterator[bytes]) -> Iterator[bytes | None]:
    yield from blocks
    yield None


def read_fasta(path: str | Path) -> dict[str, str]:
    """Convenience for small files and tests: ``{name: sequence}`` with case preserved."""
    return {rec.name: rec.sequence.tobytes().decode("ascii") for rec in FastaReader(path)}
