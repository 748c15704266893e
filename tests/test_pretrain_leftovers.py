"""What a refused ``genomix pretrain`` leaves behind: nothing. Several devices on a machine without a GPU are
refused up front unless the CPU accelerator is asked for by name (Lightning would start that many CPU
processes), and a run refused for its genome data (hg38 not downloadable offline) leaves no empty ``--out``
folder, while an ``--out`` that was there already is left as it was. A file where ``--out`` or a folder above it
should be is refused before the genome is read.

What a stopped or finished run keeps: Ctrl-C lets the step in progress finish and saves it (a resume goes on as if
uninterrupted), a second Ctrl-C during that save keeps the previous checkpoint, and ``--resume auto`` on a finished
run says so and changes nothing. The valid split is tiled once per window length, not again at each validation."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_pretrain import TINY_HYENA, metric_rows, tiny_recipe, train_rows

from genomix.cli import main
from genomix.devices import require_devices
from genomix.errors import ConfigError, InputFormatError
from genomix.genome import GenomeSpec, WindowDataset, prepare_genome
from genomix.train import callbacks, load_recipe, pretrain
from genomix.train.checkpoint_io import AtomicCheckpointIO
from genomix.train.data import GenomeDataModule
from genomix.train.warmup import plan_warmup


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine has no CUDA GPU, whatever the one running the tests has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_several_devices_without_a_gpu_need_the_cpu_accelerator_by_name(tmp_path, no_gpu, capsys):
    # the genome is missing, so that a run the devices do not stop is refused for its data instead of training
    base = ["pretrain", "--genome", str(tmp_path / "missing.h5"), "--quiet"]
    assert main([*base, "--devices", "4", "--out", str(tmp_path / "auto")]) == 2
    err = capsys.readouterr().err
    assert "--devices 4: no CUDA GPU was found on this machine" in err and "pass --accelerator cpu" in err
    assert not (tmp_path / "auto").exists()
    assert main([*base, "--accelerator", "cpu", "--devices", "4", "--out", str(tmp_path / "cpu")]) == 2
    assert "missing.h5 does not exist" in capsys.readouterr().err  # past the device check: DDP on CPU as before


def test_fp16_mixed_precision_on_the_cpu_is_refused_before_the_genome_is_read(tmp_path, no_gpu, capsys):
    """Lightning would train in bf16-mixed while recipe.yaml recorded 16-mixed."""
    assert main(["pretrain", "--genome", str(tmp_path / "missing.h5"), "--precision", "16-mixed", "--accelerator",
                 "cpu", "--quiet", "--out", str(tmp_path / "run")]) == 2
    assert "precision 16-mixed needs a GPU" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_max_steps_past_the_schedule_is_said_before_the_run(tmp_path, caplog):
    base = ["pretrain", "--genome", str(tmp_path / "missing.h5"), "--accelerator", "cpu", "--quiet"]
    assert main([*base, "--max-steps", "40", "--out", str(tmp_path / "short")]) == 2  # stopping early: silent
    assert "schedule" not in caplog.text
    assert main([*base, "--max-steps", "1000", "--out", str(tmp_path / "long")]) == 2  # the demo schedule is 90
    assert "max_steps 1000 goes past the learning-rate schedule, which ends at step 90" in caplog.text
    assert "set schedule_steps in the recipe" in caplog.text


@pytest.mark.parametrize("devices, accelerator, gpu", [(1, "auto", False), ("auto", "auto", False),
                                                        (4, "cpu", False), (4, "auto", True), ("4", "gpu", True)])
def test_devices_a_machine_can_run_pass(devices, accelerator, gpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8 if gpu else 0)
    require_devices(devices, accelerator)


@pytest.mark.parametrize("devices, accelerator, message", [
    ("2", "auto", "--devices 2: no CUDA GPU was found"), (1, "gpu", "--accelerator gpu: no CUDA device")])
def test_devices_a_machine_without_a_gpu_cannot_run_are_refused(devices, accelerator, message, no_gpu):
    with pytest.raises(ConfigError, match=message):
        require_devices(devices, accelerator)


@pytest.fixture
def offline_hg38(monkeypatch) -> None:
    """hg38 as the registry names it, at a host that cannot be reached (a machine without network)."""
    from genomix.genome import download, registry

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    spec = GenomeSpec(name="hg38", url=f"http://127.0.0.1:{port}/hg38.fa.gz", md5="0" * 32)
    monkeypatch.setattr(registry, "known_genomes", lambda: {"hg38": spec})
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)


@pytest.mark.parametrize("existing", [None, [], ["notes.txt"]], ids=["new", "existing-empty", "existing-with-files"])
def test_a_run_refused_for_its_data_leaves_no_output_folder_and_keeps_an_existing_one(
        tmp_path, offline_hg38, capsys, existing):
    out = tmp_path / "runs" / "hg38"
    if existing is not None:
        out.mkdir(parents=True)
        for name in existing:
            (out / name).write_text("the user's own\n")
    code = main(["pretrain", "--recipe", "hyenadna-hg38", "--cache-dir", str(tmp_path / "cache"),
                 "--accelerator", "cpu", "--out", str(out), "--quiet"])
    assert code == 2 and "could not reach 127.0.0.1" in capsys.readouterr().err
    if existing is None:
        assert not (tmp_path / "runs").exists()
    else:
        assert sorted(path.name for path in out.iterdir()) == existing
        assert all((out / name).read_text() == "the user's own\n" for name in existing)


@pytest.mark.parametrize("at", ["out", "parent"])
def test_an_out_under_a_file_is_refused_before_the_genome_is_read(tmp_path, monkeypatch, capsys, caplog, at):
    from genomix.train import run

    def resolve_store(*args, **kwargs):
        raise AssertionError("resolved")

    monkeypatch.setattr(run, "resolve_store", resolve_store)
    blocker = tmp_path / "afile"
    blocker.write_text("mine\n")
    out = blocker if at == "out" else blocker / "run"
    refusal = f"cannot create the output folder {out}: {blocker} is a file, not a folder; choose another --out"
    for resume in ([], ["--resume", "auto"]):
        assert main(["pretrain", "--accelerator", "cpu", "--out", str(out), "--quiet", *resume]) == 2
        err = capsys.readouterr().err
        assert refusal in err and "Traceback" not in err
    assert "starting a fresh run" not in caplog.text  # refused before --resume auto looks for a checkpoint
    with pytest.raises(InputFormatError, match=f"^{re.escape(refusal)}$"):  # the library refuses it as early
        pretrain(load_recipe("demo"), out, accelerator="cpu", resume="auto", quiet=True)
    assert [p.name for p in tmp_path.iterdir()] == ["afile"] and blocker.read_text() == "mine\n"


@pytest.mark.parametrize("flag, value, message", [
    ("--devices", "0", "argument --devices: must be 'auto' or a positive integer, got 0"),
    ("--devices", "two", "argument --devices: must be 'auto' or a positive integer, got 'two'"),
    ("--seed", "-5", "argument --seed: must be an integer from 0 to 4294967295, got -5")])
def test_devices_and_seeds_lightning_cannot_take_are_refused_by_the_parser(tmp_path, capsys, flag, value, message):
    # Lightning ended these in a traceback (devices) or numpy did (seed_everything), after the genome was read
    with pytest.raises(SystemExit) as exit_:
        main(["pretrain", "--genome", str(tmp_path / "missing.h5"), "--accelerator", "cpu", flag, value,
              "--out", str(tmp_path / "run"), "--quiet"])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_recipe_seed_numpy_cannot_take_is_refused(tmp_path):
    path = tmp_path / "negative.yaml"
    path.write_text("seed: -1\n")
    with pytest.raises(ConfigError, match=r"negative.yaml: recipe field seed must be an integer from 0 to 4294967295"):
        load_recipe(path)


def test_fasta_files_of_one_stem_in_two_folders_are_refused_by_name(tmp_path):
    from genomix.train.data import resolve_store

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.fa").write_text(">chr1\n" + "ACGT" * 50 + "\n")
    files = [str(tmp_path / "a" / "x.fa"), str(tmp_path / "b" / "x.fa")]
    with pytest.raises(ConfigError, match=r"several FASTA files share a file stem: .*a/x.fa, .*b/x.fa \(stem 'x'\)"):
        resolve_store(files, cache=tmp_path / "cache", quiet=True)


def test_a_genome_shorter_than_the_window_is_refused_before_the_run_starts(tmp_path, capsys):
    fasta = tmp_path / "short.fa"
    fasta.write_text(">chrS\n" + "ACGT" * 125 + "\n")  # 500 bases: its 25-base valid split is padded with N
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_overrides: {d_model: 16, d_inner: 32}\nseq_len: 256\nglobal_batch: 2\n"
                      "micro_batch_tokens: 512\nwarmup: {start_seq_len: 128}\n")
    out = tmp_path / "run"
    assert main(["pretrain", "--recipe", str(recipe), "--genome", str(fasta), "--accelerator", "cpu",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "split 'valid': every 128-base tile" in err and "a short genome needs a shorter --seq-len" in err
    assert not out.exists()  # refused before the output folder, the model and the trainer


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> Path:
    return Path(prepare_genome("demo", cache=tmp_path_factory.mktemp("cache"), quiet=True))


def ctrl_c_at_step(monkeypatch, step: int, signum: int = signal.SIGINT) -> None:
    """A real Ctrl-C (SIGINT to this process; or ``signum``) once, at the first micro-batch of optimiser step
    ``step + 1``."""
    sent = []

    def press(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == step and not sent:
            sent.append(step)
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(callbacks.ThroughputMonitor, "on_train_batch_start", press, raising=False)


def saved_step(out: Path) -> int:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_finishes_the_step_saves_it_and_a_resume_matches_the_uninterrupted_run(tmp_path, demo_store,
                                                                                      monkeypatch, capsys, signum):
    # no periodic checkpoint in this run: whatever is kept, the Ctrl-C saved (or SIGTERM: a batch scheduler's
    # time limit or pre-emption)
    recipe = tiny_recipe(tmp_path, demo_store, checkpoint_every=10)
    full = tmp_path / "full"
    assert main(["pretrain", "--recipe", str(recipe), "--out", str(full), "--quiet"]) == 0
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        ctrl_c_at_step(patch, 2, signum)  # during step 3, the first of the 128-base stage (two micro-batches a step)
        assert main(["pretrain", "--recipe", str(recipe), "--out", str(out), "--quiet"]) == 130
    last = out / "checkpoints" / "last.ckpt"
    assert f"stopped at step 3; its state is saved in {last}: the same command with --resume auto" in \
        capsys.readouterr().err
    assert saved_step(out) == 3 and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not (out / "model").exists()  # the run is not finished: no final model
    assert main(["pretrain", "--recipe", str(recipe), "--out", str(out), "--quiet", "--resume", "auto"]) == 0
    rows = train_rows(out)
    assert [int(r["step"]) for r in rows] == list(range(5))  # the stop's step logged once, none repeated
    assert [r["train/loss"] for r in rows] == [r["train/loss"] for r in train_rows(full)]  # bit-identical


def test_sigterm_during_validation_saves_when_it_ends_and_a_resume_matches_the_uninterrupted_run(
        tmp_path, demo_store, monkeypatch, capsys):
    """A batch scheduler's SIGTERM during the epoch-end validation (after step 2) saves that state as soon as the
    validation ends, not after one more step; the resume neither repeats the validation nor a step. During the
    last validation (after the last step) the run just finishes, with its model."""
    recipe = tiny_recipe(tmp_path, demo_store, checkpoint_every=10)
    full = tmp_path / "full"
    assert main(["pretrain", "--recipe", str(recipe), "--out", str(full), "--quiet"]) == 0
    sent = []

    def terminate_at(step):
        def terminate(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            if trainer.global_step == step and not trainer.sanity_checking and not sent:
                sent.append(batch_idx)
                os.kill(os.getpid(), signal.SIGTERM)
        return terminate

    last = tmp_path / "last"
    last.mkdir()
    with monkeypatch.context() as patch:
        patch.setattr(callbacks.ThroughputMonitor, "on_validation_batch_start", terminate_at(4), raising=False)
        recipe_to_4 = tiny_recipe(last, demo_store, checkpoint_every=10, max_steps=4)
        assert main(["pretrain", "--recipe", str(recipe_to_4), "--out", str(last / "run"), "--quiet"]) == 0
    assert sent == [0] and (last / "run" / "model").is_dir()
    sent.clear()
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(callbacks.ThroughputMonitor, "on_validation_batch_start", terminate_at(2), raising=False)
        assert main(["pretrain", "--recipe", str(recipe), "--out", str(out), "--quiet"]) == 130
    assert sent == [0] and "stopped at step 2" in capsys.readouterr().err
    assert saved_step(out) == 2 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert main(["pretrain", "--recipe", str(recipe), "--out", str(out), "--quiet", "--resume", "auto"]) == 0
    assert [(r["step"], r["train/loss"]) for r in train_rows(out)] == [(r["step"], r["train/loss"]) for r in train_rows(full)]
    validations = lambda run: [(r["step"], r["val/loss"]) for r in metric_rows(run) if r.get("val/loss")]  # noqa: E731
    assert validations(out) == validations(full)


# ``genomix`` with a Ctrl-C (SIGINT; or the signal $STOP_SIGNAL names) to rank 1 alone at the first micro-batch of
# step 3. Lightning starts rank 1 by running this script again with the same arguments, so the patch is in every
# process.
CTRL_C_TO_RANK_1 = """import os, signal, sys
from genomix.cli import main
from genomix.train import callbacks

