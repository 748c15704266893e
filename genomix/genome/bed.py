"""Train/valid/test interval splits: from a BED file, or by holding out chromosomes when there is none.

A split BED has at least three columns (``contig  start  end``, 0-based half-open as BED defines) and
names the split in a further column, as HyenaDNA's/Enformer's ``sequences_human.bed`` does
(``chr18  936036  1067108  train``). Every row is checked against the genome's contigs, so a BED made
for another assembly fails loudly with the file and line, instead of silently yielding no windows.
"""
from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from ..compression import is_gzip
from ..errors import InputFormatError, RangeError, UnknownContigError

Interval = tuple[str, int, int]
SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"validation": "valid", "val": "valid", "dev": "valid", "training": "train"}
_INTEGER = re.compile(r"-?[0-9]+")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a plain or gzip text file, without a UTF-8 byte-order mark; an unreadable file
    or a truncated/corrupt gzip stream is an :class:`InputFormatError` naming the file and the line reached."""
    lineno = 0
    try:
        opener = gzip.open if is_gzip(path) else open
        with opener(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
            for lineno, line in enumerate(fh, start=1):
                yield lineno, line
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputFormatError(f"{path}: the gzip stream is truncated or corrupt after line {lineno} ({exc}); "
                               "download or compress the file again (a complete copy passes `gzip -t`)") from None
    except OSError as exc:
        raise InputFormatError(f"{path}: cannot read the BED file ({exc.strerror}); check its permissions") from None


def _coordinate(path: Path, lineno: int, text: str, which: str) -> int:
    """A start or end column as an int: only digits (and a minus sign, refused later with its own message),
    since ``int()`` would also take ``1_000``, ``+5`` or non-ASCII digits and silently misread them."""
    text = text.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    if " " in text:
        hint = "separate all columns by tabs (or all by spaces)"
    elif not any(c.isdigit() for c in text):
        hint = "is it a column-header line? start it with '#'"
    else:
        hint = "BED coordinates are whole numbers, without decimals, separators or exponents"
    raise InputFormatError(f"{path}:{lineno}: {which} must be an integer, got {text!r}; {hint}")


def bed_rows(path: str | Path) -> Iterator[tuple[int, str, int, int, list[str]]]:
    """``(line number, contig, start, end, all columns)`` of each interval row of a BED file (plain or gzip;
    tab- or space-separated; CRLF line ends; a UTF-8 byte-order mark), skipping blank and header lines (``#``,
    ``track``, ``browser``). Malformed rows and empty or negative intervals raise with the file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: no such BED file; check the path")
    for lineno, line in _lines(path):
        if not line.strip() or line.lstrip().startswith(("#", "track", "browser")):
            continue
        cols = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
        if len(cols) < 3:
            raise InputFormatError(f"{path}:{lineno}: expected at least 3 columns (contig start end), got "
                                   f"{line.strip()!r}; separate the columns by tabs, and start header lines with '#'")
        cols[0] = cols[0].strip()  # FASTA contig names never hold blanks: a stray space is not part of the name
        start, end = _coordinate(path, lineno, cols[1], "start"), _coordinate(path, lineno, cols[2], "end")
        where = f"{path}:{lineno}: interval {cols[0]}:{start}-{end}"
        if start < 0:
            raise RangeError(f"{where} has a negative start; BED coordinates are 0-based, from 0")
        if end < start:
            raise RangeError(f"{where} ends before it starts; BED rows are 'contig start end' with start < end "
                             "(strand goes in column 6, not in the order of the coordinates)")
        if end == start:
            raise RangeError(f"{where} is empty (a zero-length feature, such as an insertion point); genomix "
                             "needs start < end (BED end is exclusive): widen the interval or remove the row")
        yield lineno, cols[0], start, end, cols


def check_interval(path: str | Path, lineno: int, contig: str, start: int, end: int,
                   lengths: Mapping[str, int]) -> None:
    """Raise, naming the file and line, if ``contig`` is not in ``lengths`` or the interval leaves it."""
    if contig not in lengths:
        raise UnknownContigError(
            f"{path}:{lineno}: contig {contig!r} is not in the genome "
            f"(known: {', '.join(list(lengths)[:6])}{', ...' if len(lengths) > 6 else ''}); "
            "was the BED made for another assembly or naming (chr1 vs 1)?"
        )
    if end > lengths[contig]:
        raise RangeError(f"{path}:{lineno}: interval {contig}:{start}-{end} is outside the contig "
                         f"(length {lengths[contig]:,}); was the BED made for another assembly? (BED end is "
                         "exclusive: at most the contig length)")


def _split_rows(path: str | Path, split_column: int, default_split: str) -> Iterator[tuple[int, str, int, int, str]]:
    """``(line number, contig, start, end, split)`` of each row of a split BED, the split name checked."""
    for lineno, contig, start, end, cols in bed_rows(path):
        split = cols[split_column].strip().lower() if len(cols) > split_column else default_split
        split = SPLIT_ALIASES.get(split, split)
        if split not in SPLITS:
            raise InputFormatError(f"{path}:{lineno}: split {cols[split_column].strip()!r} is not one of "
                                   f"{', '.join(SPLITS)} (or {', '.join(SPLIT_ALIASES)})")
        yield lineno, contig, start, end, split


