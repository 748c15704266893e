"""Inputs that `genomix finetune` once mishandled: labels that are not 0..K-1 in ways the first checks missed
(a huge gap, non-ASCII digits, a tab inside a quoted label), ambiguous or mis-delimited tables, a folder with
both task layouts, sequences past csv's field limit, recipe values that Lightning would reject late or ignore,
an AUROC monitor without both classes in dev, a held-out dev split that leaves one class, and a finished run's
results in --out that a new run would overwrite."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from genomix.errors import ConfigError, InputFormatError
from genomix.tasks import finetune, load_finetune_recipe, load_task, read_labelled_fasta, read_table
from genomix.tokenizer import decode


def _write(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = folder / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def _table(labels: list[str]) -> str:
    return "sequence,label\n" + "".join(f"{'ACGT'[i % 4] * 6}{'AC'[i % 2]},{y}\n" for i, y in enumerate(labels))


def test_a_huge_gap_in_integer_labels_is_named_briefly(tmp_path):
    """A label such as an id column's 5000 once listed every missing class (a billion for 10**9, which hung)."""
    task = _write(tmp_path, **{"train.csv": _table(["0", "5000", "0", "5000"])})
    with pytest.raises(InputFormatError, match=r"lack \[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, \.\.\.\] \(4999 in all\)") as info:
        load_task(task)
    assert len(str(info.value)) < 400


def test_labels_with_non_ascii_digits_are_names(tmp_path):
    """'²'.isdigit() is true but int('²') fails: such a label is a class name, not a crash."""
    task = load_task(_write(tmp_path, **{"train.csv": _table(["0", "1", "\u00b2"])}))
    assert task.label_names == ["0", "1", "\u00b2"] and task.split("train").labels.tolist() == [0, 1, 2]


