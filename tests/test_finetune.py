"""Fine-tuning on labelled sequences: readers (GUE tables, GenomicBenchmarks folders), metrics, batches,
and whole runs of `genomix finetune` on real GUE data (outputs, exported model, resume)."""
from __future__ import annotations

import csv
import gzip
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import genomix
from genomix.cli import main as cli_main
from genomix.errors import ConfigError, InputFormatError, RangeError, TrainingError
from genomix.tasks import ClassificationModule, classification_metrics, finetune, load_finetune_recipe, load_task, read_table
from genomix.tasks.batches import Collate, EpochOrder, SequenceDataset, fit_lengths
from genomix.tasks.labelled import LabelledSequences
from genomix.tokenizer import encode, reverse_complement

GUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gue"
PROM = GUE / "prom" / "prom_core_notata"


def _gz_rows(path: Path) -> int:
    with gzip.open(path, "rt") as fh:
        return sum(1 for line in fh if line.strip()) - 1


def _small_task(tmp_path: Path, train_rows: int = 256, eval_rows: int = 128) -> Path:
    """The first rows of GUE's prom_core_notata, as gzipped CSVs in GUE's layout."""
    task = tmp_path / "prom_small"
    task.mkdir()
    for split, rows in (("train", train_rows), ("dev", eval_rows), ("test", eval_rows)):
        with gzip.open(PROM / f"{split}.csv.gz", "rt") as src, gzip.open(task / f"{split}.csv.gz", "wt") as dst:
            for i, line in enumerate(src):
                if i > rows:
                    break
                dst.write(line)
    return task


def test_gue_task_reads_every_row_of_every_split():
    task = load_task(PROM)
    assert task.num_labels == 2 and task.label_names == ["0", "1"]
    for split in ("train", "dev", "test"):
        assert len(task.split(split)) == _gz_rows(PROM / f"{split}.csv.gz")
    first = task.split("train").ids[0]
    with gzip.open(PROM / "train.csv.gz", "rt") as fh:
        next(fh)
        seq, label = next(fh).strip().split(",")
    np.testing.assert_array_equal(first, encode(seq, dtype=np.uint8))
    assert task.split("train").labels[0] == int(label)


def test_three_class_task_without_a_train_split_says_so():
    task = load_task(GUE / "splice" / "reconstructed")
    assert task.num_labels == 3
    with pytest.raises(InputFormatError, match="has no train split"):
        task.split("train")


@pytest.mark.parametrize("text, message", [
    ("seq,label\nACGT,0\n", "lacks column"),
    ("sequence,label\nACGT,0\nACXT,1\n", r":3: invalid DNA character 'X'"),
    ("sequence,label\nACGT,0,7\n", ":2: 3 fields, the header has 2"),
    ("sequence,label\n,1\n", ":2: empty sequence"),
    ("sequence,label\nACGT,\n", ":2: empty label"),
    ("sequence,label\n", "no rows after the header"),
    ("", "empty file"),
])
def test_malformed_tables_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "train.csv"
    path.write_text(text)
    with pytest.raises(InputFormatError, match=message):
        read_table(path)


def test_a_truncated_gzip_table_is_an_input_error(tmp_path):
    data = gzip.compress(("sequence,label\n" + "ACGT,1\n" * 5000).encode())
    path = tmp_path / "train.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFormatError, match="not a readable"):
        read_table(path)


def test_named_labels_get_the_same_ids_in_every_split_and_tsv_is_read(tmp_path):
    (tmp_path / "train.tsv").write_text("label\tsequence\tid\nenhancer\tACGT\ta\npromoter\tGGCC\tb\n")
    (tmp_path / "test.tsv").write_text("sequence\tlabel\tid\nTTTT\tpromoter\tc\n")
    task = load_task(tmp_path)
    assert task.label_names == ["enhancer", "promoter"]
    assert task.split("train").labels.tolist() == [0, 1] and task.split("test").labels.tolist() == [1]


def test_genomic_benchmarks_class_folders(tmp_path):
    for split, classes in (("train", {"positive": ["ACGT", "AAAA"], "negative": ["CCCC"]}),
                           ("test", {"positive": ["GGGG"], "negative": ["TTTT"]})):
        for name, seqs in classes.items():
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i, seq in enumerate(seqs):
                (folder / f"{i}.txt").write_text(seq + "\n")
    task = load_task(tmp_path)
    assert task.label_names == ["negative", "positive"]
    train = task.split("train")
    assert [genomix.tokenizer.decode(s) for s in train.ids] == ["CCCC", "ACGT", "AAAA"]
    assert train.labels.tolist() == [0, 1, 1]
    assert "dev" not in task.splits


