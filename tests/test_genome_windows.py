"""Window datasets: BED splits, hold-out, contig ends, RC augmentation, N filter, seeding, formats."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from genomix.errors import RangeError, UnknownContigError
from genomix.genome import WindowDataset, holdout_splits, open_store, read_bed_splits, write_store
from genomix.genome.windows import IGNORE_INDEX, mask_for_mlm
from genomix.tokenizer import A_ID, MASK_ID, N_ID, T_ID, reverse_complement

HUMAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "genomes" / "human_GRCh37_chr1_first3Mb.fa.gz"
CHR1 = 3_004_950


@pytest.fixture(scope="module")
def human(tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "human.h5"
    return open_store(write_store(HUMAN, out, splits=holdout_splits))


def test_bed_splits(tmp_path: Path, human):
    bed = tmp_path / "splits.bed"
    bed.write_text("# header\nchr1\t10000\t200000\ttrain\nchr1\t200000\t260000\tvalid\n"
                   "chr1 300000 340000 test\nchr1\t400000\t500000\ttrain\n")
    splits = read_bed_splits(bed, human.lengths)
    assert splits == {"train": [("chr1", 10000, 200000), ("chr1", 400000, 500000)],
                      "valid": [("chr1", 200000, 260000)], "test": [("chr1", 300000, 340000)]}
    ds = WindowDataset(human, 4096, intervals=splits["valid"], mode="tiled")
    assert len(ds) == 60000 // 4096 + 1  # tiles plus one tail window ending at the interval end
    for i in range(len(ds)):
        contig, start, end, _ = ds.locate(i)
        assert 200000 <= start and end <= 260000


def test_bed_with_unknown_contig_names_the_line(tmp_path: Path, human):
    bed = tmp_path / "other.bed"
    bed.write_text("chr1\t0\t100\ttrain\n2\t0\t100\ttest\n")
    with pytest.raises(UnknownContigError, match=r"other.bed:2: contig '2' is not in the genome"):
        read_bed_splits(bed, human.lengths)
    bed.write_text("chr1\t0\t9999999\ttrain\n")
    with pytest.raises(RangeError, match=r"other.bed:1: interval chr1:0-9999999"):
        read_bed_splits(bed, human.lengths)


def test_bed_splits_must_not_share_bases_and_strands_are_checked(tmp_path: Path, human):
    from genomix.errors import InputFormatError
    from genomix.genome.bed import read_bed_intervals

    bed = tmp_path / "overlap.bed"
    bed.write_text("chr1\t0\t10000\ttrain\nchr1\t2000\t3000\ttrain\nchr1\t9000\t13000\tvalid\n")
    with pytest.raises(InputFormatError, match=r"overlap.bed:3: valid interval chr1:9000-13000 shares bases with the "
                                               r"train interval on line 1 \(ending at 10000\)"):
        read_bed_splits(bed, human.lengths)
    bed.write_text("chr1\t0\t10000\ttrain\nchr1\t5000\t12000\ttrain\nchr1\t12000\t13000\tvalid\n")
    assert read_bed_splits(bed, human.lengths)["valid"] == [("chr1", 12000, 13000)]  # touching is not sharing
    bed.write_text("chr1\t0\t10\ta\t0\t-\nchr1\t0\t10\tb\t0\t.\nchr1\t0\t10\tc\t0\tx\n")
    with pytest.raises(InputFormatError, match=r"overlap.bed:3: strand 'x' must be \+, - or \."):
        read_bed_intervals(bed, human.lengths)
    bed.write_text("chr1\t0\t10\ta\t0\t-\nchr1\t0\t10\tb\t0\t.\n")
    assert [row[4] for row in read_bed_intervals(bed, human.lengths)] == ["-", "+"]


def test_bed_error_leaves_no_store(tmp_path: Path):
    bed = tmp_path / "bad.bed"
    bed.write_text("chrX\t0\t10\ttrain\n")
    out = tmp_path / "s.h5"
    with pytest.raises(UnknownContigError):
        write_store(HUMAN, out, splits=lambda lengths: read_bed_splits(bed, lengths))
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.bed"]


def test_holdout_splits():
    lengths = {"chr1": 1000, "chr2": 500, "chr3": 200}
    split = holdout_splits(lengths, valid=["chr2"], test=["chr3"])
    assert split == {"train": [("chr1", 0, 1000)], "valid": [("chr2", 0, 500)], "test": [("chr3", 0, 200)]}
    region = holdout_splits({"chr1": 1000}, fraction=0.1)
    assert region == {"train": [("chr1", 0, 800)], "valid": [("chr1", 800, 900)], "test": [("chr1", 900, 1000)]}
    with pytest.raises(UnknownContigError):
        holdout_splits(lengths, valid=["chrZ"])


def test_the_recipes_holdout_fraction_replaces_the_stores_own_split(human):
    from genomix.train.data import GenomeDataModule
    from genomix.train.recipe import DataConfig
    from genomix.train.warmup import plan_warmup

    stages = plan_warmup(seq_len=128, global_batch=2, micro_batch_tokens=256)

    def split(data: DataConfig, name: str):
        return GenomeDataModule(human.path, data, stages, "causal-lm", steps_per_epoch=1)._split_intervals(name)

    assert split(DataConfig(), "valid") is None  # the store's own split (its 5 % cut)
    cut = int(CHR1 * 0.2)
    assert split(DataConfig(holdout_fraction=0.2), "valid") == [("chr1", CHR1 - 2 * cut, CHR1 - cut)]
    assert split(DataConfig(holdout_fraction=0.2), "train") == [("chr1", 0, CHR1 - 2 * cut)]


def test_windows_across_contig_ends_are_padded_with_n(human):
    ds = WindowDataset(human, 8192, intervals=[("chr1", CHR1 - 1000, CHR1)], mode="tiled")
    contig, start, end, _ = ds.locate(0)
    assert start < CHR1 < end  # a short interval at the contig end gets a centred window
    sample = ds[0]
    ids, labels = sample["input_ids"].numpy(), sample["labels"].numpy()
    tail = CHR1 - start
    assert (ids[tail:] == N_ID).all() and (labels[tail:] == IGNORE_INDEX).all()
    np.testing.assert_array_equal(ids[:tail], human.fetch("chr1", start, CHR1))


@pytest.mark.parametrize("objective, strand", [("causal", "+"), ("causal", "-"), ("mlm", "+"), ("mlm", "-")])
def test_a_window_centred_on_a_short_interval_scores_only_that_interval(human, objective, strand):
    """The flanks a short split interval takes from the contig are context: a validation window scored ~19 % of
    its labels on the neighbouring train and test bases (the mitochondrial genome's valid split at 1,024)."""
    lo, hi = 1_000_000, 1_000_300
    ds = WindowDataset(human, 1024, intervals=[("chr1", lo, hi)], mode="tiled", objective=objective,
                       rc_probability=1.0 if strand == "-" else 0.0, mlm_probability=0.5)
    contig, start, end, drawn = ds.locate(0)
    assert start < lo and hi < end and drawn == strand
    labels = ds[0]["labels"].numpy()
    positions = np.arange(start, end)[::-1] if strand == "-" else np.arange(start, end)  # genome position per slot
    scored = positions[labels != IGNORE_INDEX]
    assert scored.size > 100 and lo <= scored.min() and scored.max() < hi
    if objective == "causal":  # every real base of the interval still scored
        assert scored.size == hi - lo - int((human.fetch("chr1", lo, hi) == N_ID).sum())
    inside = WindowDataset(human, 256, intervals=[("chr1", lo, hi)], mode="tiled", objective=objective)
    assert all((inside[i]["labels"] != IGNORE_INDEX).any() for i in range(len(inside)))  # windows inside: unchanged


def test_a_split_that_is_all_n_is_refused_before_training(human):
    """Random windows of an all-N train split had no label to score: the first step's loss was NaN, blamed on the
    learning rate."""
    from genomix.errors import ConfigError

    with pytest.raises(ConfigError, match=r"split 'train' is all N \(5,000 bases\): no window of it has a base"):
        WindowDataset(human, 1024, split="train", intervals=[("chr1", 0, 5000)])  # chr1 starts with 10 kb of N
    assert len(WindowDataset(human, 1024, intervals=[("chr1", 0, 12_000)], samples_per_epoch=2)) == 2


def test_causal_format_and_lengths(human):
    for length in (1024, 1 << 20):
        ds = WindowDataset(human, length, split="train", samples_per_epoch=3, seed=1)
        s = ds[2]
        assert s["input_ids"].shape == (length,) and s["input_ids"].dtype == torch.long
        ids, labels = s["input_ids"], s["labels"]
        real = ids != N_ID
        assert torch.equal(labels[real], ids[real]) and (labels[~real] == IGNORE_INDEX).all()
        contig, start, end, strand = ds.locate(2)
        train_end = human.split_intervals("train")[0][2]
        assert 0 <= start and end <= train_end and strand == "+"


def test_rc_augmentation(human):
    ds = WindowDataset(human, 2048, split="train", samples_per_epoch=64, rc_probability=0.5, seed=3)
    strands = [ds.locate(i)[3] for i in range(64)]
    assert 10 < strands.count("-") < 54
    i = strands.index("-")
    contig, start, end, _ = ds.locate(i)
    np.testing.assert_array_equal(ds[i]["input_ids"].numpy(), reverse_complement(human.fetch(contig, start, end)))


def test_seeding_is_a_pure_function_of_seed_epoch_index(human):
    kwargs = dict(length=1024, split="train", samples_per_epoch=50, rc_probability=0.5, objective="mlm", seed=7)
    a, b = WindowDataset(human, **kwargs), WindowDataset(human, **kwargs)
    b.set_epoch(1), b.set_epoch(0)
    order = [31, 4, 17]
    for i in order:  # any access order, a fresh object (a resumed run): identical samples
        assert torch.equal(a[i]["input_ids"], b[i]["input_ids"]) and torch.equal(a[i]["labels"], b[i]["labels"])
    a.set_epoch(1)
    assert a.locate(4) != b.locate(4)
    c = WindowDataset(human, **{**kwargs, "seed": 8})
    assert [c.locate(i) for i in range(5)] != [b.locate(i) for i in range(5)]


def test_n_fraction_filter(human):
    # the region starts with a 10 kb N run: tiles there are dropped, random draws avoid it
    tiled = WindowDataset(human, 2000, intervals=[("chr1", 0, 40_000)], mode="tiled", max_n_fraction=0.1)
    assert all(human.n_count(c, s, e) <= 200 for c, s, e, _ in map(tiled.locate, range(len(tiled))))
    assert len(tiled) < 20
    rnd = WindowDataset(human, 2000, intervals=[("chr1", 0, 40_000)], samples_per_epoch=30, max_n_fraction=0.1)
    for i in range(30):
        assert (rnd[i]["input_ids"] == N_ID).float().mean() <= 0.1


def test_mlm_masking_80_10_10():
    rng = np.random.default_rng(0)
    ids = rng.integers(A_ID, T_ID + 1, size=200_000)
    ids[:1000] = N_ID
    inputs, labels = mask_for_mlm(ids, np.random.default_rng(1))
    chosen = labels != IGNORE_INDEX
    assert not chosen[:1000].any()  # N is never a target
    assert abs(chosen.mean() - 0.15) < 0.005
    np.testing.assert_array_equal(labels[chosen], ids[chosen])
    masked = (inputs[chosen] == MASK_ID).mean()
    unchanged = (inputs[chosen] == ids[chosen]).mean()
    assert abs(masked - 0.8) < 0.01
    assert abs(unchanged - (0.1 + 0.1 / 4)) < 0.01  # 10% kept + random draws that hit the same base
    assert ((inputs[chosen] >= A_ID) | (inputs[chosen] == MASK_ID)).all()
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])


def test_a_genome_too_small_to_hold_out_splits_says_how_to_get_them(tmp_path: Path):
    from genomix.errors import ConfigError

    (tmp_path / "tiny.fa").write_text(">t\nACGTACGTAC\n")
    store = write_store(tmp_path / "tiny.fa", tmp_path / "tiny.h5")
    assert len(WindowDataset(store, 8, split="train")) == 1
    with pytest.raises(ConfigError, match=r"no intervals for split 'valid' .*\(10 bases\).*--bed"):
        WindowDataset(store, 8, split="valid")
