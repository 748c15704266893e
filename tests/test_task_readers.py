"""Task folders as users and other tools really write them: spreadsheet CSV exports (byte-order mark, CRLF,
quoted fields, extra columns, header case), gzip without a .gz name, upper-case file names, labels padded
with spaces, and GenomicBenchmarks folders with tool litter beside the classes. Each case is also checked
against the real GUE rows in shared/data, so the reader is exercised on real sequences."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from genomix.errors import InputFormatError
from genomix.tasks import load_task, read_labelled_fasta, read_table
from genomix.tasks.labelled import warn_of_training_rows_in

GUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gue"
ROWS = [("ACGTTGCA", "0"), ("GGGCCCAA", "1"), ("ttaaccgg", "1")]


def _csv(rows=ROWS, header="sequence,label", end="\n") -> bytes:
    return end.join([header, *(f"{s},{y}" for s, y in rows)]).encode() + end.encode()


@pytest.mark.parametrize("body", [
    _csv(end="\r\n"),                                                            # Windows line ends
    b"\xef\xbb\xbf" + _csv(),                                                    # Excel's "CSV UTF-8"
    b"\xef\xbb\xbf" + _csv(header="Sequence,Label", end="\r\n"),                 # both, header in other case
    b'"sequence","label"\n' + b"".join(f'"{s}","{y}"\n'.encode() for s, y in ROWS),  # every field quoted
    b'id,Sequence,note,LABEL\n' + b"".join(f'r{i},{s},"a, b",{y}\n'.encode() for i, (s, y) in enumerate(ROWS)),
    _csv([(s, f"  {y} ") for s, y in ROWS]),                                     # labels padded with spaces
    gzip.compress(_csv()),                                                       # gzipped, named .csv
], ids=["crlf", "bom", "bom-crlf-Case", "quoted", "extra-columns", "label-spaces", "gzip-named-csv"])
def test_spreadsheet_style_tables_read_like_plain_ones(tmp_path, body):
    (tmp_path / "train.csv").write_bytes(body)
    ids, labels, origins = read_table(tmp_path / "train.csv")
    assert labels == ["0", "1", "1"] and [len(i) for i in ids] == [8, 8, 8]
    assert origins[0].endswith("train.csv:2")
    assert load_task(tmp_path).label_names == ["0", "1"]


def test_labelled_fasta_with_bom_and_crlf(tmp_path):
    (tmp_path / "train.fna").write_bytes(b"\xef\xbb\xbf>a|0\r\nACGT\r\nAC\r\n>b| 1 \r\nGG\r\n")
    ids, labels, origins = read_labelled_fasta(tmp_path / "train.fna")
    assert labels == ["0", "1"] and [len(i) for i in ids] == [6, 2] and origins[1].endswith(":4")


def test_upper_case_file_names_are_split_files(tmp_path):
    (tmp_path / "Train.CSV").write_bytes(_csv())
    (tmp_path / "TEST.TSV").write_bytes(_csv(header="sequence\tlabel").replace(b",", b"\t"))
    data = load_task(tmp_path)
    assert set(data.splits) == {"train", "test"} and len(data.splits["test"]) == 3


def test_class_folders_ignore_hidden_and_macos_folders(tmp_path):
    for cls, seq in (("negative", "ACGT"), ("positive", "GGCC")):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "train" / cls / "0.txt").write_text(seq + "\n")
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "train" / "__MACOSX").mkdir()
    assert load_task(tmp_path).label_names == ["negative", "positive"]


def test_a_bom_does_not_hide_a_missing_column(tmp_path):
    (tmp_path / "train.csv").write_bytes(b"\xef\xbb\xbfseq,label\nACGT,0\n")
    with pytest.raises(InputFormatError, match=r"lacks column\(s\) \['sequence'\]"):
        read_table(tmp_path / "train.csv")


@pytest.mark.skipif(not GUE.is_dir(), reason="needs shared/data/gue")
def test_real_gue_rows_as_a_spreadsheet_export(tmp_path):
    """Real GUE rows re-saved the way Excel does (BOM, CRLF, other header case) read as the original."""
    text = gzip.decompress((GUE / "tf" / "0" / "dev.csv.gz").read_bytes()).decode()
    lines = text.strip().splitlines()
    (tmp_path / "train.csv").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(["Sequence,Label", *lines[1:]]).encode())
    exported = load_task(tmp_path).splits["train"]
    original = load_task(GUE / "tf" / "0").splits["dev"]
    assert len(exported) == len(original) == len(lines) - 1
    assert exported.labels.tolist() == original.labels.tolist()
    assert all((a == b).all() for a, b in zip(exported.ids, original.ids))


def test_two_folders_for_one_split_are_refused_not_one_of_them_dropped(tmp_path):
    """dev/ and valid/ (or train/ and Train/) are one split twice: reading either would drop the other's rows."""
    for split, cls, name in (("train", "a", "1"), ("train", "b", "2"), ("dev", "a", "3"), ("valid", "b", "4")):
        (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
        (tmp_path / split / cls / f"{name}.txt").write_text("ACGT")
    with pytest.raises(InputFormatError, match=r"two folders for the dev split: dev/, valid/; merge them"):
        load_task(tmp_path)


def test_class_folders_differing_only_in_case_are_refused_not_made_two_classes(tmp_path):
    for split, cls, name in (("train", "positive", "1"), ("train", "negative", "2"), ("train", "Positive", "3"),
                             ("test", "positive", "4"), ("test", "negative", "5")):
        (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
        (tmp_path / split / cls / f"{name}.txt").write_text("ACGT")
    with pytest.raises(InputFormatError, match=r"train: class folders Positive/ and positive/ differ only in case"):
        load_task(tmp_path)


def test_a_corrupt_gzip_or_a_folder_named_like_a_split_file_is_one_clear_error(tmp_path, caplog):
    header = gzip.compress(b"")[:10]  # a gzip header, then a deflate block of the reserved type: zlib.error
    (tmp_path / "train.csv.gz").write_bytes(header + b"\xff" * 64)
    with pytest.raises(InputFormatError, match=r"train.csv.gz: not a readable CSV/TSV table"):
        load_task(tmp_path)
    odd = tmp_path / "odd"
    (odd / "train.csv").mkdir(parents=True)  # a folder, not a file
    (odd / "test.txt").write_text("sequence,label\n")  # a split in a format not read: named, not skipped unseen
    with caplog.at_level("WARNING", logger="genomix.tasks.labelled"), pytest.raises(InputFormatError,
                                                                                  match="no split files"):
        load_task(odd)
    assert "test.txt not read: split files are .csv/.tsv" in caplog.text


def test_a_quoted_field_across_lines_keeps_the_line_numbers_an_editor_shows(tmp_path):
    (tmp_path / "train.csv").write_text('sequence,label,note\nACGT,0,"two\nlines"\nGGCC,1,x\nNOT-DNA,1,x\n')
    with pytest.raises(InputFormatError, match=r"train.csv:5: "):
        load_task(tmp_path)


def test_evaluated_rows_that_are_training_rows_are_counted_in_a_warning(tmp_path, caplog):
    (tmp_path / "train.csv").write_bytes(_csv())
    (tmp_path / "test.csv").write_bytes(_csv([ROWS[1], ("CCCCAAAA", "0")]))
    task = load_task(tmp_path)
    with caplog.at_level("WARNING", logger="genomix.tasks.labelled"):
        warn_of_training_rows_in(task.splits["train"], {"dev": None, "test": task.splits["test"]})
    assert "1 of 2 test sequences (the first at " in caplog.text and "test.csv:2) are also in the training" in caplog.text