def test_metrics_match_a_hand_computed_confusion_matrix():
    labels = np.array([0] * 6 + [1] * 4)
    predicted = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])  # TN 4, FP 2, TP 3, FN 1
    logits = np.eye(2)[predicted]
    tp, tn, fp, fn = 3, 4, 2, 1
    mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    f1_pos, f1_neg = 2 * tp / (2 * tp + fp + fn), 2 * tn / (2 * tn + fn + fp)
    scores = classification_metrics(logits, labels)
    assert scores["mcc"] == pytest.approx(mcc)
    assert scores["accuracy"] == pytest.approx(0.7)
    assert scores["f1_macro"] == pytest.approx((f1_pos + f1_neg) / 2)
    assert "auroc" in scores
    three = classification_metrics(np.eye(3)[[0, 1, 2, 2]], np.array([0, 1, 2, 1]))
    assert "auroc" not in three and three["accuracy"] == pytest.approx(0.75)


def test_long_sequences_are_refused_or_cut_at_the_chosen_end():
    data = LabelledSequences([encode("ACGTACGT", np.uint8), encode("AC", np.uint8)], np.array([0, 1]), "x.csv")
    with pytest.raises(RangeError, match=r"x.csv, example 1: this example is 8 bases long, past the limit of 4 \(1 of "
                                         r"x.csv's 2 examples are\)"):
        fit_lengths(data, 4, "error")
    assert genomix.tokenizer.decode(fit_lengths(data, 4, "keep-start").ids[0]) == "ACGT"
    assert genomix.tokenizer.decode(fit_lengths(data, 3, "keep-end").ids[0]) == "CGT"
    assert fit_lengths(data, 8, "error") is data


@pytest.mark.parametrize("layout", ["csv", "fasta", "folders"])
def test_a_long_example_is_named_by_the_file_and_line_it_was_read_from(tmp_path, layout):
    """The refusal points at the line (or GenomicBenchmarks .txt file) to fix, also after truncation keeps the
    other examples and after a dev split is carved from train."""
    seqs = ["ACGT", "AC", "ACGTACGTAC", "GG"]
    if layout == "csv":
        (tmp_path / "train.csv").write_text("sequence,label\n" + "\n\n".join(f"{s},{i % 2}" for i, s in enumerate(seqs)))
        where = f"{tmp_path / 'train.csv'}:6"  # header, rows on lines 2, 4, 6, 8 (blank lines between)
    elif layout == "fasta":
        (tmp_path / "train.fa").write_text("".join(f">r{i}|{i % 2}\n{s[:3]}\n{s[3:]}\n" for i, s in enumerate(seqs)))
        where = f"{tmp_path / 'train.fa'}:7"
    else:
        for i, s in enumerate(seqs):
            folder = tmp_path / "train" / f"class{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.txt").write_text(s)
        where = str(tmp_path / "train" / "class0" / "2.txt")
    train = load_task(tmp_path).split("train")
    row = next(r for r in range(len(train)) if len(train.ids[r]) == 10)
    assert train.origin(row) == where
    with pytest.raises(RangeError, match=rf"^{re.escape(where)}: this example is 10 bases long"):
        fit_lengths(train, 5, "error")
    kept = fit_lengths(train, 5, "keep-start")
    assert kept.origins == train.origins and kept.take([row]).origin(0) == where


def test_epoch_order_depends_on_seed_and_epoch_only_and_flips_are_reverse_complements():
    order = EpochOrder(50, shuffle=True, rc_aug=True, seed=3)
    order.set_epoch(2)
    first = list(order)
    again = EpochOrder(50, shuffle=True, rc_aug=True, seed=3)
    again.set_epoch(2)
    assert list(again) == first
    again.set_epoch(3)
    assert list(again) != first
    assert sorted(row for row, _ in first) == list(range(50)) and 0 < sum(f for _, f in first) < 50
    assert list(EpochOrder(4, shuffle=False)) == [(0, False), (1, False), (2, False), (3, False)]
    data = LabelledSequences([encode("AACG", np.uint8)], np.array([1]), "x")
    ids, label, row = SequenceDataset(data)[(0, True)]
    np.testing.assert_array_equal(ids, reverse_complement(encode("AACG")))


