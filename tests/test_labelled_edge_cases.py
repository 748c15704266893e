"""Task files that read as something other than what they hold (``genomix.tasks.labelled``): text after a FASTA
label, hidden and unread files in GenomicBenchmarks' class folders, and label refusals that name the row."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from genomix.errors import InputFormatError
from genomix.tasks import load_task


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_text_after_a_fasta_label_is_refused_not_made_a_class(tmp_path):
    task = _write(tmp_path / "fa", {"train.fna": ">a|0 some description\nACGT\n>b|1\nGG\n>c|0\nA\n",
                                    "test.fna": ">a|0\nACGT\n>b|1\nGG\n"})
    with pytest.raises(InputFormatError, match=r"train\.fna:1: header '>a\|0 some description' has text after its "
                                               r"label \('0 some description'\)"):
        load_task(task)
    (task / "train.fna").write_text(">a some description|0\nACGT\n>b|1\nGG\n>c|0\nA\n")  # before the label: fine
    assert load_task(task).split("train").labels.tolist() == [0, 1, 0]


def test_hidden_and_unread_files_of_class_folders_are_not_sequences(tmp_path, caplog):
    task = _write(tmp_path / "gb", {"train/neg/1.txt": "ACGT", "train/neg/.2.txt": "TTTT", "train/neg/._1.txt": "x",
                                    "train/neg/3.TXT": "GGGG", "train/pos/1.txt": "GGCC", "train/4.txt": "CCCC",
                                    "test/neg/1.txt": "A", "test/pos/1.txt": "C"})
    with caplog.at_level(logging.WARNING, logger="genomix.tasks.labelled"):
        data = load_task(task)
    assert len(data.split("train")) == 2 and data.split("train").labels.tolist() == [0, 1]
    assert "2 file(s) not read ['4.txt', 'neg/3.TXT']:" in caplog.text
    assert ".2.txt" not in caplog.text  # hidden files are litter, not news


@pytest.mark.parametrize("train, test, message", [
    ("ACGT,0\nGGCC,1.0\n", "ACGT,0\nGGCC,1\n", r"train\.csv:3: label\(s\) \['1\.0'\] are numbers but not plain "
                                             r"integers"),
    ("ACGT,0\nGGCC,1\nTTTT,-1\n", "ACGT,0\n", r"train\.csv:4: negative class label -1"),
    ("ACGT,0\nGGCC,1\n", "ACGT,0\nAAAA,1\nGGCC,2\n", r"test\.csv:4: label\(s\) \['2'\] do not occur in the "
                                                   r"training split"),
])
def test_label_refusals_name_the_first_row_that_holds_the_label(tmp_path, train, test, message):
    task = _write(tmp_path / "t", {"train.csv": "sequence,label\n" + train, "test.csv": "sequence,label\n" + test})
    with pytest.raises(InputFormatError, match=message):
        load_task(task)


def test_a_class_only_the_test_split_has_names_its_folder(tmp_path):
    task = _write(tmp_path / "gb", {"train/neg/1.txt": "ACGT", "train/pos/1.txt": "GGCC", "test/neg/1.txt": "A",
                                    "test/other/1.txt": "C"})
    with pytest.raises(InputFormatError, match=r"test/other/: label\(s\) \['other'\] do not occur"):
        load_task(task)


@pytest.mark.parametrize("train, message", [
    ("ACGT,0\nGGCC,1\nTTTT,01\n", r"train\.csv:4: label '01' is the integer 1, which .*train\.csv:3 writes '1'"),
    ("ACGT,0\nGGCC,1\nTTTT,-0\n", r"train\.csv:4: label '-0' is the integer 0, which .*\.csv:2 writes '0'"),
])
def test_one_integer_label_written_two_ways_is_refused(tmp_path, train, message):
    task = _write(tmp_path / "t", {"train.csv": "sequence,label\n" + train, "test.csv": "sequence,label\nACGT,0\n"})
    with pytest.raises(InputFormatError, match=message):
        load_task(task)
    (task / "train.csv").write_text("sequence,label\nACGT,00\nGGCC,01\n")  # one spelling each: zero-padded ids
    (task / "test.csv").write_text("sequence,label\nACGT,00\n")
    assert load_task(task).label_names == ["0", "1"]
