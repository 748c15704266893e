"""`score-variants` and `index-vcf` on inputs that a user's files really hold and that earlier readers got wrong:
bgzip files cut between blocks, UTF-8 text (VCF 4.3), sloppy POS values, outputs named over an input's index or
with a compression suffix, runs stopped before their first row, BCF files handed to index-vcf, and contig names
that more than one reference contig answers to."""
from __future__ import annotations

import gzip
import re

import pytest
import torch

from genomix.cli import main as cli_main
from genomix.errors import InputFormatError, RangeError, UnknownContigError
from genomix.models.registry import build
from genomix.variants import Reference, Region, read_vcf, score_variants
from genomix.variants.indexing import index_vcf

from test_variants import BGZF_EOF, bgzf

COLUMNS = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
GENOME = "ACGTTGCAAGCTTCGA" * 8  # 128 bases


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build("hyenadna-tiny-1k", task="causal-lm").eval()


@pytest.fixture
def reference(tmp_path) -> Reference:
    fasta = tmp_path / "g.fa"
    fasta.write_text(f">chrQ\n{GENOME}\n")
    return Reference(fasta)


def record(pos: int | str, alt: str = "A", info: str = ".") -> str:
    ref = GENOME[int(pos) - 1] if str(pos).isdigit() else "A"
    return f"chrQ\t{pos}\t.\t{ref}\t{alt if alt != ref else 'C'}\t.\tPASS\t{info}\n"


def test_a_bgzip_vcf_cut_between_blocks_is_refused_not_read_short(tmp_path):
    """htslib ends each BGZF block at a record, so a copy cut between blocks decompresses cleanly: without its
    end-of-file block it must be refused, by the reader (whole or by region) and by index-vcf, not read short."""
    first = "##fileformat=VCFv4.2\n" + COLUMNS + "".join(record(p) for p in range(1, 40))
    rest = "".join(record(p) for p in range(40, 100))
    whole = bgzf(first.encode())[:-len(BGZF_EOF)] + bgzf(rest.encode())
    cut = tmp_path / "cut.vcf.gz"
    cut.write_bytes(whole[:whole.index(bgzf(rest.encode()))])  # the first block only: every line whole
    message = "cut.vcf.gz: the bgzip file lacks its end-of-file block, so it is truncated"
    with pytest.raises(InputFormatError, match=message):
        list(read_vcf(cut))
    with pytest.raises(InputFormatError, match=message):
        index_vcf(cut)
    assert [p.name for p in tmp_path.iterdir()] == ["cut.vcf.gz"]  # no index of the short file
    (tmp_path / "whole.vcf.gz").write_bytes(whole)
    index_vcf(tmp_path / "whole.vcf.gz")
    (tmp_path / "cut.vcf.gz.tbi").write_bytes((tmp_path / "whole.vcf.gz.tbi").read_bytes())
    with pytest.raises(InputFormatError, match=message):
        list(read_vcf(cut, [Region("chrQ", 0, 100)]))
    assert len(list(read_vcf(tmp_path / "whole.vcf.gz"))) == 99


def test_utf8_text_is_read_by_the_reader_and_index_vcf_alike(tmp_path):
    """VCF 4.3 is UTF-8: meta lines and INFO values may hold non-ASCII text, which both the reader (plain and by
    region) and index-vcf accept; a record that is not UTF-8 is refused by both, naming its line."""
    vcf = tmp_path / "u.vcf"
    vcf.write_bytes(("##fileformat=VCFv4.3\n##source=Variantenrufer für Mitochondrien\n" + COLUMNS + record(10)
                     + record(20, info="NOTE=café")).encode())
    assert [v.pos for v in read_vcf(vcf)] == [10, 20]
    copy = index_vcf(vcf)
    assert [v.pos for v in read_vcf(copy, [Region("chrQ", 15, 30)])] == [20]
    latin1 = tmp_path / "l.vcf"
    latin1.write_bytes(("##source=caf\xe9\n" + COLUMNS + record(10) + record(20, info="NOTE=caf\xe9")).encode("latin-1"))
    for call in (lambda: list(read_vcf(latin1)), lambda: index_vcf(latin1)):
        with pytest.raises(InputFormatError, match=r"l.vcf:4: not UTF-8 text \(column \d+\)"):
            call()
    assert not (tmp_path / "l.vcf.gz").exists()


