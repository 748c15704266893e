"""An index that does not fit its VCF (made for another file, or for this one before it changed) is refused
with a message naming both files and the command that rebuilds it, instead of a region query silently
reading fewer or other records; an older index that fits (a copy without its times) is used, with a warning.

The files are written by ``genomix index-vcf`` itself (bgzip copy and ``.tbi``), and, for BCF, by bcftools."""
from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Iterable

import pytest

from genomix.cli import main as cli_main
from genomix.errors import InputFormatError
from genomix.variants import Region, read_vcf
from genomix.variants.indexing import index_vcf

HEADER = ("##fileformat=VCFv4.2\n##contig=<ID=1,length=1000000>\n##contig=<ID=2,length=1000000>\n"
          "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
MANY = range(1, 600_000, 75)  # 8000 records a contig: the bgzip file spans several blocks
FEW = range(1, 2_000, 20)  # 100 records: one block


def _indexed(out: Path, records: Iterable[tuple[str, int]], record_id: str = ".", trailer: str = "") -> Path:
    """``out`` (bgzip) and ``out.tbi`` as ``genomix index-vcf`` writes them, from records ``(chrom, pos)``."""
    plain = out.with_name("plain.vcf")
    plain.write_text(HEADER + "".join(f"{c}\t{p}\t{record_id}\tA\tC\t.\tPASS\t.\n" for c, p in records) + trailer)
    index_vcf(plain, out, overwrite=True)
    plain.unlink()
    return out


def _positions(vcf: Path, region: Region) -> list[tuple[str, int]]:
    return [(v.chrom, v.pos) for v in read_vcf(vcf, [region])]


def _swap_index(vcf: Path, old_index: bytes, older: bool) -> None:
    """Put ``old_index`` back beside ``vcf``, dated before or after it (a copy's time says nothing)."""
    tbi = Path(f"{vcf}.tbi")
    tbi.write_bytes(old_index)
    stamp = vcf.stat().st_mtime + (-100 if older else 100)
    os.utime(tbi, (stamp, stamp))


def _refusal(vcf: Path, why: str) -> str:
    return (rf"{re.escape(str(vcf))}.tbi does not fit {re.escape(str(vcf))}: .*{why}.* rebuild it with `genomix "
            rf"index-vcf --overwrite {re.escape(vcf.name)}`")


def test_the_index_of_the_file_before_it_was_filtered_is_refused_and_index_vcf_fixes_it(tmp_path):
    """The file rewritten shorter (filtered) under its old index: the index's offsets point past its end, where
    a query used to find nothing, without a word (the index even lists the contig)."""
    vcf = _indexed(tmp_path / "calls.vcf.gz", [("1", p) for p in MANY] + [("2", p) for p in MANY])
    old_index = Path(f"{vcf}.tbi").read_bytes()
    _indexed(vcf, [("1", p) for p in MANY if p < 200_000])
    _swap_index(vcf, old_index, older=False)
    for region in (Region("2", 0, 10_000), Region("1", 0, 10_000)):
        with pytest.raises(InputFormatError, match=_refusal(vcf, "its last record ends at virtual offset")):
            _positions(vcf, region)
    assert cli_main(["index-vcf", "--overwrite", str(vcf)]) == 0  # as the message says
    assert _positions(vcf, Region("1", 0, 10_000)) == [("1", p) for p in MANY if p <= 10_000]
    assert _positions(vcf, Region("2", 0, 10_000)) == []


@pytest.mark.parametrize("older", [True, False])
def test_the_index_of_the_file_before_records_were_appended_is_refused(tmp_path, older):
    """Records of contig 2 appended after indexing: the old index does not list contig 2, so a query on it used
    to log "no records on 2" and find nothing, whatever the index's time."""
    vcf = _indexed(tmp_path / "calls.vcf.gz", [("1", p) for p in MANY])
    old_index = Path(f"{vcf}.tbi").read_bytes()
    _indexed(vcf, [("1", p) for p in MANY] + [("2", p) for p in MANY])
    _swap_index(vcf, old_index, older)
    with pytest.raises(InputFormatError, match=_refusal(vcf, "calls.vcf.gz goes on after virtual offset")):
        _positions(vcf, Region("2", 0, 10_000))


def test_the_index_of_a_file_of_the_same_layout_is_refused_by_its_first_record(tmp_path):
    """Another file with the same bytes per record but its contigs in the other order: the index ends where
    this file does, but its chunk of contig 2 starts at a record of contig 1, where a query used to read
    contig 1's records, drop them as outside the region, and find nothing."""
    vcf = _indexed(tmp_path / "calls.vcf.gz", [("1", p) for p in FEW] + [("2", p) for p in FEW])
    other = _indexed(tmp_path / "other.vcf.gz", [("2", p) for p in FEW] + [("1", p) for p in FEW])
    shutil.copyfile(f"{other}.tbi", f"{vcf}.tbi")
    with pytest.raises(InputFormatError, match=_refusal(vcf, "it has a record of 2 at virtual offset \\d+, where "
                                                             "calls.vcf.gz has one of 1")):
        _positions(vcf, Region("2", 0, 100))


def test_an_index_offset_inside_a_line_is_refused(tmp_path):
    """The index of a file with shorter lines: its offsets land inside this file's lines, where a query used to
    stop early and miss the records after."""
    vcf = _indexed(tmp_path / "calls.vcf.gz", [("1", p) for p in FEW], record_id="rs12345")
    other = _indexed(tmp_path / "other.vcf.gz", [("1", p) for p in FEW])
    shutil.copyfile(f"{other}.tbi", f"{vcf}.tbi")
    with pytest.raises(InputFormatError, match=_refusal(vcf, "is inside a line, not at its start")):
        _positions(vcf, Region("1", 0, 2_000))


def test_an_older_index_that_fits_is_used_with_a_warning_naming_the_rebuild(tmp_path, caplog):
    """A VCF copied without its time (cp, a download) after its index, with blank lines after its last record:
    the index fits, so it is used; the warning says how to rebuild it in case the file was edited in place."""
    vcf = _indexed(tmp_path / "calls.vcf.gz", [("1", p) for p in MANY], trailer="\n\n")
    stamp = Path(f"{vcf}.tbi").stat().st_mtime + 100
    os.utime(vcf, (stamp, stamp))
    with caplog.at_level(logging.WARNING):
        assert _positions(vcf, Region("1", 590_000, None)) == [("1", p) for p in MANY if p > 590_000]
    assert f"{vcf}.tbi is older than {vcf}" in caplog.text
    assert f"`genomix index-vcf --overwrite {vcf.name}`" in caplog.text


def test_a_bcf_with_the_csi_of_its_shorter_self_names_bcftools(tmp_path):
    bcftools = pytest.importorskip("pysam.bcftools")
    first = _indexed(tmp_path / "first.vcf.gz", [("1", p) for p in MANY])
    both = _indexed(tmp_path / "both.vcf.gz", [("1", p) for p in MANY] + [("2", p) for p in MANY])
    bcf = tmp_path / "calls.bcf"
    bcftools.view("-Ob", "-o", str(bcf), str(first), catch_stdout=False)
    bcftools.index(str(bcf), catch_stdout=False)
    old_index = Path(f"{bcf}.csi").read_bytes()
    bcftools.view("-Ob", "-o", str(bcf), str(both), catch_stdout=False)
    Path(f"{bcf}.csi").write_bytes(old_index)
    name = re.escape(str(bcf))
    with pytest.raises(InputFormatError, match=rf"{name}.csi does not fit {name}: .* rebuild it with "
                                               r"`bcftools index -f calls.bcf`"):
        list(read_vcf(bcf, [Region("2", 0, 10_000)]))
