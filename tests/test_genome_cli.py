"""The `genomix genome` command: prepare (demo, FASTA path, BED), info, and clean failures."""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from genomix.cli import main
from genomix.errors import ConfigError, InputFormatError
from genomix.genome import demo_fasta, known_genomes, open_store, prepare_genome, write_store

ROOT = Path(__file__).resolve().parents[1]
SHARED_GENOMES = ROOT.parent / "shared" / "data" / "genomes"


def test_demo_genome_is_bundled_in_the_package():
    assert demo_fasta().is_file() and ROOT / "genomix" in demo_fasta().parents
    assert demo_fasta().read_bytes() == (SHARED_GENOMES / "human_GRCh37_chr1_first3Mb.fa.gz").read_bytes()


def test_registry_entries_have_real_sources():
    reg = known_genomes()
    assert {"hg38", "hg19", "mm10", "t2t-chm13", "demo"} <= set(reg)
    for name in ("hg38", "hg19", "mm10", "t2t-chm13"):
        assert reg[name].url.startswith("https://") and reg[name].url.endswith(".fa.gz")
        assert reg[name].md5_manifest.endswith("md5sum.txt")
    assert reg["hg38"].splits_bed.endswith("sequences_human.bed")


def test_registry_sources_are_ucsc_bigzips_and_checksums_are_not_made_up():
    """Each downloaded genome is UCSC's ``goldenPath/<db>/bigZips/<db>.fa.gz`` with the ``md5sum.txt`` UCSC
    publishes beside it (no checksum pinned by hand), and the one pinned checksum is the bundled file's."""
    import re

    reg = known_genomes()
    for name, db in (("hg38", "hg38"), ("hg19", "hg19"), ("mm10", "mm10"), ("t2t-chm13", "hs1")):
        spec = reg[name]
        assert spec.url == f"https://hgdownload.soe.ucsc.edu/goldenPath/{db}/bigZips/{db}.fa.gz"
        assert spec.md5_manifest == spec.url.rsplit("/", 1)[0] + "/md5sum.txt"
        assert spec.md5 is None and spec.sha256 is None and spec.size is None
    demo = reg["demo"]
    assert re.fullmatch(r"[0-9a-f]{64}", demo.sha256)
    assert hashlib.sha256(demo_fasta().read_bytes()).hexdigest() == demo.sha256


SPECIES = [SHARED_GENOMES / f"genome_{name}_1pct.fa.gz" for name in ("athaliana", "celegans", "dmelanogaster")]


def test_several_species_or_shards_make_one_store(tmp_path: Path, capsys):
    """A pretraining corpus of three real genomes in one store: every contig of every file, in order, with the
    same bases as each file's own store; a folder of shards is the same as its files listed; the store is reused
    for the same files and names all of them as its source."""
    singles = {path.name.split(".")[0]: open_store(write_store(path, tmp_path / f"{path.name}.h5")) for path in SPECIES}
    out = tmp_path / "corpus.h5"
    args = ["genome", "prepare", "--genome", *map(str, SPECIES), "--out", str(out), "--quiet"]
    assert main(args) == 2  # the worm and the fly both have an X
    assert "genome_dmelanogaster_1pct.fa.gz: contig 'X' is also in" in capsys.readouterr().err and not out.exists()
    assert main(args + ["--prefix-contigs"]) == 0
    corpus = open_store(out)
    assert corpus.contigs == [f"{species}/{c}" for species, store in singles.items() for c in store.contigs]
    for species, store in singles.items():
        for contig in store.contigs[:3]:
            assert corpus.sequence(f"{species}/{contig}") == store.sequence(contig)
    digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path in SPECIES]
    assert corpus.attrs["source_sha256"] == hashlib.sha256("".join(digests).encode()).hexdigest()
    assert corpus.attrs["source"] == "; ".join(str(path.resolve()) for path in SPECIES)
    assert set(corpus.splits) == {"train", "valid", "test"}
    assert prepare_genome(SPECIES, out=out, quiet=True, prefix_contigs=True) == out  # the same files: reused
    with pytest.raises(ConfigError, match="names its contigs after their files"):
        prepare_genome(SPECIES, out=out, quiet=True)
    shards = tmp_path / "shards"
    shards.mkdir()
    for path in SPECIES:
        (shards / path.name).symlink_to(path)
    (shards / "README").write_text("not a FASTA file")
    folder = open_store(prepare_genome(shards, cache=tmp_path / "cache", quiet=True, prefix_contigs=True))
    assert folder.contigs == corpus.contigs and folder.path.name.startswith("shards-")
    capsys.readouterr()