@pytest.mark.parametrize("name", ["hyenadna-tiny-1k", "mamba-tiny-1k", "transformer-tiny-1k"])
def test_padding_does_not_change_a_causal_classifier(name):
    torch.manual_seed(0)
    model = genomix.models.build(name, task="classification", num_labels=2, pooling="last").eval()
    seqs = [encode("ACGTTGCA" * 5), encode("GGGTTTAAC")]
    batch = Collate("right")([(s, 0, i) for i, s in enumerate(seqs)])
    with torch.no_grad():
        together = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        alone = model(input_ids=torch.from_numpy(seqs[1])[None]).logits
    torch.testing.assert_close(together[1], alone[0], rtol=1e-5, atol=1e-5)


def test_recipes_reject_unknown_fields_and_metrics(tmp_path):
    assert load_finetune_recipe("gue").monitor == "mcc"
    bad = tmp_path / "r.yaml"
    bad.write_text("batchsize: 4\n")
    with pytest.raises(ConfigError, match="unknown field"):
        load_finetune_recipe(bad)
    with pytest.raises(ConfigError, match="monitor must be one of"):
        load_finetune_recipe("gue", monitor="loss")


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_finetune_end_to_end_on_gue(tmp_path, monkeypatch):
    import importlib

    finetune_module = importlib.import_module("genomix.tasks.finetune")  # the package exports a function of that name
    loops = []
    real_loop = finetune_module.inference_loop
    monkeypatch.setattr(finetune_module, "inference_loop",
                        lambda model, **kw: loops.append(kw.get("cuda_graphs", True)) or real_loop(model, **kw))
    task = _small_task(tmp_path)
    out = tmp_path / "run"
    status = cli_main(["finetune", "--model", "hyenadna-tiny-1k", "--task", str(task), "--recipe", "quick",
                       "--max-epochs", "2", "--out", str(out), "--accelerator", "cpu", "--quiet", "--no-cuda-graphs"])
    assert status == 0
    assert loops == [False, False]  # dev and test predictions, eager as asked
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["examples"] == {"train": 256, "dev": 128, "test": 128}
    assert summary["best_epoch"] in (0, 1) and summary["label_names"] == ["0", "1"]
    rows = _read_tsv(out / "predictions" / "test.tsv")
    probs = np.array([[float(r["p_0"]), float(r["p_1"])] for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    recomputed = classification_metrics(np.log(probs), labels)
    for key, value in summary["metrics"]["test"].items():
        assert value == pytest.approx(recomputed[key], abs=1e-6)
    # the exported model is the best epoch's: it reproduces the written probabilities
    model = genomix.from_pretrained(out / "model")
    assert model.config.id2label == {0: "0", 1: "1"}
    data = load_task(task).split("test")
    batch = Collate("right")([(np.asarray(s, dtype=np.int64), 0, i) for i, s in enumerate(data.ids[:16])])
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), probs[:16], rtol=1e-4, atol=1e-5)


def test_finetune_warns_when_evaluated_sequences_are_training_rows(tmp_path, caplog):
    """Dev or test rows that repeat training rows are named before any training (their metrics measure memory);
    the run here then stops at the next check, a 3-class task monitored by AUROC, so nothing trains."""
    task = tmp_path / "three"
    task.mkdir()
    train = [("ACGTACGTAA", 0), ("CCGTACGTAC", 1), ("GGGTACGTAG", 2), ("TTGTACGTAT", 0)]
    (task / "train.csv").write_text("sequence,label\n" + "".join(f"{s},{y}\n" for s, y in train))
    (task / "dev.csv").write_text("sequence,label\nACGTACGTTT,0\nCCGTACGTTT,1\nGGGTACGTTT,2\n")
    (task / "test.csv").write_text("sequence,label\nGGGTTTTTAG,2\nCCGTACGTAC,1\nTTGTACGTAT,0\n")
    recipe = load_finetune_recipe("quick", monitor="auroc")
    with caplog.at_level("WARNING", logger="genomix.tasks.labelled"), pytest.raises(ConfigError, match="auroc"):
        finetune("hyenadna-tiny-1k", task, tmp_path / "run", recipe, accelerator="cpu", quiet=True)
    assert re.search(r"2 of 3 test sequences \(the first at .*test.csv:3\) are also in the training rows", caplog.text)
    assert "dev sequences" not in caplog.text and not (tmp_path / "run").exists()