@pytest.mark.parametrize("pos", ["+10", "1_0", " 10"])
def test_pos_must_be_written_in_digits(tmp_path, pos):
    """POS is digits only, in the reader as in index-vcf: Python's int() would also read "+10", "1_0" and " 10"
    as 10, scoring a record at a position the file never wrote plainly."""
    vcf = tmp_path / "p.vcf"
    vcf.write_text(COLUMNS + record(pos))
    with pytest.raises(InputFormatError, match=re.escape(f"p.vcf:2: POS '{pos}' is not an integer")):
        list(read_vcf(vcf))


def test_index_vcf_says_pos_0_is_not_1_based(tmp_path):
    vcf = tmp_path / "z.vcf"
    vcf.write_text(COLUMNS + record(0))
    with pytest.raises(InputFormatError, match=r"z.vcf:2: POS 0 must be >= 1 \(VCF positions are 1-based\)"):
        index_vcf(vcf)


def test_an_output_over_the_vcfs_index_is_refused(tmp_path, model, reference, capsys):
    """A region query reads the VCF's .tbi or .csi: --out naming it is refused even with --overwrite, by the
    library and the CLI, and the index stays as it was."""
    plain = tmp_path / "v.vcf"
    plain.write_text(COLUMNS + record(10) + record(50))
    vcf = index_vcf(plain)
    tbi = tmp_path / "v.vcf.gz.tbi"
    index = tbi.read_bytes()
    with pytest.raises(InputFormatError, match="must not be an input"):
        score_variants(model, read_vcf(vcf, [Region("chrQ", 0, 60)]), reference, tbi, vcf=vcf, window=32,
                       overwrite=True, quiet=True)
    csi = tmp_path / "v.vcf.gz.csi"
    csi.write_bytes(b"an index")
    assert cli_main(["score-variants", "--model", "hyenadna-tiny-1k", "--vcf", str(vcf), "--region", "chrQ:1-60",
                     "--reference", str(reference.path), "--out", str(csi), "--overwrite", "--window", "32",
                     "--quiet", "--device", "cpu"]) == 2
    assert "must not be an input" in capsys.readouterr().err
    assert tbi.read_bytes() == index and csi.read_bytes() == b"an index"


def test_a_run_stopped_before_its_first_row_leaves_nothing_to_resume(tmp_path, model, reference):
    """A REF mismatch (or Ctrl-C) before any row is written leaves no partial file, and the error does not offer
    --resume for zero rows; one stopped after some rows keeps them and says how many."""
    wrong = "T" if GENOME[4] != "T" else "G"
    vcf = tmp_path / "m.vcf"
    vcf.write_text(COLUMNS + f"chrQ\t5\t.\t{wrong}\tA\t.\t.\t.\n")
    with pytest.raises(InputFormatError, match="does not match the reference") as error:
        score_variants(model, read_vcf(vcf), reference, tmp_path / "m.tsv", vcf=vcf, window=32, quiet=True)
    assert "resume" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.fa", "m.vcf"]
    vcf.write_text(COLUMNS + record(10) + f"chrQ\t5\t.\t{wrong}\tA\t.\t.\t.\n")
    with pytest.raises(InputFormatError, match=r"the 1 rows written so far are kept in .*\.m\.tsv\.partial"):
        score_variants(model, read_vcf(vcf), reference, tmp_path / "m.tsv", vcf=vcf, window=32, batch_size=1,
                       quiet=True)


