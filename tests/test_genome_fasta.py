"""FASTA -> genome store on every real genome in ../shared, exact round trips, and bad input."""
from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import numpy as np
import pytest

from genomix.errors import GenomixError, InputFormatError
from genomix.genome import FastaReader, open_store, write_store

GENOMES = sorted((Path(__file__).resolve().parents[2] / "shared" / "data" / "genomes").glob("*.fa*"))


def source_records(path: Path) -> dict[str, str]:
    """Independent parse of a FASTA with plain Python string handling, as the oracle."""
    opener = gzip.open if path.suffix == ".gz" else open
    records: dict[str, list[str]] = {}
    name = None
    with opener(path, "rt") as fh:
        for line in fh:
            line = line.rstrip("\r\n")
            if line.startswith(">"):
                name = line[1:].split()[0]
                records[name] = []
            elif name is not None:
                records[name].append(line.strip())
    return {k: "".join(v) for k, v in records.items()}


def test_shared_genomes_are_present():
    assert len(GENOMES) >= 8, GENOMES


@pytest.mark.parametrize("fasta", GENOMES, ids=lambda p: p.name)
def test_store_round_trips_every_shared_genome(fasta: Path, tmp_path: Path):
    store = open_store(write_store(fasta, tmp_path / "g.h5"))
    expected = source_records(fasta)
    assert store.contigs == list(expected)
    for name, seq in expected.items():
        assert store.lengths[name] == len(seq)
        assert store.sequence(name) == seq  # case (soft-mask) and N preserved exactly
        n = sum(seq.upper().count(c) for c in "NRYSWKMBDHV")
        assert store.n_count(name, 0, len(seq)) == n
    assert store.attrs["source_sha256"] and store.attrs["genomix_version"]


def test_soft_mask_and_leading_n_run_of_human_region(tmp_path: Path):
    fasta = next(p for p in GENOMES if p.name.startswith("human_GRCh37"))
    store = open_store(write_store(fasta, tmp_path / "h.h5"))
    runs = store.n_runs("chr1")
    assert runs[0, 0] == 0 and runs[0, 1] >= 10_000  # chr1 starts with a long N run
    text = store.sequence("chr1", 0, 3_004_950)
    assert any(c.islower() for c in text) and any(c in "ACGT" for c in text)


def test_small_blocks_split_headers_and_lines(tmp_path: Path):
    path = tmp_path / "multi.fa"
    path.write_text(">a desc\nACGTacgtNN\nnnRY\nA\n>bb\nGGGG\r\nCC\n\n>c\nT")
    for block in (1, 2, 3, 7, 1 << 20):
        records = list(FastaReader(path, block_size=block))
        assert {r.name: r.sequence.tobytes().decode() for r in records} == {
            "a": "ACGTacgtNNnnRYA", "bb": "GGGGCC", "c": "T"}, block
        assert records[0].n_runs.tolist() == [[8, 14]], block  # one run even when split across blocks
        assert records[1].n_runs.shape == (0, 2)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


BAD_INPUTS = [
    ("empty.fa", b"", r"empty.fa:1: no FASTA record found \(the file is empty\)"),
    ("noheader.fa", b"ACGT\nACGT\n", r"noheader.fa:1: sequence data before the first header"),
    ("badchar.fa", b">chr1\nACGT\nACXT\n", r"badchar.fa:3: invalid character 'X' .*column 3 in contig 'chr1'"),
    ("dup.fa", b">chr1\nACGT\n>chr2\nA\n>chr1\nGG\n", r"dup.fa:5: duplicate contig name 'chr1' \(first defined at line 1\)"),
    ("emptyrec.fa", b">chr1\n>chr2\nACGT\n", r"emptyrec.fa:1: record 'chr1' has no sequence"),
    ("cr.fa", b">chr1\rACGT\rAC\r", r"cr.fa:1: lines end with a carriage return alone"),
    ("seq.fa.bz2", bz2.compress(b">chr1\nACGT\n"), r"seq.fa.bz2: the file is compressed with bzip2"),
    ("seq.fa.xz", lzma.compress(b">chr1\nACGT\n"), r"seq.fa.xz: the file is compressed with xz"),
]


@pytest.mark.parametrize("name,data,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_fasta_is_a_clear_error_and_leaves_no_store(tmp_path: Path, name: str, data: bytes, message: str):
    path = _write(tmp_path, name, data)
    out = tmp_path / "out" / "store.h5"
    with pytest.raises(InputFormatError, match=message):
        write_store(path, out)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary left behind either


def test_truncated_gzip_is_a_clear_error(tmp_path: Path):
    data = gzip.compress(b">chr1\n" + b"ACGT" * 50_000 + b"\n")
    path = _write(tmp_path, "cut.fa.gz", data[: len(data) // 2])
    out = tmp_path / "cut.h5"
    with pytest.raises(GenomixError, match=r"cut.fa.gz: the gzip stream is truncated or corrupt"):
        write_store(path, out)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["cut.fa.gz"]


def test_bgzip_multi_member_gzip_is_read(tmp_path: Path):
    # bgzip files are concatenated gzip members; the reader must read all of them
    path = _write(tmp_path, "bgz.fa.gz", gzip.compress(b">x\nACGT\n") + gzip.compress(b"acgt\n>y\nNNA\n"))
    recs = {r.name: r.sequence for r in FastaReader(path)}
    assert recs["x"].tobytes() == b"ACGTacgt" and recs["y"].tobytes() == b"NNA"
    assert recs["x"].dtype == np.uint8


def test_a_utf8_byte_order_mark_before_the_first_header_is_ignored(tmp_path: Path):
    path = tmp_path / "bom.fa"
    path.write_bytes(b"\xef\xbb\xbf>chrA note\r\nACGTN\r\nacgt\r\n")
    for block in (1, 2, 1 << 20):
        (record,) = list(FastaReader(path, block_size=block))
        assert record.name == "chrA" and bytes(record.sequence) == b"ACGTNacgt"
