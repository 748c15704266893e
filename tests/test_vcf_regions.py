"""Region queries on indexed VCFs: genomix's pure-Python BGZF/tabix/CSI reader against indexes that htslib
builds (through pysam, a development dependency) and against a full scan, on a VCF whose REF bases come from
the real human chr1 sequence in shared/data, large enough to span many BGZF blocks and index bins."""
from __future__ import annotations

import gzip
import logging
import random
from pathlib import Path

import pytest

from genomix.cli import main as cli_main
from genomix.errors import InputFormatError, RangeError
from genomix.genome import read_fasta
from genomix.variants import Region, parse_region, read_vcf
from genomix.variants.tabix import BgzfReader, TabixIndex, region_bins

pysam = pytest.importorskip("pysam")
pytest.importorskip("pysam.bcftools")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CHR1 = SHARED / "genomes" / "human_GRCh37_chr1_first3Mb.fa.gz"
RCRS = SHARED / "genomes" / "human_mtDNA_rCRS.fa"


def _records(seq: str, contig: str, count: int, rng: random.Random) -> list[str]:
    """VCF lines at sorted random positions with the genome's REF base; some multi-allelic, some deletions,
    and a few symbolic deletions whose INFO END reaches far past POS."""
    lines = []
    for i, pos in enumerate(sorted(rng.sample(range(1, len(seq) - 60), count))):
        ref = seq[pos - 1].upper()
        if ref not in "ACGT":
            continue
        kind = i % 50
        if kind == 7:
            ref = seq[pos - 1:pos + 4].upper()
            alt, info = ref[0], "."
        elif kind == 11:
            alt, info = "<DEL>", f"SVTYPE=DEL;END={pos + rng.randint(20_000, 300_000)}"
        elif kind == 13:
            alt, info = ",".join(b for b in "ACGT" if b != ref), "."
        else:
            alt, info = rng.choice([b for b in "ACGT" if b != ref]), "AC=1"
        lines.append(f"{contig}\t{pos}\t{contig}_{i}\t{ref}\t{alt}\t50\tPASS\t{info}\tGT\t0/1")
    return lines


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> dict[str, Path]:
    """The same bgzipped VCF twice, one with a .tbi and one with a .csi index, both built by htslib."""
    seq = next(iter(read_fasta(CHR1).values()))
    rng = random.Random(7)
    body = _records(seq, "1", 30_000, rng) + _records(seq[:1_000_000], "2", 3_000, rng)
    header = ["##fileformat=VCFv4.2", "##contig=<ID=1,length=3000000>", "##contig=<ID=2,length=1000000>",
              "##contig=<ID=3,length=1000>", '##INFO=<ID=AC,Number=A,Type=Integer,Description="count">',
              '##INFO=<ID=SVTYPE,Number=1,Type=String,Description="type">',
              '##INFO=<ID=END,Number=1,Type=Integer,Description="end">',
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="genotype">',
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1"]
    root = tmp_path_factory.mktemp("indexed")
    out = {}
    for kind in ("tbi", "csi"):
        plain = root / f"calls_{kind}.vcf"
        plain.write_text("\n".join(header + body) + "\n")
        out[kind] = Path(pysam.tabix_index(str(plain), preset="vcf", csi=kind == "csi", force=True))
    out["bcf"] = root / "calls.bcf"  # bcftools' binary form of the same records, with its default CSI index
    pysam.bcftools.view("-Ob", "-o", str(out["bcf"]), str(out["tbi"]), catch_stdout=False)
    pysam.bcftools.index(str(out["bcf"]), catch_stdout=False)
    return out


def _overlapping(path: Path, region: Region) -> list[tuple]:
    """A full scan of the file's text: (chrom, pos, REF, ALT) of every allele whose record overlaps
    ``region``, the record spanning POS-1 .. POS-1+len(REF), or to INFO END when that is further."""
    found = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            f = line.rstrip("\n").split("\t")
            start = int(f[1]) - 1
            end = max([start + len(f[3])] + [int(i[4:]) for i in f[7].split(";") if i.startswith("END=")])
            if f[0] == region.chrom and end > region.start and (region.end is None or start < region.end):
                found.extend((f[0], int(f[1]), f[3], a) for a in f[4].split(","))
    return found


def test_index_spans_many_blocks_and_bins(indexed):
    index = TabixIndex.load(str(indexed["tbi"]) + ".tbi")
    assert index.names == ["1", "2"] and (index.min_shift, index.depth) == (14, 5)
    assert len(index.contigs[0].linear) > 150  # 3 Mb of 16 kb windows
    csi = TabixIndex.load(str(indexed["csi"]) + ".csi")
    assert csi.names == ["1", "2"] and csi.min_shift == 14
    with BgzfReader(indexed["tbi"]) as bgzf:
        blocks, offset = 0, 0
        while True:
            data, following = bgzf.block(offset)
            if following == offset:
                break
            blocks, offset = blocks + bool(data), following
    assert blocks > 15  # records cross many block boundaries


@pytest.mark.parametrize("kind", ["tbi", "csi"])
def test_region_queries_match_htslib_and_a_full_scan(indexed, kind):
    path = indexed[kind]
    rng = random.Random(11)
    regions = [Region("1", 0, None), Region("2", 999_000, None), Region("1", 16_383, 16_385),
               Region("1", 2_999_000, 3_000_000), Region("3", 0, 1000)]
    regions += [Region(c, s, s + rng.choice([1, 50, 5_000, 100_000, 700_000]))
                for c, s in ((rng.choice("12"), rng.randrange(0, 1_000_000)) for _ in range(25))]
    with pysam.TabixFile(str(path), index=f"{path}.{kind}") as tbx:
        for region in regions:
            got = [(v.chrom, v.pos, v.ref, v.alt) for v in read_vcf(path, [region])]
            if region.chrom in tbx.contigs:
                lines = [r.split("\t") for r in tbx.fetch(region.chrom, region.start, region.end)]
                want = [(f[0], int(f[1]), f[3].upper(), a) for f in lines for a in f[4].split(",")]
                assert got == want, region  # the records htslib returns, in file order
            assert got == _overlapping(path, region), region


def test_overlapping_regions_yield_each_record_once_in_region_order(indexed):
    path = indexed["tbi"]
    a, b = Region("1", 100_000, 200_000), Region("1", 150_000, 250_000)
    got = [(v.pos, v.alt) for v in read_vcf(path, [b, a])]
    want_b = [(p, alt) for _, p, _, alt in _overlapping(path, b)]
    only_a = [(p, alt) for _, p, _, alt in _overlapping(path, a) if (p, alt) not in set(want_b)]
    assert got == want_b + only_a and len(set(got)) == len(got)
    assert all(v.line == 0 and v.location("x.vcf.gz") == f"x.vcf.gz ({v.chrom}:{v.pos})"
               for v in read_vcf(path, [a]))


@pytest.mark.parametrize("kind", ["tbi", "bcf"])
def test_a_contig_without_records_yields_nothing_and_says_so(indexed, caplog, kind):
    with caplog.at_level(logging.WARNING):
        assert list(read_vcf(indexed[kind], [Region("chr7", 0, 100)])) == []
    assert "no records on chr7" in caplog.text


@pytest.mark.parametrize("kind", ["tbi", "bcf"])
def test_a_region_may_spell_the_contig_with_or_without_chr(indexed, kind):
    """``--region chr1:...`` on a file that names the contig ``1`` reads contig 1, as the reference matching does."""
    def spans(chrom):
        return [(v.chrom, v.pos, v.alt) for v in read_vcf(indexed[kind], [Region(chrom, 100_000, 200_000)])]

    assert spans("chr1") == spans("1") and spans("1")


def test_region_queries_need_an_index_and_bgzip(tmp_path, indexed):
    bare = tmp_path / "bare.vcf.gz"
    bare.write_bytes(indexed["tbi"].read_bytes())
    with pytest.raises(InputFormatError, match="genomix index-vcf bare.vcf.gz"):
        list(read_vcf(bare, [Region("1", 0, 10)]))
    gzipped = tmp_path / "plain.vcf.gz"
    gzipped.write_bytes(gzip.compress(gzip.decompress(indexed["tbi"].read_bytes())))
    (tmp_path / "plain.vcf.gz.tbi").write_bytes(Path(f"{indexed['tbi']}.tbi").read_bytes())
    with pytest.raises(InputFormatError, match="bgzip"):
        list(read_vcf(gzipped, [Region("1", 0, 100_000)]))
    (tmp_path / "plain.vcf.gz.tbi").unlink()  # unindexed gzip: the advice must be a command that works on it
    with pytest.raises(InputFormatError,
                       match=r"not bgzip, so `genomix index-vcf plain.vcf.gz --out plain.bgz.vcf.gz`"):
        list(read_vcf(gzipped, [Region("1", 0, 100_000)]))
    truncated = tmp_path / "cut.vcf.gz"
    truncated.write_bytes(indexed["tbi"].read_bytes())
    index = Path(f"{indexed['tbi']}.tbi").read_bytes()
    (tmp_path / "cut.vcf.gz.tbi").write_bytes(gzip.compress(gzip.decompress(index)[:200]))
    with pytest.raises(InputFormatError, match="index ends early"):
        list(read_vcf(truncated, [Region("1", 0, 10)]))


@pytest.mark.parametrize("text, region", [
    ("chr1", Region("chr1", 0, None)), ("chr1:1,000-2,000", Region("chr1", 999, 2000)),
    ("{HLA-A*01:01:01:01}:5-6", Region("HLA-A*01:01:01:01", 4, 6)), ("{HLA-A*01:01}", Region("HLA-A*01:01", 0, None)),
    ("2:5", Region("2", 4, None)), ("MT:10-10", Region("MT", 9, 10)), ("chr1:x-5", None), ("chr1:0-5", None),
])
def test_region_strings_are_one_based_and_inclusive(text, region):
    if region is None:
        with pytest.raises(RangeError):
            parse_region(text)
    else:
        assert parse_region(text) == region
    with pytest.raises(RangeError, match="START <= END"):
        parse_region("1:20-10")


def test_region_bins_cover_every_level():
    assert region_bins(0, 1, 14, 5) == [0, 1, 9, 73, 585, 4681]
    assert region_bins(16_383, 16_385, 14, 5)[-2:] == [4681, 4682]  # a leaf boundary is crossed


def test_cli_scores_only_the_region(tmp_path, capsys):
    """`score-variants --region` on an indexed VCF of real mitochondrial positions (rCRS REF bases)."""
    seq = next(iter(read_fasta(RCRS).values())).upper()
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for pos in range(100, 16_000, 97):
        ref = seq[pos - 1]
        lines.append(f"MT\t{pos}\tm{pos}\t{ref}\t{'A' if ref != 'A' else 'G'}\t.\tPASS\t.")
    plain = tmp_path / "mt.vcf"
    plain.write_text("\n".join(lines) + "\n")
    vcf = pysam.tabix_index(str(plain), preset="vcf", force=True)
    out = tmp_path / "region.tsv"
    args = ["score-variants", "--model", "hyenadna-tiny-1k", "--vcf", vcf, "--reference", str(RCRS),
            "--contig-map", "MT=MT_human", "--window", "64", "--quiet", "--device", "cpu"]
    assert cli_main(args + ["--region", "MT:1000-2000", "--region", "MT:15,900", "--out", str(out)]) == 0
    rows = [line.split("\t") for line in out.read_text().splitlines() if not line.startswith(("#", "chrom"))]
    positions = [int(r[1]) for r in rows]
    assert positions == [p for p in range(100, 16_000, 97) if 1000 <= p <= 2000 or p >= 15_900]
    assert "regions=MT:1000-2000,MT:15900-" in out.read_text().splitlines()[0]
    by_reference_name = tmp_path / "ref-name.tsv"  # the contig as the reference spells it, under --contig-map
    assert cli_main(args + ["--region", "MT_human:1000-2000", "--region", "MT:15,900", "--out",
                            str(by_reference_name)]) == 0
    assert by_reference_name.read_text() == out.read_text()
    capsys.readouterr()
    bed = tmp_path / "r.bed"
    bed.write_text("MT\t999\t2000\n")
    assert cli_main(args + ["--regions-bed", str(bed), "--out", str(tmp_path / "bed.tsv")]) == 0
    assert [line.split("\t")[1] for line in (tmp_path / "bed.tsv").read_text().splitlines()
            if not line.startswith(("#", "chrom"))] == [str(p) for p in positions if p <= 2000]


def _alleles(variants) -> list[tuple]:
    return [(v.chrom, v.pos, v.id, v.ref, v.alt) for v in variants]


def test_bcf_reads_as_the_same_variants_as_its_vcf(indexed):
    bcf, vcf = indexed["bcf"], indexed["tbi"]
    assert (bcf.parent / "calls.bcf.csi").is_file()
    assert _alleles(read_vcf(bcf)) == _alleles(read_vcf(vcf))
    rng = random.Random(5)
    regions = [Region("1", 16_383, 16_385), Region("2", 0, None), Region("3", 0, 10)]
    regions += [Region(rng.choice("12"), s, s + rng.choice([1, 5_000, 300_000])) for s in
                (rng.randrange(0, 1_000_000) for _ in range(12))]
    for region in regions:
        assert _alleles(read_vcf(bcf, [region])) == _alleles(read_vcf(vcf, [region])), region


def test_uncompressed_or_truncated_bcf_is_a_clear_error(tmp_path, indexed):
    raw = tmp_path / "raw.bcf"
    raw.write_bytes(gzip.decompress(indexed["bcf"].read_bytes())[:4096])
    with pytest.raises(InputFormatError, match="uncompressed BCF"):
        list(read_vcf(raw))
    cut = tmp_path / "cut.bcf"
    cut.write_bytes(indexed["bcf"].read_bytes()[:150_000])
    with pytest.raises(InputFormatError, match="cut short|CRC|corrupt|truncated"):
        list(read_vcf(cut))


def test_genomix_writes_a_bgzip_file_and_tabix_index_that_htslib_reads(indexed, tmp_path, capsys):
    """`genomix index-vcf` on the plain text of the test VCF: htslib (pysam) opens the BGZF file with the
    index genomix wrote and answers every query as genomix's reader does on htslib's own index."""
    plain = tmp_path / "calls.vcf"
    plain.write_bytes(gzip.decompress(indexed["tbi"].read_bytes()))
    assert cli_main(["index-vcf", str(plain)]) == 0
    ours = tmp_path / "calls.vcf.gz"
    assert capsys.readouterr().out.split() == [str(ours), f"{ours}.tbi"]
    assert gzip.decompress(ours.read_bytes()) == plain.read_bytes()
    rng = random.Random(3)
    regions = [Region("1", 16_383, 16_385), Region("2", 0, 2_000_000), Region("1", 2_990_000, 3_000_000)]
    regions += [Region(rng.choice("12"), s, s + rng.choice([1, 700, 40_000, 500_000]))
                for s in (rng.randrange(0, 1_000_000) for _ in range(15))]
    with pysam.TabixFile(str(ours)) as tbx:
        assert list(tbx.contigs) == ["1", "2"]
        for region in regions:
            fetched = [r.split("\t") for r in tbx.fetch(region.chrom, region.start, region.end)]
            got = [(f[0], int(f[1]), f[3].upper(), a) for f in fetched for a in f[4].split(",")]
            assert got == [(v.chrom, v.pos, v.ref, v.alt) for v in read_vcf(indexed["tbi"], [region])], region
            assert [(v.chrom, v.pos, v.ref, v.alt) for v in read_vcf(ours, [region])] == got


def test_a_bgzip_file_is_indexed_in_place_like_tabix_does(indexed, tmp_path):
    """htslib's own BGZF file, indexed by genomix in place: the index genomix writes gives htslib's answers."""
    from genomix.variants.indexing import index_vcf

    data = tmp_path / "theirs.vcf.gz"
    data.write_bytes(indexed["tbi"].read_bytes())  # compressed by htslib, with its own block boundaries
    assert index_vcf(data) == data and (tmp_path / "theirs.vcf.gz.tbi").is_file()
    with pytest.raises(InputFormatError, match=r"theirs.vcf.gz.tbi exists; pass overwrite=True \(--overwrite\)"):
        index_vcf(data)  # as tabix without -f
    assert index_vcf(data, overwrite=True) == data
    with pysam.TabixFile(str(data)) as ours, pysam.TabixFile(str(indexed["tbi"])) as theirs:
        for region in (Region("1", 0, 50_000), Region("1", 1_234_567, 1_900_000), Region("2", 500_000, None)):
            assert list(ours.fetch(region.chrom, region.start, region.end)) == list(
                theirs.fetch(region.chrom, region.start, region.end)), region


def test_index_vcf_refuses_unsorted_input_and_keeps_nothing(tmp_path):
    from genomix.variants.indexing import bin_of, index_vcf

    header = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    unsorted = tmp_path / "u.vcf"
    unsorted.write_text(header + "1\t500\t.\tA\tC\t.\t.\t.\n1\t20\t.\tA\tC\t.\t.\t.\n")
    with pytest.raises(InputFormatError, match="u.vcf:4: 1:20 comes after position 500; sort"):
        index_vcf(unsorted)
    split = tmp_path / "s.vcf"
    split.write_text(header + "1\t5\t.\tA\tC\t.\t.\t.\n2\t5\t.\tA\tC\t.\t.\t.\n1\t9\t.\tA\tC\t.\t.\t.\n")
    with pytest.raises(InputFormatError, match="contig 1 appears again"):
        index_vcf(split)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.vcf", "u.vcf"]  # no partial output
    gz = tmp_path / "c.vcf.gz"
    gz.write_bytes(gzip.compress(header.encode()))
    with pytest.raises(InputFormatError, match=r"gzip, not bgzip, so it cannot be indexed in place: .*out=PATH \(--out "
                                               r"PATH\)"):
        index_vcf(gz)
    assert [bin_of(0, 1), bin_of(16_383, 16_385), bin_of(0, 1 << 29)] == [4681, 585, 0]
    huge = tmp_path / "wheat.vcf"  # a contig over 512 Mb: past what tabix bins address (htslib asks for CSI)
    huge.write_text(header + "3B\t10\t.\tA\tC\t.\t.\t.\n3B\t600000000\t.\tA\tC\t.\t.\t.\n")
    with pytest.raises(InputFormatError, match=r"wheat.vcf:4: 3B:600000000 reaches past base 536,870,912.*tabix -C"):
        index_vcf(huge)
    assert not (tmp_path / "wheat.vcf.gz").exists() and not (tmp_path / "wheat.vcf.gz.tbi").exists()


def test_index_vcf_replaces_an_existing_copy_only_when_asked(tmp_path):
    from genomix.variants.indexing import index_vcf

    plain = tmp_path / "p.vcf"
    plain.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n1\t5\t.\tA\tC\t.\t.\t.\n")
    (tmp_path / "p.vcf.gz").write_bytes(b"an older copy")
    with pytest.raises(InputFormatError, match=r"p.vcf.gz exists; pass overwrite=True \(--overwrite\)"):
        index_vcf(plain)
    assert (tmp_path / "p.vcf.gz").read_bytes() == b"an older copy"
    assert index_vcf(plain, overwrite=True) == tmp_path / "p.vcf.gz" and (tmp_path / "p.vcf.gz.tbi").is_file()
    with pytest.raises(InputFormatError, match="must not be an input"):
        index_vcf(plain, plain, overwrite=True)


def test_index_vcf_creates_the_copys_folder_and_blames_the_output_when_it_cannot(tmp_path):
    from genomix.variants.indexing import index_vcf

    plain = tmp_path / "p.vcf"
    plain.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n1\t5\t.\tA\tC\t.\t.\t.\n")
    out = tmp_path / "new" / "folder" / "p.vcf.gz"
    assert index_vcf(plain, out) == out and Path(f"{out}.tbi").is_file()
    (tmp_path / "afile").write_text("")
    with pytest.raises(InputFormatError, match=r"cannot create the output folder \S*afile/x: \S*afile is a file, "
                                               r"not a folder"):
        index_vcf(plain, tmp_path / "afile" / "x" / "p.vcf.gz")


def test_an_unindexed_bcf_names_bcftools(tmp_path, indexed):
    bare = tmp_path / "bare.bcf"
    bare.write_bytes(indexed["bcf"].read_bytes())
    with pytest.raises(InputFormatError, match=r"bcftools index bare.bcf.*index-vcf indexes text VCFs only"):
        list(read_vcf(bare, [Region("1", 0, 10)]))