def test_a_compressed_output_name_is_refused(tmp_path, model, reference, capsys):
    """The rows are plain text: an output named .gz would be a plain file under a gzip name, so it is refused
    before any work, naming the plain name to use."""
    vcf = tmp_path / "c.vcf"
    vcf.write_text(COLUMNS + record(10))
    with pytest.raises(InputFormatError, match=r"s.tsv.gz: the output is a plain-text TSV, not .gz-compressed; "
                                               r"name it \S*s.tsv "):
        score_variants(model, read_vcf(vcf), reference, tmp_path / "s.tsv.gz", vcf=vcf, window=32, quiet=True)
    assert cli_main(["score-variants", "--model", "hyenadna-tiny-1k", "--vcf", str(vcf), "--reference",
                     str(reference.path), "--out", str(tmp_path / "s.tsv.bgz"), "--quiet", "--device", "cpu"]) == 2
    assert "not .bgz-compressed" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.vcf", "g.fa"]


def test_index_vcf_sends_a_bcf_to_bcftools(tmp_path):
    pysam = pytest.importorskip("pysam")
    pytest.importorskip("pysam.bcftools")
    plain = tmp_path / "b.vcf"
    plain.write_text("##fileformat=VCFv4.2\n##contig=<ID=chrQ,length=128>\n" + COLUMNS + record(10))
    bcf = tmp_path / "b.bcf"
    pysam.bcftools.view("-Ob", "-o", str(bcf), str(plain), catch_stdout=False)
    with pytest.raises(InputFormatError, match=r"b.bcf is a BCF file; `bcftools index b.bcf` indexes it"):
        index_vcf(bcf, tmp_path / "copy.vcf.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bcf", "b.vcf"]


def test_a_directory_or_an_ambiguous_contig_is_named_as_such(tmp_path):
    with pytest.raises(InputFormatError, match="is a directory; give the VCF or BCF file"):
        list(read_vcf(tmp_path))
    fasta = tmp_path / "two.fa"
    fasta.write_text(f">chrM\n{GENOME}\n>MT\n{GENOME}\n")
    with pytest.raises(UnknownContigError, match=r"'M' could be any of chrM, MT in \S*two.fa; .*--contig-map M=NAME"):
        Reference(fasta).resolve("M")