def press(self, trainer, pl_module, batch, batch_idx):
    if trainer.global_rank == 1 and trainer.global_step == 2 and not getattr(self, "pressed", False):
        self.pressed = True
        os.kill(os.getpid(), getattr(signal, os.environ.get("STOP_SIGNAL", "SIGINT")))

callbacks.ThroughputMonitor.on_train_batch_start = press
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("accelerator, stop_signal", [
    ("cpu", "SIGINT"), ("cpu", "SIGTERM"),
    pytest.param("gpu", "SIGINT", marks=[pytest.mark.gpu, pytest.mark.skipif(torch.cuda.device_count() < 2,
                                                                               reason="needs two CUDA GPUs")])])
def test_ctrl_c_to_one_of_two_processes_saves_the_step_in_progress_and_a_resume_matches(tmp_path, demo_store,
                                                                                       accelerator, stop_signal):
    """Two processes (gloo on CPUs, NCCL on GPUs): the process that did not see Ctrl-C (or SIGTERM, as a batch
    scheduler sends) stops at the same step, both take part in saving it, and a resume trains on as if
    uninterrupted."""
    overrides = dict(TINY_HYENA, embed_dropout=0.0)
    recipe = tiny_recipe(tmp_path, demo_store, model_overrides=overrides, global_batch=4, checkpoint_every=10)
    driver = tmp_path / "ctrl_c_to_rank_1.py"
    driver.write_text(CTRL_C_TO_RANK_1)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "STOP_SIGNAL": stop_signal}

    def pretrain_on_two(out: Path, *flags: str, script: list[str]) -> subprocess.CompletedProcess:
        command = [sys.executable, *script, "pretrain", "--recipe", str(recipe), "--out", str(out), "--quiet",
                   "--devices", "2", "--accelerator", accelerator, "--strategy", "ddp", *flags]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    full, out = tmp_path / "full", tmp_path / "run"
    assert pretrain_on_two(full, script=["-m", "genomix"]).returncode == 0
    stopped = pretrain_on_two(out, script=[str(driver)])
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    last = out / "checkpoints" / "last.ckpt"
    assert f"stopped at step 3; its state is saved in {last}" in stopped.stderr
    assert saved_step(out) == 3
    resumed = pretrain_on_two(out, "--resume", "auto", script=["-m", "genomix"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = train_rows(out)
    assert [int(r["step"]) for r in rows] == list(range(5))
    assert [r["train/loss"] for r in rows] == [r["train/loss"] for r in train_rows(full)]


def test_ctrl_c_during_the_save_keeps_the_previous_checkpoint(tmp_path, demo_store, monkeypatch, capsys):
    recipe = tiny_recipe(tmp_path, demo_store, checkpoint_every=2)
    out = tmp_path / "run"
    save = AtomicCheckpointIO.save_checkpoint

    def second_ctrl_c(self, checkpoint, path, storage_options=None):
        if checkpoint["global_step"] == 3:  # the save the first Ctrl-C asked for
            torch.save = interrupted_save
        try:
            save(self, checkpoint, path, storage_options)
        finally:
            torch.save = real_save

    def interrupted_save(obj, fh):
        fh.write(b"partial")
        raise KeyboardInterrupt

    real_save = torch.save
    with monkeypatch.context() as patch:
        ctrl_c_at_step(patch, 2)
        patch.setattr(AtomicCheckpointIO, "save_checkpoint", second_ctrl_c)
        assert main(["pretrain", "--recipe", str(recipe), "--out", str(out), "--quiet"]) == 130
    last = out / "checkpoints" / "last.ckpt"
    assert f"the last checkpoint, {last}, is kept: the same command with --resume auto continues from it at step 2" \
        in capsys.readouterr().err
    assert saved_step(out) == 2 and sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt", "model"]


def test_resume_auto_on_a_finished_run_changes_nothing_unless_more_steps_are_asked(tmp_path, demo_store, capsys):
    recipe = tiny_recipe(tmp_path, demo_store, max_steps=2)
    out = tmp_path / "run"
    command = ["pretrain", "--recipe", str(recipe), "--out", str(out), "--quiet", "--resume", "auto"]
    assert main(command) == 0
    capsys.readouterr()

    def files() -> dict[Path, int]:
        return {path: path.stat().st_mtime_ns for path in out.rglob("*")}

    before = files()
    assert main(command) == 0
    assert files() == before  # no file written, none added (no new log version either)
    said = capsys.readouterr().out
    assert f"the run in {out} already finished at step 2 (max_steps 2); its final model is {out / 'model'}" in said
    assert "pass a larger --max-steps to train further" in said
    assert main([*command, "--max-steps", "3"]) == 0  # more steps asked: the run goes on
    assert saved_step(out) == 3 and "model saved to" in capsys.readouterr().out
    assert json.loads((out / "model" / "trainer_state.json").read_text()) == {"global_step": 3}


def test_a_run_that_ends_between_validations_says_which_step_its_numbers_are_from(tmp_path, demo_store, capsys):
    """Two steps per epoch and max_steps 3: the last validation was at step 2, which the report printed as if
    it were the final model's."""
    recipe = tiny_recipe(tmp_path, demo_store, max_steps=3)
    assert main(["pretrain", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "last validation at step 2; the run ended at step 3, between validations\nval/loss: " in said
    assert main(["pretrain", "--recipe", str(tiny_recipe(tmp_path, demo_store, max_steps=4)), "--out",
                 str(tmp_path / "even"), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "val/loss: " in said and "between validations" not in said


def test_a_copied_finished_run_is_still_finished_whatever_its_file_times(tmp_path, demo_store, capsys):
    """A copy (``cp -r``, a restore from backup) gives its files new times in no set order: the final model is
    told by the step it records, not by being newer than the checkpoint."""
    recipe = tiny_recipe(tmp_path, demo_store, max_steps=2)
    out, copy = tmp_path / "run", tmp_path / "copy"
    assert main(["pretrain", "--recipe", str(recipe), "--out", str(out), "--quiet"]) == 0
    shutil.copytree(out, copy, copy_function=shutil.copy)  # contents, not times
    checkpoint = copy / "checkpoints" / "last.ckpt"
    for path in (copy / "model").iterdir():  # the model now looks older than the checkpoint
        os.utime(path, ns=(checkpoint.stat().st_mtime_ns - 10**9,) * 2)
    capsys.readouterr()
    assert main(["pretrain", "--recipe", str(recipe), "--out", str(copy), "--quiet", "--resume", "auto"]) == 0
    assert f"the run in {copy} already finished at step 2 (max_steps 2)" in capsys.readouterr().out
    (copy / "model" / "trainer_state.json").unlink()  # exported by an earlier genomix: the export is redone
    assert main(["pretrain", "--recipe", str(recipe), "--out", str(copy), "--quiet", "--resume", "auto"]) == 0
    assert "model saved to" in capsys.readouterr().out
    assert json.loads((copy / "model" / "trainer_state.json").read_text()) == {"global_step": 2}


def test_a_resume_without_max_steps_past_the_recipes_end_is_refused_not_finished(tmp_path, demo_store, monkeypatch,
                                                                                 capsys):
    recipe = tiny_recipe(tmp_path, demo_store, max_steps=2, checkpoint_every=10)
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        ctrl_c_at_step(patch, 3)
        assert main(["pretrain", "--recipe", str(recipe), "--max-steps", "5", "--out", str(out), "--quiet"]) == 130
    assert saved_step(out) == 4
    capsys.readouterr()
    assert main(["pretrain", "--resume", "auto", "--out", str(out), "--quiet"]) == 2  # the recipe's end is step 2
    err = capsys.readouterr().err
    assert "holds step 4, past this run's max_steps 2" in err and "--max-steps 4 to finish the run where it is" in err
    assert not (out / "model").exists() and saved_step(out) == 4  # not exported as if finished
    assert main(["pretrain", "--resume", "auto", "--max-steps", "5", "--out", str(out), "--quiet"]) == 0
    assert saved_step(out) == 5 and (out / "model").is_dir()


def test_the_valid_split_is_tiled_once_per_window_length(demo_store, monkeypatch):
    recipe = load_recipe("demo")
    stages = plan_warmup(256, 2, 256, 1, 64, 1)  # 64 -> 128 -> 256, one epoch each
    made = Counter()
    new = WindowDataset.__init__

    def counting(self, store, length, split="train", *args, mode="random", **kwargs):
        made[split, length] += 1
        new(self, store, length, split, *args, mode=mode, **kwargs)

    monkeypatch.setattr(WindowDataset, "__init__", counting)
    data = GenomeDataModule(demo_store, recipe.data, stages, "causal-lm", steps_per_epoch=2, seed=3, val_windows=4)
    data.check_windows()
    assert made == {(split, length): 1 for split in ("train", "valid") for length in (64, 128, 256)}
    for epoch in (0, 1, 2, 3, 1):  # every stage, the last one twice, and a resume into an earlier epoch
        data.trainer = SimpleNamespace(current_epoch=epoch, global_rank=0, world_size=1)
        train, valid = data.train_dataloader(), data.val_dataloader()
        stage = stages[min(epoch, len(stages) - 1)]
        assert train.dataset.length == valid.dataset.dataset.length == stage.seq_len
        assert train.dataset.epoch == epoch and valid.dataset.dataset.epoch == 0
    assert made == {(split, length): 1 for split in ("train", "valid") for length in (64, 128, 256)}


def test_the_last_step_is_always_logged_even_in_a_run_shorter_than_log_every(tmp_path, demo_store):
    """A run shorter than log_every and its first validation (a smoke test, a quick look) ended without a single
    row in its metrics.csv; the last optimiser step is now logged whatever the interval."""
    recipe = tiny_recipe(tmp_path, demo_store, max_steps=1, log_every=10)
    pretrain(load_recipe(recipe), tmp_path / "short", quiet=True)
    assert [row["step"] for row in train_rows(tmp_path / "short")] == ["0"]
    recipe = tiny_recipe(tmp_path, demo_store, max_steps=3, log_every=2, steps_per_epoch=4)
    pretrain(load_recipe(recipe), tmp_path / "odd", quiet=True)
    assert [row["step"] for row in train_rows(tmp_path / "odd")] == ["1", "2"]  # every 2nd step, and the last
