"""Real-world FASTA and BED files as users have them, fed to the genome store and the FASTA reader.

Valid-but-unusual inputs (Windows line ends, a byte-order mark, blank lines, tabs in headers, one-line
chromosomes, gzip/bgzip, a misleading ``.gz`` name, a stale ``.fai`` beside the file) must give exactly the store
of the clean file. Everything else must be one GenomixError naming the file and line (or contig and position) and
what to do, with no store and no temporary file left behind.
"""
from __future__ import annotations

import gzip
import re
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from genomix.cli import main
from genomix.errors import ConfigError, InputFormatError, RangeError, UnknownContigError
from genomix.genome import FastaReader, open_store, write_store
from genomix.genome.bed import read_bed_intervals, read_bed_splits

CLEAN = b">chr1 Homo sapiens\nNNNNacgtACGT\nRYKMacgtnn\nACGT\n>chrM\nGGCCTTAAgg\n"


def _one_line(text: bytes) -> bytes:
    """``text`` with each record's sequence on one line (a whole chromosome per line)."""
    records = text.split(b">")[1:]
    return b"".join(b">" + r.split(b"\n", 1)[0] + b"\n" + r.split(b"\n", 1)[1].replace(b"\n", b"") + b"\n"
                    for r in records)


def _bgzip(text: bytes) -> bytes:
    """``text`` as a bgzip (BGZF) file, written by htslib through pysam."""
    pysam = pytest.importorskip("pysam")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.fa", Path(tmp) / "in.fa.gz"
        src.write_bytes(text)
        pysam.tabix_compress(str(src), str(dst), force=True)
        return dst.read_bytes()


VALID = {
    "crlf.fa": lambda t: t.replace(b"\n", b"\r\n"),
    "bom.fa": lambda t: b"\xef\xbb\xbf" + t,
    "bom_crlf.fa": lambda t: b"\xef\xbb\xbf" + t.replace(b"\n", b"\r\n"),
    "blank_lines.fa": lambda t: b"\n\n" + t.replace(b"\n", b"\n\n").replace(b"\n>", b"\n\n\n>"),
    "tabs_in_header.fa": lambda t: t.replace(b"chr1 Homo", b"chr1\tHomo\t x").replace(b">chrM", b">chrM  "),
    "no_final_newline.fa": lambda t: t.rstrip(b"\n"),
    "one_line.fa": _one_line,
    "gzip.fa.gz": gzip.compress,
    "bgzip.fa.gz": _bgzip,
    "not_gzip_despite_name.fa.gz": lambda t: t,
}


def _contents(store) -> dict:
    return {c: (store.sequence(c), store.n_runs(c).tolist()) for c in store.contigs}


@pytest.mark.parametrize("name", VALID)
def test_unusual_but_valid_fasta_gives_the_clean_store(tmp_path: Path, name: str):
    clean = tmp_path / "clean.fa"
    clean.write_bytes(CLEAN)
    path = tmp_path / name
    path.write_bytes(VALID[name](CLEAN))
    (tmp_path / f"{name}.fai").write_text("chr1\t999\t6\t60\t61\n")  # a stale index beside it is never read
    want = _contents(open_store(write_store(clean, tmp_path / "clean.h5")))
    assert _contents(open_store(write_store(path, tmp_path / "got.h5"))) == want
    for block in (1, 5):  # every split of headers, CRLF pairs and the BOM across read blocks
        assert {r.name: r.sequence.tobytes().decode() for r in FastaReader(path, block_size=block)} == {
            c: seq for c, (seq, _) in want.items()}


def test_soft_masked_bases_keep_their_case_and_fetch_as_upper_case_ids(tmp_path: Path):
    upper, lower = tmp_path / "u.fa", tmp_path / "l.fa"
    for path, case in ((upper, bytes.upper), (lower, bytes.lower)):
        path.write_bytes(b"\n".join(line if line.startswith(b">") else case(line) for line in CLEAN.split(b"\n")))
    a, b = open_store(write_store(upper, tmp_path / "u.h5")), open_store(write_store(lower, tmp_path / "l.h5"))
    assert b.sequence("chrM") == "ggccttaagg"
    assert all(np.array_equal(a.fetch(c, 0, a.lengths[c], strand=s), b.fetch(c, 0, b.lengths[c], strand=s))
               for c in a.contigs for s in "+-")
    assert all(np.array_equal(a.n_runs(c), b.n_runs(c)) for c in a.contigs)