def test_a_record_past_its_contig_end_stops_the_cli_before_the_model_loads(tmp_path, reference, capsys, monkeypatch):
    """A VCF of another assembly shows as REFs past a contig's end: score-variants finds the first such record
    in its pre-scan of every record, before loading a model or writing anything, not hours into scoring."""
    import genomix.hub

    vcf = tmp_path / "late.vcf"
    vcf.write_text(COLUMNS + record(10) + record(20) + "chrQ\t128\t.\tAC\tA\t.\t.\t.\n")
    monkeypatch.setattr(genomix.hub, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert cli_main(["score-variants", "--model", "hyenadna-tiny-1k", "--vcf", str(vcf), "--reference",
                     str(reference.path), "--out", str(tmp_path / "s.tsv"), "--quiet", "--device", "cpu"]) == 2
    assert re.search(r"late\.vcf:4: chrQ:128 AC ends past the end of chrQ \(length 128\) .*called against this "
                     r"assembly", capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.fa", "late.vcf"]


def test_index_vcf_clears_what_a_killed_run_left_beside_its_outputs(tmp_path):
    """index-vcf writes through per-process temporary names (as every genomix output does): a run killed with
    kill -9 leaves them, and the next run removes them instead of leaving OUT.tmp files for good."""
    plain = tmp_path / "k.vcf"
    plain.write_text(COLUMNS + record(10))
    dead = 2 ** 22 + 12345  # above the default pid_max: no process has it
    left = [tmp_path / f".k.vcf.gz.tmp-{dead}", tmp_path / f".k.vcf.gz.tbi.tmp-{dead}"]
    for path in left:
        path.write_bytes(b"half a file")
    out = index_vcf(plain)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.vcf", "k.vcf.gz", "k.vcf.gz.tbi"]
    assert [v.pos for v in read_vcf(out, [Region("chrQ", 0, 60)])] == [10]


def test_bcf_ids_read_as_utf8_like_the_text_vcf(tmp_path):
    """BCF strings were decoded as ASCII with replacement characters, so an ID with non-ASCII text (allowed by VCF
    4.3, which the text reader takes) came out as U+FFFD from the same records written as BCF."""
    pysam = pytest.importorskip("pysam")
    pytest.importorskip("pysam.bcftools")
    plain = tmp_path / "u.vcf"
    plain.write_text("##fileformat=VCFv4.3\n##contig=<ID=chrQ,length=128>\n" + COLUMNS
                     + record(10).replace("\t.\t", "\tvariante_ñ\t", 1), encoding="utf-8")
    bcf = tmp_path / "u.bcf"
    pysam.bcftools.view("-Ob", "-o", str(bcf), str(plain), catch_stdout=False)
    assert [v.id for v in read_vcf(bcf)] == [v.id for v in read_vcf(plain)] == ["variante_ñ"]


def score_cli(vcf, reference: Reference, out, *extra: str) -> int:
    """``genomix score-variants`` on ``vcf`` with the tiny random model, quietly on the CPU."""
    return cli_main(["score-variants", "--model", "hyenadna-tiny-1k", "--vcf", str(vcf), "--reference",
                     str(reference.path), "--out", str(out), "--window", "32", "--quiet", "--device", "cpu", *extra])


@pytest.mark.parametrize("batch_size", [1, 16])
def test_the_advice_after_a_ref_mismatch_is_one_that_works(tmp_path, model, reference, batch_size):
    """A run stopped by a REF mismatch keeps its rows (also those of its unfinished batch, which were dropped), but
    fixing the VCF changes it, which resume refuses: the advice says to start again after such a fix, and that
    skip resumes on the unchanged VCF, which it does."""
    vcf = tmp_path / "v.vcf"
    wrong = "A" if GENOME[49] != "A" else "C"
    vcf.write_text(COLUMNS + record(10) + record(20) + f"chrQ\t50\t.\t{wrong}\tG\t.\t.\t.\n")
    out = tmp_path / "s.tsv"
    run = lambda **kw: score_variants(model, read_vcf(vcf), reference, out, vcf=vcf, window=32,  # noqa: E731
                                      batch_size=batch_size, quiet=True, device="cpu", **kw)
    with pytest.raises(InputFormatError) as stopped:
        run()
    advice = str(stopped.value).split("\n")[1]
    assert advice.startswith(f"(the 2 rows written so far are kept in {tmp_path / '.s.tsv.partial'}; if the fix is "
                             "in the VCF, start again with overwrite=True and resume=False (--overwrite without "
                             "--resume), as the kept rows are of the old file; on the unchanged VCF, resume=True "
                             "with on_ref_mismatch='skip' (--resume --on-ref-mismatch skip)")
    assert run(resume=True, on_ref_mismatch="skip") == {"resumed": 2, "ref_mismatch": 1}


def test_a_record_on_an_unknown_contig_is_named_by_file_and_line(tmp_path, model, reference, capsys):
    """An unknown contig is refused with the VCF file and line, as REF mismatches and records past the end are."""
    vcf = tmp_path / "v.vcf"
    vcf.write_text(COLUMNS + record(10) + "chr7\t5\t.\tA\tG\t.\t.\t.\n")
    assert score_cli(vcf, reference, tmp_path / "s.tsv") == 2
    assert f"{vcf}:3: no contig 'chr7' in {reference.path}" in capsys.readouterr().err
    with pytest.raises(UnknownContigError, match=re.escape(f"{vcf}:3: no contig 'chr7'")):
        score_variants(model, read_vcf(vcf), reference, tmp_path / "t.tsv", vcf=vcf, window=32, quiet=True,
                       device="cpu")


def test_a_region_the_reference_lacks_or_past_its_end_is_refused(tmp_path, capsys):
    """--region on a contig the reference lacks (after --contig-map), or starting past the contig's end, would
    select nothing and exit 0 with an empty TSV: it is refused, naming the region."""
    fasta = tmp_path / "g.fa"
    fasta.write_text(f">chrQ\n{GENOME}\n>chrR\n{GENOME}\n")
    reference = Reference(fasta)
    vcf = index_vcf(_written(tmp_path / "v.vcf", COLUMNS + record(10) + record(50)))
    assert score_cli(vcf, reference, tmp_path / "a.tsv", "--region", "chrX:1-2") == 2
    assert f"region chrX:1-2 (--region, --regions-bed): no contig 'chrX' in {fasta} (it has 2: chrQ, chrR)" in \
        capsys.readouterr().err
    assert score_cli(vcf, reference, tmp_path / "b.tsv", "--region", "chrQ:200-300") == 2
    assert "region chrQ:200-300 (--region, --regions-bed) starts past the end of chrQ (length 128)" in \
        capsys.readouterr().err
    assert score_cli(vcf, reference, tmp_path / "c.tsv", "--region", "Q:1-20", "--contig-map", "Q=chrQ") == 0
    assert [line.split("\t")[1] for line in (tmp_path / "c.tsv").read_text().splitlines()[2:]] == ["10"]
    assert not any(p.name.startswith(("a.tsv", "b.tsv")) for p in tmp_path.iterdir())


def _written(path, text: str):
    path.write_text(text)
    return path


def test_a_region_without_records_is_warned_about_once(tmp_path, capsys, caplog):
    """The CLI reads the VCF twice (check pass, scoring pass): a region on a reference contig that the VCF has no
    records on is warned about once, not twice."""
    fasta = tmp_path / "g.fa"
    fasta.write_text(f">chrQ\n{GENOME}\n>chrR\n{GENOME}\n")
    vcf = index_vcf(_written(tmp_path / "v.vcf", COLUMNS + record(10)))
    assert score_cli(vcf, Reference(fasta), tmp_path / "s.tsv", "--region", "chrR:1-20") == 0
    assert [r.getMessage() for r in caplog.records if "no records" in r.getMessage()] == [
        f"{vcf}: no records on chrR (the file's contigs: chrQ)"]
    assert capsys.readouterr().err.splitlines()[-1] == "0 alleles"


def test_a_symbolic_allele_past_its_contig_end_is_refused(tmp_path, model, reference, capsys):
    """A POS past the contig's end is the mark of another assembly for a symbolic allele too (only POS is
    checked: it has no sequence length), by the CLI's check pass and by the library."""
    vcf = tmp_path / "v.vcf"
    vcf.write_text(COLUMNS + record(10) + "chrQ\t500\t.\tA\t<DEL>\t.\t.\tEND=600\n")
    message = f"{vcf}:3: chrQ:500 A is past the end of chrQ (length 128) in {reference.path}; check that the VCF"
    assert score_cli(vcf, reference, tmp_path / "s.tsv") == 2
    assert message in capsys.readouterr().err
    with pytest.raises(RangeError, match=re.escape(message)):
        score_variants(model, read_vcf(vcf), reference, tmp_path / "t.tsv", vcf=vcf, window=32, quiet=True,
                       device="cpu")
    vcf.write_text(COLUMNS + "chrQ\t128\t.\tA\t<DEL>\t.\t.\t.\n")  # the last base: inside
    assert score_cli(vcf, reference, tmp_path / "u.tsv") == 0


def test_a_byte_order_mark_an_empty_vcf_and_out_dash(tmp_path, reference, capsys, monkeypatch):
    """A UTF-8 byte-order mark before the first line is accepted by the reader and index-vcf (whose bgzip copy
    drops it); a header-only VCF ends with a summary, not a blank line; --out - is refused, not written as ``-``."""
    bom = tmp_path / "bom.vcf"
    bom.write_bytes(b"\xef\xbb\xbf##fileformat=VCFv4.2\n" + (COLUMNS + record(10)).encode())
    assert [v.pos for v in read_vcf(bom)] == [10]
    copy = index_vcf(bom)
    assert [v.pos for v in read_vcf(copy, [Region("chrQ", 0, 20)])] == [10]
    assert not gzip.decompress(copy.read_bytes()).startswith(b"\xef\xbb\xbf")
    empty = _written(tmp_path / "empty.vcf", "##fileformat=VCFv4.2\n" + COLUMNS)
    assert score_cli(empty, reference, tmp_path / "e.tsv") == 0
    assert capsys.readouterr().err.splitlines()[-1] == "0 alleles"
    monkeypatch.chdir(tmp_path)
    assert score_cli(bom, reference, "-") == 2
    assert "--out -: the output must be a file path; standard output is not supported" in capsys.readouterr().err
    assert not (tmp_path / "-").exists()
