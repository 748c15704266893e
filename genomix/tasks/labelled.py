"""Labelled DNA sequences for fine-tuning and evaluation, read from the layouts benchmarks ship in.

Two layouts are understood (:func:`load_task` tells them apart):

- **Split files** (GUE, Nucleotide Transformer, user files): one file per split, named ``train``, ``dev``
  (or ``valid``/``val``/``validation``) and ``test``, optionally gzipped, either
  - a ``.csv``/``.tsv`` table with a header row naming a ``sequence`` and a ``label`` column (other
    columns are ignored), or
  - a labelled FASTA (``.fna``/``.fa``/``.fasta``, the Nucleotide Transformer benchmark's files) whose
    headers end in ``|<label>``.

  Labels are integers ``0..K-1`` (every one used) or names; names become ids in sorted order, the same in
  every split. Integers beside other numbers (``1.0``), one integer written two ways (``1`` and ``01``), and
  missing-value markers (``NA``, ``NaN``, ``None``, ``null``, ``?``) anywhere are refused, not taken as names.
  Files are read as spreadsheets and other tools write them: column names and file names in any case, CRLF line
  ends, quoted fields, a UTF-8 byte-order mark, gzip recognised by content.
- **Class folders** (GenomicBenchmarks): ``<split>/<class name>/*.txt``, one sequence per file; the
  class names, sorted, give the label ids; hidden folders (``.ipynb_checkpoints``) and ``__MACOSX`` are not
  classes.

Every row is checked as it is read: a missing field, an empty or non-DNA sequence or an unusable label
(a missing-value marker such as ``NA``, or a float beside integers) stops with the file and line. The
training split must have at least two classes, and the other splits may only use its labels. A folder with
both layouts, or two files or folders for one split, is refused, as reading one would drop the other's rows.
Fine-tuning and in-context runs count, in a warning, the sequences they evaluate that are also training
sequences (:func:`warn_of_training_rows_in`).
Sequences are kept as token ids (:func:`genomix.tokenizer.encode`).
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import itertools
import logging
import os
import re
import sys
import zlib
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..compression import is_gzip
from ..errors import InputFormatError, TokenizationError
from ..tokenizer import encode

SPLIT_NAMES = {"train": "train", "dev": "dev", "valid": "dev", "val": "dev", "validation": "dev", "test": "test"}
TABLE_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
FASTA_SUFFIXES = tuple(ext + gz for gz in ("", ".gz") for ext in (".fna", ".fa", ".fasta"))
SPLIT_FILE_SUFFIXES = TABLE_SUFFIXES + FASTA_SUFFIXES
_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only: '²'.isdigit() holds, but int('²') fails
_SHOWN = 10  # values listed in a message before "... (N in all)"
#: How spreadsheets, R and pandas write a missing value; never a class name.
_MISSING_LABELS = frozenset({"na", "n/a", "#n/a", "nan", "none", "null", "?"})

# csv's default field limit (131,072 characters) would refuse the long-range tasks' sequences (up to the 1 Mb a
# HyenaDNA model takes): lift it to the largest value this platform's C long holds.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
log = logging.getLogger(__name__)


@dataclasses.dataclass
class LabelledSequences:
    """One split: token ids per sequence (uint8), their labels (int64 ids into the task's names), the file
    they came from and, per example, where it was read (``file:line``, or a class folder's ``.txt`` file), so
    that a later error about one example can point at it; ``origins`` is None for data made in memory."""

    ids: list[np.ndarray]
    labels: np.ndarray
    source: str
    origins: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(s) for s in self.ids), dtype=np.int64, count=len(self.ids))

    def origin(self, row: int) -> str:
        """Where example ``row`` (0-based) was read, or the split's file and the example's 1-based number."""
        return self.origins[row] if self.origins is not None else f"{self.source}, example {row + 1}"

    def take(self, rows: Sequence[int]) -> "LabelledSequences":
        """The examples at ``rows``, in that order, with their labels and origins."""
        rows = list(rows)
        return LabelledSequences([self.ids[i] for i in rows], self.labels[rows], self.source,
                                 None if self.origins is None else [self.origins[i] for i in rows])

    def head(self, rows: int) -> "LabelledSequences":
        """The first ``rows`` examples (quick runs, smoke tests)."""
        return self.take(range(min(rows, len(self))))


@dataclasses.dataclass
class TaskData:
    """A classification task: its splits (``train``/``dev``/``test``; any may be missing) and label names."""

    name: str
    splits: dict[str, LabelledSequences]
    label_names: list[str]

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, name: str) -> LabelledSequences:
        if name not in self.splits:
            raise InputFormatError(f"task {self.name!r} has no {name} split (it has {sorted(self.splits)}); "
                                   f"add a {name} file or choose a task that has one")
        return self.splits[name]


def _open_text(path: Path) -> io.TextIOBase:
    """``path`` as UTF-8 text, gunzipped when its first bytes are gzip's (a ``.csv`` that is really gzipped reads
    too), with a leading byte-order mark dropped (spreadsheet exports start with one, which would otherwise
    become part of the first column's name or of the first FASTA header)."""
    raw = gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _listed(values: Sequence[object], total: int | None = None) -> str:
    """``values`` for a message: all of them when few, else the first :data:`_SHOWN` and how many there are
    (``total``, when ``values`` holds only the first of them)."""
    total = len(values) if total is None else total
    if total <= _SHOWN:
        return str(list(values))
    return f"[{', '.join(map(repr, values[:_SHOWN]))}, ...] ({total} in all)"


def _encode_row(seq: str, where: str) -> np.ndarray:
    seq = seq.strip()
    if not seq:
        raise InputFormatError(f"{where}: empty sequence")
    try:
        return encode(seq, dtype=np.uint8)
    except TokenizationError as exc:
        raise InputFormatError(f"{where}: {exc}") from None


def _checked_label(label: str, where: str) -> str:
    """``label`` without surrounding spaces, refused when empty or when it holds a tab or line break, which
    would break the columns of ``predictions/*.tsv`` (a quoted CSV field may hold either)."""
    label = label.strip()
    if not label:
        raise InputFormatError(f"{where}: empty label")
    if label.lower() in _MISSING_LABELS:
        raise InputFormatError(f"{where}: label {label!r} marks a missing value; drop rows without a label (it "
                               "would otherwise be a class of its own)")
    if any(c in label for c in "\t\r\n"):
        raise InputFormatError(f"{where}: label {label!r} holds a tab or line break; use class names without them")
    return label


def _rows_by_line(reader) -> Iterator[tuple[int, list[str]]]:
    """(the line a row starts on, the row) of a csv reader: a quoted field may span lines, so rows and lines
    are not counted alike, and a message must name the line an editor shows."""
    while True:
        line = reader.line_num + 1
        row = next(reader, None)
        if row is None:
            return
        yield line, row


def read_table(path: str | os.PathLike) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(token ids, raw label strings, ``file:line`` of each row) of a CSV/TSV file with ``sequence`` and
    ``label`` columns."""
    path = Path(path)
    delimiter = "\t" if ".tsv" in (s.lower() for s in path.suffixes) else ","
    ids, labels, origins = [], [], []
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise InputFormatError(f"{path}: empty file; expected a header row with 'sequence' and 'label'")
            names = [h.strip().lower() for h in header]
            missing = [c for c in ("sequence", "label") if c not in names]
            if missing:
                other = "," if delimiter == "\t" else "\t"
                hint = ""
                if len(header) == 1 and all(c in [h.strip().lower() for h in header[0].split(other)]
                                            for c in ("sequence", "label")):
                    kind, suffix = ("comma", ".csv") if other == "," else ("tab", ".tsv")
                    renamed = re.sub(r"\.[ct]sv", suffix, path.name, count=1, flags=re.IGNORECASE)
                    hint = f"; the file is {kind}-separated: name it {renamed}"
                raise InputFormatError(f"{path}:1: header {header} lacks column(s) {missing}; a table needs "
                                       f"'sequence' and 'label' columns{hint}")
            repeated = [c for c in ("sequence", "label") if names.count(c) > 1]
            if repeated:
                raise InputFormatError(f"{path}:1: header {header} has more than one {repeated[0]!r} column; "
                                       "rename or remove the extra one, so that it is clear which to read")
            seq_col, label_col = names.index("sequence"), names.index("label")
            for line, row in _rows_by_line(reader):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                where = f"{path}:{line}"
                if len(row) != len(header):
                    raise InputFormatError(f"{where}: {len(row)} fields, the header has {len(header)}")
                label = _checked_label(row[label_col], where)
                ids.append(_encode_row(row[seq_col], where))
                labels.append(label)
                origins.append(where)
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error, csv.Error, OSError) as exc:
        raise InputFormatError(f"{path}: not a readable CSV/TSV table ({exc})") from None
    if not ids:
        raise InputFormatError(f"{path}: no rows after the header")
    return ids, labels, origins


def read_labelled_fasta(path: str | os.PathLike) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(token ids, raw label strings, ``file:line`` of each record's header) of a FASTA file whose headers
    end in ``|<label>`` (``>chr1:100-400|1``); sequences may span several lines."""
    path = Path(path)
    ids: list[np.ndarray] = []
    labels: list[str] = []
    origins: list[str] = []
    header_line, label, chunks = 0, None, []

    def finish() -> None:
        if label is not None:
            origins.append(f"{path}:{header_line}")
            ids.append(_encode_row("".join(chunks), origins[-1]))
            labels.append(label)

    try:
        with _open_text(path) as fh:
            for line_no, line in enumerate(fh, start=1):
                line = line.strip()
                if line.startswith(">"):
                    finish()
                    name, bar, label = line[1:].rpartition("|")
                    if not bar or not label.strip():
                        raise InputFormatError(f"{path}:{line_no}: header {line[:80]!r} does not end in "
                                               "'|<label>'; a labelled FASTA header looks like '>name|1'")
                    label = _checked_label(label, f"{path}:{line_no}")
                    if len(label.split()) > 1:
                        raise InputFormatError(f"{path}:{line_no}: header {line[:80]!r} has text after its label "
                                               f"({label!r}); a labelled FASTA header ends in '|<label>': put a "
                                               "description before it ('>name description|1')")
                    header_line, chunks = line_no, []
                elif line:
                    if label is None:
                        raise InputFormatError(f"{path}:{line_no}: sequence before the first '>' header")
                    chunks.append(line)
            finish()
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
        raise InputFormatError(f"{path}: not a readable FASTA file ({exc})") from None
    if not ids:
        raise InputFormatError(f"{path}: no records")
    return ids, labels, origins


def _is_hidden(name: str) -> bool:
    """Whether a folder or file is tool litter rather than a class or a sequence (``.ipynb_checkpoints``, macOS's
    ``__MACOSX`` and ``._1.txt``)."""
    return name.startswith(".") or name == "__MACOSX"


def read_class_folders(split_dir: str | os.PathLike) -> dict[str, tuple[list[np.ndarray], list[str]]]:
    """(sequences, their files) by class name from GenomicBenchmarks' ``<split>/<class>/*.txt`` layout."""
    split_dir = Path(split_dir)
    classes: dict[str, tuple[list[np.ndarray], list[str]]] = {}
    unread = [p.name for p in split_dir.iterdir() if not p.is_dir() and not _is_hidden(p.name)]
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not _is_hidden(p.name)):
        entries = [p for p in class_dir.iterdir() if not _is_hidden(p.name)]
        files = sorted((p for p in entries if p.suffix == ".txt" and p.is_file()), key=lambda p: (len(p.stem), p.stem))
        unread += [f"{class_dir.name}/{p.name}" for p in entries if not (p.suffix == ".txt" and p.is_file())]
        classes[class_dir.name] = ([_encode_row(f.read_text(encoding="ascii", errors="replace"), str(f)) for f in files],
                                   [str(f) for f in files])
        if not files:
            raise InputFormatError(f"{class_dir}: class folder without .txt sequence files")
    if not classes:
        raise InputFormatError(f"{split_dir}: no class folders (expected {split_dir}/<class>/<id>.txt)")
    _refuse_names_differing_in_case(split_dir, sorted(classes))
    if unread:
        log.warning("%s: %d file(s) not read %s: sequences are <class>/<id>.txt files", split_dir, len(unread),
                    _listed(sorted(unread)))
    return classes


def _refuse_names_differing_in_case(split_dir: Path, names: list[str]) -> None:
    """Class folders whose names differ only in case (``positive/``, ``Positive/``) would be two classes, which
    is almost always one class copied twice; on a case-insensitive file system they would be one folder."""
    by_folded: dict[str, str] = {}
    for name in names:
        first = by_folded.setdefault(name.casefold(), name)
        if first != name:
            raise InputFormatError(f"{split_dir}: class folders {first}/ and {name}/ differ only in case, which would "
                                   "make them two classes; merge them or rename one")


def _task_labels(labels: dict[str, set[str]], sources: dict[str, str],
                 located: Callable[[str, str], str] | None = None) -> set[str]:
    """The label values of a task, checked: the training split has at least two classes and every other
    split uses only the training split's labels (a task without a training split: the union of its splits).
    ``located(split, label)`` names where a split's first row with ``label`` was read, for the refusal of a
    label the training split lacks (default: the split's source)."""
    if "train" not in labels:
        return set().union(*labels.values())
    train, where = labels["train"], sources["train"]
    if len(train) < 2:
        raise InputFormatError(f"{where}: every training row has the label {next(iter(train))!r}; a classification "
                               "task needs at least two classes in its training split")
    for split, values in labels.items():
        unknown = sorted(values - train)
        if unknown:
            first = located(split, unknown[0]) if located else sources[split]
            raise InputFormatError(f"{first}: label(s) {_listed(unknown)} do not occur in the training split "
                                   f"{where} (whose labels are {_listed(sorted(train))}); every split must use the "
                                   "training split's labels, spelt the same way")
    return train


def _is_number(label: str) -> bool:
    """Whether ``label`` reads as a number (``1.0``, ``nan``, ``+1``, ``1e0``)."""
    try:
        float(label)
    except ValueError:
        return False
    return True


def _refuse_stray_numbers(raw: dict[str, list[str]], origins: dict[str, list[str]]) -> None:
    """Refuse integer labels mixed with other spellings of numbers: a label column saved as floats in part would
    otherwise make ``1.0`` a class of its own beside ``1`` (names are any other strings, so ``0``, ``1`` and
    ``1.0`` silently give three classes; a class name that is no number, ``other``, may stand beside integers).
    Names the first stray's line."""
    labels = {v for values in raw.values() for v in values}
    if not any(_INTEGER.fullmatch(v) for v in labels):
        return
    for split, values in raw.items():
        strays = sorted({v for v in values if not _INTEGER.fullmatch(v) and _is_number(v)})
        if strays:
            first = origins[split][next(i for i, v in enumerate(values) if v in strays)]
            raise InputFormatError(f"{first}: label(s) {_listed(strays)} are numbers but not plain integers, beside "
                                   "integer labels; each would be a class of its own. Write every label as an "
                                   "integer 0..K-1 (and drop rows without a label)")


def _refuse_respelled_integers(raw: dict[str, list[str]], origins: dict[str, list[str]]) -> None:
    """Refuse one integer label written two ways (``1`` and ``01``, ``0`` and ``-0``): as integers they would
    silently become one class, though the file spells two. Names where each spelling first occurs."""
    first: dict[int, tuple[str, str]] = {}
    for split, labels in raw.items():
        for label, where in zip(labels, origins[split]):
            seen, seen_where = first.setdefault(int(label), (label, where))
            if seen != label:
                raise InputFormatError(f"{where}: label {label!r} is the integer {int(label)}, which {seen_where} "
                                       f"writes {seen!r}; both would be one class. Write each label one way")


def _label_ids(raw: dict[str, list[str]], sources: dict[str, str],
               origins: dict[str, list[str]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Label strings of every split (read from ``sources``, each at its ``origins``' ``file:line``) -> int ids
    and names: integers 0..K-1 keep their values (names '0'..'K-1'); anything else is a name, numbered in
    sorted order."""
    _refuse_stray_numbers(raw, origins)  # first: a float label would otherwise be refused as unknown to train
    values = sorted(_task_labels({s: set(labels) for s, labels in raw.items()}, sources,
                                 lambda split, label: origins[split][raw[split].index(label)]))
    where = sources.get("train") or ", ".join(sources.values())
    if all(_INTEGER.fullmatch(v) for v in values):
        _refuse_respelled_integers(raw, origins)
        ints = sorted({int(v) for v in values})
        if ints[0] < 0:
            first = next(origins[s][i] for s, labels in raw.items() for i, v in enumerate(labels) if int(v) == ints[0])
            raise InputFormatError(f"{first}: negative class label {ints[0]}; integer labels must be 0..K-1")
        if ints[-1] >= len(ints):  # a gap; listed lazily, as a label such as 10**9 leaves a billion of them
            present = set(ints)
            gaps = (i for i in range(ints[-1]) if i not in present)
            missing = _listed(list(itertools.islice(gaps, _SHOWN)), total=ints[-1] + 1 - len(ints))
            raise InputFormatError(f"{where}: integer labels must be the classes 0..K-1 without gaps; labels "
                                   f"{_listed(ints)} lack {missing}. Renumber the classes from 0, or use class names")
        names = [str(i) for i in ints]
        return {s: np.array([int(v) for v in labels], dtype=np.int64) for s, labels in raw.items()}, names
    index = {name: i for i, name in enumerate(values)}
    return {s: np.array([index[v] for v in labels], dtype=np.int64) for s, labels in raw.items()}, values


def _table_files(task_dir: Path) -> dict[str, Path]:
    """The split files of ``task_dir`` by split; two for one split are refused, and files named like a split
    in a format not read here (``test.txt``, ``dev.csv.bz2``) are named in a warning, not skipped unseen."""
    found: dict[str, Path] = {}
    unread = []
    for path in sorted(p for p in task_dir.iterdir() if p.is_file()):
        name = path.name.lower()  # Train.CSV as well as train.csv
        suffix = next((x for x in SPLIT_FILE_SUFFIXES if name.endswith(x) and name[: -len(x)] in SPLIT_NAMES), None)
        if suffix is None:
            if name.split(".", 1)[0] in SPLIT_NAMES and "." in name:
                unread.append(path.name)
            continue
        split = SPLIT_NAMES[name[: -len(suffix)]]
        if split in found:
            raise InputFormatError(f"{task_dir}: two files for the {split} split: {found[split].name}, {path.name}")
        found[split] = path
    if unread:
        log.warning("%s: %s not read: split files are %s", task_dir, ", ".join(unread), "/".join(SPLIT_FILE_SUFFIXES))
    return found


def _split_folders(task_dir: Path) -> dict[str, Path]:
    """GenomicBenchmarks' split folders of ``task_dir`` by split; two for one split (``dev/`` and ``valid/``,
    ``train/`` and ``Train/``) are refused, as reading one would drop the other's sequences."""
    found: dict[str, Path] = {}
    for path in sorted(p for p in task_dir.iterdir() if p.is_dir() and p.name.lower() in SPLIT_NAMES):
        split = SPLIT_NAMES[path.name.lower()]
        if split in found:
            raise InputFormatError(f"{task_dir}: two folders for the {split} split: {found[split].name}/, "
                                   f"{path.name}/; merge them or remove one")
        found[split] = path
    return found


def load_task(path: str | os.PathLike, name: str | None = None) -> TaskData:
    """A task folder in either layout (see the module docstring)."""
    task_dir = Path(path).expanduser()
    if not task_dir.is_dir():
        raise InputFormatError(f"{task_dir}: not a task folder; expected train/dev/test .csv/.tsv/.fna files or "
                               "GenomicBenchmarks' train/ and test/ class folders")
    name = name or task_dir.name
    tables = _table_files(task_dir)
    folders = _split_folders(task_dir)
    if tables and folders:  # reading either layout alone would silently drop the other's splits
        raise InputFormatError(f"{task_dir}: both split files ({', '.join(sorted(p.name for p in tables.values()))}) "
                               f"and split folders ({', '.join(sorted(p.name for p in folders.values()))}); keep one "
                               "layout in a task folder")
    if tables:
        read = {split: (read_labelled_fasta(p) if p.name.lower().endswith(FASTA_SUFFIXES) else read_table(p))
                for split, p in tables.items()}
        label_ids, names = _label_ids({split: labels for split, (_, labels, _) in read.items()},
                                      {split: str(p) for split, p in tables.items()},
                                      {split: where for split, (_, _, where) in read.items()})
        splits = {s: LabelledSequences(read[s][0], label_ids[s], str(tables[s]), read[s][2]) for s in read}
        return TaskData(name, splits, names)
    if not folders:
        raise InputFormatError(f"{task_dir}: no split files (train/dev/test{'/'.join(SPLIT_FILE_SUFFIXES)}) and no "
                               "train/ or test/ class folders")
    by_split = {split: read_class_folders(p) for split, p in folders.items()}
    names = sorted(_task_labels({split: set(classes) for split, classes in by_split.items()},
                                {split: str(p) for split, p in folders.items()},
                                lambda split, label: f"{folders[split] / label}/"))
    splits = {}
    for split, classes in by_split.items():
        present = [(i, classes[c]) for i, c in enumerate(names) if c in classes]
        ids = [seq for _, (seqs, _) in present for seq in seqs]
        labels = np.concatenate([np.full(len(seqs), i, dtype=np.int64) for i, (seqs, _) in present])
        splits[split] = LabelledSequences(ids, labels, str(folders[split]), [f for _, (_, files) in present for f in files])
    return TaskData(name, splits, names)


def warn_of_training_rows_in(train: LabelledSequences, evaluated: dict[str, LabelledSequences | None]) -> None:
    """Warn when sequences to be evaluated (dev, test) are also training sequences (or, for in-context prompts,
    demonstrations): their metrics then measure memory as well as generalisation. Benchmarks repeat some (GUE's
    tf/4 repeats 358 of its 1,000 dev sequences); a split written twice repeats all."""
    seen = {seq.tobytes() for seq in train.ids}
    for split, data in evaluated.items():
        shared = [] if data is None else [row for row, seq in enumerate(data.ids) if seq.tobytes() in seen]
        if shared:
            log.warning("%d of %d %s sequences (the first at %s) are also in the training rows of %s: their metrics "
                        "measure memory as well as generalisation", len(shared), len(data), split,
                        data.origin(shared[0]), train.source)