def test_a_whole_chromosome_on_one_line_reads_in_linear_time_and_memory(tmp_path: Path):
    n = 20_000_000
    seq = np.frombuffer(b"ACGTacgt", np.uint8)[np.random.default_rng(0).integers(0, 8, n)].tobytes()
    path = tmp_path / "long.fa"
    path.write_bytes(b">big one line\n" + seq + b"\n>tail\nNNAC\n")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        records = list(FastaReader(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5
    assert peak < 3 * n, f"peak {peak / n:.1f} bytes per base"
    assert [r.name for r in records] == ["big", "tail"] and records[0].sequence.tobytes() == seq


def _zip(text: bytes) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.fa", text)
    return buffer.getvalue()


BAD_FASTA = [
    ("reads.fa", b"@r1\nACGT\n+\nIIII\n", r"reads.fa:1: this looks like FASTQ reads, not FASTA; convert it"),
    ("aln.fa", b"@HD\tVN:1.6\n@SQ\tSN:chr1\tLN:9\n", r"aln.fa:1: this looks like SAM alignments.*samtools fasta"),
    ("gb.fa", b"LOCUS       NC_001416  48502 bp    DNA\nORIGIN\n        1 gggcggcgac\n//\n",
     r"gb.fa:1: this looks like a GenBank flat file, not FASTA; export it as FASTA"),
    ("embl.fa", b"ID   X; SV 1; linear; DNA\nSQ   Sequence\n", r"embl.fa:1: this looks like an EMBL flat file"),
    ("page.fa.gz", gzip.compress(b"\n<!DOCTYPE html>\n<html>404</html>\n"), r"page.fa.gz:2: this looks like HTML"),
    ("utf16.fa", "\ufeff>chr1\nACGT\n".encode("utf-16"), r"utf16.fa:1: this looks like UTF-16 text.*iconv"),
    ("hg38.2bit", b"C'A\x1a\x00\x00\x00\x00", r"hg38.2bit:1: this looks like a UCSC .2bit file.*twoBitToFa"),
    ("comment.fa", b";old comment\n>chr1\nACGT\n", r"comment.fa:1: this looks like an old-style ';' comment line"),
    ("preamble.fa", b"\nsequence of chr1\n>chr1\nACGT\n", r"preamble.fa:2: text before the first header: 'sequence"),
    ("blank.fa", b"\n\r\n\n", r"blank.fa:3: no FASTA record found \(the file holds only blank lines\)"),
    ("header_only.fa", b">chr1 nothing\n", r"header_only.fa:1: record 'chr1' has no sequence; remove the empty"),
    ("gap.fa", b">chr1\nACGT\nAC-GT\n", r"gap.fa:3: invalid character '-' .*column 3 in contig 'chr1': an alignment"),
    ("dot.fa", b">chr1\nAC.GT\n", r"dot.fa:2: invalid character '\.' .*column 3 .*alignment gap.*seqkit seq -g"),
    ("star.fa", b">chr1\nACGT*\n", r"star.fa:2: invalid character '\*' .*column 5 .*end-of-sequence marker; remove"),
    ("digits.fa", b">chr1\n  61 acgtacgt\n", r"digits.fa:2: invalid character '6' .*column 3 .*GenBank/EMBL listing"),
    ("rna.fa", b">chr1\nACGU\n", r"rna.fa:2: invalid character 'U' .*column 4 .*convert U to T"),
    ("masked.fa", b">chr1\nACXXXXGT\n", r"masked.fa:2: invalid character 'X' .*column 3 .*write N instead"),
    ("protein.fa", b">p\nMKVLAQ\n", r"protein.fa:2: invalid character 'L' .*column 4 .*protein sequence"),
    ("joined.fa", b">a\nACGT>b\nAC\n", r"joined.fa:2: invalid character '>' .*column 5 .*two records ran together"),
    ("latin1.fa", b">chr1\nAC\xe9GT\n", r"latin1.fa:2: invalid byte 0xE9 at column 3 in contig 'chr1': not ASCII"),
    ("header.fa", b">chr\xe9\nACGT\n", r"header.fa:1: header has byte 0xE9 at column 5, which is not UTF-8"),
    ("genome.fa.zip", _zip(CLEAN), r"genome.fa.zip: the file is compressed with zip \(unzip it\)"),
]


@pytest.mark.parametrize("name,data,message", BAD_FASTA, ids=[case[0] for case in BAD_FASTA])
def test_bad_fasta_is_one_clear_error_and_leaves_nothing(tmp_path: Path, name: str, data: bytes, message: str):
    path = tmp_path / name
    path.write_bytes(data)
    out = tmp_path / "out" / "g.h5"
    with pytest.raises(InputFormatError, match=message) as error:
        write_store(path, out)
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    assert list(out.parent.iterdir()) == []


def test_bgzip_cut_at_a_block_boundary_is_refused(tmp_path: Path):
    seq = np.frombuffer(b"ACGT", np.uint8)[np.random.default_rng(1).integers(0, 4, 200_000)].tobytes()
    data = _bgzip(b">a\n" + seq + b"\n>b\nACGT\n")
    first_block = int.from_bytes(data[16:18], "little") + 1  # BGZF BSIZE field: block size - 1
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(data[:first_block])  # a complete gzip member: gzip alone reads it without complaint
    with pytest.raises(InputFormatError, match=r"cut.fa.gz: the bgzip file lacks its end-of-file block"):
        write_store(path, tmp_path / "cut.h5")
    assert not (tmp_path / "cut.h5").exists()


def test_prepare_refuses_to_write_the_store_over_its_own_fasta(tmp_path: Path, capsys):
    fasta = tmp_path / "g.fa"
    fasta.write_bytes(CLEAN)
    assert main(["genome", "prepare", "--genome", str(fasta), "--out", str(fasta), "--force", "--quiet"]) == 2
    assert "must not be an input" in capsys.readouterr().err and fasta.read_bytes() == CLEAN


@pytest.mark.parametrize("given,message", [
    ("g.fa", r"g.fa: not a genomix genome store \(not an HDF5 file\); this looks like a FASTA: build a store "
             r"from it with `genomix genome prepare --genome"),
    ("folder", r"folder is a folder, not a genome store; give the path of the store's .h5 file"),
])
def test_info_on_something_else_than_a_store_says_what_to_do(tmp_path: Path, capsys, given: str, message: str):
    (tmp_path / "g.fa").write_bytes(CLEAN)
    (tmp_path / "folder").mkdir()
    assert main(["genome", "info", str(tmp_path / given)]) == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    (folder / "g.fa").write_bytes(CLEAN)
    return open_store(write_store(folder / "g.fa", folder / "g.h5"))


@pytest.mark.parametrize("call,error,message", [
    (lambda s: s.fetch("chr1", 0, 4, strand="."), ConfigError, r"chr1:0-4: strand must be '\+' or '-', got '\.'"),
    (lambda s: s.fetch("chr1", 0, 4, strand=-1), ConfigError, r"strand must be '\+' or '-', got -1"),
    (lambda s: s.fetch("chr1", 0.5, 4), RangeError, r"chr1: start must be an integer \(0-based\), got 0.5"),
    (lambda s: s.fetch("chr1", 0, "4"), RangeError, r"chr1: end must be an integer \(0-based\), got '4'"),
    (lambda s: s.fetch("chr1", 8, 4), RangeError, r"chr1:8-4: end is before start; .*request start <= end"),
    (lambda s: s.fetch("chr1", -2, 4), RangeError, r"chr1:-2-4 is outside the contig \(length 26\).*pad=True"),
    (lambda s: s.fetch("chr1", 20, 27), RangeError, r"chr1:20-27 is outside the contig \(length 26\)"),
    (lambda s: s.n_fraction("chr9"), UnknownContigError, r"unknown contig 'chr9' .*chr1, chrM"),
    (lambda s: s.sequence("chr9"), UnknownContigError, r"unknown contig 'chr9'"),
    (lambda s: s.split_intervals("valid"), ConfigError, r"split 'valid' is not stored in .*--bed"),
], ids=["strand-dot", "strand-int", "float-start", "str-end", "end-before-start", "negative", "past-end",
        "n-fraction-unknown", "sequence-unknown", "unknown-split"])
def test_bad_fetch_arguments_are_genomix_errors(store, call, error, message):
    with pytest.raises(error, match=message):
        call(store)


LENGTHS = {"chr1": 1000, "chr2": 500}
CLEAN_BED = b"chr1\t0\t100\ttrain\nchr1\t100\t200\tvalid\nchr2\t0\t50\ttest\n"
VALID_BED = {
    "headers.bed": b"track name=splits\nbrowser position chr1:1-100\n# comment\n  track indented\n" + CLEAN_BED,
    "crlf.bed": CLEAN_BED.replace(b"\n", b"\r\n"),
    "bom.bed": b"\xef\xbb\xbf" + CLEAN_BED,
    "spaces.bed": CLEAN_BED.replace(b"\t", b" "),
    "blank_lines.bed": b"\n" + CLEAN_BED.replace(b"\n", b"\n\n"),
    "splits.bed.gz": gzip.compress(CLEAN_BED),
}


@pytest.mark.parametrize("name", VALID_BED)
def test_unusual_but_valid_bed_gives_the_clean_splits(tmp_path: Path, name: str):
    clean, path = tmp_path / "clean.bed", tmp_path / name
    clean.write_bytes(CLEAN_BED)
    path.write_bytes(VALID_BED[name])
    assert read_bed_splits(path, LENGTHS) == read_bed_splits(clean, LENGTHS)
    assert read_bed_intervals(path, LENGTHS) == read_bed_intervals(clean, LENGTHS)


BAD_BED = [
    (b"chr1\t10\t10\ttrain\n", RangeError, r":1: interval chr1:10-10 is empty \(a zero-length feature.*widen"),
    (b"chr1\t0\t5\ttrain\nchr1\t10\t5\ttrain\n", RangeError, r":2: interval chr1:10-5 ends before it starts"),
    (b"chr1\t-5\t5\ttrain\n", RangeError, r":1: interval chr1:-5-5 has a negative start; .*0-based"),
    (b"chr1\t2000\t2100\ttrain\n", RangeError, r":1: interval chr1:2000-2100 is outside the contig \(length 1,000\)"),
    (b"chrX\t0\t10\ttrain\n", UnknownContigError, r":1: contig 'chrX' is not in the genome .*another assembly"),
    (b"chr1\t0.5\t10\ttrain\n", InputFormatError, r":1: start must be an integer, got '0.5'; .*whole numbers"),
    (b"chr1\t1_000\t2000\ttrain\n", InputFormatError, r":1: start must be an integer, got '1_000'"),
    (b"chr1\t+5\t10\ttrain\n", InputFormatError, r":1: start must be an integer, got '\+5'"),
    (b"chr1\t0\t1e2\ttrain\n", InputFormatError, r":1: end must be an integer, got '1e2'"),
    (b"chr1\t0 100\ttrain\n", InputFormatError, r":1: start must be an integer, got '0 100'; separate all columns"),
    (b"chrom\tstart\tend\nchr1\t0\t9\n", InputFormatError, r":1: start must be an integer, got 'start'; .*'#'"),
    (b"chr1\t0\n", InputFormatError, r":1: expected at least 3 columns \(contig start end\)"),
    (b"track name=x\n# nothing\n", InputFormatError, r": no intervals found"),
    (gzip.compress(CLEAN_BED * 200)[:90], InputFormatError, r": the gzip stream is truncated or corrupt after line"),
]


@pytest.mark.parametrize("data,error,message", BAD_BED, ids=[case[2].split(":", 2)[-1][:30] for case in BAD_BED])
def test_bad_bed_is_one_clear_error_with_file_and_line(tmp_path: Path, data: bytes, error: type, message: str):
    path = tmp_path / "s.bed"
    path.write_bytes(data)
    for read in (read_bed_splits, read_bed_intervals):
        with pytest.raises(error, match=re.escape(str(path)) + message):
            read(path, LENGTHS)


def test_prepare_with_a_bad_bed_leaves_no_store(tmp_path: Path, capsys):
    (tmp_path / "g.fa").write_bytes(CLEAN)
    (tmp_path / "s.bed").write_bytes(b"chr1\t0\t10\ttrain\r\nchr1\t10\t40\tvalid\r\n")  # chr1 has 26 bases
    out = tmp_path / "out" / "g.h5"
    argv = ["genome", "prepare", "--genome", str(tmp_path / "g.fa"), "--bed", str(tmp_path / "s.bed"),
            "--out", str(out), "--quiet"]
    assert main(argv) == 2
    assert re.search(r"s.bed:2: interval chr1:10-40 is outside the contig \(length 26\)", capsys.readouterr().err)
    assert list(out.parent.iterdir()) == []