def check_split_bed(path: str | Path) -> None:
    """Raise what :func:`read_bed_splits` would raise for the BED's own format (a missing file, malformed rows or
    coordinates, unknown split names), before the genome its contigs are checked against has been read: a typo
    must not cost a whole FASTA conversion first."""
    for _ in _split_rows(path, 3, "train"):
        pass


def read_bed_splits(path: str | Path, lengths: Mapping[str, int], split_column: int = 3,
                    default_split: str = "train") -> dict[str, list[Interval]]:
    """Read a split BED file into ``{split: [(contig, start, end), ...]}``, validated against ``lengths``.

    ``split_column`` is the 0-based column holding the split name; rows without it go to
    ``default_split``. Header lines (``#``, ``track``, ``browser``) and blank lines are skipped.
    """
    splits: dict[str, list[Interval]] = {}
    rows: list[tuple[str, int, int, str, int]] = []
    for lineno, contig, start, end, split in _split_rows(path, split_column, default_split):
        check_interval(path, lineno, contig, start, end, lengths)
        splits.setdefault(split, []).append((contig, start, end))
        rows.append((contig, start, end, split, lineno))
    if not splits:
        raise InputFormatError(f"{path}: no intervals found; a split BED needs 'contig start end split' rows")
    _refuse_shared_bases(path, rows)
    return splits


def _refuse_shared_bases(path: str | Path, rows: list[tuple[str, int, int, str, int]]) -> None:
    """Raise, naming both lines, if intervals of two different splits share a base: a model would then be
    validated or tested on sequence it trained on. (Overlaps within one split only repeat data.)"""
    reach: dict[str, tuple[int, int]] = {}  # per split: the furthest end so far on this contig, and its line
    contig_now = None
    for contig, start, end, split, lineno in sorted(rows):
        if contig != contig_now:
            contig_now, reach = contig, {}
        for other, (other_end, other_line) in reach.items():
            if other != split and other_end > start:
                raise InputFormatError(f"{path}:{lineno}: {split} interval {contig}:{start}-{end} shares bases with "
                                       f"the {other} interval on line {other_line} (ending at {other_end}); splits "
                                       "must not overlap")
        if end > reach.get(split, (0, 0))[0]:
            reach[split] = (end, lineno)


def read_bed_intervals(path: str | Path, lengths: Mapping[str, int] | None = None
                       ) -> list[tuple[str, int, int, str, str]]:
    """``(contig, start, end, name, strand)`` rows of a BED file (3 to 6+ columns; 0-based half-open), all
    checked against ``lengths`` (contig names and bounds) when it is given, before any is used.

    Missing names become ``contig:start-end(strand)``; a missing or ``.`` strand is ``+``, another than ``+``,
    ``-`` or ``.`` an error. A file without any interval row is an error too: callers would otherwise do nothing
    (embedding) or, where no regions means all of them (variant scoring), everything.
    """
    rows = []
    for lineno, contig, start, end, cols in bed_rows(path):
        if lengths is not None:
            check_interval(path, lineno, contig, start, end, lengths)
        strand = cols[5].strip() if len(cols) > 5 else "."
        if strand not in ("+", "-", "."):
            raise InputFormatError(f"{path}:{lineno}: strand {strand!r} must be +, - or . (unknown, read as +)")
        strand = "-" if strand == "-" else "+"
        name = cols[3] if len(cols) > 3 and cols[3] not in ("", ".") else f"{contig}:{start}-{end}({strand})"
        rows.append((contig, start, end, name, strand))
    if not rows:
        raise InputFormatError(f"{path}: no intervals found; a BED file needs 'contig start end' rows (tab-separated)")
    return rows


def holdout_splits(lengths: Mapping[str, int], valid: Sequence[str] = (), test: Sequence[str] = (),
                   fraction: float = 0.05) -> dict[str, list[Interval]]:
    """Splits without a BED file.

    Contigs named in ``valid``/``test`` are held out whole (chromosome hold-out); the rest train. When
    neither is given (for example a single-contig genome such as the demo), each contig is cut instead:
    its last ``fraction`` goes to test, the ``fraction`` before that to valid, the remainder to train.
    """
    for name in (*valid, *test):
        if name not in lengths:
            raise UnknownContigError(f"hold-out contig {name!r} is not in the genome (known: {', '.join(lengths)})")
    splits: dict[str, list[Interval]] = {s: [] for s in SPLITS}
    if valid or test:
        for contig, length in lengths.items():
            split = "valid" if contig in valid else "test" if contig in test else "train"
            splits[split].append((contig, 0, length))
        return splits
    if not 0 < fraction < 0.5:
        raise ValueError(f"fraction must be in (0, 0.5), got {fraction}")
    for contig, length in lengths.items():
        cut = int(length * fraction)
        if cut == 0:
            splits["train"].append((contig, 0, length))
            continue
        splits["train"].append((contig, 0, length - 2 * cut))
        splits["valid"].append((contig, length - 2 * cut, length - cut))
        splits["test"].append((contig, length - cut, length))
    return splits