def test_a_resumed_run_ends_where_the_uninterrupted_one_does(tmp_path, monkeypatch):
    task = _small_task(tmp_path, train_rows=192, eval_rows=64)
    recipe = load_finetune_recipe("quick", max_epochs=2)
    straight = finetune("hyenadna-tiny-1k", task, tmp_path / "straight", recipe, accelerator="cpu", quiet=True)

    class Crash(Exception):
        pass

    def crash_in_second_epoch(self):
        if self.current_epoch == 1:
            raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(ClassificationModule, "on_train_epoch_start", crash_in_second_epoch, raising=False)
        with pytest.raises(Crash):
            finetune("hyenadna-tiny-1k", task, tmp_path / "resumed", recipe, accelerator="cpu", quiet=True)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    first_epoch = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    first_seconds = first_epoch["callbacks"]["Timer"]["time_elapsed"]["train"]
    start = time.monotonic()
    resumed = finetune("hyenadna-tiny-1k", task, tmp_path / "resumed", recipe, resume="auto", accelerator="cpu",
                       quiet=True)
    resumed_call = time.monotonic() - start
    assert resumed.metrics == straight.metrics and resumed.best_epoch == straight.best_epoch
    # the training time recorded counts the first run's epoch as well as the resumed one's
    seconds = json.loads((tmp_path / "resumed" / "metrics.json").read_text())["seconds"]
    assert 0 < first_seconds < seconds["train"] < first_seconds + resumed_call
    assert len(list((tmp_path / "resumed" / "logs" / "csv").iterdir())) == 2  # one log folder per segment
    # dropout (the model's embed_dropout) draws the same masks after the resume: the same weights, bit for bit
    last = [torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
            for run in (tmp_path / "straight", tmp_path / "resumed")]
    assert all(torch.equal(last[0][k], last[1][k]) for k in last[0])


def test_last_checkpoint_is_the_last_epoch_when_an_earlier_one_was_best(tmp_path, monkeypatch):
    """last.ckpt follows every epoch, not only new bests: a resume continues after the last finished epoch,
    while the best epoch is still the one tested and exported."""
    task = _small_task(tmp_path, train_rows=64, eval_rows=32)
    recipe = load_finetune_recipe("quick", max_epochs=2)

    def worse_every_epoch(self):  # dev/mcc falls, so epoch 0 stays the best
        self.log(f"dev/{self.recipe.monitor}", -float(self.current_epoch))

    trained = []
    monkeypatch.setattr(ClassificationModule, "on_validation_epoch_end", worse_every_epoch)
    monkeypatch.setattr(ClassificationModule, "on_train_epoch_start",
                        lambda self: trained.append(self.current_epoch), raising=False)
    result = finetune("hyenadna-tiny-1k", task, tmp_path / "run", recipe, accelerator="cpu", quiet=True)
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert result.best_epoch == 0 and result.best_checkpoint.name == "best-epoch=0.ckpt"
    assert last["epoch"] == 1 and last["global_step"] == 2 * torch.load(result.best_checkpoint)["global_step"]
    recipe.max_epochs = 3
    finetune("hyenadna-tiny-1k", task, tmp_path / "run", recipe, resume="auto", accelerator="cpu", quiet=True)
    assert trained == [0, 1, 2]  # the resume trained epoch 2 only


