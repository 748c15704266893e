"""What `genomix finetune` and `genomix icl` refuse before any work is done, and say why: labels that
differ between splits or leave gaps, recipe values of the wrong type, row counts and learning rates that
are not positive, a GPU that is not there, a resume with other settings than the run's; and that a
pretrained checkpoint is fine-tuned in train mode (dropout on), and a resume is checked by the base model's
weights, not its path."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from genomix.cli import main
from genomix.errors import ConfigError, InputFormatError
from genomix.hub import save_native
from genomix.models import build
from genomix.tasks import ClassificationModule, FinetuneRecipe, finetune, load_finetune_recipe, load_task
from genomix.tasks.icl import load_icl_recipe
from genomix.train.recipe import load_recipe


def _table_task(root: Path, **splits: list[str]) -> Path:
    """A task folder with one ``sequence,label`` CSV per split, the given labels on short sequences."""
    root.mkdir(parents=True, exist_ok=True)
    for split, labels in splits.items():
        rows = "".join(f"{'ACGT'[i % 4] * 6}{'AC'[i % 2]},{label}\n" for i, label in enumerate(labels))
        (root / f"{split}.csv").write_text("sequence,label\n" + rows)
    return root


@pytest.mark.parametrize("splits, where, message", [
    ({"train": ["neg", "pos"], "dev": ["0", "1"], "test": ["0", "1"]}, "dev.csv", r"\['0', '1'\] do not occur"),
    ({"train": ["0.0", "1.0"], "dev": ["0", "1"]}, "train.csv", r"\['0.0', '1.0'\] are numbers but not plain integers"),
    ({"train": ["0", "1"], "dev": ["0", "1"], "test": ["0", "1", "2"]}, "test.csv", r"\['2'\] do not occur"),
    ({"train": ["0", "5", "0"], "test": ["5"]}, "train.csv", r"lack \[1, 2, 3, 4\]"),
    ({"train": ["1", "1"], "test": ["1"]}, "train.csv", "at least two classes"),
])
def test_labels_must_be_the_training_splits_and_integers_contiguous(tmp_path, splits, where, message):
    task = _table_task(tmp_path / "task", **splits)
    with pytest.raises(InputFormatError, match=message) as info:
        load_task(task)
    assert str(task / where) in str(info.value)


def test_a_class_folder_only_in_test_is_refused(tmp_path):
    for split, classes in (("train", ("negative", "positive")), ("test", ("negative", "other"))):
        for name in classes:
            (tmp_path / split / name).mkdir(parents=True)
            (tmp_path / split / name / "0.txt").write_text("ACGT\n")
    with pytest.raises(InputFormatError, match=r"test/other/: label\(s\) \['other'\] do not occur"):
        load_task(tmp_path)


def test_a_subset_of_the_training_labels_is_fine(tmp_path):
    task = load_task(_table_task(tmp_path / "t", train=["2", "0", "1"], dev=["1"], test=["0", "0"]))
    assert task.label_names == ["0", "1", "2"] and task.split("dev").labels.tolist() == [1]


@pytest.mark.parametrize("text, message", [
    ("steps: many\n", "field steps must be an integer, got 'many'"),
    ("lr: 0.0\n", "lr must be a positive learning rate"),
    ("test_rows: 0\n", "test_rows must be a positive integer"),
])
def test_icl_recipe_values_are_checked(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_icl_recipe(path)


@pytest.mark.parametrize("args", [
    ["finetune", "--train-rows", "-5"], ["finetune", "--train-rows", "0"], ["finetune", "--lr", "-1"],
    ["icl", "--test-rows", "0"], ["icl", "--test-rows", "-5"], ["icl", "--train-rows", "-5"],
    ["icl", "--recipe", "quick", "--lr", "-1"], ["icl", "--lr", "nan"],
])
def test_row_counts_and_learning_rates_must_be_positive(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as info:
        main(args + ["--model", "hyenadna-tiny-1k", "--task", str(tmp_path), "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    assert f"{args[-2]}: must be a positive" in capsys.readouterr().err


def test_a_bad_value_from_the_command_line_is_not_blamed_on_the_recipe_file(tmp_path, capsys):
    task = _table_task(tmp_path / "task", train=["0", "1"] * 4)
    with pytest.raises(SystemExit) as stop:  # the flag itself, as it is parsed
        main(["finetune", "--model", "hyenadna-tiny-1k", "--task", str(task), "--out", str(tmp_path / "o"),
              "--recipe", "quick", "--batch-size", "0"])
    assert stop.value.code == 2 and "argument --batch-size: must be a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"^\S+quick.yaml with batch_size=0 set over it: recipe field batch_size "
                                          r"must be a positive integer"):
        load_finetune_recipe("quick", batch_size=0)
    with pytest.raises(ConfigError, match=r"^\S+demo.yaml with max_steps=0 set over it: "):
        load_recipe("demo", max_steps=0)
    with pytest.raises(ConfigError, match=r"^\S+quick.yaml with test_rows=0 set over it: .*test_rows must be"):
        load_icl_recipe("quick", test_rows=0)


@pytest.fixture()
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("args", [["finetune", "--accelerator", "gpu"], ["icl", "--device", "cuda"],
                                  ["icl", "--device", "cuda:1"]])
def test_a_missing_gpu_is_a_clear_error(tmp_path, capsys, no_cuda, args):
    task = _table_task(tmp_path / "task", train=["0", "1"] * 4, test=["0", "1"])
    status = main(args + ["--model", "hyenadna-tiny-1k", "--task", str(task), "--out", str(tmp_path / "o"),
                          "--quiet"])
    assert status == 2
    assert "no CUDA device is available" in capsys.readouterr().err


@pytest.mark.parametrize("accelerator", ["cpu", "auto"])
def test_fp16_mixed_precision_on_the_cpu_is_refused_not_run_as_bf16(tmp_path, capsys, no_cuda, monkeypatch,
                                                                     accelerator):
    """Lightning would train in bf16-mixed while recipe.yaml recorded 16-mixed."""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    task = _table_task(tmp_path / "task", train=["0", "1"] * 4, test=["0", "1"])
    status = main(["finetune", "--model", "hyenadna-tiny-1k", "--task", str(task), "--out", str(tmp_path / "o"),
                   "--precision", "16-mixed", "--accelerator", accelerator, "--quiet"])
    assert status == 2
    assert "precision 16-mixed needs a GPU" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_device_that_is_no_device_is_refused(tmp_path, capsys):
    task = _table_task(tmp_path / "task", train=["0", "1"] * 4, test=["0", "1"])
    assert main(["icl", "--model", "hyenadna-tiny-1k", "--task", str(task), "--out", str(tmp_path / "o"),
                 "--device", "gpu0", "--quiet"]) == 2
    assert "'gpu0' is not a device" in capsys.readouterr().err


def test_a_misspelt_model_name_gets_close_matches(tmp_path, capsys):
    task = _table_task(tmp_path / "task", train=["0", "1"] * 4, test=["0", "1"])
    assert main(["finetune", "--model", "hyenadna-tiny-9k", "--task", str(task), "--out", str(tmp_path / "o"),
                 "--accelerator", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'hyenadna-tiny-1k'" in err and "Traceback" not in err


def _gue_rows(root: Path, rows: int = 32) -> Path:
    """The first ``rows`` rows of each split of a real GUE task."""
    source = Path(__file__).resolve().parents[2] / "shared" / "data" / "gue" / "prom" / "prom_core_tata"
    root.mkdir()
    for split in ("train", "dev", "test"):
        with gzip.open(source / f"{split}.csv.gz", "rt") as fh:
            (root / f"{split}.csv").write_text("".join(line for _, line in zip(range(rows + 1), fh)))
    return root


def test_a_checkpoint_trains_in_train_mode_and_resuming_needs_the_same_settings(tmp_path, monkeypatch):
    torch.manual_seed(0)
    checkpoint = save_native(build("hyenadna-tiny-1k", task="causal-lm").eval(), tmp_path / "ckpt")
    task = _gue_rows(tmp_path / "task")
    recipe = load_finetune_recipe("quick", max_epochs=1, batch_size=16)
    modes = []

    def training_step(self, batch, batch_idx):
        modes.append(self.model.training and all(m.training for m in self.model.modules()))
        return original(self, batch, batch_idx)

    original = ClassificationModule.training_step
    monkeypatch.setattr(ClassificationModule, "training_step", training_step)
    out = tmp_path / "run"
    finetune(str(checkpoint), task, out, recipe, accelerator="cpu", quiet=True)
    assert modes and all(modes)  # dropout is on while training

    saved = (out / "recipe.yaml").read_text()
    other = load_finetune_recipe("quick", max_epochs=1, batch_size=16)
    other.optim.lr = 0.01
    with pytest.raises(ConfigError, match=r"recipe optim.lr: 0.002 -> 0.01"):
        finetune(str(checkpoint), task, out, other, resume="auto", accelerator="cpu", quiet=True)
    with pytest.raises(ConfigError, match=r"another base model \(model: .*ckpt -> mamba-tiny-1k; weights: sha256:"):
        finetune("mamba-tiny-1k", task, out, recipe, resume="auto", accelerator="cpu", quiet=True)
    with pytest.raises(ConfigError, match=r"task_data: sha256:\w+ -> sha256:\w+; task: .*task -> .*other\)"):
        finetune(str(checkpoint), _gue_rows(tmp_path / "other", rows=24), out, recipe, resume="auto",
                 accelerator="cpu", quiet=True)
    assert (out / "recipe.yaml").read_text() == saved  # the run's settings are kept


def test_a_resume_may_train_longer_but_not_end_before_its_checkpoint(tmp_path, caplog):
    """--max-epochs below the checkpoint's epoch was Lightning's traceback, after recipe.yaml had been rewritten;
    a longer run is allowed, with the schedule's change said."""
    task = _gue_rows(tmp_path / "task")
    out = tmp_path / "run"
    finetune("hyenadna-tiny-1k", task, out, load_finetune_recipe("quick", max_epochs=2, batch_size=16),
             accelerator="cpu", quiet=True)
    saved = (out / "recipe.yaml").read_text()
    with pytest.raises(ConfigError, match=r"last.ckpt with max_epochs 1: it was saved in epoch 2; resume with "
                                          r"max_epochs \(--max-epochs\) 2 or more"):
        finetune("hyenadna-tiny-1k", task, out, load_finetune_recipe("quick", max_epochs=1, batch_size=16),
                 resume="auto", accelerator="cpu", quiet=True)
    assert (out / "recipe.yaml").read_text() == saved
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with caplog.at_level("INFO"):  # the same epochs: finished, nothing rewritten (a job script resuming always)
        again = finetune("hyenadna-tiny-1k", task, out, load_finetune_recipe("quick", max_epochs=2, batch_size=16),
                         resume="auto", accelerator="cpu", quiet=True)
    assert "already finished its 2 epochs" in caplog.text and again.metrics["test"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == files
    with caplog.at_level("WARNING"):
        result = finetune("hyenadna-tiny-1k", task, out, load_finetune_recipe("quick", max_epochs=3, batch_size=16),
                          resume="auto", accelerator="cpu", quiet=True)
    assert "resuming with max_epochs 3 instead of 2: the learning-rate schedule now spans 3 epochs" in caplog.text
    assert result.best_epoch in (0, 1, 2) and "max_epochs: 3" in (out / "recipe.yaml").read_text()
    (out / "metrics.json").write_text((out / "metrics.json").read_text().replace('"max_epochs": 3', '"max_epochs": 2'))
    with caplog.at_level("INFO"):  # as a 3-epoch resume of the 2-epoch run stopped before its end leaves it
        caplog.clear()
        finetune("hyenadna-tiny-1k", task, out, load_finetune_recipe("quick", max_epochs=3, batch_size=16),
                 resume="auto", accelerator="cpu", quiet=True)
    assert "already finished" not in caplog.text and '"max_epochs": 3' in (out / "metrics.json").read_text()


def test_train_rows_of_one_class_are_refused(tmp_path):
    task = _table_task(tmp_path / "task", train=["0"] * 4 + ["1"] * 4, test=["0", "1"])
    with pytest.raises(InputFormatError, match="first 3 rows of .*train.csv hold only one class"):
        finetune("hyenadna-tiny-1k", task, tmp_path / "o", load_finetune_recipe("quick", train_rows=3),
                 accelerator="cpu", quiet=True)


def test_the_task_folder_is_no_output_folder_and_a_task_without_test_is_warned_of(tmp_path, caplog):
    task = _table_task(tmp_path / "task", train=["0", "1"] * 8, dev=["0", "1"] * 2)
    recipe = load_finetune_recipe("quick", max_epochs=1, batch_size=8)
    with pytest.raises(ConfigError, match=r"task is the task folder; choose another --out"):
        finetune("hyenadna-tiny-1k", task, task, recipe, accelerator="cpu", quiet=True)
    assert sorted(path.name for path in task.iterdir()) == ["dev.csv", "train.csv"]
    with caplog.at_level("WARNING"):
        finetune("hyenadna-tiny-1k", task, tmp_path / "run", recipe, accelerator="cpu", quiet=True)
    assert "has no test split: metrics.json will hold the development split's metrics only" in caplog.text


def test_resume_takes_the_pretraining_resolver_a_file_that_is_no_checkpoint_is_refused(tmp_path):
    """Fine-tuning resolves --resume as pretraining does (one resolver): a recipe.yaml passed by mistake says it
    is not a checkpoint instead of torch.load's pickle error."""
    from genomix.errors import CheckpointError

    wrong = tmp_path / "recipe.yaml"
    wrong.write_text("lr: 1.0e-3\n")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        finetune("hyenadna-tiny-1k", tmp_path / "task", tmp_path / "run", load_finetune_recipe("quick"),
                 resume=wrong, accelerator="cpu", quiet=True)


def _finished_run(tmp_path: Path) -> tuple[Path, Path, Path, FinetuneRecipe]:
    """A one-epoch fine-tuning run of a saved checkpoint: (checkpoint, task, run folder, recipe). Resumed with the
    same recipe it is already finished, once the recipe, task and model pass their checks: the tests that follow it
    resume it for a second epoch (:func:`_one_more_epoch`)."""
    torch.manual_seed(0)
    checkpoint = save_native(build("hyenadna-tiny-1k", task="causal-lm"), tmp_path / "ckpt")
    task = _gue_rows(tmp_path / "task", rows=16)
    recipe = load_finetune_recipe("quick", max_epochs=1, batch_size=16)
    finetune(str(checkpoint), task, tmp_path / "run", recipe, accelerator="cpu", quiet=True)
    return checkpoint, task, tmp_path / "run", recipe


def _one_more_epoch(recipe: FinetuneRecipe) -> FinetuneRecipe:
    return load_finetune_recipe("quick", max_epochs=recipe.max_epochs + 1, batch_size=recipe.batch_size)


def test_a_run_does_not_resume_on_other_weights_saved_at_the_checkpoint_path(tmp_path):
    checkpoint, task, run, recipe = _finished_run(tmp_path)
    saved = (run / "recipe.yaml").read_text()
    torch.manual_seed(1)
    save_native(build("hyenadna-tiny-1k", task="causal-lm"), checkpoint)  # replaced in place
    with pytest.raises(ConfigError, match=r"another base model \(weights: sha256:\w+ -> sha256:\w+\)"):
        finetune(str(checkpoint), task, run, recipe, resume="auto", accelerator="cpu", quiet=True)
    assert (run / "recipe.yaml").read_text() == saved


def test_a_run_resumes_on_the_same_weights_moved_to_another_path(tmp_path, caplog):
    checkpoint, task, run, recipe = _finished_run(tmp_path)
    moved = checkpoint.rename(tmp_path / "elsewhere")
    with caplog.at_level("INFO", logger="genomix.resume"):
        finetune(str(moved), task, run, _one_more_epoch(recipe), resume="auto", accelerator="cpu", quiet=True)
    assert f"the interrupted run used {checkpoint}, which held the same weights as {moved}" in caplog.text
    assert f"# model: {moved}\n" in (run / "recipe.yaml").read_text()  # the run now names where the model is


def test_a_run_resumes_on_the_same_examples_anywhere_and_not_on_edited_ones(tmp_path, caplog):
    """The run records a fingerprint of its task's examples: a task file edited in place (same path, so the settings
    match) is refused with both fingerprints and changes nothing; the same rows gzipped in another folder resume,
    as the base model does by its weights; a run saved before the fingerprint was kept is held to its task's path."""
    checkpoint, task, run, recipe = _finished_run(tmp_path)
    saved = (run / "recipe.yaml").read_text()
    assert "# task_data: sha256:" in saved
    original = (task / "train.csv").read_text()
    (task / "train.csv").write_text(original.replace(",0\n", ",1\n", 1))  # one label flipped
    with pytest.raises(ConfigError, match=r"its task's examples differ from those the run started on \(task_data: "
                                          r"sha256:\w+ -> sha256:\w+\): the task's files were edited or replaced"):
        finetune(str(checkpoint), task, run, recipe, resume="auto", accelerator="cpu", quiet=True)
    assert (run / "recipe.yaml").read_text() == saved
    (task / "train.csv").write_text(original)
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in task.iterdir():  # the same rows, gzipped, in another folder
        (copy / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    with caplog.at_level("INFO", logger="genomix.tasks.identity"):
        finetune(str(checkpoint), copy, run, _one_more_epoch(recipe), resume="auto", accelerator="cpu", quiet=True)
    assert f"used the task {task}; {copy} holds the same examples" in caplog.text
    lines = (run / "recipe.yaml").read_text().splitlines(keepends=True)
    (run / "recipe.yaml").write_text("".join(line for line in lines if not line.startswith("# task_data: ")))
    with pytest.raises(ConfigError, match=rf"other settings \(task: {copy} -> {task}\)"):
        finetune(str(checkpoint), task, run, _one_more_epoch(recipe), resume="auto", accelerator="cpu", quiet=True)


def test_a_run_saved_without_a_fingerprint_resumes_on_its_model_path(tmp_path, caplog):
    """Runs written before fingerprints are checked by the model's path, as then, and gain one on resuming."""
    checkpoint, task, run, recipe = _finished_run(tmp_path)
    lines = (run / "recipe.yaml").read_text().splitlines(keepends=True)
    (run / "recipe.yaml").write_text("".join(line for line in lines if not line.startswith("# weights: ")))
    copy = shutil.copytree(checkpoint, tmp_path / "copy")
    with pytest.raises(ConfigError, match=rf"another base model \(model: {checkpoint} -> {copy}\)"):
        finetune(str(copy), task, run, recipe, resume="auto", accelerator="cpu", quiet=True)
    with caplog.at_level("WARNING", logger="genomix.resume"):
        finetune(str(checkpoint), task, run, _one_more_epoch(recipe), resume="auto", accelerator="cpu", quiet=True)
    assert "before genomix kept a fingerprint" in caplog.text
    assert "# weights: sha256:" in (run / "recipe.yaml").read_text()


def test_a_checkpoint_of_another_run_is_checked_like_the_runs_own(tmp_path, caplog):
    """An explicit --resume checkpoint is held to its own run's recipe, task and model, whatever --out is; one
    kept without its run is checked by its weights' shapes; a pretraining run's is named as such."""
    from genomix.errors import CheckpointError

    checkpoint, task, run, recipe = _finished_run(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    other_task = _table_task(tmp_path / "three", train=["0", "1", "2"] * 4, dev=["0", "1", "2"], test=["0", "1"])
    with pytest.raises(ConfigError, match=r"cannot resume .*run: its task's examples differ .*; task: .*three\)"):
        finetune(str(checkpoint), other_task, tmp_path / "new", recipe, resume=last, accelerator="cpu", quiet=True)
    loose = tmp_path / "loose.ckpt"
    shutil.copy(last, loose)
    with caplog.at_level("WARNING", logger="genomix.tasks.finetune"):
        with pytest.raises(CheckpointError, match=r"weights do not fit .*score\.proj\.weight: \(2, 128\) there, "
                                                  r"\(3, 128\) here"):
            finetune(str(checkpoint), other_task, tmp_path / "new", recipe, resume=loose, accelerator="cpu",
                     quiet=True)
    assert "without checking that it was made with this recipe" in caplog.text
    pretraining = tmp_path / "p1"
    (pretraining / "checkpoints").mkdir(parents=True)
    (pretraining / "recipe.yaml").write_text("global_batch: 8\nmax_steps: 2\n")
    shutil.copy(last, pretraining / "checkpoints" / "last.ckpt")
    with pytest.raises(CheckpointError, match=rf"checkpoint of a pretraining run .*--model {pretraining / 'model'}"):
        finetune(str(checkpoint), task, tmp_path / "new", recipe, resume=pretraining / "checkpoints" / "last.ckpt",
                 accelerator="cpu", quiet=True)
    with pytest.raises(ConfigError, match="holds a pretraining run, not a fine-tuning run"):
        finetune(str(checkpoint), task, pretraining, recipe, accelerator="cpu", quiet=True)
