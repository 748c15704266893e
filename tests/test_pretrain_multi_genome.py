"""Pretraining on several genomes at once: a list of FASTA files makes one store of several sources (contigs named
``<file stem>/<contig>``), and ``data.source_weights`` sets how often each source is drawn.

Small FASTA files written here (random bases, seeded) keep everything on the CPU in seconds. The sources are
deliberately unequal (``big`` is five times ``small``), so that weighting visibly changes the source frequencies
that drawing in proportion to length gives.
"""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from genomix.cli import main as cli_main
from genomix.errors import ConfigError, InputFormatError
from genomix.genome import WindowDataset, open_store
from genomix.train import load_recipe
from genomix.train.data import GenomeDataModule, resolve_store
from genomix.train.recipe import DataConfig
from genomix.train.warmup import plan_warmup

#: Contigs and lengths of the two sources; both have a chrM, as two species would.
SOURCES = {"big": {"chr1": 40_000, "chrM": 10_000}, "small": {"chrM": 4_000, "chr2": 6_000}}


def write_fasta(path: Path, contigs: dict[str, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        for name, length in contigs.items():
            bases = "".join(rng.choice(list("ACGT"), size=length))
            fh.write(f">{name}\n" + "\n".join(bases[i:i + 80] for i in range(0, length, 80)) + "\n")
    return path


@pytest.fixture(scope="module")
def fasta(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("fasta")
    return [write_fasta(folder / f"{name}.fa", contigs, seed) for seed, (name, contigs) in enumerate(SOURCES.items())]


@pytest.fixture(scope="module")
def corpus(fasta, tmp_path_factory) -> Path:
    """The store of both files, as ``genomix pretrain --genome big.fa small.fa`` makes it."""
    return resolve_store([str(path) for path in fasta], cache=tmp_path_factory.mktemp("cache"), quiet=True)


def source_counts(dataset: WindowDataset) -> Counter:
    return Counter(dataset.locate(i)[0].split("/")[0] for i in range(len(dataset)))


def test_several_fasta_files_make_one_store_with_contigs_named_after_their_files(fasta, corpus, tmp_path):
    store = open_store(corpus)
    assert store.contigs == ["big/chr1", "big/chrM", "small/chrM", "small/chr2"]  # the two chrM do not collide
    for path in fasta:
        single = open_store(resolve_store(str(path), cache=tmp_path, quiet=True))
        for contig in single.contigs:
            assert store.sequence(f"{path.stem}/{contig}") == single.sequence(contig)
    # a list of one file is that file; a folder is one genome in shards, whose contigs keep their names
    assert open_store(resolve_store([str(fasta[0])], cache=tmp_path, quiet=True)).contigs == ["chr1", "chrM"]
    shards = tmp_path / "shards"
    shards.mkdir()
    write_fasta(shards / "chr1.fa", {"chr1": 500}, 7)
    write_fasta(shards / "chr2.fa", {"chr2": 500}, 8)
    assert open_store(resolve_store(str(shards), cache=tmp_path, quiet=True)).contigs == ["chr1", "chr2"]
    shards.joinpath("more.fa").symlink_to(fasta[0])  # a folder of species that share names: refused, with the way
    with pytest.raises(InputFormatError, match="contig 'chr1' is also in"):
        resolve_store(str(shards), cache=tmp_path, quiet=True)


def test_a_recipe_takes_a_list_of_fasta_files_and_round_trips(fasta, tmp_path):
    paths = [str(path) for path in fasta]
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump({"data": {"genome": paths, "source_weights": {"big": 1, "small": 2.5}}}))
    recipe = load_recipe(recipe_file)
    assert recipe.data.genome == tuple(paths) and recipe.data.source_weights == {"big": 1, "small": 2.5}
    saved = tmp_path / "saved.yaml"
    saved.write_text(yaml.safe_dump(recipe.to_dict()))  # what a run writes and a resume reads
    assert load_recipe(saved).data == recipe.data
    recipe_file.write_text(yaml.safe_dump({"data": {"genome": paths[:1]}}))
    assert load_recipe(recipe_file).data.genome == paths[0]


def test_source_weights_set_how_often_each_source_is_drawn(corpus):
    n = 4000
    plain = source_counts(WindowDataset(corpus, 100, samples_per_epoch=n, seed=1))
    assert abs(plain["small"] / n - 1 / 6) < 0.03  # in proportion to length: big dominates
    weighted = WindowDataset(corpus, 100, samples_per_epoch=n, seed=1, source_weights={"big": 1, "small": 3})
    counts = source_counts(weighted)
    assert abs(counts["small"] / n - 0.75) < 0.03
    # inside a source, still in proportion to length: big/chr1 is four times big/chrM
    contigs = Counter(weighted.locate(i)[0] for i in range(n))
    assert abs(contigs["big/chr1"] / counts["big"] - 0.8) < 0.05
    # weight 0 leaves a source out of training
    only_small = WindowDataset(corpus, 100, samples_per_epoch=500, seed=1, source_weights={"big": 0, "small": 1})
    assert source_counts(only_small) == {"small": 500}
    # a pure function of (seed, epoch, index), like unweighted windows
    again = WindowDataset(corpus, 100, samples_per_epoch=n, seed=1, source_weights={"big": 1, "small": 3})
    assert [again.locate(i) for i in (5, 900, 17)] == [weighted.locate(i) for i in (5, 900, 17)]
    again.set_epoch(1)
    assert [again.locate(i) for i in range(20)] != [weighted.locate(i) for i in range(20)]
    with pytest.raises(ValueError, match="tiled windows cover every interval once"):
        WindowDataset(corpus, 100, split="valid", mode="tiled", source_weights={"big": 1, "small": 1})


def datamodule(corpus: Path, **data) -> GenomeDataModule:
    stages = plan_warmup(seq_len=128, global_batch=4, micro_batch_tokens=256)
    return GenomeDataModule(corpus, DataConfig(genome=str(corpus), **data), stages, "causal-lm", steps_per_epoch=6,
                            seed=3, val_windows=8)


def batches(loader) -> list[torch.Tensor]:
    return [batch["input_ids"] for batch in loader]


def test_a_weighted_epoch_resumes_mid_epoch_with_the_same_remaining_order(corpus):
    weights = {"big": 1, "small": 4}
    full = datamodule(corpus, source_weights=weights).train_dataloader()
    order = batches(full)
    assert len(order) == 12  # 6 steps of 4 windows in micro-batches of 2
    full.sampler.advance(10)  # five micro-batches trained, then the run stopped
    resumed = datamodule(corpus, source_weights=weights).train_dataloader()
    resumed.load_state_dict(full.state_dict())
    remaining = batches(resumed)
    assert len(remaining) == 7 and all(torch.equal(a, b) for a, b in zip(remaining, order[5:]))
    # validation stays unweighted: the same tiles with or without weights
    val = batches(datamodule(corpus, source_weights=weights).val_dataloader())
    plain = batches(datamodule(corpus).val_dataloader())
    assert len(val) == len(plain) == 4 and all(torch.equal(a, b) for a, b in zip(val, plain))


def test_source_weights_that_do_not_fit_the_store_are_refused_by_field(corpus, fasta, tmp_path):
    field = r"recipe field data\.source_weights, genome .*: "
    with pytest.raises(ConfigError, match=field + r"unknown source\(s\) \['mouse'\]; its sources: \['big', 'small'\]"):
        datamodule(corpus, source_weights={"big": 1, "small": 1, "mouse": 1})
    with pytest.raises(ConfigError, match=field + r"no weight for \['small'\] \(0 leaves a source out\); its sources"):
        datamodule(corpus, source_weights={"big": 1})
    single = resolve_store(str(fasta[0]), cache=tmp_path, quiet=True)
    with pytest.raises(ConfigError, match=field + r"source weights need contigs named <source>/<contig>, but "
                                              r"contig\(s\) 'chr1', 'chrM' have no source: build the store from"):
        datamodule(single, source_weights={"big": 1})
    for weights, message in (({"big": -1, "small": 1}, "the weight of source 'big' must be a finite number >= 0"),
                             ({"big": float("inf"), "small": 1}, "the weight of source 'big' must be .*got inf"),
                             ({"big": 0, "small": 0}, "every source weight is 0")):
        with pytest.raises(ConfigError, match=r"recipe field data\.source_weights: " + message):
            DataConfig(genome=str(corpus), source_weights=weights)
    # a source with weight but nothing left to train on: all of it held out
    held_out = datamodule(corpus, source_weights={"big": 1, "small": 1}, valid_contigs=("small/chrM", "small/chr2"))
    with pytest.raises(ConfigError, match=r"split 'train': source 'small' has weight 1 but no intervals in this split"):
        held_out.train_dataloader()
    left_out = datamodule(corpus, source_weights={"big": 1, "small": 0}, valid_contigs=("small/chrM", "small/chr2"))
    assert len(left_out.train_dataloader()) == 12


def train_losses(out: Path) -> list[str]:
    """``train/loss`` of every step a run folder logged, its run segments (first run, resumes) in order."""
    rows = []
    for version in sorted((out / "logs" / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1])):
        with open(version / "metrics.csv") as fh:
            rows += [row["train/loss"] for row in csv.DictReader(fh) if row.get("train/loss")]
    return rows


def test_pretrain_cli_on_two_fasta_files_with_source_weights(fasta, tmp_path, capsys):
    """Two steps on two FASTA files (each after its own --genome) with weights; the run stopped after one step,
    mid-epoch, and continued by the same command logs the same losses as the uninterrupted run."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "causal-lm", "model": "hyenadna-tiny-1k",
        "model_overrides": {"d_model": 32, "d_inner": 64, "n_layer": 2, "max_seq_len": 130, "filter_order": 16},
        "seq_len": 128, "global_batch": 2, "micro_batch_tokens": 128, "steps_per_epoch": 2, "max_steps": 2,
        "precision": "32-true", "checkpoint_every": 1, "val_windows": 2, "log_every": 1,
        "data": {"genome": "demo", "source_weights": {"big": 1, "small": 3}},
    }))
    cache = tmp_path / "cache"
    genome = ["--genome", str(fasta[0]), "--genome", str(fasta[1])]

    def command(out: Path) -> list[str]:
        return ["pretrain", "--recipe", str(recipe), "--out", str(out), "--cache-dir", str(cache), "--quiet", *genome]

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli_main(command(whole)) == 0
    saved = yaml.safe_load((whole / "recipe.yaml").read_text())["data"]
    assert saved["genome"] == [str(path) for path in fasta] and saved["source_weights"] == {"big": 1, "small": 3}
    assert (whole / "model" / "config.json").is_file()
    assert cli_main(command(cut) + ["--max-steps", "1"]) == 0
    assert cli_main(command(cut) + ["--resume", "auto"]) == 0  # the same command continues it
    assert len(train_losses(whole)) == 2 and train_losses(cut) == train_losses(whole)
    # --resume alone refuses other files, naming the flag
    capsys.readouterr()
    resume = ["pretrain", "--out", str(cut), "--cache-dir", str(cache), "--quiet", "--resume", "auto"]
    assert cli_main(resume + ["--genome", str(fasta[0])]) == 2
    assert "--genome: " in capsys.readouterr().err
    # weights that do not fit the files given are refused before training
    mouse = write_fasta(tmp_path / "mouse.fa", {"chrM": 900}, 9)
    assert cli_main(["pretrain", "--recipe", str(recipe), "--out", str(tmp_path / "other"), "--cache-dir", str(cache),
                     "--quiet", "--genome", str(fasta[0]), str(mouse)]) == 2
    assert "unknown source(s) ['small']; no weight for ['mouse']" in capsys.readouterr().err