def test_a_quiet_run_from_python_prints_no_lightning_banners_and_leaves_logging_as_it_was(tmp_path):
    """``quiet=True`` is the Python API's ``--quiet``: no "GPU available" banners, tips, pytree deprecation or
    weight-writing bars, and the loggers it quieted are back at their levels afterwards. In a process of its own:
    pytest's logging and warning capture would hide what a user's session shows."""
    task = _small_task(tmp_path, train_rows=64, eval_rows=32)
    script = f"""
import logging
from transformers.utils import logging as hf_logging
from genomix.tasks import finetune, load_finetune_recipe
names = ("lightning", "lightning.pytorch", "lightning.fabric")
levels = [logging.getLogger(name).level for name in names]
finetune("hyenadna-tiny-1k", {str(task)!r}, {str(tmp_path / "run")!r}, load_finetune_recipe("quick", max_epochs=1),
         accelerator="cpu", quiet=True)
assert [logging.getLogger(name).level for name in names] == levels and hf_logging.is_progress_bar_enabled()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for noise in ("GPU available", "Tip", "LeafSpec", "Writing model shards"):
        assert noise not in done.stderr, done.stderr


@pytest.mark.parametrize("epoch, kept", [(1, "; the last checkpoint, {last}, is kept: the same command with --resume"),
                                          (0, ", before the run wrote a checkpoint: nothing is kept")])
def test_ctrl_c_says_which_checkpoint_is_kept(tmp_path, monkeypatch, capsys, epoch, kept):
    """The interrupt message names the checkpoint kept, and promises none before the first epoch has finished."""
    from genomix.cli import main

    task = _small_task(tmp_path, train_rows=64, eval_rows=32)

    def interrupt(self, batch, batch_idx):
        if self.current_epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(ClassificationModule, "on_train_batch_start", interrupt)
    assert main(["finetune", "--model", "hyenadna-tiny-1k", "--task", str(task), "--recipe", "quick", "--max-epochs",
                 "2", "--out", str(tmp_path / "run"), "--quiet"]) == 130
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert f"stopped in epoch {epoch}{kept.format(last=last)}" in capsys.readouterr().err
    assert last.is_file() == bool(epoch)


def test_a_diverging_run_stops_with_a_clear_error_instead_of_scoring_nan(tmp_path):
    task = _small_task(tmp_path, train_rows=128, eval_rows=32)
    recipe = load_finetune_recipe("quick", max_epochs=2)
    recipe.optim.lr = 1e12  # blows the weights up within a few steps, as a diverging run would
    with pytest.raises(TrainingError, match="non-finite"):
        finetune("hyenadna-tiny-1k", task, tmp_path / "nan", recipe, accelerator="cpu", quiet=True)
    assert not (tmp_path / "nan" / "metrics.json").exists()


def test_non_finite_test_logits_are_named_after_their_predictions_are_written(tmp_path, monkeypatch):
    """Training checks the dev logits of every epoch; the test split is first scored after training (bf16 may
    overflow there): its NaN rows are named, not passed to scikit-learn's "Input contains NaN"."""
    finetune_module = sys.modules["genomix.tasks.finetune"]  # the package's `finetune` is the function
    task = _small_task(tmp_path, train_rows=64, eval_rows=16)
    real = finetune_module.predict_logits

    def nan_test_rows(model, data, *args, desc: str = "", **kwargs):
        logits = real(model, data, *args, desc=desc, **kwargs)
        if desc.startswith("test"):
            logits[3, 1] = np.nan
        return logits

    monkeypatch.setattr(finetune_module, "predict_logits", nan_test_rows)
    with pytest.raises(genomix.GenomixError, match=r"NaN or infinite class logits for 1 of 16 test row\(s\) "
                                                   r"\(first: row 3\)"):
        finetune("hyenadna-tiny-1k", task, tmp_path / "run", load_finetune_recipe("quick", max_epochs=1),
                 accelerator="cpu", quiet=True)
    assert _read_tsv(tmp_path / "run" / "predictions" / "test.tsv")[3]["p_1"] == "nan"


def test_cli_reports_a_task_without_train_split(tmp_path, capsys):
    status = cli_main(["finetune", "--model", "hyenadna-tiny-1k", "--task", str(GUE / "EMP" / "H3"),
                       "--out", str(tmp_path / "x"), "--quiet"])
    assert status == 2
    assert "has no train split" in capsys.readouterr().err


def test_the_gue_suite_pipeline_tabulates_and_skips_finished_tasks(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("finetune_gue", Path(__file__).resolve().parents[1] / "pipelines"
                                                  / "finetune_gue.py")
    pipeline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pipeline)
    assert "prom/prom_core_all" in pipeline.suite_tasks(GUE) and "EMP/H3" not in pipeline.suite_tasks(GUE)
    nt = tmp_path / "nt"  # the NT suite's layout: <task>/{train,test}.fna
    for task in ("H3", "promoter_tata"):
        (nt / task).mkdir(parents=True)
        (nt / task / "train.fna").write_text(">a|0\nACGT\n")
    (nt / "notes").mkdir()
    assert pipeline.suite_tasks(nt) == ["H3", "promoter_tata"]
    gb = tmp_path / "gb"  # GenomicBenchmarks: <task>/{train,test}/<class>/<id>.txt
    (gb / "human_or_worm" / "train" / "human").mkdir(parents=True)
    (gb / "human_or_worm" / "train" / "human" / "0.txt").write_text("ACGT")
    (gb / "stray" / "test").mkdir(parents=True)
    assert pipeline.suite_tasks(gb) == ["human_or_worm"]
    args = ["--model", "hyenadna-tiny-1k", "--gue", str(GUE), "--tasks", "prom/prom_core_tata", "EMP/H3", "--recipe", "quick",
            "--max-epochs", "1", "--train-rows", "128", "--accelerator", "cpu", "--out", str(tmp_path)]
    assert pipeline.main(args) == 1  # EMP/H3 failed; the other task still ran
    done = tmp_path / "prom_prom_core_tata" / "metrics.json"
    stamp = done.stat().st_mtime_ns
    assert pipeline.main(args) == 1
    assert done.stat().st_mtime_ns == stamp  # the finished task was not run again
    table = json.loads((tmp_path / "finetune_gue.json").read_text())
    assert [r["task"] for r in table["rows"]] == ["prom/prom_core_tata", "EMP/H3"]
    assert table["rows"][0]["test"] == json.loads(done.read_text())["metrics"]["test"]
    assert "no train split" in table["rows"][1]["error"]  # a failed task is reported and the suite goes on
    out = capsys.readouterr().out
    assert "prom/prom_core_tata" in out and "EMP/H3                   failed:" in out


