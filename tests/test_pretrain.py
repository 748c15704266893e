"""End-to-end pretraining on the bundled demo genome (real human sequence), tiny models, CPU.

Covers the acceptance of issue 7: a few steps of every backbone family, loss going down on real data,
sequence-length warm-up changing length/batch/accumulation, a resumed run reproducing the uninterrupted
run's loss curve exactly, the non-finite guard keeping the last good checkpoint, and the final model
loading with ``genomix.from_pretrained``.
"""
from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import nn

import genomix
from genomix.cli import main as cli_main
from genomix.errors import CheckpointError, ConfigError, TrainingError
from genomix.genome import open_store, prepare_genome
from genomix.train import load_recipe, pretrain
from genomix.train import run as run_module

TINY_HYENA = {"d_model": 32, "d_inner": 64, "n_layer": 2, "max_seq_len": 258, "filter_order": 16, "embed_dropout": 0.1}


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> Path:
    return Path(prepare_genome("demo", cache=tmp_path_factory.mktemp("cache"), quiet=True))


def tiny_recipe(tmp_path: Path, store: Path, **fields) -> Path:
    """A recipe YAML: 256-base windows after a 64 -> 128 -> 256 warm-up, two steps per epoch."""
    recipe = {
        "task": "causal-lm", "model": "hyenadna-tiny-1k", "model_overrides": TINY_HYENA,
        "seq_len": 256, "global_batch": 2, "micro_batch_tokens": 256, "steps_per_epoch": 2,
        "max_steps": 5, "seed": 3, "precision": "32-true", "checkpoint_every": 1, "val_windows": 4,
        "log_every": 1, "optim": {"lr": 3e-3, "warmup_fraction": 0.1},
        "warmup": {"start_seq_len": 64, "stage_epochs": 1},
        "data": {"genome": str(store), "rc_aug": True, "max_n_fraction": 0.1},
    }
    recipe.update(fields)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def metric_rows(out: Path) -> list[dict[str, str]]:
    """Every CSV metrics row of a run folder, run segments (first run, resumes) in order."""
    rows = []
    versions = sorted((out / "logs" / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    for version in versions:
        with open(version / "metrics.csv") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def train_rows(out: Path) -> list[dict[str, str]]:
    return [r for r in metric_rows(out) if r.get("train/loss")]


def assert_same_weights(model: nn.Module, ckpt_path: Path) -> None:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    params = dict(model.named_parameters())
    assert params and all(f"model.{name}" in ckpt for name in params)
    for name, value in params.items():
        torch.testing.assert_close(value.detach(), ckpt[f"model.{name}"], rtol=0, atol=0)


def test_resume_after_stop_reproduces_the_uninterrupted_run(tmp_path, demo_store):
    recipe = tiny_recipe(tmp_path, demo_store)
    full = pretrain(load_recipe(recipe), tmp_path / "full", quiet=True)
    # warm-up: 64 -> 128 -> 256 at 512 tokens per step; micro-batches capped at 256 tokens
    plan = [(s.seq_len, s.micro_batch, s.accumulate, s.global_batch) for s in full.stages]
    assert plan == [(64, 4, 2, 8), (128, 2, 2, 4), (256, 1, 2, 2)]
    rows = train_rows(tmp_path / "full")
    assert [int(r["step"]) for r in rows] == list(range(5))
    assert [float(r["train/seq_len"]) for r in rows] == [64, 64, 128, 128, 256]

    # the same run stopped after 3 optimiser steps (mid-epoch, inside the 128 stage), then resumed
    # through the next stage change
    assert cli_main(["pretrain", "--recipe", str(recipe), "--out", str(tmp_path / "cut"), "--quiet", "--max-steps", "3"]) == 0
    first = train_rows(tmp_path / "cut")
    assert len(first) == 3
    # every checkpoint comes with its weights in save_pretrained form
    assert_same_weights(genomix.from_pretrained(tmp_path / "cut" / "checkpoints" / "model"),
                        tmp_path / "cut" / "checkpoints" / "last.ckpt")
    cut = tmp_path / "cut"
    assert cli_main(["pretrain", "--recipe", str(recipe), "--out", str(cut), "--quiet"]) == 2  # not over a run
    assert cli_main(["pretrain", "--recipe", str(recipe), "--out", str(cut), "--quiet", "--resume", "auto",
                     "--seed", "4"]) == 2  # another run's settings
    # `--resume auto --out DIR` alone continues the run as it was made (its genome, not the demo default)
    assert cli_main(["pretrain", "--out", str(cut), "--quiet", "--resume", "auto", "--max-steps", "4"]) == 0
    assert yaml.safe_load((cut / "recipe.yaml").read_text())["data"]["genome"] == str(demo_store)
    # the first command again, as a requeued job would run it, goes on to the recipe's end
    assert cli_main(["pretrain", "--recipe", str(recipe), "--out", str(cut), "--quiet", "--resume", "auto"]) == 0
    resumed = train_rows(cut)
    assert [int(r["step"]) for r in resumed] == list(range(5))
    assert [r["train/loss"] for r in resumed] == [r["train/loss"] for r in rows]  # bit-identical
    assert [p.name for p in (cut / "checkpoints").glob("last*.ckpt")] == ["last.ckpt"]  # no epoch-finished copies

    # the final model loads with from_pretrained and equals the trained weights
    loaded = genomix.from_pretrained(full.model_dir)
    assert_same_weights(loaded, full.checkpoint)
    loaded.eval()
    ids = torch.randint(7, 11, (1, 200))
    assert loaded(ids).logits.shape[:2] == (1, 200)


def test_a_run_stopped_between_periodic_checkpoints_keeps_one_last_checkpoint(tmp_path, demo_store):
    """The step-limit checkpoint is written mid-epoch; the periodic callback must not add an epoch-finished
    ``last-v1.ckpt`` beside it (resuming from that copy would skip the rest of the epoch)."""
    recipe = tiny_recipe(tmp_path, demo_store, checkpoint_every=10, max_steps=3)
    out = tmp_path / "run"
    assert cli_main(["pretrain", "--recipe", str(recipe), "--out", str(out), "--quiet"]) == 0
    assert [p.name for p in (out / "checkpoints").glob("last*.ckpt")] == ["last.ckpt"]
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3


def test_ctrl_c_says_what_was_kept_and_how_to_continue(tmp_path, demo_store, monkeypatch, capsys):
    """Lightning turns Ctrl-C into a silent exit(1); the command says where the run stopped and how to resume."""
    import signal

    from genomix.train import callbacks

    def interrupt(self, trainer, *args):
        if trainer.global_step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.ThroughputMonitor, "on_train_batch_end", interrupt)
    recipe = tiny_recipe(tmp_path, demo_store)
    assert cli_main(["pretrain", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 130
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert f"stopped at step 2; the last checkpoint, {last}, is kept" in capsys.readouterr().err and last.is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_before_the_first_checkpoint_says_nothing_is_kept(tmp_path, demo_store, monkeypatch, capsys, caplog):
    """Stopped before its first checkpoint, a run promises none; ``--resume auto`` then starts afresh, saying so once."""
    from genomix.train import callbacks

    def interrupt(self, trainer, *args):
        raise KeyboardInterrupt

    recipe = tiny_recipe(tmp_path, demo_store, checkpoint_every=10)
    with monkeypatch.context() as patch:
        patch.setattr(callbacks.ThroughputMonitor, "on_train_batch_end", interrupt)
        assert cli_main(["pretrain", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 130
    assert ", before the run wrote a checkpoint: nothing is kept" in capsys.readouterr().err
    with caplog.at_level("INFO", logger="genomix.train.run"):
        assert cli_main(["pretrain", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--quiet", "--resume",
                         "auto", "--max-steps", "1"]) == 0
    assert caplog.text.count("starting a fresh run") == 1


def test_resuming_into_another_runs_folder_is_refused_and_overwrites_nothing(tmp_path, demo_store):
    """--resume A --out B trained on and replaced B's recipe, checkpoints and model without a word; continuing
    into a new folder is fine."""
    recipe = load_recipe(tiny_recipe(tmp_path, demo_store, max_steps=1))
    pretrain(recipe, tmp_path / "a", quiet=True)
    pretrain(recipe, tmp_path / "b", quiet=True)
    before = {p: p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=r"b holds another run, which continuing .*a there would overwrite; continue "
                                          r"it in its own folder \(--out .*a\) or in a new one"):
        pretrain(recipe, tmp_path / "b", resume=tmp_path / "a" / "checkpoints" / "last.ckpt", quiet=True)
    assert {p: p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()} == before
    result = pretrain(recipe, tmp_path / "c", resume=tmp_path / "a" / "checkpoints" / "last.ckpt", quiet=True)
    assert result.model_dir == tmp_path / "c" / "model"


def test_a_checkpoint_of_another_kind_or_size_of_model_is_refused_by_name(tmp_path, demo_store, capsys):
    """A fine-tuning run's folder or checkpoint is named as such, not read as a pretraining recipe; a checkpoint of
    another model size is a CheckpointError naming the weights that differ, not Lightning's size mismatch."""
    run = tmp_path / "ft"
    (run / "checkpoints").mkdir(parents=True)
    (run / "recipe.yaml").write_text("batch_size: 8\nmax_epochs: 1\n")
    torch.save({"state_dict": {}}, run / "checkpoints" / "last.ckpt")
    assert cli_main(["pretrain", "--resume", str(run / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "x"),
                     "--quiet"]) == 2
    assert "it is a checkpoint of a fine-tuning run" in capsys.readouterr().err
    recipe = tiny_recipe(tmp_path, demo_store, max_steps=1)
    pretrain(load_recipe(recipe), tmp_path / "small", quiet=True)
    wider = load_recipe(recipe)
    wider.model_overrides = {**TINY_HYENA, "d_model": 48}
    with pytest.raises(CheckpointError, match=r"its weights do not fit .*\(16, 32\) there, \(16, 48\) here"):
        pretrain(wider, tmp_path / "wide", resume=tmp_path / "small" / "checkpoints" / "last.ckpt", quiet=True)


def test_a_resume_on_another_data_split_is_refused_before_anything_is_written(tmp_path, demo_store, caplog):
    """A checkpoint records the digest of its train/valid intervals; resuming it on others (here a recipe that holds
    out a fraction of each contig instead of the store's own split) is refused and changes nothing in the run folder.
    A checkpoint without the record (an older genomix) resumes, with a warning when the recipe holds
    ``holdout_fraction``, which genomix once ignored."""
    run = tmp_path / "run"
    pretrain(load_recipe(tiny_recipe(tmp_path, demo_store, max_steps=1)), run, quiet=True)
    last = run / "checkpoints" / "last.ckpt"
    recorded = torch.load(last, weights_only=True)["GenomeDataModule"]["split_sha256"]
    assert len(recorded) == 64
    files = {path: path.stat().st_mtime_ns for path in run.rglob("*")}
    held_out = load_recipe(tiny_recipe(tmp_path, demo_store, max_steps=2,
                                       data={"genome": str(demo_store), "holdout_fraction": 0.2}))
    with pytest.raises(CheckpointError, match=r"other train/valid intervals .* pass another --out"):
        pretrain(held_out, run, resume="auto", quiet=True)
    assert {path: path.stat().st_mtime_ns for path in run.rglob("*")} == files

    legacy = torch.load(last, weights_only=True)
    del legacy["GenomeDataModule"]
    torch.save(legacy, last)
    with caplog.at_level(logging.WARNING, logger="genomix.train.run"):
        pretrain(held_out, run, resume="auto", quiet=True)
    assert "does not record its data split" in caplog.text and "holds out 0.2 of every contig" in caplog.text
    resumed = torch.load(last, weights_only=True)
    assert resumed["global_step"] == 2 and resumed["GenomeDataModule"]["split_sha256"] not in (recorded, None)


def test_a_split_bed_given_with_a_prepared_store_must_be_the_stores_own(tmp_path, demo_store):
    """A store keeps the splits it was prepared with: a BED given with a store path (``--genome x.h5 --bed y.bed``)
    that is not those splits is refused, where it used to be ignored; the store's own splits as a BED pass."""
    from genomix.train.data import resolve_store

    store = open_store(demo_store)
    own = tmp_path / "own.bed"
    own.write_text("".join(f"{contig}\t{start}\t{end}\t{split}\n" for split in store.splits
                           for contig, start, end in store.split_intervals(split)))
    assert resolve_store(str(demo_store), bed=str(own)) == demo_store
    other = tmp_path / "other.bed"
    other.write_text("chr1\t0\t2000000\ttrain\nchr1\t2000000\t2500000\tvalid\n")
    with pytest.raises(ConfigError, match=r"does not hold the splits of .*other.bed.*--force"):
        resolve_store(str(demo_store), bed=str(other))


def test_a_run_given_relative_paths_resumes_from_another_working_folder(tmp_path, demo_store, monkeypatch):
    """A requeued batch job may start in another folder: the run's recipe keeps its genome and BED as absolute
    paths, and a resume compares them resolved, however they are spelt."""
    store = open_store(demo_store)
    data = tmp_path / "data"
    data.mkdir()
    (data / "s.bed").write_text("".join(f"{contig}\t{start}\t{end}\t{split}\n" for split in store.splits
                                        for contig, start, end in store.split_intervals(split)))
    shutil.copy(demo_store, data / "g.h5")
    recipe = tiny_recipe(tmp_path, demo_store, max_steps=2)
    monkeypatch.chdir(data)
    args = ["pretrain", "--recipe", str(recipe), "--genome", "g.h5", "--bed", "s.bed", "--quiet"]
    assert cli_main(args + ["--out", str(tmp_path / "run")]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["data"]
    assert (saved["genome"], saved["bed"]) == (str(data / "g.h5"), str(data / "s.bed"))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["pretrain", "--resume", "auto", "--out", "run", "--max-steps", "3", "--quiet"]) == 0
    assert cli_main(["pretrain", "--resume", "auto", "--out", "run", "--max-steps", "4", "--genome", "data/g.h5",
                 "--bed", "data/../data/s.bed", "--quiet"]) == 0
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_a_commands_bed_with_a_recipes_held_out_contigs_is_refused(tmp_path, demo_store, capsys):
    """The held-out contigs used to win silently over ``--bed``; the two ways of splitting are now refused together
    before anything is written."""
    recipe = tiny_recipe(tmp_path, demo_store, data={"genome": str(demo_store), "valid_contigs": ["chr1"]})
    bed = tmp_path / "splits.bed"
    bed.write_text("chr1\t0\t2000000\ttrain\nchr1\t2000000\t2500000\tvalid\n")
    assert cli_main(["pretrain", "--recipe", str(recipe), "--bed", str(bed), "--out", str(tmp_path / "run"),
                     "--quiet"]) == 2
    assert "data.bed excludes data.valid_contigs and data.test_contigs" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_named_model_is_built_as_named_not_with_the_recipes_overrides():
    """The demo recipe shrinks its own HyenaDNA; ``--model`` gets the named size itself (a Mamba config has no
    ``d_inner`` to set, so the overrides crashed it)."""
    from genomix.cli import build_parser
    from genomix.cli.pretrain import _fresh_recipe

    recipe = _fresh_recipe(build_parser().parse_args(["pretrain", "--model", "mamba-tiny-1k"]))
    assert recipe.model == "mamba-tiny-1k" and recipe.model_overrides == {}
    assert _fresh_recipe(build_parser().parse_args(["pretrain"])).model_overrides  # the recipe's own model keeps them
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pretrain", "--max-steps", "-5"])


def test_a_resume_with_other_settings_names_each_change():
    """Flags that would make a resumed run another run are refused, each as ``key: old -> new`` (nested recipe
    fields by their path); how long it runs may change."""
    from genomix.cli import build_parser
    from genomix.cli.pretrain import _fresh_recipe, _refuse_changes
    from genomix.errors import ConfigError

    parse, saved = build_parser().parse_args, Path("runs/x/recipe.yaml")
    recipe = _fresh_recipe(parse(["pretrain"]))  # the demo recipe: seq_len 1024, no BED
    with pytest.raises(ConfigError, match=r"other settings \(--bed: - -> x.bed; --seq-len: 1024 -> 512\)"):
        _refuse_changes(parse(["pretrain", "--resume", "auto", "--bed", "x.bed", "--seq-len", "512"]), recipe, saved,
                        None)
    args = parse(["pretrain", "--recipe", "demo", "--genome", "hg38", "--seed", "7", "--max-steps", "3"])
    with pytest.raises(ConfigError, match=r"other settings \(data.genome: demo -> hg38; seed: 0 -> 7\)"):
        _refuse_changes(args, recipe, saved, _fresh_recipe(args))
    args = parse(["pretrain", "--recipe", "demo", "--max-steps", "3"])
    _refuse_changes(args, recipe, saved, _fresh_recipe(args))


def test_the_logged_training_loss_is_the_whole_steps_whatever_its_micro_batches(tmp_path, demo_store):
    """A step of 8 windows of 64 bases, as one micro-batch or as four: the logged train/loss is the step's loss,
    token-weighted over its micro-batches (N bases are no targets, so their counts differ), not the last
    micro-batch's. Without dropout the first step sees the same weights and windows either way."""
    losses = {}
    for tokens in (512, 128):
        recipe = tiny_recipe(tmp_path, demo_store, micro_batch_tokens=tokens, max_steps=1, global_batch=2,
                             model_overrides={**TINY_HYENA, "embed_dropout": 0.0})
        result = pretrain(load_recipe(recipe), tmp_path / str(tokens), quiet=True)
        assert result.stages[0].accumulate == 512 // tokens
        losses[tokens] = float(train_rows(tmp_path / str(tokens))[0]["train/loss"])
    assert losses[128] == pytest.approx(losses[512], rel=1e-5)


def test_loss_decreases_on_real_data(tmp_path, demo_store):
    recipe = tiny_recipe(tmp_path, demo_store, max_steps=24, steps_per_epoch=12, global_batch=4, micro_batch_tokens=1024,
                         seq_len=256, warmup={"start_seq_len": None}, val_windows=16, checkpoint_every=100)
    pretrain(load_recipe(recipe), tmp_path / "run", quiet=True)
    rows = metric_rows(tmp_path / "run")
    train = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    val = [float(r["val/bits_per_base"]) for r in rows if r.get("val/bits_per_base")]
    assert len(val) == 2
    assert sum(train[-4:]) / 4 < sum(train[:4]) / 4 - 0.3
    assert val[-1] < val[0]  # validation bits per base on held-out sequence fall too


FAMILIES = {
    "hyena": ("hyenadna-tiny-1k", "causal-lm", TINY_HYENA),
    "mamba": ("mamba-tiny-1k", "causal-lm", {"d_model": 32, "n_layer": 2}),
    "caduceus": ("caduceus-ph-1k-d118", "masked-lm", {"d_model": 32, "n_layer": 2}),
    "m2": ("m2-tiny-1k", "causal-lm", {"d_model": 32, "d_inner": 64, "n_layer": 2}),
    "transformer": ("transformer-tiny-1k", "causal-lm", {"d_model": 32, "d_inner": 64, "n_layer": 2, "n_head": 2}),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_trains_a_few_steps_and_round_trips(tmp_path, demo_store, family):
    model, task, overrides = FAMILIES[family]
    recipe = tiny_recipe(tmp_path, demo_store, model=model, task=task, model_overrides=overrides, seq_len=64,
                         global_batch=2, micro_batch_tokens=128, max_steps=2, steps_per_epoch=2,
                         warmup={"start_seq_len": None}, checkpoint_every=100, activation_checkpointing=True)
    result = pretrain(load_recipe(recipe), tmp_path / family, quiet=True)
    losses = [float(r["train/loss"]) for r in train_rows(tmp_path / family)]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert result.metrics["val/perplexity"] > 1.0
    loaded = genomix.from_pretrained(result.model_dir)
    assert loaded.config.model_type == f"genomix-{family}"


class _PoisonedModel(nn.Module):
    """Stand-in causal model whose loss turns NaN from the ``poison_at``-th forward of training on."""

    def __init__(self, poison_at: int) -> None:
        super().__init__()
        self.table = nn.Embedding(16, 16)
        self.train_calls, self.poison_at = 0, poison_at

    def forward(self, input_ids, labels=None):
        logits = self.table(input_ids)
        loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 16), labels[:, 1:].reshape(-1), ignore_index=-100)
        if self.training:
            self.train_calls += 1
            if self.train_calls >= self.poison_at:
                loss = loss * float("nan")
        return SimpleNamespace(loss=loss, logits=logits)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, demo_store, monkeypatch):
    # micro-batches of 64 tokens, accumulation 2 at L=64: the 7th forward is in optimiser step 3
    recipe = tiny_recipe(tmp_path, demo_store, seq_len=64, global_batch=8, warmup={"start_seq_len": None})
    monkeypatch.setattr(run_module, "build_model", lambda recipe: _PoisonedModel(poison_at=7))
    with pytest.raises(TrainingError, match=r"non-finite training loss.*step 3.*last good checkpoint is .*last\.ckpt"):
        pretrain(load_recipe(recipe), tmp_path / "nan", quiet=True)
    kept = torch.load(tmp_path / "nan" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert kept["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in kept["state_dict"].values())
    assert not (tmp_path / "nan" / "model").exists()


def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path, demo_store):
    """Lightning DDP (gloo, 2 processes) at the same global batch gives the single-process validation
    loss: each rank trains its share of every step and validation is shared out and token-weighted."""
    overrides = dict(TINY_HYENA, embed_dropout=0.0)  # dropout masks depend on the rank layout
    recipe = tiny_recipe(tmp_path, demo_store, model_overrides=overrides, seq_len=128, global_batch=4,
                         micro_batch_tokens=256, max_steps=2, steps_per_epoch=1, val_windows=8,
                         warmup={"start_seq_len": 64, "stage_epochs": 1}, checkpoint_every=100)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    losses = {}
    for devices in ("1", "2"):
        out = tmp_path / f"dev{devices}"
        cmd = [sys.executable, "-m", "genomix", "pretrain", "--recipe", str(recipe), "--out", str(out), "--quiet",
               "--devices", devices] + (["--accelerator", "cpu", "--strategy", "ddp"] if devices == "2" else [])
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        losses[devices] = [float(r["val/loss"]) for r in metric_rows(out) if r.get("val/loss")]
    assert len(losses["1"]) == 2
    assert losses["2"] == pytest.approx(losses["1"], rel=1e-5)