def test_a_table_with_two_label_columns_is_refused(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("sequence,label,Label\nACGT,0,1\nGGCC,1,0\n")
    with pytest.raises(InputFormatError, match=rf"{path}:1: .* more than one 'label' column"):
        read_table(path)


@pytest.mark.parametrize("name, body, hint", [
    ("train.csv", "sequence\tlabel\nACGT\t0\n", "the file is tab-separated: name it train.tsv"),
    ("Train.TSV.gz", "sequence,label\nACGT,0\n", "the file is comma-separated: name it Train.csv.gz"),
])
def test_a_table_with_the_other_delimiter_says_how_to_name_it(tmp_path, name, body, hint):
    import gzip

    path = tmp_path / name
    path.write_bytes(gzip.compress(body.encode()) if name.endswith(".gz") else body.encode())
    with pytest.raises(InputFormatError, match=hint):
        read_table(path)


def test_split_files_beside_class_folders_are_refused(tmp_path):
    """Reading train.csv alone once dropped the test/ class folders without a word."""
    task = _write(tmp_path, **{"train.csv": _table(["0", "1"]), "test__0__a.txt": "ACGT", "test__1__b.txt": "GG"})
    with pytest.raises(InputFormatError, match=r"both split files \(train.csv\) and split folders \(test\)"):
        load_task(task)


def test_a_label_with_a_tab_is_refused_as_it_would_break_the_predictions_tsv(tmp_path):
    table = tmp_path / "train.csv"
    table.write_text('sequence,label\nACGT,"a\tb"\nGGCC,c\n')
    with pytest.raises(InputFormatError, match=rf"{table}:2: label 'a\\tb' holds a tab"):
        read_table(table)
    fasta = tmp_path / "train.fa"
    fasta.write_text(">x|c\nAC\n>y|a\tb\nGG\n")
    with pytest.raises(InputFormatError, match=rf"{fasta}:3: label 'a\\tb' holds a tab"):
        read_labelled_fasta(fasta)


def test_sequences_longer_than_csvs_default_field_limit_are_read(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("sequence,label\n" + "ACGT" * 40_000 + ",0\nGG,1\n")
    ids, labels, _ = read_table(path)
    assert len(ids[0]) == 160_000 and decode(ids[1]) == "GG" and labels == ["0", "1"]


@pytest.mark.parametrize("field, value, message", [
    ("max_length", 0, "max_length must be a positive integer"),
    ("max_length", -3, "max_length must be a positive integer"),
    ("seed", -1, "seed must be an integer from 0"),
    ("num_workers", -1, "num_workers must be 0"),
    ("gradient_clip", -1.0, "gradient_clip must be a gradient norm >= 0"),
    ("precision", "fp8", "precision must be one of"),
])
def test_recipe_values_lightning_would_reject_late_or_ignore_are_refused(field, value, message):
    with pytest.raises(ConfigError, match=message):
        load_finetune_recipe("quick", **{field: value})


def _recipe(**fields):
    return load_finetune_recipe("quick", max_epochs=1, batch_size=4, **fields)


def test_auroc_monitor_needs_both_classes_in_dev_before_training(tmp_path):
    task = _write(tmp_path / "task", **{"train.csv": _table(["0", "1"] * 4), "dev.csv": _table(["0", "0"])})
    with pytest.raises(ConfigError, match=r"dev.csv has only '0'"):
        finetune("hyenadna-tiny-1k", task, tmp_path / "run", _recipe(monitor="auroc"), accelerator="cpu", quiet=True)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_held_out_dev_split_that_leaves_one_class_to_train_is_refused(tmp_path):
    task = _write(tmp_path / "task", **{"train.csv": _table(["0", "1"]), "test.csv": _table(["0", "1"])})
    with pytest.raises(InputFormatError, match=r"holding out 10% of .*train.csv .* leaves one class"):
        finetune("hyenadna-tiny-1k", task, tmp_path / "run", _recipe(), accelerator="cpu", quiet=True)


def test_predictions_of_a_held_out_dev_split_name_the_training_rows_they_came_from(tmp_path):
    """A task without a dev file has 10% of train held out (seeded): its predictions were numbered 0.. within that
    sample, with nothing to find the rows in train.csv by."""
    import csv

    labels = ["0", "1"] * 20
    task = _write(tmp_path / "task", **{"train.csv": _table(labels), "test.csv": _table(["0", "1"])})
    finetune("hyenadna-tiny-1k", task, tmp_path / "run", _recipe(), accelerator="cpu", quiet=True)
    with open(tmp_path / "run" / "predictions" / "dev.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    lines = (task / "train.csv").read_text().splitlines()
    assert len(rows) == 4 and len({row["source"] for row in rows}) == 4
    for row in rows:
        where, _, line = row["source"].rpartition(":")
        assert where.endswith("train.csv") and lines[int(line) - 1].split(",")[1] == row["label"]


def test_a_finished_run_without_checkpoints_is_not_overwritten(tmp_path):
    """Checkpoints removed to save space leave metrics.json and model/: a new run in that --out is refused
    rather than replacing them (a run with its checkpoints is refused by refuse_used_out already)."""
    task = _write(tmp_path / "task", **{"train.csv": _table(["0", "1"] * 4), "dev.csv": _table(["0", "1"])})
    run = tmp_path / "run"
    finished = json.dumps({"task": "earlier", "metrics": {"test": {"mcc": 0.5}}})
    _write(run, **{"metrics.json": finished})
    for resume in (None, "auto"):  # a metrics.json alone does not say which kind of run wrote it
        with pytest.raises(ConfigError, match=r"already holds a finished run's metrics.json \(.*metrics.json\)"):
            finetune("hyenadna-tiny-1k", task, run, _recipe(), resume=resume, accelerator="cpu", quiet=True)
    assert (run / "metrics.json").read_text() == finished and not (run / "recipe.yaml").exists()
    (run / "checkpoints").mkdir()  # with its checkpoints kept, a new run is told the run is finished, too
    (run / "checkpoints" / "last.ckpt").write_bytes(b"a checkpoint")
    with pytest.raises(ConfigError, match=r"already holds a finished fine-tuning run .*metrics.json"):
        finetune("hyenadna-tiny-1k", task, run, _recipe(), accelerator="cpu", quiet=True)


@pytest.mark.parametrize("classes", [2, 3])
def test_a_fine_tuned_classifier_is_a_backbone_with_a_fresh_head_for_the_next_task(tmp_path, classes):
    """A classifier saved by an earlier fine-tuning run, used as --model for another task: its backbone is kept
    and its head is new, whether the new task has as many classes (the old head was reused) or another number
    (its head's shape made loading fail)."""
    import torch

    from genomix.models.registry import build
    from genomix.tasks.finetune import load_classifier

    torch.manual_seed(0)
    first = build("hyenadna-tiny-1k", task="classification", num_labels=2, n_layer=1)
    first.save_pretrained(tmp_path / "first")
    names = [f"c{i}" for i in range(classes)]
    torch.manual_seed(1)
    second = load_classifier(str(tmp_path / "first"), classes, names, load_finetune_recipe("quick"))
    old, new = first.state_dict(), second.state_dict()
    head = [k for k in new if not k.startswith(second.base_model_prefix + ".")]
    assert head and new[head[0]].shape[0] == classes and second.config.id2label == dict(enumerate(names))
    assert all(torch.equal(new[k], old[k]) for k in new if k not in head)
    weights = [k for k in head if k.endswith("weight")]  # biases start at zero in both
    assert weights and not any(old[k].shape == new[k].shape and torch.equal(old[k], new[k]) for k in weights)