def test_a_contig_in_two_files_or_a_file_twice_is_refused(tmp_path: Path):
    lambda_fa = SHARED_GENOMES / "phage_lambda_NC_001416.fa"
    copy = tmp_path / "copy.fa"
    copy.write_bytes(lambda_fa.read_bytes())
    with pytest.raises(InputFormatError, match=r"copy.fa: contig 'gi\|9626243\|ref\|NC_001416.1\|' is also in .*"
                                               r"phage_lambda_NC_001416.fa; contig names must be unique.*"
                                               r"genome prepare --prefix-contigs`; `genomix pretrain` does so"):
        prepare_genome([lambda_fa, copy], out=tmp_path / "x.h5", quiet=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "copy.fa.gz").write_bytes(gzip.compress(lambda_fa.read_bytes()))
    with pytest.raises(InputFormatError, match=r"copy.fa.gz: contig 'copy/gi.* is also in .*copy.fa; .*the two files "
                                               r"have one name up to its first dot.*give each file a name of its own"):
        prepare_genome([copy, other / "copy.fa.gz"], out=tmp_path / "x.h5", quiet=True, prefix_contigs=True)
    with pytest.raises(InputFormatError, match="given more than once"):
        prepare_genome([lambda_fa, lambda_fa], out=tmp_path / "x.h5", quiet=True)
    with pytest.raises(ConfigError, match="not a FASTA file and not one of"):
        prepare_genome([lambda_fa, tmp_path / "missing.fa"], out=tmp_path / "x.h5", quiet=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputFormatError, match="a folder without FASTA files"):
        prepare_genome(empty, out=tmp_path / "x.h5", quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.fa", "empty", "other"]


def test_prepare_demo_and_info(tmp_path: Path, capsys):
    out = tmp_path / "demo.h5"
    assert main(["genome", "prepare", "--genome", "demo", "--out", str(out), "--quiet"]) == 0
    store = open_store(out)
    assert store.contigs == ["chr1"] and store.lengths["chr1"] == 3_004_950
    assert set(store.splits) == {"train", "valid", "test"}
    capsys.readouterr()
    assert main(["genome", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "chr1" in text and "3,004,950" in text and "N fraction" in text and "train" in text
    assert prepare_genome("demo", out=out, quiet=True) == out  # reused, not rebuilt
    other = SHARED_GENOMES / "phage_lambda_NC_001416.fa"
    with pytest.raises(ConfigError, match="exists but was built from genomix bundled .*--force"):
        prepare_genome(other, out=out, quiet=True)
    assert open_store(prepare_genome(other, out=out, quiet=True, force=True)).contigs == ["gi|9626243|ref|NC_001416.1|"]
    with pytest.raises(ConfigError, match="has compression none, not gzip"):
        prepare_genome(other, out=out, quiet=True, compression="gzip")
    contig = open_store(out).contigs[0]
    bed = tmp_path / "splits.bed"
    bed.write_text(f"{contig}\t0\t40000\ttrain\n{contig}\t40000\t48502\ttest\n")
    with pytest.raises(ConfigError, match="has other splits than .*splits.bed"):
        prepare_genome(other, out=out, quiet=True, bed=bed)
    assert open_store(prepare_genome(other, out=out, quiet=True, bed=bed, force=True)).split_intervals("test") == [
        (contig, 40000, 48502)]
    assert prepare_genome(other, out=out, quiet=True, bed=bed) == out  # the same splits: reused
    bed.write_text(f"{contig}\t0\t40000\ttrian\n")
    with pytest.raises(InputFormatError, match=r"splits.bed:1: split 'trian' is not one of train, valid, test"):
        prepare_genome(other, out=out, quiet=True, bed=bed, force=True)


def test_a_store_is_not_reused_for_changed_contents_or_other_splits(tmp_path: Path, caplog):
    """``--out`` names a store that exists: it is reused only if a rebuild would give the same store. The FASTA
    edited in place (same path) and a BED-split store asked for without --bed are refused, not reused."""
    fasta = tmp_path / "g.fa"
    fasta.write_text(">g\n" + "ACGT" * 50 + "\n")
    out = tmp_path / "g.h5"
    assert prepare_genome(fasta, out=out, quiet=True) == out
    assert prepare_genome(fasta, out=out, quiet=True) == out  # unchanged: reused
    fasta.write_text(">g\n" + "ACGT" * 25 + "\n")
    with pytest.raises(ConfigError, match=r"exists but was built from other contents of .*g\.fa \(the FASTA changed"):
        prepare_genome(fasta, out=out, quiet=True)
    assert open_store(out).lengths == {"g": 200}  # untouched
    bed = tmp_path / "s.bed"
    bed.write_text("g\t0\t60\ttrain\ng\t60\t80\tvalid\ng\t80\t100\ttest\n")
    prepare_genome(fasta, out=out, quiet=True, bed=bed, force=True)
    with pytest.raises(ConfigError, match="has other splits than the hold-out cut a store without --bed gets"):
        prepare_genome(fasta, out=out, quiet=True)
    assert prepare_genome(fasta, out=out, quiet=True, bed=bed) == out


def test_a_split_bed_is_checked_before_the_fasta_is_read_and_a_missing_split_is_refused(tmp_path: Path, monkeypatch,
                                                                                        caplog):
    from genomix.genome import registry
    from genomix.genome.windows import split_intervals

    fasta = tmp_path / "g.fa"
    fasta.write_text(">g\n" + "ACGT" * 50 + "\n")
    read = []
    monkeypatch.setattr(registry, "write_store", lambda *a, **k: read.append(a))
    for content, message in ((None, r"no\.bed: no such BED file"), ("g\t0\tten\ttrain\n", "end must be an integer"),
                             ("g\t0\t10\ttrian\n", "split 'trian' is not one of")):
        bed = tmp_path / "no.bed"
        if content is not None:
            bed.write_text(content)
        with pytest.raises(InputFormatError, match=message):
            prepare_genome(fasta, out=tmp_path / "g.h5", quiet=True, bed=bed)
    assert read == []  # refused before the FASTA was converted
    monkeypatch.undo()
    bed = tmp_path / "train-only.bed"
    bed.write_text("g\t0\t200\n")  # three columns: every row trains
    with caplog.at_level("WARNING"):
        store = open_store(prepare_genome(fasta, out=tmp_path / "t.h5", quiet=True, bed=bed))
    assert "train-only.bed names no valid rows: `genomix pretrain` refuses a store without them" in caplog.text
    caplog.clear()
    no_test = tmp_path / "no-test.bed"  # a store without a test split trains and validates as it is
    no_test.write_text("g\t0\t150\ttrain\ng\t150\t200\tvalid\n")
    with caplog.at_level("WARNING"):
        prepare_genome(fasta, out=tmp_path / "nt.h5", quiet=True, bed=no_test)
    assert "no-test.bed" not in caplog.text
    assert split_intervals(store, "train") == [("g", 0, 200)]
    # the hold-out cut would be the end of g, which the BED trains on
    with pytest.raises(ConfigError, match="holds the splits of a BED file \\(train\\) but no 'valid' rows"):
        split_intervals(store, "valid")


def test_a_store_path_that_cannot_be_written_is_refused_in_one_line(tmp_path: Path, capsys):
    fasta = tmp_path / "g.fa"
    fasta.write_text(">g\nACGT\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        probe = locked / "probe"
        try:
            probe.touch()  # as root, permissions do not stop a write: nothing to check then
        except PermissionError:
            assert main(["genome", "prepare", "--genome", str(fasta), "--out", str(locked / "g.h5"), "--quiet"]) == 2
            assert f"cannot create the output folder {locked}: it exists but cannot be written" in capsys.readouterr().err
        else:
            probe.unlink()
    finally:
        locked.chmod(0o700)
    import errno

    import h5py

    from genomix.genome import store as store_module

    def refused(path, mode):  # a folder that exists but takes no new file (as root, only some file systems refuse)
        raise PermissionError(errno.EACCES, f"Unable to synchronously create file (name = '{path}')")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store_module.h5py, "File", refused)
        assert main(["genome", "prepare", "--genome", str(fasta), "--out", str(tmp_path / "g.h5"), "--quiet"]) == 2
    assert f"cannot write the genome store {tmp_path / 'g.h5'}: Permission denied; choose another output path" in \
        capsys.readouterr().err and h5py.File is not refused
    assert main(["genome", "prepare", "--genome", str(fasta), "--out", str(fasta / "g.h5"), "--quiet"]) == 2
    assert f"cannot create the output folder {fasta}: {fasta} is a file, not a folder; choose another --out" in \
        capsys.readouterr().err
    assert main(["genome", "prepare", "--genome", str(fasta), "--cache-dir", str(fasta / "cache"), "--quiet"]) == 2
    assert "choose another --cache-dir (or $GENOMIX_CACHE)" in capsys.readouterr().err


def test_info_keeps_its_columns_aligned_for_long_contig_names(tmp_path: Path, capsys):
    fasta = tmp_path / "g.fa"
    fasta.write_text(">gi|9626243|ref|NC_001416.1|\nACGTN\n>chrM\nAC\n")
    out = prepare_genome(fasta, out=tmp_path / "g.h5", quiet=True)
    capsys.readouterr()
    assert main(["genome", "info", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("contig "))
    table = lines[header:header + 3]
    assert len({len(line) for line in table}) == 1, table  # every row ends where the header does
    assert table[1].split() == ["gi|9626243|ref|NC_001416.1|", "5", "0.2000"]


def test_prepare_fasta_path_defaults_to_the_cache(tmp_path: Path):
    fasta = tmp_path / "toy.fa"
    fasta.write_text(">t\nACGT\n")
    first = prepare_genome(fasta, cache=tmp_path / "cache", quiet=True)
    assert first.parent == tmp_path / "cache" / "stores" and first.name.startswith("toy-")
    assert prepare_genome(fasta, cache=tmp_path / "cache", quiet=True) == first
    # a store made otherwise (its own splits, contigs named after the file) gets its own default name, so that
    # pretrain's --bed or several species never meet this one and its advice to pass genome prepare's --force
    bed = tmp_path / "t.bed"
    bed.write_text("t\t0\t2\ttrain\nt\t2\t4\ttest\n")
    split = prepare_genome(fasta, cache=tmp_path / "cache", quiet=True, bed=bed)
    prefixed = prepare_genome(fasta, cache=tmp_path / "cache", quiet=True, prefix_contigs=True)
    assert len({first, split, prefixed}) == 3 and all(p.name.startswith("toy-") for p in (split, prefixed))
    assert open_store(split).split_intervals("test") == [("t", 2, 4)] and open_store(prefixed).contigs == ["toy/t"]
    demo = prepare_genome("demo", cache=tmp_path / "cache", quiet=True)
    assert demo.name == "demo.h5"
    assert prepare_genome("demo", cache=tmp_path / "cache", quiet=True, prefix_contigs=True) != demo


def test_prepare_fasta_path_with_bed(tmp_path: Path):
    bed = tmp_path / "s.bed"
    bed.write_text("NC_000913.3\t0\t4000000\ttrain\nNC_000913.3\t4000000\t4641652\ttest\n")
    out = tmp_path / "ecoli.h5"
    rc = main(["genome", "prepare", "--genome", str(SHARED_GENOMES / "ecoli_K12_MG1655.fa.gz"),
               "--bed", str(bed), "--out", str(out), "--quiet", "--compression", "lzf"])
    assert rc == 0
    store = open_store(out)
    assert store.split_intervals("test") == [("NC_000913.3", 4000000, 4641652)]
    assert store.attrs["compression"] == "lzf"
    assert store.fetch("NC_000913.3", 0, 12, as_bytes=True).tobytes() == b"AGCTTTTCATTC"


@pytest.mark.parametrize("content,message", [
    (b">chr1\nACGT\n>chr1\nAC\n", "bad.fa:3: duplicate contig name 'chr1'"),
    (b">chr1\nAC-GT\n", "bad.fa:2: invalid character '-'"),
])
def test_prepare_bad_fasta_exits_2_without_store(tmp_path: Path, content: bytes, message: str, capsys):
    fasta = tmp_path / "bad.fa"
    fasta.write_bytes(content)
    out = tmp_path / "bad.h5"
    assert main(["genome", "prepare", "--genome", str(fasta), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.fa"]


def test_unknown_genome_name(capsys):
    assert main(["genome", "prepare", "--genome", "hg99", "--quiet"]) == 2
    assert "unknown genome 'hg99'" in capsys.readouterr().err


def test_an_interrupt_with_nothing_kept_says_so(monkeypatch, capsys):
    import genomix.cli.embed as embed_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(embed_cli, "_run", interrupted)
    assert main(["embed", "--model", "m", "--fasta", "x.fa", "--out", "x.h5"]) == 130
    assert capsys.readouterr().err.strip() == "genomix embed: interrupted; nothing partial was kept"