def test_data_parallel_shards_hold_the_one_device_batches():
    """Rank r's i-th batch of b rows, over all ranks, is the one-device run's i-th batch of world*b rows,
    with the same reverse-complement flips; every rank takes the same number of steps."""
    one = list(EpochOrder(103, shuffle=True, rc_aug=True, seed=3))
    shards = []
    for rank in range(4):
        order = EpochOrder(103, shuffle=True, rc_aug=True, seed=3, rank=rank, world=4)
        order.set_epoch(0)
        shards.append(list(order))
    assert [len(s) for s in shards] == [25] * 4
    b = 5
    for i in range(5):
        assert sorted(k for s in shards for k in s[i * b:(i + 1) * b]) == sorted(one[i * 4 * b:(i + 1) * 4 * b])
    with pytest.raises(ValueError, match="rank 4 outside a world of 4"):
        EpochOrder(10, shuffle=False, rank=4, world=4)


def test_two_process_data_parallel_run_matches_the_one_process_run(tmp_path):
    """`genomix finetune --devices 2` on CPU (DDP over gloo, two processes launched by Lightning) trains the
    same weights as one process with the same global batch, and only rank 0 reports and exports.

    The recipe's AdamW has ``eps`` 1, so each update is about ``lr`` x the gradient. With the usual ``eps``,
    Adam's first steps are about ``lr`` x the gradient's sign, and an element whose gradient cancels to rounding
    level (the two runs sum their batches in other orders, and BLAS's rounding can change between runs) moved by
    a whole step one way in one run and the other way in the other: this test failed twice in about twenty runs."""
    import subprocess
    import sys

    from genomix.models.registry import build

    task = _small_task(tmp_path, train_rows=128, eval_rows=64)
    base = build("hyenadna-tiny-1k", task="causal-lm", embed_dropout=0.0)  # no dropout: both runs draw no noise
    base.save_pretrained(tmp_path / "base")
    recipe = load_finetune_recipe("quick").to_dict()
    recipe["optim"].update(lr=0.5, eps=1.0)
    (tmp_path / "linear.yaml").write_text(yaml.safe_dump(recipe))
    args = ["finetune", "--model", str(tmp_path / "base"), "--task", str(task), "--recipe", str(tmp_path / "linear.yaml"),
            "--max-epochs", "1", "--batch-size", "32", "--accelerator", "cpu", "--quiet"]
    assert cli_main(args + ["--out", str(tmp_path / "one")]) == 0
    run = subprocess.run([sys.executable, "-m", "genomix", *args, "--devices", "2", "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("best epoch") == 1  # rank 1 trains but does not report
    one = genomix.from_pretrained(tmp_path / "one" / "model").state_dict()
    two = genomix.from_pretrained(tmp_path / "two" / "model").state_dict()
    assert one.keys() == two.keys()
    for name in one:
        assert torch.allclose(one[name], two[name], rtol=1e-4, atol=1e-5), name
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())["metrics"]
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())["metrics"]
    assert m1["test"]["accuracy"] == pytest.approx(m2["test"]["accuracy"], abs=2 / 64)
    with pytest.raises(ConfigError, match="multiple of --devices"):
        finetune(str(tmp_path / "base"), task, tmp_path / "three", load_finetune_recipe("quick", batch_size=32),
                 accelerator="cpu", devices=3, quiet=True)
